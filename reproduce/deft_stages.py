"""DEFT MIG per stage (Fig. 12) and the failure rate (Table 4) from measured stage runs.

Reads the stage-end MIG of the CPU-shortened runs that ``bench/report_deft_stages.py`` collected
(``bench/results/deft_dsprites_stages{1500,3000,6000}_cpu.json``; each run is ``eoflow-fast train
deft --preset dsprites --stage-steps S --steps 4S --batch-size 64 --lr 5e-4 --eval-every S``) and
writes two rows: MIG rising through the stages, and the share of runs ending with MIG < 0.1 (the
paper's failure rule). Paper budget (GPU, §5.1 / Table 2: batch 256, 7 epochs = 20,160 steps per
stage, 50 seeds for the failure rate):

    for s in $(seq 0 49); do eoflow-fast train deft --preset dsprites --batch-size 256 --lr 5e-4 \\
        --stage-steps 20160 --steps 80640 --eval-every 20160 --seed $s --run-dir runs/deft_gpu_s$s; done
    python bench/report_deft_stages.py runs/deft_gpu_s* --name deft_dsprites_stages_gpu
"""
from __future__ import annotations

import json

from .rows import RESULTS, row, write

SOURCES = ("deft_dsprites_stages1500_cpu", "deft_dsprites_stages3000_cpu", "deft_dsprites_stages6000_cpu")
GPU = ("eoflow-fast train deft --preset dsprites --batch-size 256 --lr 5e-4 --stage-steps 20160 --steps 80640 "
       "--eval-every 20160 --seed S  (S = 0..49; see reproduce/deft_stages.py)")


def load_runs() -> list[dict]:
    runs = []
    for name in SOURCES:
        data = json.loads((RESULTS / f"{name}.json").read_text())
        for r in data["runs"]:
            runs.append({"source": name, "stage_steps": r["config"]["stage_steps"], "seed": r["config"]["seed"],
                         "mig": [s["mig"] for s in r["stages"]]})
    return runs


def main() -> None:
    runs = load_runs()
    rising3 = sum(all(b > a for a, b in zip(r["mig"][:3], r["mig"][1:3])) for r in runs)
    rising_all = sum(all(b > a for a, b in zip(r["mig"], r["mig"][1:])) for r in runs)
    fell4 = sum(r["mig"][3] < r["mig"][2] for r in runs)
    failed = sum(r["mig"][-1] < 0.1 for r in runs)
    cmd = "python -m reproduce.deft_stages  (runs: bench/report_deft_stages.py)"
    rows = [
        row("DEFT dSprites: MIG rises stage by stage", "low MIG in stage 1, improving in the following stages (§5.4, Fig. 12; 20,160 steps/stage)",
            f"rises through stage 3 in {rising3}/{len(runs)} runs, through all 4 in {rising_all}/{len(runs)}; "
            f"falls at stage 4 (beta 4) in {fell4}/{len(runs)} (1,500-6,000 steps/stage, batch 64)",
            cmd, "cpu", "partly", GPU),
        row("DEFT dSprites: failure rate (final MIG < 0.1)", "8% on dSprites (Table 4)",
            f"{failed}/{len(runs)} runs ({100 * failed / len(runs):.0f}%), at <= 7% of the paper's samples per stage",
            cmd, "cpu", "partly", GPU),
    ]
    print(write("deft_stages_cpu", rows, {"runs": runs}))


if __name__ == "__main__":
    main()
