"""Benchmark: affine coupling forward + backward, side by side.

Variants (each where it can run): eager reference, ``torch.compile`` of the reference, the C++
kernel (CPU), the Triton kernel (CUDA). Shapes (256, 6144) and (64, 6, 64, 64), float32.

On CUDA it also reports achieved bandwidth against the minimum bytes the op must move
(forward reads x, s_raw, t and writes y; backward reads x, s_raw, gy and writes gx, gs_raw;
the gradient of t is gy itself: 9 tensors of the input size, log_det terms are negligible) and
against a measured device-to-device copy.

    python bench/bench_affine_coupling.py [--device cpu|cuda] [--quick]
    pytest bench/bench_affine_coupling.py --benchmark-only
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import copy_bandwidth_gbs, peak_memory, print_table, time_fn, write_result  # noqa: E402

from eoflow_fast import ops  # noqa: E402
from eoflow_fast.ops._dispatch import BackendUnavailable  # noqa: E402
from eoflow_fast.reference.affine_coupling import affine_coupling as reference  # noqa: E402

SHAPES = [(256, 6144), (64, 6, 64, 64)]
TENSORS_MOVED = 9


def _inputs(shape, device, dtype=torch.float32):
    g = torch.Generator(device="cpu").manual_seed(0)
    x, s_raw, t = (torch.randn(shape, generator=g).to(device, dtype).requires_grad_() for _ in range(3))
    gy = torch.randn(shape, generator=g).to(device, dtype)
    gld = torch.randn(shape[0], generator=g).to(device, dtype)
    return x, s_raw, t, gy, gld


def _step(fn, x, s_raw, t, gy, gld):
    def run():
        y, log_det = fn(x, s_raw, t)
        torch.autograd.backward((y, log_det), (gy, gld))
        x.grad = s_raw.grad = t.grad = None
    return run


def variants(device):
    out = {"eager": lambda x, s, t: reference(x, s, t, 2.0, "atan", False)}
    compiled = torch.compile(lambda x, s, t: reference(x, s, t, 2.0, "atan", False))
    out["compile"] = compiled
    fused = "cpp" if device == "cpu" else "triton"
    out[fused] = lambda x, s, t: ops.affine_coupling(x, s, t, backend=fused)
    return out


DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "f64": torch.float64}


def run(device: str, quick: bool = False, shapes=None, dtypes=("f32",)) -> dict:
    reps = 5 if quick else 30
    copy_gbs = copy_bandwidth_gbs(device) if device == "cuda" else None
    rows = []
    for shape, dname in ((s, d) for s in (shapes or SHAPES) for d in dtypes):
        args = _inputs(shape, device, DTYPES[dname])
        numel, itemsize = args[0].numel(), args[0].element_size()
        base = None
        for name, fn in variants(device).items():
            step = _step(fn, *args)
            try:
                timing = time_fn(step, device, warmup=3, reps=reps)
            except BackendUnavailable as exc:
                print(f"skip {name}: {exc}")
                continue
            row = {"shape": "x".join(map(str, shape)), "dtype": dname, "variant": name, **timing,
                   "peak_mib": peak_memory(step, device) / 2**20}
            base = row["median_ms"] if name == "eager" else base
            row["speedup_vs_eager"] = base / row["median_ms"]
            if device == "cuda":
                gbs = TENSORS_MOVED * numel * itemsize / (row["median_ms"] * 1e-3) / 1e9
                row.update(achieved_gbs=gbs, fraction_of_copy=gbs / copy_gbs)
            rows.append(row)
    for key in {(r["shape"], r["dtype"]) for r in rows}:
        same = [r for r in rows if (r["shape"], r["dtype"]) == key]
        compiled = next((r for r in same if r["variant"] == "compile"), None)
        for r in same:
            if compiled:
                r["speedup_vs_compile"] = compiled["median_ms"] / r["median_ms"]
    cols = ["shape", "dtype", "variant", "median_ms", "speedup_vs_eager", "speedup_vs_compile", "peak_mib"]
    if device == "cuda":
        cols += ["achieved_gbs", "fraction_of_copy"]
    print_table(rows, cols)
    path = write_result("affine_coupling", device,
                        {"rows": rows, "copy_gbs": copy_gbs, "minimum_tensors_moved": TENSORS_MOVED})
    print(f"wrote {path}")
    return {"rows": rows}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant", ["eager", "fused"])
def test_affine_coupling_fwd_bwd(benchmark, shape, variant):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fused = "cpp" if device == "cpu" else "triton"
    fn = variants(device)["eager" if variant == "eager" else fused]
    benchmark(_step(fn, *_inputs(shape, device)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--shapes", type=lambda s: [tuple(int(v) for v in x.split("x")) for x in s.split(",")],
                   default=None, help="comma-separated shapes, e.g. 256x6144,64x6x64x64 (the default)")
    p.add_argument("--dtypes", type=lambda s: s.split(","), default=["f32"],
                   help="comma-separated subset of " + ",".join(DTYPES))
    a = p.parse_args(argv)
    return run(a.device, a.quick, a.shapes, a.dtypes)


if __name__ == "__main__":
    main()
