"""tc_decomposition: each backend against the materializing reference, and the reference against
the formulas of the beta-TCVAE paper and of disentanglement_lib written out here independently."""
import math

import pytest
import torch

from eoflow_fast import ops
from eoflow_fast.ops._dispatch import cpp_ops
from eoflow_fast.reference import tc_decomposition as ref

needs_cpp = pytest.mark.skipif(cpp_ops() is None, reason="C++ extension not built")
BACKENDS = [pytest.param("cpp", marks=needs_cpp), "triton", "torch"]
ESTIMATORS = ["mws", "mss", "plain"]


def _posterior(gen, batch, dim):
    """float64 mu, logvar (B, D) and a reparameterised sample z (B, D)."""
    mu = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    logvar = -1.0 + 0.5 * torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    return z, mu, logvar


def _log_density_tensor(z, mu, logvar):
    """(B, B, D): log q(z_n,d | x_m), as the beta-TCVAE and disentanglement_lib code build it."""
    zi, mj, lj = z[:, None, :], mu[None], logvar[None]
    return -0.5 * (math.log(2 * math.pi) + lj + (zi - mj) ** 2 * torch.exp(-lj))


def _stratified_weights(batch, dataset_size):
    """Appendix C.2 of Chen et al.: element n of the batch is drawn with probability 1/N, one other
    element stands for the N - M data points outside the batch, the remaining M - 1 for 1/M each."""
    m = batch - 1
    w = torch.empty(batch, batch, dtype=torch.float64)
    for n in range(batch):
        for k in range(batch):
            if k == n:
                w[n, k] = 1.0 / dataset_size
            elif k == (n + 1) % batch:
                w[n, k] = (dataset_size - m) / (dataset_size * m)
            else:
                w[n, k] = 1.0 / m
    return w


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_matches_reference_forward_backward(gen, backend, estimator):
    z, mu, logvar = _posterior(gen, 23, 7)
    coeffs = torch.randn(3, generator=gen, dtype=torch.float64)

    def run(fn, dtype):
        leaves = [t.to(dtype).requires_grad_() for t in (z, mu, logvar)]
        terms = fn(*leaves, 5000, estimator=estimator)
        return terms, torch.autograd.grad(sum(c * t for c, t in zip(coeffs.to(dtype), terms)), leaves)

    want, want_grads = run(ref.tc_decomposition, torch.float64)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        got, got_grads = run(lambda *a, **k: ops.tc_decomposition(*a, backend=backend, **k), dtype)
        for a, b in zip(got, want):
            assert a.shape == () and a.dtype == dtype
            assert abs(a.item() - b.item()) < tol * max(1.0, abs(b.item()))
        for a, b in zip(got_grads, want_grads):
            torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol)


def test_reference_matches_paper_and_disentanglement_lib_formulas(gen):
    batch, dim, dataset_size = 17, 5, 3000
    z, mu, logvar = _posterior(gen, batch, dim)
    log_qz_pairs = _log_density_tensor(z, mu, logvar)  # (n, m, d)
    log_qz_given_x = torch.diagonal(log_qz_pairs, dim1=0, dim2=1).sum(0)
    log_pz = (-0.5 * (math.log(2 * math.pi) + z ** 2)).sum(1)
    log_bn = math.log(batch * dataset_size)

    # MWS (beta-TCVAE vae_quant.py, minibatch weighted sampling)
    log_qz = torch.logsumexp(log_qz_pairs.sum(2), 1) - log_bn
    log_prod = (torch.logsumexp(log_qz_pairs, 1) - log_bn).sum(1)
    mws = ref.tc_decomposition(z, mu, logvar, dataset_size, estimator="mws")
    for got, want in zip(mws, [log_qz_given_x - log_qz, log_qz - log_prod, log_prod - log_pz]):
        assert abs(got.item() - want.mean().item()) < 1e-10

    # MSS with the matrix built entry by entry from the paper's description
    w = _stratified_weights(batch, dataset_size)
    torch.testing.assert_close(ref.mss_log_weights(batch, dataset_size, dtype=torch.float64), w.log())
    torch.testing.assert_close(w.sum(1), torch.ones(batch, dtype=torch.float64))
    log_qz = torch.logsumexp(w.log() + log_qz_pairs.sum(2), 1)
    log_prod = torch.logsumexp(w.log()[:, :, None] + log_qz_pairs, 1).sum(1)
    mss = ref.tc_decomposition(z, mu, logvar, dataset_size, estimator="mss")
    for got, want in zip(mss, [log_qz_given_x - log_qz, log_qz - log_prod, log_prod - log_pz]):
        assert abs(got.item() - want.mean().item()) < 1e-10

    # disentanglement_lib total_correlation (spec vae_deft.md B.5): constants dropped
    dlib_tc = (torch.logsumexp(log_qz_pairs.sum(2), 1) - torch.logsumexp(log_qz_pairs, 1).sum(1)).mean()
    _, plain_tc, _ = ref.tc_decomposition(z, mu, logvar, dataset_size, estimator="plain")
    assert abs(plain_tc.item() - dlib_tc.item()) < 1e-10
    assert abs(plain_tc.item() - (mws[1].item() - (dim - 1) * log_bn)) < 1e-9


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_terms_sum_to_sampled_kl(gen, estimator):
    """mi + tc + dwkl = mean[log q(z|x) - log p(z)] (the sampled KL) for every estimator."""
    z, mu, logvar = _posterior(gen, 31, 4)
    mi, tc, dwkl = ops.tc_decomposition(z, mu, logvar, 31, estimator=estimator, backend="torch")
    kl = (-0.5 * (logvar + (z - mu) ** 2 * torch.exp(-logvar)) + 0.5 * z ** 2).sum(1).mean()
    assert abs((mi + tc + dwkl).item() - kl.item()) < 1e-10


@pytest.mark.parametrize("backend", [pytest.param("cpp", marks=needs_cpp), "torch"])
def test_gradcheck_float64(gen, backend):
    z, mu, logvar = (t.requires_grad_() for t in _posterior(gen, 5, 3))
    for estimator in ESTIMATORS:
        assert torch.autograd.gradcheck(
            lambda *a: ops.tc_decomposition(*a, 100, estimator=estimator, backend=backend), (z, mu, logvar))


def test_bad_inputs():
    z = torch.randn(8, 3)
    with pytest.raises(ValueError, match=r"dataset_size \(7\) must be >= the batch size B \(8\)"):
        ops.tc_decomposition(z, z, z, 7)
    with pytest.raises(ValueError, match="estimator must be one of"):
        ops.tc_decomposition(z, z, z, 100, estimator="iwae")
    with pytest.raises(ValueError, match="mu has shape"):
        ops.tc_decomposition(z, z[:, :2], z, 100)
    with pytest.raises(ValueError, match="logvar has shape"):
        ops.tc_decomposition(z, z, z[:7], 100)
    with pytest.raises(TypeError, match="dataset_size must be a positive int"):
        ops.tc_decomposition(z, z, z, 100.0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        ops.tc_decomposition(z[:1], z[:1], z[:1], 100, estimator="mss")
