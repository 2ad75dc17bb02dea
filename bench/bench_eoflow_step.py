"""Benchmark: one EOFlow training step on a multiscale Glow-coupling image flow, side by side.

The step: x~ = x + sigma*eps; z, logdet = f(x~); one decoder JVP per sample at z (not detached)
with one-hot tangents from the stratified sampler; loss = [NLL + manifold term] / (B D);
backward; Adam step (lam = 1). Architecture, identical in every variant: per level a Haar
downsampling, then ``steps`` x [GLOW two-sided affine coupling (conv subnets 3x3-1x1-3x3, atan
clamp 2), fixed channel permutation]; half the channels factored out after each level but the last.

Variants:
  eoflow_fast  eoflow_fast.flows (fused affine-coupling op, hand-written tangent rules; the
               decoder JVP reuses the encoder's activations through ``linearize``, spec §6.2)
  eager        the same modules with the PyTorch reference op (backend="torch")
  freia        FrEIA GraphINN (HaarDownsampling, GLOWCouplingBlock, PermuteRandom, Split,
               Flatten, Concat1d); the JVP through ``rev=True`` with torch.autograd.forward_ad
               dual numbers (as B-EOFlow does)
Reported: median step time, peak extra memory, and ratios FrEIA/eoflow_fast, eager/eoflow_fast.

    python bench/bench_eoflow_step.py [--device cpu|cuda] [--config full|small|tiny] [--quick] [--out DIR]

``full``: 64x64x3, batch 64, 4 levels x 4 steps, hidden 64. ``small`` (default on CPU): 16x16x3,
batch 16, 2 levels x 2 steps, hidden 32. ``tiny``: 8x8x3, batch 4 (a smoke run, no figure).
Without FrEIA installed the FrEIA variant is skipped and the result file says why.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, peak_memory, print_table, time_fn, write_result  # noqa: E402

from eoflow_fast.flows import AffineCoupling, multiscale_flow  # noqa: E402
from eoflow_fast.flows.eoflow import EOFlow, sample_dims  # noqa: E402

CONFIGS = {
    "full": {"shape": (3, 64, 64), "batch": 64, "levels": 4, "steps": 4, "hidden": 64},
    "small": {"shape": (3, 16, 16), "batch": 16, "levels": 2, "steps": 2, "hidden": 32},
    "tiny": {"shape": (3, 8, 8), "batch": 4, "levels": 2, "steps": 1, "hidden": 8},  # the CI dry run
}
SIGMA = 0.05


def ours(cfg, backend):
    flow = multiscale_flow(cfg["shape"], "realnvp", cfg["levels"], cfg["steps"], cfg["hidden"])
    for m in flow.modules():
        if isinstance(m, AffineCoupling):
            m.backend = backend
    return EOFlow(flow, cfg["shape"], flat_input=False, lam=1.0, sigma=SIGMA, dequantize=False)


def freia_flow(cfg):
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    hidden = cfg["hidden"]

    def subnet(c_in, c_out):
        last = nn.Conv2d(hidden, c_out, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        return nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1),
                             nn.ReLU(), last)

    nodes = [Ff.InputNode(*cfg["shape"], name="x")]
    current, flats, c = nodes[0], [], cfg["shape"][0]
    for level in range(cfg["levels"]):
        current = Ff.Node(current, Fm.HaarDownsampling, {"order_by_wavelet": True})
        nodes.append(current)
        c *= 4
        for k in range(cfg["steps"]):
            nodes.append(Ff.Node(nodes[-1], Fm.GLOWCouplingBlock, {"subnet_constructor": subnet, "clamp": 2.0}))
            nodes.append(Ff.Node(nodes[-1], Fm.PermuteRandom, {"seed": 100 * level + k}))
        current = nodes[-1]
        if level < cfg["levels"] - 1:
            split = Ff.Node(current, Fm.Split, {"section_sizes": [c // 2, c - c // 2], "dim": 0})
            flats.append(Ff.Node(split.out1, Fm.Flatten, {}))
            nodes += [split, flats[-1]]
            current, c = split.out0, c // 2
    flats.append(Ff.Node(current, Fm.Flatten, {}))
    concat = Ff.Node([f.out0 for f in flats], Fm.Concat1d, {"dim": 0})
    nodes += [flats[-1], concat, Ff.OutputNode(concat)]
    return Ff.GraphINN(nodes)


class FreiaEOFlow(nn.Module):
    """The EOFlow loss of ``eoflow_fast.flows.eoflow.EOFlow.loss_terms`` around a FrEIA graph,
    the decoder JVP by forward-mode AD."""

    def __init__(self, cfg):
        super().__init__()
        self.inn = freia_flow(cfg)
        self.dim = math.prod(cfg["shape"])

    def loss(self, x):
        import torch.autograd.forward_ad as fwAD

        from eoflow_fast.flows.eoflow import stochastic_manifold_nll

        B, D = x.shape[0], self.dim
        z, log_det = self.inn(x + SIGMA * torch.randn_like(x))
        nll = 0.5 * (z ** 2).sum(1) - log_det
        k = sample_dims(B, D, device=z.device)
        tangent = torch.zeros_like(z)
        tangent[torch.arange(B, device=z.device), k] = 1.0
        with fwAD.dual_level():
            x_dual, _ = self.inn(fwAD.make_dual(z, tangent), rev=True)
            u = fwAD.unpack_dual(x_dual).tangent.reshape(B, -1)
        return stochastic_manifold_nll(z, 0.5 * torch.log((u ** 2).sum(1)), k) / (B * D)


def _check_same_architecture(ours_model, freia_model):
    n_ours = sum(p.numel() for p in ours_model.parameters() if p.requires_grad)
    n_freia = sum(p.numel() for p in freia_model.parameters() if p.requires_grad)
    if n_ours != n_freia:
        raise RuntimeError(f"architectures differ: eoflow_fast has {n_ours} parameters, FrEIA {n_freia}")
    return n_ours


def make_step(name, cfg, device):
    torch.manual_seed(0)
    x = torch.rand(cfg["batch"], *cfg["shape"], device=device)
    if name == "freia":
        model = FreiaEOFlow(cfg).to(device)
        loss_fn = model.loss
    else:
        model = ours(cfg, "auto" if name == "eoflow_fast" else "torch").to(device)
        loss_fn = lambda xb: model.loss_terms(xb, 0)["objective"]  # noqa: E731
    # perturb the zero-initialised last layers so every coupling acts
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in params:
            p.add_(1e-3 * torch.randn_like(p))
    opt = torch.optim.Adam(params, lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(x).backward()
        opt.step()
    return model, step


def run(device: str, config: str, quick: bool) -> dict:
    cfg = CONFIGS[config]
    rows, models, skipped = [], {}, {}
    for name in ("eoflow_fast", "eager", "freia"):
        if name == "freia" and importlib.util.find_spec("FrEIA") is None:
            skipped[name] = "FrEIA is not installed (pip install FrEIA==0.2; offline: scripts/gpu_wheels.sh)"
            print(f"skip freia: {skipped[name]}")
            continue
        model, step = make_step(name, cfg, device)
        models[name] = model
        timing = time_fn(step, device, warmup=2, reps=3 if quick else 10)
        rows.append({"variant": name, "step_ms": timing["median_ms"], "min_ms": timing["min_ms"],
                     "peak_mb": peak_memory(step, device) / 2**20})
    params = (_check_same_architecture(models["eoflow_fast"], models["freia"]) if "freia" in models
              else sum(p.numel() for p in models["eoflow_fast"].parameters() if p.requires_grad))
    base = rows[0]
    for r in rows:
        r["time_ratio_vs_eoflow_fast"] = r["step_ms"] / base["step_ms"]
        r["mem_ratio_vs_eoflow_fast"] = r["peak_mb"] / base["peak_mb"] if base["peak_mb"] else float("nan")
    print(f"EOFlow training step, {config} config {cfg}, {params} parameters, device {device}")
    print_table(rows, ["variant", "step_ms", "min_ms", "peak_mb", "time_ratio_vs_eoflow_fast", "mem_ratio_vs_eoflow_fast"])
    path = write_result(f"eoflow_step_{config}", device, {"config": cfg, "parameters": params, "rows": rows,
                                                          "skipped": skipped})
    print(f"wrote {path}")
    return {"rows": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--config", choices=sorted(CONFIGS), default=None,
                        help="full (64x64x3, batch 64), small or tiny; default full on CUDA, small on CPU")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parse_args(parser, argv)
    run(args.device, args.config or ("full" if args.device.startswith("cuda") else "small"), args.quick)


if __name__ == "__main__":
    main()
