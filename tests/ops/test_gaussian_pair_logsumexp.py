"""gaussian_pair_logsumexp: every backend against the materializing float64 reference."""
import math

import pytest
import torch
from backend_cases import case_params, needs_cpp

from eoflow_fast import ops
from eoflow_fast.ops import BackendUnavailable
from eoflow_fast.reference import gaussian_pair_logsumexp as ref

# (backend, device, dtype, rtol) that run here; Triton runs under the interpreter on CPU.
CPU_CASES = [("torch", "cpu", torch.float32, 2e-6), ("cpp", "cpu", torch.float64, 1e-12),
             ("cpp", "cpu", torch.float32, 2e-5), ("triton", "cpu", torch.float32, 2e-5),
             ("triton", "cpu", torch.float64, 1e-12)]
CUDA_CASES = [("triton", "cuda", torch.float32, 2e-5), ("triton", "cuda", torch.float16, 2e-2)]


ALL_CASES = case_params(CPU_CASES + CUDA_CASES)


def _inputs(gen, rows_z, rows_mu, dim, weighted):
    """float64 z (B', D), mu, logvar (B, D) and log-weights (B', B) or None; z near the mu cloud."""
    mu = torch.randn(rows_mu, dim, generator=gen, dtype=torch.float64)
    logvar = 0.6 * torch.randn(rows_mu, dim, generator=gen, dtype=torch.float64)
    z = 1.2 * torch.randn(rows_z, dim, generator=gen, dtype=torch.float64)
    weights = torch.randn(rows_z, rows_mu, generator=gen, dtype=torch.float64) if weighted else None
    return z, mu, logvar, weights


def _rel_err(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _run(fn, z, mu, logvar, weights, exclude_self, g_joint, g_marginal):
    leaves = [t.clone().requires_grad_() for t in (z, mu, logvar) + (() if weights is None else (weights,))]
    w = leaves[3] if weights is not None else None
    log_joint, log_marginal = fn(*leaves[:3], weights=w, exclude_self=exclude_self)
    grads = torch.autograd.grad((log_joint, log_marginal), leaves, (g_joint, g_marginal))
    return log_joint, log_marginal, grads


# (B', B, D, weighted, exclude_self): sizes that are not multiples of any block or vector width;
# D > 64 takes the Triton kernels' chunked-d path (two and three 64-wide chunks)
SHAPES = [(13, 13, 3, False, False), (11, 29, 10, True, False), (40, 40, 5, True, True), (8, 8, 9, False, True),
          (19, 19, 100, True, True), (18, 6, 130, True, False), (9, 9, 70, False, True)]


@pytest.mark.parametrize("backend,device,dtype,rtol", ALL_CASES)
@pytest.mark.parametrize("rows_z,rows_mu,dim,weighted,exclude_self", SHAPES)
def test_forward_backward_matches_reference(gen, backend, device, dtype, rtol, rows_z, rows_mu, dim, weighted,
                                            exclude_self):
    z, mu, logvar, weights = _inputs(gen, rows_z, rows_mu, dim, weighted)
    g_joint = torch.randn(rows_z, generator=gen, dtype=torch.float64)
    g_marginal = torch.randn(rows_z, dim, generator=gen, dtype=torch.float64)
    expected = _run(ref.gaussian_pair_logsumexp, z, mu, logvar, weights, exclude_self, g_joint, g_marginal)

    def cast(t):
        return None if t is None else t.to(device=device, dtype=dtype)

    def op(*args, **kw):
        return ops.gaussian_pair_logsumexp(*args, backend=backend, **kw)

    log_joint, log_marginal, grads = _run(op, *map(cast, (z, mu, logvar, weights)), exclude_self,
                                          cast(g_joint), cast(g_marginal))
    assert log_joint.shape == (rows_z,) and log_marginal.shape == (rows_z, dim) and log_joint.dtype == dtype
    assert _rel_err(log_joint, expected[0]) < rtol
    assert _rel_err(log_marginal, expected[1]) < rtol
    assert len(grads) == len(expected[2])
    for got, want in zip(grads, expected[2]):
        assert got.dtype == dtype
        assert _rel_err(got, want) < 10 * rtol


@pytest.mark.parametrize("backend", [pytest.param("cpp", marks=needs_cpp), "triton"])
def test_dropped_pairs_and_far_points(gen, backend):
    """-inf log-weights drop pairs (and get zero gradient); tiny variances far apart stay finite."""
    z, mu, logvar, weights = _inputs(gen, 9, 9, 4, True)
    logvar = logvar - 8.0  # densities ~ exp(-1e4): a naive exp-sum underflows to log(0)
    weights[torch.rand(9, 9, generator=gen) < 0.4] = float("-inf")
    weights[:, 0] = 0.0  # every row keeps at least one pair
    g_joint, g_marginal = torch.ones(9, dtype=torch.float64), torch.ones(9, 4, dtype=torch.float64)
    expected = _run(ref.gaussian_pair_logsumexp, z, mu, logvar, weights, False, g_joint, g_marginal)
    got = _run(lambda *a, **k: ops.gaussian_pair_logsumexp(*a, backend=backend, **k), z, mu, logvar, weights,
               False, g_joint, g_marginal)
    assert torch.isfinite(got[0]).all() and got[0].max() < -100
    for a, b in zip(got[:2] + tuple(got[2]), expected[:2] + tuple(expected[2])):
        assert _rel_err(a, b) < 1e-10
    assert (got[2][3][torch.isinf(weights)] == 0).all()


@pytest.mark.parametrize("backend", [pytest.param("cpp", marks=needs_cpp), "triton", "torch"])
def test_leave_one_out_pair_closed_form(gen, backend):
    """B = 2 with exclude_self: each row sees only the other component, so the log-sum-exp is one term."""
    z, mu, logvar, _ = _inputs(gen, 2, 2, 3, False)
    log_joint, log_marginal = ops.gaussian_pair_logsumexp(z, mu, logvar, exclude_self=True, backend=backend)
    other = mu.flip(0), logvar.flip(0)
    expected = -0.5 * (math.log(2 * math.pi) + other[1] + (z - other[0]) ** 2 * torch.exp(-other[1]))
    torch.testing.assert_close(log_marginal, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_joint, expected.sum(1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", [pytest.param("cpp", marks=needs_cpp), "torch"])
def test_gradcheck_float64(gen, backend):
    z, mu, logvar, weights = _inputs(gen, 6, 6, 3, True)
    leaves = [t.requires_grad_() for t in (z, mu, logvar, weights)]

    def fn(z, mu, logvar, weights):
        return ops.gaussian_pair_logsumexp(z, mu, logvar, weights=weights, exclude_self=True, backend=backend)

    assert torch.autograd.gradcheck(fn, leaves)


def test_bad_inputs():
    z, mu = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(ValueError, match="z has 2 columns"):
        ops.gaussian_pair_logsumexp(z[:, :2], mu, mu)
    with pytest.raises(ValueError, match="logvar has shape"):
        ops.gaussian_pair_logsumexp(z, mu, mu[:, :2])
    with pytest.raises(ValueError, match="weights must have shape"):
        ops.gaussian_pair_logsumexp(z, mu, mu, weights=torch.zeros(5, 4))
    with pytest.raises(ValueError, match="exclude_self"):
        ops.gaussian_pair_logsumexp(z, mu, mu, exclude_self=True)
    with pytest.raises(ValueError, match="z must have 2 dims"):
        ops.gaussian_pair_logsumexp(z[0], mu, mu)
    with pytest.raises(TypeError, match="mu has dtype"):
        ops.gaussian_pair_logsumexp(z, mu.double(), mu)
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.gaussian_pair_logsumexp(z, mu, mu, backend="cuda")
    with pytest.raises(BackendUnavailable):
        ops.gaussian_pair_logsumexp(z.half(), mu.half(), mu.half(), backend="cpp")


@pytest.mark.cuda
def test_cuda_large_batch_matches_reference(gen):
    """A larger batch on the GPU (several m blocks per row, D = 64): Triton against the float64 reference."""
    z, mu, logvar, _ = _inputs(gen, 700, 700, 64, False)
    g_joint, g_marginal = torch.randn(700, dtype=torch.float64), torch.randn(700, 64, dtype=torch.float64)
    expected = _run(ref.gaussian_pair_logsumexp, z, mu, logvar, None, True, g_joint, g_marginal)
    got = _run(lambda *a, **k: ops.gaussian_pair_logsumexp(*a, backend="triton", **k),
               *(t.cuda().float() for t in (z, mu, logvar)), None, True, g_joint.cuda().float(),
               g_marginal.cuda().float())
    for a, b in zip(got[:2] + tuple(got[2]), expected[:2] + tuple(expected[2])):
        assert _rel_err(a, b) < 1e-4


@pytest.mark.slow
@needs_cpp
def test_torch_compile_matches_eager(gen):
    """Under torch.compile the fused op is one custom-op node; values and gradients match eager."""
    z, mu, logvar, weights = _inputs(gen, 12, 12, 5, True)

    def loss(z, mu, logvar, weights):
        log_joint, log_marginal = ops.gaussian_pair_logsumexp(z, mu, logvar, weights=weights, backend="cpp")
        return log_joint.sum() + (log_marginal ** 2).sum()

    leaves = [t.requires_grad_() for t in (z, mu, logvar, weights)]
    want = torch.autograd.grad(loss(*leaves), leaves)
    got = torch.autograd.grad(torch.compile(loss, fullgraph=True)(*leaves), leaves)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
