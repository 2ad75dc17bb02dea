"""Benchmark: the minibatch estimators over the pairwise Gaussian log-sum-exp, forward + backward.

Variants side by side in one run (each where it can run): the eager materializing reference
(the B x B x D tensor, as the beta-TCVAE and disentanglement_lib code build it), ``torch.compile``
of that reference, the C++ kernel (CPU) and the Triton kernel (CUDA). Ops (``--op``):
``tc`` = tc_decomposition (MSS weights), ``pair`` = gaussian_pair_logsumexp with gradients on
both outputs, ``entropy`` = marginal_entropy (KDE, leave-one-out). float32; B in {256, 1024,
4096} (CUDA also 16384), D in {10, 64}. Peak extra memory is reported next to the time. The
reference needs B^2 D floats per intermediate, so on CPU it is skipped above ``--max-ref-elems``;
on CUDA an out-of-memory run is recorded as ``"oom"`` and the next variant runs.

    python bench/bench_estimators.py [--device cpu|cuda] [--op tc|pair|entropy] [--quick]
                                     [--shapes 1024x64,4096x10] [--variants eager,triton]
                                     [--fused cpp|triton] [--out DIR]
    pytest bench/bench_estimators.py --benchmark-only
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (add_speedups, csv_list, failure_status, parse_args, peak_memory, print_table,  # noqa: E402
                    time_fn, write_result)

from eoflow_fast import ops  # noqa: E402
from eoflow_fast.reference.gaussian_pair_logsumexp import gaussian_pair_logsumexp as ref_pair  # noqa: E402
from eoflow_fast.reference.marginal_entropy import marginal_entropy as ref_entropy  # noqa: E402
from eoflow_fast.reference.tc_decomposition import tc_decomposition as ref_tc  # noqa: E402

SHAPES = [(256, 10), (256, 64), (1024, 10), (1024, 64), (4096, 10), (4096, 64)]
CUDA_SHAPES = SHAPES + [(16384, 64)]
DATASET_SIZE = 737280  # dSprites


def _reference(op):
    return {
        "tc": lambda z, mu, lv: torch.stack(ref_tc(z, mu, lv, DATASET_SIZE, estimator="mss")).sum(),
        "pair": lambda z, mu, lv: sum(t.sum() for t in ref_pair(z, mu, lv)),
        "entropy": lambda z, mu, lv: ref_entropy(z).sum(),
    }[op]


def _fused(op, backend):
    return {
        "tc": lambda z, mu, lv: torch.stack(ops.tc_decomposition(z, mu, lv, DATASET_SIZE, estimator="mss",
                                                                 backend=backend)).sum(),
        "pair": lambda z, mu, lv: sum(t.sum() for t in ops.gaussian_pair_logsumexp(z, mu, lv, backend=backend)),
        "entropy": lambda z, mu, lv: ops.marginal_entropy(z, backend=backend).sum(),
    }[op]


def variants(op, device, fused=None):
    fused = fused or ("cpp" if device == "cpu" else "triton")
    return {"eager": _reference(op), "compile": torch.compile(_reference(op)), fused: _fused(op, fused)}


def _inputs(batch, dim, device):
    g = torch.Generator(device="cpu").manual_seed(0)
    mu = torch.randn(batch, dim, generator=g)
    logvar = -1.0 + 0.5 * torch.randn(batch, dim, generator=g)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(batch, dim, generator=g)
    return [t.to(device).requires_grad_() for t in (z, mu, logvar)]


def _step(fn, leaves):
    def run():
        fn(*leaves).backward()
        for t in leaves:
            t.grad = None
    return run


def run(device: str, op: str = "tc", quick: bool = False, shapes=None, max_ref_elems: int = 2**27,
        only=None, fused=None) -> dict:
    reps, warmup = (1, 1) if quick else (5 if device == "cpu" else 20, 2)
    shapes = shapes or (CUDA_SHAPES if device == "cuda" else SHAPES)
    rows = []

    def save(complete: bool):  # after every shape too, so a run cut short keeps what it measured
        return write_result(f"estimators_{op}", device, {"op": op, "dtype": "float32", "reps": reps,
                                                         "dataset_size": DATASET_SIZE, "complete": complete,
                                                         "rows": add_speedups(rows, ("B", "D"))})

    for batch, dim in shapes:
        leaves = _inputs(batch, dim, device)
        for name, fn in variants(op, device, fused).items():
            if only and name not in only:
                continue
            row = {"B": batch, "D": dim, "variant": name}
            if name in ("eager", "compile") and device == "cpu" and batch * batch * dim > max_ref_elems:
                rows.append({**row, "status": f"skipped: B^2 D > {max_ref_elems}"})
                continue
            step = _step(fn, leaves)
            try:
                timing = time_fn(step, device, warmup=warmup, reps=reps)
                row.update(timing, peak_mib=peak_memory(step, device) / 2**20, status="ok")
            except Exception as exc:  # noqa: BLE001 -- "oom" or the error, and on to the next variant
                row["status"] = failure_status(exc, device)
            rows.append(row)
        save(complete=False)
    print_table(rows, ["B", "D", "variant", "median_ms", "speedup_vs_eager", "speedup_vs_compile", "peak_mib",
                       "status"])
    path = save(complete=True)
    print(f"wrote {path}")
    return {"rows": rows}


@pytest.mark.parametrize("shape", [(1024, 64)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant", ["eager", "fused"])
def test_tc_decomposition_fwd_bwd(benchmark, shape, variant):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fused = "cpp" if device == "cpu" else "triton"
    fn = _reference("tc") if variant == "eager" else _fused("tc", fused)
    benchmark(_step(fn, _inputs(*shape, device)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--op", default="tc", choices=["tc", "pair", "entropy"])
    p.add_argument("--quick", action="store_true", help="one warm-up and one timed repetition")
    p.add_argument("--shapes", type=lambda s: [tuple(int(v) for v in x.split("x")) for x in s.split(",")],
                   help="comma-separated BxD list, e.g. 1024x64,4096x10")
    p.add_argument("--max-ref-elems", type=int, default=2**27,
                   help="CPU: skip the reference variants when B^2 D exceeds this")
    p.add_argument("--variants", type=csv_list, default=None, help="subset of eager,compile,cpp,triton")
    p.add_argument("--fused", choices=["cpp", "triton"], default=None,
                   help="fused backend (default: cpp on CPU, triton on CUDA)")
    a = parse_args(p, argv)
    return run(a.device, a.op, a.quick, a.shapes, a.max_ref_elems, a.variants, a.fused)


if __name__ == "__main__":
    main()
