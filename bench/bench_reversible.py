"""Benchmark: EOFlow training step, memory="stored" against "boundaries" and "reversible", side by side.

The step: noise augmentation, encode, one decoder-JVP column per sample (lam = 1; lam = 0 is the NLL
alone), backward, Adam. Flow: multiscale Glow on 64x64x3 (4 levels; per level Squeeze, then depth/4 x
[ActNorm, 1x1 conv (LU), affine coupling with conv subnet 3x3-1x1-3x3]), so depth = coupling steps.
Reported per depth and lam:
- step time: the median over ``--reps`` steps, the modes interleaved step by step (so a change in
  machine load hits all of them); wall time, and on the CPU also the process's CPU time (all of
  torch's intra-op threads, so the ratio holds at any ``torch.get_num_threads()``);
- peak memory (CPU: profiler allocation records; CUDA: max_memory_allocated), each the peak extra
  memory over the state before the call: ``act_peak_mib``, the activations alone (forward, then the
  gradient with respect to the input only, parameters frozen: what each mode keeps or rebuilds for
  its backward); ``fb_peak_mib`` and ``peak_mib``, forward + backward and the whole step. The last two
  release the previous step's gradients at their start (``zero_grad(set_to_none=True)``), so they are
  the peak total memory minus what training holds between steps (weights, gradients, Adam state:
  ``params_mib`` x 4), which nets new gradients against released ones; the whole step adds the
  optimizer's temporaries (foreach Adam: about 0.9x the parameters) in every mode;
- ratios stored/mode (memory) and mode/stored (time), and a plot of memory against depth.

``--drift-depths`` adds the gradient drift against depth (``reversible_drift_<device>.json``): a
3x32x32 Glow (4 levels, hidden 16, batch 8, output layers perturbed by N(0, 0.05^2), no noise), one
lam = 1 step per variant; the largest relative max-norm error over parameters of reversible and
boundaries against stored in the same dtype, of float32 against float64, and of reversible without
restoring the recorded ReLU kinks (``ReversibleState.restore_kinks = False``), with its statistics.

    python bench/bench_reversible.py [--device cpu|cuda] [--depths 8,16,32,64] [--lams 0,1] [--batch 16]
                                     [--hidden 32] [--modes stored,boundaries,reversible] [--reps 3]
                                     [--drift-depths 8,16,32,64] [--no-speed]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, peak_memory, print_table, sync, write_result  # noqa: E402

from eoflow_fast.flows import multiscale_flow  # noqa: E402
from eoflow_fast.flows.eoflow import EOFlow  # noqa: E402

SHAPE = (3, 64, 64)
LEVELS = 4
DRIFT_SHAPE, DRIFT_BATCH, DRIFT_HIDDEN, DRIFT_PERTURB = (3, 32, 32), 8, 16, 0.05


def make_step(memory: str, depth: int, lam: float, batch: int, hidden: int, device: str):
    """(step, forward_backward, activations): one training step with Adam, its forward + backward
    alone, and forward + input gradient with the parameters frozen; and the parameters' MiB."""
    torch.manual_seed(0)
    flow = multiscale_flow(SHAPE, "glow", LEVELS, depth // LEVELS, hidden)
    model = EOFlow(flow, SHAPE, flat_input=False, lam=lam, sigma=0.05, memory=memory).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, *SHAPE, device=device)
    model.loss_terms(x, 0)  # ActNorm's data-dependent init outside the timed steps

    def forward_backward():
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss_terms(x, 0)["objective"]
        loss.backward()
        return loss

    def step():
        loss = forward_backward()
        optimizer.step()
        return loss

    params = list(model.parameters())
    x_in = x.clone().requires_grad_(True)

    def activations():
        return torch.autograd.grad(model.loss_terms(x_in, 0)["objective"], x_in)[0]

    def frozen(fn):
        """fn with the parameters' requires_grad off (toggled around it; allocates nothing)."""
        def run():
            for p in params:
                p.requires_grad_(False)
            try:
                return fn()
            finally:
                for p in params:
                    p.requires_grad_(True)
        return run
    return step, forward_backward, frozen(activations), sum(p.numel() * p.element_size() for p in params) / 2**20


def interleaved_times(steps: dict, device: str, reps: int) -> dict:
    """{mode: (median wall ms, median process-CPU ms or None)}: one warm-up each, then ``reps`` rounds
    of one step per mode."""
    for step in steps.values():
        step()
    wall, cpu = {m: [] for m in steps}, {m: [] for m in steps}
    for _ in range(reps):
        for mode, step in steps.items():
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            sync(device)
            wall[mode].append((time.perf_counter() - t0) * 1e3)
            cpu[mode].append((time.process_time() - c0) * 1e3)
    return {m: (statistics.median(wall[m]), statistics.median(cpu[m]) if device == "cpu" else None) for m in steps}


def speed_rows(args, modes: list[str]) -> list[dict]:
    rows = []
    for lam in (float(v) for v in args.lams.split(",")):
        for depth in (int(d) for d in args.depths.split(",")):
            row = {"depth": depth, "lam": lam, "batch": args.batch, "hidden": args.hidden}
            pairs = {m: make_step(m, depth, lam, args.batch, args.hidden, args.device) for m in modes}
            for mode, (wall, cpu) in interleaved_times({m: p[0] for m, p in pairs.items()}, args.device,
                                                       args.reps).items():
                row[f"{mode}_ms"] = wall
                if cpu is not None:
                    row[f"{mode}_cpu_ms"] = cpu
            for mode, (step, forward_backward, activations, params_mib) in pairs.items():
                row["params_mib"] = params_mib
                row[f"{mode}_act_peak_mib"] = peak_memory(activations, args.device) / 2**20
                row[f"{mode}_fb_peak_mib"] = peak_memory(forward_backward, args.device) / 2**20
                row[f"{mode}_peak_mib"] = peak_memory(step, args.device) / 2**20
            for mode in modes[1:]:
                row[f"{mode}_act_memory_ratio"] = row["stored_act_peak_mib"] / row[f"{mode}_act_peak_mib"]
                row[f"{mode}_memory_ratio"] = row["stored_peak_mib"] / row[f"{mode}_peak_mib"]
                row[f"{mode}_fb_memory_ratio"] = row["stored_fb_peak_mib"] / row[f"{mode}_fb_peak_mib"]
                row[f"{mode}_time_ratio"] = row[f"{mode}_ms"] / row["stored_ms"]
                if f"{mode}_cpu_ms" in row:
                    row[f"{mode}_cpu_time_ratio"] = row[f"{mode}_cpu_ms"] / row["stored_cpu_ms"]
            del pairs
            rows.append(row)
            print_table([row], list(row))
    return rows


def _drift_model(memory: str, depth: int, device: str) -> tuple[EOFlow, torch.Tensor]:
    """The drift flow in float64 with ActNorm initialised on two items (the same for every variant)."""
    torch.manual_seed(0)
    flow = multiscale_flow(DRIFT_SHAPE, "glow", LEVELS, depth // LEVELS, DRIFT_HIDDEN)
    model = EOFlow(flow, DRIFT_SHAPE, flat_input=False, lam=1.0, sigma=0.0, dequantize=False, memory=memory)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "subnet" in name and ".4." in name:  # the zero-initialised output layers
                p.add_(DRIFT_PERTURB * torch.randn_like(p))
    model = model.double().to(device)
    x = torch.rand(DRIFT_BATCH, *DRIFT_SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model.loss_terms(x[:2].to(device), 0)
    return model, x.to(device)


def _drift_grads(memory: str, depth: int, dtype: torch.dtype, device: str, restore_kinks: bool = True):
    model, x = _drift_model(memory, depth, device)
    model = model.to(dtype)
    if model.reversible_state is not None:
        model.reversible_state.restore_kinks = restore_kinks
    torch.manual_seed(7)
    model.loss_terms(x.to(dtype), 0)["objective"].backward()
    grads = {n: p.grad.double() for n, p in model.named_parameters() if p.grad is not None}
    return grads, (dict(model.reversible_state.stats) if model.reversible_state is not None else None)


def _worst(grads: dict, ref: dict) -> float:
    """max over parameters of max|g - ref| / max|ref|."""
    return max(float((grads[n] - ref[n]).abs().max() / ref[n].abs().max()) for n in ref)


def drift_rows(args) -> list[dict]:
    rows = []
    for depth in (int(d) for d in args.drift_depths.split(",")):
        row = {"depth": depth}
        g = {}
        for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
            for memory in ("stored", "boundaries", "reversible"):
                g[memory, tag], stats = _drift_grads(memory, depth, dtype, args.device)
                if stats is not None:
                    row.update({f"{tag}_{k}": stats[k] for k in ("primal_drift", "adjoint_drift", "kink_records",
                                                                 "kink_margin", "recomputed")})
                    row[f"{tag}_kept_units"] = len(stats["kept_units"])
            g["no_kinks", tag], stats = _drift_grads("reversible", depth, dtype, args.device, restore_kinks=False)
            row[f"{tag}_no_kinks_adjoint_drift"] = stats["adjoint_drift"]
            for memory in ("boundaries", "reversible", "no_kinks"):
                row[f"{tag}_{memory}_vs_stored"] = _worst(g[memory, tag], g["stored", tag])
        row["f32_stored_vs_f64"] = _worst(g["stored", "f32"], g["stored", "f64"])
        row["f32_reversible_vs_f64"] = _worst(g["reversible", "f32"], g["stored", "f64"])
        rows.append(row)
        print_table([row], list(row))
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["lam"] == max(q["lam"] for q in rows)]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    depths = [r["depth"] for r in rows]
    for memory, color in (("stored", "C0"), ("boundaries", "C1"), ("reversible", "C2")):
        if f"{memory}_peak_mib" in rows[0]:
            ax.plot(depths, [r[f"{memory}_act_peak_mib"] for r in rows], "o-", color=color,
                    label=f"{memory}: activations")
            ax.plot(depths, [r[f"{memory}_peak_mib"] for r in rows], "s--", color=color, alpha=0.6,
                    label=f"{memory}: whole step over weights+grads+Adam")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.set_xlabel("coupling steps (64x64x3 Glow, 4 levels)")
    ax.set_ylabel("peak memory (MiB)")
    ax.set_title(f"EOFlow step, batch {rows[0]['batch']}, lam {rows[0]['lam']:g}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--depths", default="8,16,32,64", help="coupling steps, multiples of 4")
    parser.add_argument("--lams", default="0,1", help="weights of the MTC term (0: the NLL alone)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=32, help="subnet channels")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--modes", default="stored,boundaries,reversible", help="memory modes, stored first")
    parser.add_argument("--drift-depths", default="", help="also measure the gradient drift at these depths")
    parser.add_argument("--no-speed", action="store_true", help="only the drift measurement")
    args = parse_args(parser, argv)
    modes = args.modes.split(",")
    if modes[0] != "stored":
        parser.error("--modes must start with stored (the ratios are against it)")
    argv_list = sys.argv[1:] if argv is None else argv
    if not args.no_speed:
        rows = speed_rows(args, modes)
        print_table(rows, list(rows[0]))
        path = write_result("reversible", args.device, {"shape": SHAPE, "levels": LEVELS, "rows": rows,
                                                        "argv": argv_list})
        png = path.with_suffix(".png")
        plot(rows, png)
        print("wrote", path, png)
    if args.drift_depths:
        rows = drift_rows(args)
        path = write_result("reversible_drift", args.device, {
            "shape": DRIFT_SHAPE, "levels": LEVELS, "batch": DRIFT_BATCH, "hidden": DRIFT_HIDDEN,
            "perturb": DRIFT_PERTURB, "rows": rows, "argv": argv_list})
        print("wrote", path)


if __name__ == "__main__":
    main()
