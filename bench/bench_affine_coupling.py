"""Benchmark: affine coupling forward + backward, side by side.

Variants (each where it can run): eager reference, ``torch.compile`` of the reference, the C++
kernel (CPU), the Triton kernel (CUDA; on CPU under ``TRITON_INTERPRET=1`` with ``--fused triton``).
Shapes (256, 6144) and (64, 6, 64, 64); ``--dtypes float32,bfloat16`` (default float32);
``--variants`` picks a subset (e.g. ``eager,triton``).

On CUDA it also reports achieved bandwidth against the minimum bytes the op must move
(forward reads x, s_raw, t and writes y; backward reads x, s_raw, gy and writes gx, gs_raw;
the gradient of t is gy itself: 9 tensors of the input size and element size, log_det terms are
negligible) and against a device-to-device copy measured in the same run.

    python bench/bench_affine_coupling.py [--device cpu|cuda] [--quick] [--dtypes float32,bfloat16]
        [--shapes 256x6144,64x6x64x64] [--variants eager,compile,triton] [--fused cpp|triton] [--out DIR]
    pytest bench/bench_affine_coupling.py --benchmark-only
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (add_speedups, copy_bandwidth_gbs, csv_list, failure_status, parse_args, peak_memory,  # noqa: E402
                    print_table, shape_list, time_fn, write_result)

from eoflow_fast import ops  # noqa: E402
from eoflow_fast.ops._dispatch import BackendUnavailable  # noqa: E402
from eoflow_fast.reference.affine_coupling import affine_coupling as reference  # noqa: E402

SHAPES = [(256, 6144), (64, 6, 64, 64)]
TENSORS_MOVED = 9
DTYPE_ALIASES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64"}


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


def default_fused(device: str) -> str:
    return "cpp" if device == "cpu" else "triton"


def variants(device, fused=None):
    out = {"eager": lambda x, s, t: reference(x, s, t, 2.0, "atan", False)}
    compiled = torch.compile(lambda x, s, t: reference(x, s, t, 2.0, "atan", False))
    out["compile"] = compiled
    fused = fused or default_fused(device)
    out[fused] = lambda x, s, t: ops.affine_coupling(x, s, t, backend=fused)
    return out


def run(device: str, quick: bool = False, dtypes=("float32",), shapes=None, only=None, fused=None) -> dict:
    """Time every (shape, dtype, variant); a variant that cannot run or fails is recorded with its
    reason in ``status`` and the others go on."""
    reps = 5 if quick else 30
    copy_gbs = copy_bandwidth_gbs(device) if device == "cuda" else None
    rows = []

    def save(complete: bool):  # after every shape too, so a run cut short keeps what it measured
        return write_result("affine_coupling", device, {"rows": add_speedups(rows, ("shape", "dtype")),
                            "copy_gbs": copy_gbs, "minimum_tensors_moved": TENSORS_MOVED, "complete": complete})

    for shape in shapes or SHAPES:
        for dtype_name in map(DTYPE_ALIASES.get, dtypes, dtypes):
            dtype = getattr(torch, dtype_name)
            args = _inputs(shape, device, dtype)
            numel = args[0].numel()
            for name, fn in variants(device, fused).items():
                if only and name not in only:
                    continue
                row = {"shape": "x".join(map(str, shape)), "dtype": dtype_name, "variant": name}
                rows.append(row)
                step = _step(fn, *args)
                try:
                    row.update(time_fn(step, device, warmup=3, reps=reps),
                               peak_mib=peak_memory(step, device) / 2**20, status="ok")
                except BackendUnavailable as exc:
                    row["status"] = f"unavailable: {exc}"
                    continue
                except Exception as exc:  # noqa: BLE001 -- record and go on to the next variant
                    row["status"] = failure_status(exc, device)
                    continue
                if device == "cuda":
                    gbs = TENSORS_MOVED * numel * args[0].element_size() / (row["median_ms"] * 1e-3) / 1e9
                    row.update(achieved_gbs=gbs, fraction_of_copy=gbs / copy_gbs)
        save(complete=False)
    cols = ["shape", "dtype", "variant", "median_ms", "speedup_vs_eager", "speedup_vs_compile", "peak_mib", "status"]
    if device == "cuda":
        cols += ["achieved_gbs", "fraction_of_copy"]
    print_table(rows, cols)
    path = save(complete=True)
    print(f"wrote {path}")
    return {"rows": rows}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("variant", ["eager", "fused"])
def test_affine_coupling_fwd_bwd(benchmark, shape, variant):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fn = variants(device)["eager" if variant == "eager" else default_fused(device)]
    benchmark(_step(fn, *_inputs(shape, device)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--dtypes", type=csv_list, default=["float32"], help="comma-separated torch dtypes or f32,bf16,f16,f64, e.g. float32,bfloat16")
    p.add_argument("--shapes", type=shape_list, default=None, help="comma-separated, e.g. 256x6144,64x6x64x64")
    p.add_argument("--variants", type=csv_list, default=None, help="subset of eager,compile,cpp,triton")
    p.add_argument("--fused", choices=["cpp", "triton"], default=None,
                   help="fused backend (default: cpp on CPU, triton on CUDA)")
    a = parse_args(p, argv)
    return run(a.device, a.quick, a.dtypes, a.shapes, a.variants, a.fused)


if __name__ == "__main__":
    main()
