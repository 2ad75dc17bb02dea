"""Flow metrics: MPMI closed form vs the log-det definition, MTC identities, streaming, closed forms."""
import math

import numpy as np
import pytest
import torch

from eoflow_fast import metrics
from eoflow_fast.metrics.flow import GAUSSIAN_ENTROPY, column_sq_norms, gram_matrix
from eoflow_fast.metrics.unsupervised import log_det_gap


def random_jacobians(gen, n=16, d_out=7, d=5, dtype=torch.float64):
    return torch.randn(n, d_out, d, generator=gen, dtype=dtype)


def test_mpmi_closed_form_matches_log_det_definition(gen):
    jac = random_jacobians(gen)
    gram = jac.transpose(1, 2) @ jac
    d = gram.shape[-1]
    want = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d):
        for j in range(d):
            if i != j:
                block = gram[:, [i, j]][:, :, [i, j]]  # G_[ij],[ij] (N, 2, 2)
                want[i, j] = log_det_gap(block).mean()  # 1/2 E[log G_ii + log G_jj - logdet G_[ij],[ij]]
    got = metrics.mpmi(jac)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(metrics.mpmi(gram=gram), got)
    torch.testing.assert_close(got, got.T)


def test_mtc_equals_sum_of_explained_minus_total_entropy(gen):
    # square J = U diag(s) V^T with random orthogonal U, V and s in [0.5, 2] (cond(J) <= 4): the
    # metric takes log|det| through G = J^T J, whose rounding error grows with cond(J)^2; plain
    # Gaussian draws (cond up to ~1e5) missed rtol 1e-10 in 31 of 2000 seeds
    u, v = (torch.linalg.qr(random_jacobians(gen, d_out=5))[0] for _ in range(2))
    s = 0.5 + 1.5 * torch.rand(16, 5, generator=gen, dtype=torch.float64)
    jac = u @ torch.diag_embed(s) @ v.transpose(1, 2)
    out = metrics.manifold_total_correlation(jac)
    log_norms = torch.log(jac.norm(dim=1))  # (N, D)
    per_sample = log_norms.sum(1) - torch.linalg.slogdet(jac)[1]  # sum_i log||J_i|| - log|det J|
    np.testing.assert_allclose(out["mtc_per_sample"], per_sample.numpy(), rtol=1e-10)
    assert out["mtc"] == pytest.approx(float(out["explained_entropy"].sum() - out["total_entropy"]), rel=1e-10)
    assert out["mtc_per_dim"] == pytest.approx(out["mtc"] / 5)
    assert np.all(out["mtc_per_sample"] >= 0)  # Hadamard
    np.testing.assert_allclose(metrics.explained_entropy(jac).numpy(), out["explained_entropy"], rtol=1e-12)


def test_orthogonal_columns_give_zero_mtc_and_mpmi(gen):
    q, _ = torch.linalg.qr(torch.randn(8, 6, 6, generator=gen, dtype=torch.float64))
    scale = torch.rand(8, 1, 6, generator=gen, dtype=torch.float64) + 0.5
    jac = q * scale  # orthogonal times positive diagonal
    out = metrics.manifold_total_correlation(jac)
    assert abs(out["mtc"]) < 1e-10
    assert metrics.mpmi(jac).abs().max() < 1e-10


def test_linear_gaussian_flow_explained_entropy(gen):
    lam = torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64)
    u, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    jac = (u * lam.sqrt()).expand(10, 3, 3)  # x = U Lambda^1/2 z
    want = 0.5 * torch.log(2 * math.pi * math.e * lam)
    torch.testing.assert_close(metrics.explained_entropy(jac), want)
    assert GAUSSIAN_ENTROPY == pytest.approx(0.5 * math.log(2 * math.pi * math.e))


def test_streamed_chunks_equal_full_jacobian(gen):
    jac = random_jacobians(gen, d_out=9, d=4)
    torch.testing.assert_close(gram_matrix([jac[:, :4], jac[:, 4:7], jac[:, 7:]]), jac.transpose(1, 2) @ jac)
    torch.testing.assert_close(column_sq_norms([jac[:, :, :1], jac[:, :, 1:]]), (jac * jac).sum(1))
    torch.testing.assert_close(metrics.explained_entropy(sq_norms=column_sq_norms(jac)), metrics.explained_entropy(jac))


def test_cross_mpmi_of_a_model_with_itself(gen):
    jac = random_jacobians(gen)
    cross = metrics.cross_mpmi(jac, jac)
    off = ~torch.eye(5, dtype=torch.bool)
    torch.testing.assert_close(cross[off], metrics.mpmi(jac)[off])
    assert torch.all(cross.diagonal() > 10)  # identical columns: -1/2 log(eps)


def test_flow_metrics_orders_by_explained_entropy(gen):
    jac = random_jacobians(gen, d_out=6, d=6) * torch.tensor([0.1, 3.0, 1.0, 0.5, 2.0, 0.2], dtype=torch.float64)
    out = metrics.flow_metrics(jac, mpmi_top=3)
    np.testing.assert_array_equal(out["mpmi_dims"], np.argsort(-out["explained_entropy"])[:3])
    np.testing.assert_allclose(out["mpmi"], metrics.mpmi(jac[:, :, list(out["mpmi_dims"])]).numpy())


@pytest.mark.cuda
def test_mpmi_on_cuda(gen):
    jac = random_jacobians(gen)
    torch.testing.assert_close(metrics.mpmi(jac.cuda()).cpu(), metrics.mpmi(jac))
