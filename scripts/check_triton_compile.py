"""Compile every Triton kernel variant for real NVIDIA targets on a machine without a GPU.

The interpreter (``TRITON_INTERPRET=1``) that runs the kernel tests in CI checks the arithmetic but
not what only the compiler checks: globals that are not ``tl.constexpr``, type and shape rules of
the MLIR lowering, tensor size limits, register pressure. This script lowers each kernel through
Triton's NVIDIA backend down to a cubin (TTIR -> TTGIR -> LLVM IR -> PTX -> ptxas, with the ptxas
that ships in the triton wheel) for the given SM targets, without a driver: Triton's active
driver is replaced by one that only names the target, and every launch becomes a compile-only
warm-up. It then asks ptxas for each kernel's registers, spill bytes and shared memory.

    python scripts/check_triton_compile.py                  # sm_80 and sm_90, all variants
    python scripts/check_triton_compile.py --targets 90 --json out.json
    python scripts/check_triton_compile.py --quick --max-spill 64    # what the test suite runs

Exits 1 if any variant fails to compile (the failures are printed); ``--max-spill`` makes spills
above that many bytes a failure too. Must run without ``TRITON_INTERPRET`` (it re-execs itself
without it).
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):  # triton.jit must build real JIT functions
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import torch  # noqa: E402
import triton  # noqa: E402
import triton.runtime.jit as triton_jit  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime.driver import driver  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from kernels import affine_coupling, gaussian_pair_logsumexp, kink_select  # noqa: E402

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "f64": torch.float64}


class _TargetOnlyDriver:
    """Enough of a Triton driver for compiling: it names the target and nothing else."""

    def __init__(self, arch: int):
        self.target = GPUTarget("cuda", arch, 32)

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0


@contextlib.contextmanager
def compile_only(arch: int, sink: list):
    """Within the block, kernel launches compile for sm_<arch> and append the CompiledKernel to sink."""
    run = triton_jit.JITFunction.run

    def compile_run(self, *args, grid, warmup, **kwargs):
        kernel = run(self, *args, grid=grid, warmup=True, **kwargs)
        sink.append((self.fn.__name__, kernel))
        return kernel

    previous = driver._active  # None on a machine without a GPU (no driver could be created)
    driver.set_active(_TargetOnlyDriver(arch))
    triton_jit.JITFunction.run = compile_run
    try:
        yield
    finally:
        triton_jit.JITFunction.run = run
        driver._active = previous


def coupling_cases(quick=False, dtypes=tuple(DTYPES)):
    """(name, thunk) for every entry point x direction x clamp x dtype of the coupling kernels."""
    b, n = 4, 96
    grid = itertools.product(DTYPES, (False, True), affine_coupling.CLAMP_FN_IDS)
    if quick:
        grid = [("f32", False, "atan"), ("f32", True, "tanh"), ("bf16", False, "atan"), ("f64", True, "none"),
                ("f64", False, "atan"), ("f32", True, "freia_sigmoid"), ("f64", False, "logsigmoid")]
    for dtype, reverse, clamp_fn in (g for g in grid if g[0] in dtypes):
        tag = f"{dtype} reverse={reverse} clamp={clamp_fn}"
        flags = (2.0, clamp_fn, reverse)

        def t(*shape, dtype=DTYPES[dtype]):  # (b, n) inputs; (b,) log-det gradients
            return torch.zeros(shape or (b, n), dtype=dtype)
        # default arguments bind this iteration's values (the thunks may run after the loop moves on)
        yield f"coupling_fwd {tag}", lambda t=t, f=flags: affine_coupling.coupling_fwd(t(), t(), t(), *f)
        yield f"coupling_bwd {tag}", lambda t=t, f=flags: affine_coupling.coupling_bwd(
            t(), t(), t(), t(), t(b), *f)
        yield f"coupling_jvp_fwd {tag}", lambda t=t, f=flags: affine_coupling.coupling_jvp_fwd(
            t(), t(), t(), t(), t(), t(), *f)
        yield f"coupling_jvp_bwd {tag}", lambda t=t, f=flags: affine_coupling.coupling_jvp_bwd(
            t(), t(), t(), t(), t(), t(), t(), t(b), t(), t(b), *f)


def pair_cases(quick=False, dtypes=tuple(DTYPES), dims=(1, 10, 64, 256, 1024)):
    """(name, thunk) for the pair log-sum-exp kernels: dtype x D (sets BLOCK_D) x weights x exclude_self."""
    b = 8
    grid = itertools.product(DTYPES, dims, (False, True), (False, True))
    if quick:
        grid = [("f32", 10, True, False), ("f32", 64, False, True), ("bf16", 10, False, True), ("f64", 10, True, True),
                ("f32", 1000, True, True)]
    for dtype, d, has_w, exclude in (g for g in grid if g[0] in dtypes):
        def fwd_bwd(dtype=DTYPES[dtype], d=d, has_w=has_w, exclude=exclude):
            z, mu, lv = (torch.zeros(b, d, dtype=dtype) for _ in range(3))
            w = torch.zeros(b, b, dtype=dtype) if has_w else None
            lj, lm = gaussian_pair_logsumexp.pair_logsumexp_fwd(z, mu, lv, w, exclude)
            gaussian_pair_logsumexp.pair_logsumexp_bwd(z, mu, lv, w, exclude, lj, lm, torch.zeros_like(lj),
                                                       torch.zeros_like(lm), has_w)
        yield f"pair_logsumexp {dtype} D={d} weights={has_w} exclude_self={exclude}", fwd_bwd


def kink_cases(quick=False, dtypes=tuple(DTYPES)):
    """(name, thunk) for the three kink-selection kernels per dtype, launched directly: compile-only
    launches write nothing, so the host wrapper's count could not be read."""
    n, block = 3000, kink_select.BLOCK
    blocks = triton.cdiv(n, block)
    for dtype in (d for d in (("f32", "f64") if quick else DTYPES) if d in dtypes):
        def launch(dtype=DTYPES[dtype]):
            x, thr, peaks = torch.zeros(n, dtype=dtype), torch.zeros((), dtype=dtype), torch.zeros(blocks, dtype=dtype)
            counts, idx = torch.zeros(blocks, dtype=torch.long), torch.zeros(n, dtype=torch.long)
            kink_select._block_max_kernel[(blocks,)](x, peaks, n, BLOCK=block)
            kink_select._block_count_kernel[(blocks,)](x, thr, counts, n, BLOCK=block)
            kink_select._block_write_kernel[(blocks,)](x, thr, counts, idx, x.clone(), n, BLOCK=block)
        yield f"kink_select {dtype}", launch


_PTXAS_INFO = re.compile(r"Used (\d+) registers")
_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_SMEM = re.compile(r"(\d+) bytes smem")


def ptxas_usage(ptx: str, arch: int) -> dict:
    """Registers, spill bytes and static shared memory that ptxas reports for one kernel."""
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(arch).path if get_ptxas.__code__.co_argcount else get_ptxas().path  # 3.9 vs 3.6
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        out = subprocess.run([ptxas, "-v", f"--gpu-name=sm_{arch}a" if arch >= 90 else f"--gpu-name=sm_{arch}",
                              str(src), "-o", str(Path(tmp) / "k.cubin")], capture_output=True, text=True)
    text = out.stdout + out.stderr
    regs, spill, smem = _PTXAS_INFO.search(text), _SPILL.search(text), _SMEM.search(text)
    return {"registers": int(regs.group(1)) if regs else None,
            "spill_bytes": int(spill.group(1)) + int(spill.group(2)) if spill else None,
            "smem_bytes": int(smem.group(1)) if smem else None}


def check(arch: int, cases) -> list[dict]:
    rows = []
    for name, thunk in cases:
        sink: list = []
        start = time.perf_counter()
        try:
            with compile_only(arch, sink):
                thunk()
            error = None
        except Exception as exc:  # a compile error is the finding, not a crash of the checker
            error = f"{type(exc).__name__}: {str(exc).splitlines()[-1] if str(exc) else ''}"
        seconds = time.perf_counter() - start
        if error:
            rows.append({"case": name, "target": f"sm_{arch}", "kernel": None, "error": error})
            print(f"FAIL sm_{arch} {name}: {error}", flush=True)
            continue
        for kernel_name, kernel in sink:
            usage = ptxas_usage(kernel.asm["ptx"], arch)
            rows.append({"case": name, "target": f"sm_{arch}", "kernel": kernel_name,
                         "num_warps": kernel.metadata.num_warps, "cubin_bytes": len(kernel.asm["cubin"]),
                         "seconds": round(seconds, 2), **usage, "error": None})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="80,90", help="comma-separated SM versions (80 = A100, 90 = H100/H200)")
    parser.add_argument("--only", choices=("coupling", "pair", "kink"), help="one kernel family")
    parser.add_argument("--quick", action="store_true", help="a few variants of each kernel (what CI runs)")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help=f"comma-separated subset of {list(DTYPES)}")
    parser.add_argument("--max-spill", type=int, default=None, help="fail when a kernel spills more bytes")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    dtypes = tuple(args.dtypes.split(","))
    if not set(dtypes) <= set(DTYPES):
        parser.error(f"--dtypes: choose from {list(DTYPES)}, got {args.dtypes}")
    rows = []
    for arch in (int(a) for a in args.targets.split(",")):
        for family, cases in (("coupling", coupling_cases), ("pair", pair_cases), ("kink", kink_cases)):
            if args.only in (None, family):
                rows += check(arch, cases(args.quick, dtypes))
    failed = [r for r in rows if r["error"]]
    spilling = [r for r in rows if not r["error"] and args.max_spill is not None
                and (r["spill_bytes"] or 0) > args.max_spill]
    ok = [r for r in rows if not r["error"]]
    print(f"triton {triton.__version__}: {len(ok)} kernel compilations, {len(failed)} failed cases; "
          f"max registers {max((r['registers'] or 0) for r in ok) if ok else '-'}, "
          f"kernels spilling: {sum(1 for r in ok if r['spill_bytes'])}")
    for r in ok:
        if r["spill_bytes"]:
            print(f"  spills: {r['target']} {r['case']} {r['kernel']}: {r['registers']} registers, "
                  f"{r['spill_bytes']} spill bytes")
    if args.json:
        facts = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(),
                 "host_gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                 "triton": triton.__version__, "torch": torch.__version__, "targets": args.targets,
                 "quick": args.quick}
        args.json.write_text(json.dumps({**facts, "rows": rows}, indent=1))
    return 1 if failed or spilling else 0


if __name__ == "__main__":
    sys.exit(main())
