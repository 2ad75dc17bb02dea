"""marginal_entropy: backends against the reference, the reference against the leave-one-out
KDE written out directly, and both estimates against the closed-form Gaussian entropy."""
import math

import pytest
import torch

from eoflow_fast import ops
from eoflow_fast.ops._dispatch import cpp_ops
from eoflow_fast.reference import marginal_entropy as ref

needs_cpp = pytest.mark.skipif(cpp_ops() is None, reason="C++ extension not built")
BACKENDS = [pytest.param("cpp", marks=needs_cpp), "triton", "torch"]


def _loo_kde_entropy(z, h):
    """-mean_n log( 1/(B-1) sum_{m != n} phi((z_n - z_m) / h) / h ), one column at a time."""
    out = []
    for d in range(z.shape[1]):
        col = z[:, d]
        diff = (col[:, None] - col[None, :]) / h[d]
        kernel = torch.exp(-0.5 * diff ** 2) / (h[d] * math.sqrt(2 * math.pi))
        kernel.fill_diagonal_(0.0)
        out.append(-torch.log(kernel.sum(1) / (z.shape[0] - 1)).mean())
    return torch.stack(out)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bandwidth", [None, 0.3, "per_dim"])
def test_kde_matches_reference_forward_backward(gen, backend, bandwidth):
    z = torch.randn(29, 6, generator=gen, dtype=torch.float64) * torch.linspace(0.5, 3.0, 6, dtype=torch.float64)
    if bandwidth == "per_dim":
        bandwidth = torch.linspace(0.2, 0.9, 6, dtype=torch.float64)
    weights = torch.randn(6, generator=gen, dtype=torch.float64)

    def run(fn, dtype):
        leaf = z.to(dtype).requires_grad_()
        h = bandwidth.to(dtype) if isinstance(bandwidth, torch.Tensor) else bandwidth
        entropy = fn(leaf, method="kde", bandwidth=h)
        return entropy, torch.autograd.grad((entropy * weights.to(dtype)).sum(), leaf)[0]

    want, want_grad = run(ref.marginal_entropy, torch.float64)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        got, got_grad = run(lambda *a, **k: ops.marginal_entropy(*a, backend=backend, **k), dtype)
        assert got.shape == (6,) and got.dtype == dtype
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
        torch.testing.assert_close(got_grad.double(), want_grad, rtol=tol, atol=tol)


def test_reference_is_leave_one_out_kde_with_silverman_bandwidth(gen):
    z = torch.randn(50, 3, generator=gen, dtype=torch.float64) * torch.tensor([0.5, 1.0, 4.0], dtype=torch.float64)
    h = ref.silverman_bandwidth(z)
    torch.testing.assert_close(h, 1.0592 * z.std(0) * 50 ** -0.2, rtol=1e-4, atol=0)  # (4/3)^(1/5) = 1.0592
    torch.testing.assert_close(ref.marginal_entropy(z), _loo_kde_entropy(z, h))
    torch.testing.assert_close(ref.marginal_entropy(z, bandwidth=0.4), _loo_kde_entropy(z, torch.full((3,), 0.4,
                                                                                              dtype=torch.float64)))


@pytest.mark.parametrize("method,tol", [("kde", 0.06), ("gaussian", 0.03)])
def test_gaussian_samples_near_closed_form(gen, method, tol):
    sigma = torch.tensor([0.3, 1.0, 5.0], dtype=torch.float64)
    z = torch.randn(4000, 3, generator=gen, dtype=torch.float64) * sigma
    expected = 0.5 * torch.log(2 * math.pi * math.e * sigma ** 2)
    got = ops.marginal_entropy(z, method=method)
    assert (got - expected).abs().max() < tol


def test_gaussian_method_formula_and_gradient(gen):
    z = torch.randn(40, 4, generator=gen, dtype=torch.float64).requires_grad_()
    got = ops.marginal_entropy(z, method="gaussian")
    var = ((z - z.mean(0)) ** 2).sum(0) / 39
    torch.testing.assert_close(got, 0.5 * torch.log(2 * math.pi * math.e * var))
    assert torch.autograd.gradcheck(lambda x: ops.marginal_entropy(x, method="gaussian"), (z,))


@pytest.mark.parametrize("backend", [pytest.param("cpp", marks=needs_cpp), "torch"])
def test_kde_gradcheck_float64(gen, backend):
    z = torch.randn(7, 2, generator=gen, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ops.marginal_entropy(x, backend=backend), (z,))


def test_bad_inputs():
    z = torch.randn(10, 3)
    with pytest.raises(ValueError, match="method must be one of"):
        ops.marginal_entropy(z, method="histogram")
    with pytest.raises(ValueError, match="at least 2 rows"):
        ops.marginal_entropy(z[:1])
    with pytest.raises(ValueError, match=r"bandwidth must be a float or a \(3,\) tensor"):
        ops.marginal_entropy(z, bandwidth=torch.ones(4))
    with pytest.raises(ValueError, match="bandwidth must be a finite positive float"):
        ops.marginal_entropy(z, bandwidth=0.0)
    with pytest.raises(ValueError, match="z must have 2 dims"):
        ops.marginal_entropy(z[0])
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.marginal_entropy(z, method="gaussian", backend="gpu")
    with pytest.raises(TypeError, match="floating-point"):
        ops.marginal_entropy(z.long())
