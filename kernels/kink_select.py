"""Kink selection in Triton: the entries of x near zero relative to its largest magnitude.

Self-contained: imports only torch and triton, so the file can be copied into another project.
x (any shape, read flat, contiguous), rel > 0:
    threshold = max(rel * max_i |x_i|, tiny),  idx = ascending {i : |x_i| <= threshold},  values = x[idx].
A NaN anywhere makes the threshold NaN and nothing is selected (torch.max's rule). Three launches
over BLOCK-sized blocks, no atomics (deterministic, ascending order): per-block max |x| (NaN kept),
reduced by torch; per-block hit counts, prefix-summed by torch into output offsets; then each
block writes its hits at offset + (running count within the block) - 1. The host reads the total
count to size the outputs (one synchronisation, as ``torch.nonzero`` has).
"""
import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _block_max_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    a = tl.abs(tl.load(x_ptr + offs, mask=offs < n, other=0.0))
    nan = tl.sum((a != a).to(tl.int32), axis=0)
    m = tl.max(tl.where(a != a, 0.0, a), axis=0)
    tl.store(out_ptr + pid, tl.where(nan > 0, float("nan"), m))


@triton.jit
def _block_count_kernel(x_ptr, thr_ptr, count_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    t = tl.load(thr_ptr)
    a = tl.abs(tl.load(x_ptr + offs, mask=offs < n, other=0.0))
    hit = (a <= t) & (offs < n)  # masked lanes never hit, even at an infinite threshold
    tl.store(count_ptr + pid, tl.sum(hit.to(tl.int64), axis=0))


@triton.jit
def _block_write_kernel(x_ptr, thr_ptr, start_ptr, idx_ptr, val_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    t = tl.load(thr_ptr)
    x = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    hit = (tl.abs(x) <= t) & (offs < n)
    pos = tl.load(start_ptr + pid) + tl.cumsum(hit.to(tl.int64), axis=0) - 1
    tl.store(idx_ptr + pos, offs.to(tl.int64), mask=hit)
    tl.store(val_ptr + pos, x, mask=hit)


def kink_select(x: torch.Tensor, rel: float):
    """(idx (K,) int64, values (K,), threshold 0-dim) of contiguous x; see the module docstring."""
    flat = x.detach().reshape(-1)
    n = flat.numel()
    tiny = torch.finfo(flat.dtype).tiny
    if n == 0:
        return (torch.empty(0, dtype=torch.long, device=x.device), flat.new_empty(0),
                flat.new_full((), tiny))
    blocks = triton.cdiv(n, BLOCK)
    peaks = flat.new_empty(blocks)
    _block_max_kernel[(blocks,)](flat, peaks, n, BLOCK=BLOCK)
    threshold = (rel * peaks.max()).clamp_min(tiny)
    counts = torch.empty(blocks, dtype=torch.long, device=x.device)
    _block_count_kernel[(blocks,)](flat, threshold, counts, n, BLOCK=BLOCK)
    ends = counts.cumsum(0)
    total = int(ends[-1])
    idx = torch.empty(total, dtype=torch.long, device=x.device)
    values = flat.new_empty(total)
    if total:
        _block_write_kernel[(blocks,)](flat, threshold, ends - counts, idx, values, n, BLOCK=BLOCK)
    return idx, values, threshold
