"""Benchmark: a FrEIA user's model as written against the same model with one import swapped.

    import FrEIA.modules as Fm              # as written
    import eoflow_fast.compat.freia as Fm   # swapped: the same blocks on the fused coupling op

Models (same seeds, so identical weights; FrEIA SequenceINN):
  flat   D = 64, 8 x [AllInOneBlock(MLP 64-256-256-out, hard permutation)], batch 256
  image  3x16x16, 8 x [GLOWCouplingBlock(conv 3x3-1x1-3x3, hidden 64), PermuteRandom], batch 32
Objectives, one training step each (forward, backward, Adam):
  nll     0.5 |z|^2 - log|det|, averaged (FrEIA's README loss)
  eoflow  EOFlow.from_module(inn) with lam = 1: one decoder JVP per sample. As written, FrEIA's
          blocks take ForeignFlow's torch.func fallback (their inverse recomputed at z); swapped, the
          blocks reuse the encoder's activations and the fused tangent kernel.
Reported: median step time and peak extra memory per variant, and ratios written/swapped.

    python bench/bench_compat.py [--device cpu|cuda] [--quick] [--models flat,image] [--out DIR]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, peak_memory, print_table, time_fn, write_result  # noqa: E402

from eoflow_fast.flows.eoflow import EOFlow  # noqa: E402

MODELS = {
    "flat": {"shape": (64,), "batch": 256, "blocks": 8, "hidden": 256},
    "image": {"shape": (3, 16, 16), "batch": 32, "blocks": 8, "hidden": 64},
}


def build_inn(modules, cfg, seed=0):
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    torch.manual_seed(seed)
    np.random.seed(seed)
    hidden = cfg["hidden"]
    inn = Ff.SequenceINN(*cfg["shape"])
    if len(cfg["shape"]) == 1:
        def subnet(c_in, c_out):
            return nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, c_out))
        for _ in range(cfg["blocks"]):
            inn.append(modules.AllInOneBlock, subnet_constructor=subnet)
    else:
        def subnet(c_in, c_out):
            return nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1),
                                 nn.ReLU(), nn.Conv2d(hidden, c_out, 3, padding=1))
        for k in range(cfg["blocks"]):
            inn.append(modules.GLOWCouplingBlock, subnet_constructor=subnet, clamp=2.0)
            inn.append(Fm.PermuteRandom, seed=k)
    return inn


def make_step(model, objective, x, device):
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    if objective == "eoflow":
        model = EOFlow.from_module(model, x.shape[1:], lam=1.0, sigma=0.05, dequantize=False).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        if objective == "eoflow":
            loss = model.loss_terms(x, 0)["objective"]
        else:
            z, log_det = model(x)
            loss = (0.5 * z.reshape(z.shape[0], -1).square().sum(1) - log_det).mean()
        loss.backward()
        optimizer.step()
        return loss
    return step


def run(device: str, quick: bool, models: list[str]) -> dict:
    import FrEIA.modules as Fm

    import eoflow_fast.compat.freia as Cm

    rows = []
    for name in models:
        cfg = MODELS[name]
        x = torch.rand(cfg["batch"], *cfg["shape"], device=device)
        for objective in ("nll", "eoflow"):
            row = {"model": name, "objective": objective}
            for label, modules in (("freia", Fm), ("swapped", Cm)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # the fallback's one-time notice
                    step = make_step(build_inn(modules, cfg), objective, x, device)
                    t = time_fn(step, device, warmup=1 if quick else 2, reps=3 if quick else 10)
                    row[f"{label}_ms"] = t["median_ms"]
                    row[f"{label}_peak_mib"] = peak_memory(step, device) / 2**20
            row["time_ratio"] = row["freia_ms"] / row["swapped_ms"]
            row["memory_ratio"] = row["freia_peak_mib"] / max(row["swapped_peak_mib"], 1e-9)
            rows.append(row)
            print_table([row], list(row))
    return {"configs": {m: MODELS[m] for m in models}, "quick": quick, "rows": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--models", default="flat,image", help="comma-separated subset of: " + ", ".join(MODELS))
    args = parse_args(parser, argv)
    result = run(args.device, args.quick, args.models.split(","))
    print_table(result["rows"], ["model", "objective", "freia_ms", "swapped_ms", "time_ratio", "freia_peak_mib",
                                 "swapped_peak_mib", "memory_ratio"])
    print("wrote", write_result("compat", args.device, result))


if __name__ == "__main__":
    main()
