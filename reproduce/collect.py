"""Builds the README "Reproductions" table from ``bench/results/repro_*.json``: one section of rows
per script, in ``ORDER``; a script with no result file yet gives one "not run" row with the command
that would measure it, so a claim never drops out of the table silently.

    python -m reproduce.collect [--out FILE]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .rows import RESULTS, markdown, row

ORDER = ("bfvae_fa", "ifp_speed", "ifp_factors", "deft_stages", "deft_stage4", "triangle", "eoflow_pca_limit",
         "eoflow_compression", "eoflow_entropy")
SCRIPT = {"triangle": "triangle_toy"}  # result name -> script module, where they differ


def not_run(name: str) -> dict:
    """The placeholder row of a script that has not written its CPU results yet."""
    cmd = f"python -m reproduce.{SCRIPT.get(name, name)} --budget cpu"
    return row(f"reproduce/{SCRIPT.get(name, name)}.py", "(see the script's docstring)",
               "not run (no bench/results/repro_" + name + "_*.json yet)", cmd, "cpu", "not run")


def collect(results_dir: Path = RESULTS) -> list[dict]:
    rows = []
    for name in ORDER:
        paths = sorted(results_dir.glob(f"repro_{name}_*.json"))
        rows += [r for path in paths for r in json.loads(path.read_text())["rows"]] or [not_run(name)]
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help="write the table here (default: print it)")
    args = p.parse_args(argv)
    table = markdown(collect())
    if args.out:
        Path(args.out).write_text(table)
    else:
        print(table, end="")


if __name__ == "__main__":
    main()
