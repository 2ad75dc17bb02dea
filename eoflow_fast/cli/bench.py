"""``eoflow-fast bench [NAME ...]``: run the benchmarks in the repository's ``bench/`` folder.

Each ``bench/bench_<name>.py`` has a ``main(argv)`` that runs its variants side by side, prints a
table of ratios and writes ``<out>/<name>_<device>.json`` (``--out``, default ``runs/bench``; the
committed ``bench/results/`` only when named on purpose), recording every flag. The benchmarks ship with the
source tree (not with a wheel): run this from a checkout installed with ``pip install -e .``.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from eoflow_fast.train.argtypes import out_folder

from .common import UsageError, suggest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def available() -> dict[str, Path]:
    return {p.stem[len("bench_"):]: p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def _load(path: Path):
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args: argparse.Namespace) -> int:
    benches = available()
    if not benches:
        print(f"eoflow-fast bench: no benchmarks found in {BENCH_DIR}; run from a source checkout "
              "installed with `pip install -e . --no-build-isolation`", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(benches))
        return 0
    names = args.names or list(benches)
    unknown = [n for n in names if n not in benches]
    if unknown:
        raise UsageError(f"argument NAME: unknown benchmark {unknown[0]!r}{suggest(unknown[0], benches)} "
                         f"(available: {', '.join(benches)})")
    passthrough = (["--quick"] if args.quick else []) + (["--device", args.device] if args.device else [])
    os.environ["EOFLOW_FAST_BENCH_OUT"] = str(args.out)
    for name in names:
        print(f"== {name}")
        _load(benches[name]).main(passthrough)
    print(f"results in {args.out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="run benchmarks side by side and print ratio tables",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all); see --list")
    p.add_argument("--list", action="store_true", help="list the available benchmarks")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--out", type=lambda text: Path(out_folder(text)), default=Path("runs/bench"),
                   help="folder for the result JSON (the README's committed results: bench/results)")
    p.set_defaults(func=run)
