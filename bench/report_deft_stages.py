"""Collect MIG at the end of every DEFT stage from finished run folders into one result JSON.

The runs themselves come from the CLI, e.g. (the shortened CPU run of the closing notes):

    OMP_NUM_THREADS=1 eoflow-fast train deft --preset dsprites --stage-steps 1500 --steps 6000 \\
        --batch-size 64 --lr 5e-4 --eval-every 1500 --seed 0 --device cpu --run-dir runs/deft_s0

    python bench/report_deft_stages.py runs/deft_s0 runs/deft_s1 --name deft_dsprites_stages

Per run: the config that matters (preset, stage steps, batch, lr, gamma, seed), and for each
evaluation at a stage end (step = j * stage_steps) the MIG, MIG per factor and NMI1/NMI2, plus
whether MIG rose at every stage and how many runs end with MIG > 0.1 (the paper's success rule).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, write_result  # noqa: E402


def stage_rows(run_dir: Path) -> tuple[dict, list[dict]]:
    config = json.loads((run_dir / "config.json").read_text())
    stage_steps = config.get("stage_steps")
    if not stage_steps:
        raise SystemExit(f"{run_dir}: config.json has no stage_steps (not a DEFT run with --stage-steps)")
    rows = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") != "eval" or "mig" not in record or record["step"] % stage_steps:
            continue
        mig, nmi = record["mig"], record.get("nmi", {})
        rows.append({"stage": record["step"] // stage_steps, "step": record["step"], "mig": mig["mig"],
                     "mig_per_factor": mig["mig_per_factor"], "nmi1_sum": nmi.get("nmi1_sum"), "nmi2_sum": nmi.get("nmi2_sum")})
    keys = ("preset", "stage_steps", "steps", "batch_size", "lr", "deft_gamma", "gamma_mode", "seed", "betas")
    return {k: config.get(k) for k in keys}, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--name", default="deft_stages", help="result file name (<--out>/NAME_<device>.json)")
    parser.add_argument("--device", default="cpu", help="the device the runs trained on")
    args = parse_args(parser, argv)
    runs = []
    for run_dir in args.run_dirs:
        config, rows = stage_rows(run_dir)
        migs = [r["mig"] for r in rows]
        rising = len(migs) > 1 and all(b > a for a, b in zip(migs, migs[1:]))
        runs.append({"run_dir": str(run_dir), "config": config, "stages": rows, "mig_rises_every_stage": rising})
        print(f"{run_dir}: seed {config['seed']}, {config['stage_steps']} steps/stage, batch {config['batch_size']}: "
              f"MIG by stage {' -> '.join(f'{m:.3f}' for m in migs)}; rises every stage: {rising}")
    final = [r["stages"][-1]["mig"] for r in runs if r["stages"]]
    summary = {"runs": len(runs), "final_mig_above_0.1": sum(m > 0.1 for m in final),
               "rising_every_stage": sum(r["mig_rises_every_stage"] for r in runs)}
    print(summary)
    print(f"wrote {write_result(args.name, args.device, {'summary': summary, 'runs': runs})}")


if __name__ == "__main__":
    main()
