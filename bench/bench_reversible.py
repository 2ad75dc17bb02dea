"""Benchmark: EOFlow training step, memory="stored" against "boundaries" and "reversible", side by side.

The step: noise augmentation, encode, one decoder-JVP column per sample (lam = 1), backward, Adam.
Flow: multiscale Glow on 64x64x3 (4 levels; per level Squeeze, then depth/4 x [ActNorm, 1x1 conv
(LU), affine coupling with conv subnet 3x3-1x1-3x3]), so depth = coupling steps in total.
Reported per depth: median step time, peak extra memory (CPU: profiler allocation records; CUDA:
max_memory_allocated), the ratios stored/mode (memory) and mode/stored (time) for each recomputing mode,
and a plot of memory against depth. "reversible" checks every unit's round trip on every step
(``--check-every``; the default 1 is EOFlow's default).

    python bench/bench_reversible.py [--device cpu|cuda] [--depths 8,16,32,64] [--batch 16] [--hidden 32]
                                     [--modes stored,boundaries,reversible] [--check-every 1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, peak_memory, print_table, time_fn, write_result  # noqa: E402

from eoflow_fast.flows import multiscale_flow  # noqa: E402
from eoflow_fast.flows.eoflow import EOFlow  # noqa: E402

SHAPE = (3, 64, 64)
LEVELS = 4


def make_step(memory: str, depth: int, batch: int, hidden: int, device: str, check_every: int = 1):
    torch.manual_seed(0)
    flow = multiscale_flow(SHAPE, "glow", LEVELS, depth // LEVELS, hidden)
    model = EOFlow(flow, SHAPE, flat_input=False, lam=1.0, sigma=0.05, memory=memory,
                   reversible_check_every=check_every).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, *SHAPE, device=device)
    model.loss_terms(x, 0)  # ActNorm's data-dependent init outside the timed steps

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss_terms(x, 0)["objective"]
        loss.backward()
        optimizer.step()
        return loss
    return step


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    depths = [r["depth"] for r in rows]
    for memory, style in (("stored", "o-"), ("boundaries", "^-"), ("reversible", "s-")):
        if f"{memory}_peak_mib" in rows[0]:
            ax.plot(depths, [r[f"{memory}_peak_mib"] for r in rows], style, label=memory)
    ax.set_xscale("log", base=2)
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.set_xlabel("coupling steps (64x64x3 Glow, 4 levels)")
    ax.set_ylabel("peak training-step memory (MiB)")
    ax.set_title(f"EOFlow step, batch {rows[0]['batch']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--depths", default="8,16,32,64", help="coupling steps, multiples of 4")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=32, help="subnet channels")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--modes", default="stored,boundaries,reversible", help="memory modes, stored first")
    parser.add_argument("--check-every", type=int, default=1, help="reversible: round-trip check interval")
    args = parse_args(parser, argv)
    modes = args.modes.split(",")
    if modes[0] != "stored":
        parser.error("--modes must start with stored (the ratios are against it)")
    rows = []
    for depth in (int(d) for d in args.depths.split(",")):
        row = {"depth": depth, "batch": args.batch, "hidden": args.hidden}
        for memory in modes:
            step = make_step(memory, depth, args.batch, args.hidden, args.device, args.check_every)
            row[f"{memory}_ms"] = time_fn(step, args.device, warmup=1, reps=args.reps)["median_ms"]
            row[f"{memory}_peak_mib"] = peak_memory(step, args.device) / 2**20
        for memory in modes[1:]:
            row[f"{memory}_memory_ratio"] = row["stored_peak_mib"] / row[f"{memory}_peak_mib"]
            row[f"{memory}_time_ratio"] = row[f"{memory}_ms"] / row["stored_ms"]
        rows.append(row)
        print_table([row], list(row))
    print_table(rows, list(rows[0]))
    path = write_result("reversible", args.device, {"shape": SHAPE, "levels": LEVELS, "rows": rows,
                                                    "argv": sys.argv[1:] if argv is None else argv})
    png = path.with_suffix(".png")
    plot(rows, png)
    print("wrote", path, png)


if __name__ == "__main__":
    main()
