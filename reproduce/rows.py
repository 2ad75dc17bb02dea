"""Result rows of a reproduction and their JSON / markdown form; ``run_cli`` runs eoflow-fast.

A row: ``claim``, ``paper`` (the number and where the paper gives it), ``ours`` (what was
measured, or "not run" with a reason), ``command`` (what produced ``ours``), ``budget`` ("cpu" or
"gpu"), ``verdict`` ("reproduced", "partly", "not reproduced", "not run"). ``gpu_command`` holds the
paper-budget command where the CPU budget is shorter than the paper's.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
COLUMNS = ("claim", "paper", "ours", "command", "budget", "verdict")
VERDICTS = ("reproduced", "partly", "not reproduced", "not run")

sys.path.insert(0, str(ROOT / "bench"))
from common import env_info  # noqa: E402


def row(claim: str, paper: str, ours: str, command: str, budget: str, verdict: str, gpu_command: str = "") -> dict:
    if verdict not in VERDICTS:
        raise ValueError(f"row: verdict={verdict!r}, expected one of {VERDICTS}")
    if budget not in ("cpu", "gpu"):
        raise ValueError(f"row: budget={budget!r}, expected 'cpu' or 'gpu'")
    return {"claim": claim, "paper": paper, "ours": ours, "command": command, "budget": budget,
            "verdict": verdict, "gpu_command": gpu_command}


def span(values, fmt: str = "{:.2f}") -> str:
    """min-max of values as formatted, or the one value when both print alike."""
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table (``|`` in cells escaped)."""
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write(name: str, rows: list[dict], details: dict, results_dir: Path = RESULTS) -> Path:
    """Writes ``repro_<name>.json`` (env, the command line, rows, details) and ``repro_<name>.md``
    (the table)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"repro_{name}.json"
    path.write_text(json.dumps({"benchmark": f"repro_{name}", "env": env_info("cpu"),
                                "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "rows": rows, "details": details},
                               indent=2) + "\n")
    (results_dir / f"repro_{name}.md").write_text(markdown(rows))
    return path


def previous_details(name: str, results_dir: Path, b: dict, same: tuple) -> dict:
    """The ``details`` of ``results_dir/repro_<name>.json`` written earlier by the same script, or
    {} when there is none or its budget differs from ``b`` in one of the keys ``same`` (runs of
    other steps, batch or evaluation sizes are not reused)."""
    path = results_dir / f"repro_{name}.json"
    if not path.exists():
        return {}
    details = json.loads(path.read_text())["details"]
    return details if all(details["budget"].get(key) == b[key] for key in same) else {}


def run_cli(args: list[str]) -> str:
    """Runs ``eoflow-fast ARGS`` (of this interpreter's environment) in the repository root; returns
    its stdout, or exits with the command and the end of its stderr when it fails."""
    done = subprocess.run([str(Path(sys.executable).parent / "eoflow-fast"), *args], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"eoflow-fast {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def parse_budget(doc: str, budgets: dict, default_root: str, argv=None,
                 no_train: bool = False) -> tuple[str, dict, Path, Path, argparse.Namespace]:
    """``--budget`` / ``--run-root`` (and with ``no_train`` a ``--no-train`` flag: report only the
    runs already in the run folder) of a script: (budget name, its settings, the run folder
    ROOT/run_root/budget, the results folder: bench/results for "cpu", else the run folder, so smoke
    budgets never write results, all flags)."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--budget", choices=sorted(budgets), default="cpu")
    p.add_argument("--run-root", default=default_root)
    if no_train:
        p.add_argument("--no-train", action="store_true", help="report only the runs already in the run folder")
    args = p.parse_args(argv)
    root = ROOT / args.run_root / args.budget
    return args.budget, budgets[args.budget], root, (RESULTS if args.budget == "cpu" else root), args
