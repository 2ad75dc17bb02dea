"""kink_select: every backend against the reference, and the reference against the definition
written out element by element."""
import math

import pytest
import torch
from backend_cases import case_params

from eoflow_fast import ops
from eoflow_fast.reference import kink_select as ref

# (backend, device, dtype); no tolerance: a selection is compared exactly
CASES = case_params([("torch", "cpu", torch.float32), ("cpp", "cpu", torch.float32), ("cpp", "cpu", torch.float64),
                     ("triton", "cpu", torch.float32), ("triton", "cpu", torch.float64),
                     ("triton", "cuda", torch.float32)])


def _planted(gen, shape, dtype, rel):
    """Normal x with entries planted at, inside and just outside the threshold rel * max|x|."""
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    flat = x.view(-1)
    peak = flat.abs().max()
    pos = torch.randperm(flat.numel(), generator=gen)[:6]
    flat[pos] = torch.tensor([0.0, -0.0, 0.5, -0.5, 1.5, -3.0], dtype=torch.float64) * rel * peak
    return x.to(dtype)


def _by_definition(x, rel):
    flat = x.reshape(-1).tolist()
    peak = max((abs(v) for v in flat), default=0.0)
    if any(math.isnan(v) for v in flat):
        return [], math.nan
    # rel and the peak in x's dtype, their product rounded to it (torch's scalar-times-tensor rule)
    t = max((torch.tensor(rel, dtype=x.dtype) * torch.tensor(peak, dtype=x.dtype)).item(), torch.finfo(x.dtype).tiny)
    return [i for i, v in enumerate(flat) if abs(v) <= t], t


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reference_matches_definition(gen, dtype):
    rel = 1e-2
    x = _planted(gen, (3, 5, 7), dtype, rel)
    idx, values, threshold = ref.kink_select(x, rel)
    want, t = _by_definition(x, rel)
    assert idx.tolist() == want and len(want) >= 4  # the planted 0, -0, +-0.5 thresholds at least
    assert torch.equal(values, x.reshape(-1)[want]) and threshold.item() == t


@pytest.mark.parametrize("backend,device,dtype", CASES)
@pytest.mark.parametrize("shape", [(1,), (7,), (4, 257), (3, 40000)])
def test_backend_equals_reference(gen, backend, device, dtype, shape):
    """Exact equality: a selection has no rounding (chunk and vector tails included: 257, 40000)."""
    rel = 3e-3
    x = _planted(gen, shape, dtype, rel) if math.prod(shape) >= 6 else torch.randn(*shape, generator=gen).to(dtype)
    x = x.to(device)
    got = ops.kink_select(x, rel, backend=backend)
    want = ref.kink_select(x, rel)
    assert got[0].dtype == torch.long and got[1].dtype == dtype and got[2].dtype == dtype
    for g, w in zip(got, want):
        assert torch.equal(g.cpu(), w.cpu())


@pytest.mark.parametrize("backend,device,dtype", CASES)
def test_nan_selects_nothing_and_empty_input(gen, backend, device, dtype):
    x = torch.randn(2, 300, generator=gen).to(dtype=dtype, device=device)
    x[1, 17] = math.nan
    idx, values, threshold = ops.kink_select(x, 0.1, backend=backend)
    assert idx.numel() == 0 and values.numel() == 0 and math.isnan(threshold.item())
    idx, values, threshold = ops.kink_select(x[:0], 0.1, backend=backend)
    assert idx.numel() == 0 and threshold.item() == torch.finfo(dtype).tiny
    zeros = torch.zeros(5, dtype=dtype, device=device)  # max 0: the tiny floor selects the zeros
    assert ops.kink_select(zeros, 0.1, backend=backend)[0].tolist() == [0, 1, 2, 3, 4]
    x = torch.randn(1500, generator=gen).to(dtype=dtype, device=device)  # not a multiple of any block
    x[3] = math.inf  # infinite threshold: every entry, the infinite one too, and nothing past the end
    idx, values, threshold = ops.kink_select(x, 0.1, backend=backend)
    assert idx.tolist() == list(range(1500)) and torch.equal(values, x) and threshold.item() == math.inf


@pytest.mark.parametrize("rel", [0.0, -1.0, math.inf, math.nan])
def test_rel_must_be_finite_positive(rel):
    with pytest.raises(ValueError, match="kink_select: rel must be a finite positive float"):
        ops.kink_select(torch.ones(3), rel)
