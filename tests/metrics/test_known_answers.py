"""Supervised metrics on constructed representations with known answers."""
import math

import numpy as np
import pytest

from eoflow_fast import metrics


def uniform_factors(rs, n, sizes):
    return np.stack([rs.randint(s, size=n) for s in sizes], axis=1)


def test_identity_codes_score_near_one(rs):
    factors = uniform_factors(rs, 4000, (4, 5, 10))
    codes = factors.astype(np.float32) + 0.01 * rs.rand(*factors.shape).astype(np.float32)
    assert metrics.mig(codes, factors)["mig"] > 0.98
    nmi = metrics.nmi(codes, factors)
    assert nmi["nmi1_sum"] == pytest.approx(3.0, abs=1e-9)  # every factor fully in one latent: sum of 3 ones
    assert nmi["nmi1_mean"] == pytest.approx(1.0, abs=1e-9)
    assert nmi["nmi2_sum"] < 0.02 and nmi["nmi2_mean"] == pytest.approx(nmi["nmi2_sum"] / 3)
    assert "mig" not in nmi
    small = uniform_factors(rs, 300, (2, 3, 4))
    test = uniform_factors(rs, 200, (2, 3, 4))
    dci = metrics.dci(small.astype(np.float32), small, test.astype(np.float32), test)
    assert dci["disentanglement"] > 0.95 and dci["completeness"] > 0.95
    assert dci["informativeness_test"] == pytest.approx(1.0)
    sap = metrics.sap(codes, factors, continuous_factors=True)
    assert sap["sap"] > 0.95


def test_random_codes_score_near_zero(rs):
    factors = uniform_factors(rs, 4000, (4, 5, 10))
    codes = rs.randn(4000, 3).astype(np.float32)
    assert metrics.mig(codes, factors)["mig"] < 0.03
    small = uniform_factors(rs, 250, (2, 3, 4))
    test = uniform_factors(rs, 150, (2, 3, 4))
    dci = metrics.dci(rs.randn(250, 3), small, rs.randn(150, 3), test)
    assert dci["informativeness_test"] < 0.5  # chance level is 1/2, 1/3, 1/4 (mean 0.36)
    assert dci["disentanglement"] < 0.25


def test_duplicated_factor_halves_mig(rs):
    factors = uniform_factors(rs, 4000, (4, 8))
    one = metrics.mig(factors.astype(np.float32), factors)
    assert one["mig"] == pytest.approx(1.0, abs=0.01)
    # Factor 0 copied into two latents: its gap is 0, so MIG over the 2 factors halves.
    duplicated = metrics.mig(np.c_[factors[:, 0], factors[:, 0], factors[:, 1]].astype(np.float32), factors)
    assert duplicated["mig_per_factor"][0] == pytest.approx(0.0, abs=1e-12)
    assert duplicated["mig"] == pytest.approx(one["mig"] / 2, abs=0.01)
    # A second latent holding half of factor 0's bits (f // 2): the gap of factor 0 is half its entropy.
    half = metrics.mig(np.c_[factors[:, 0], factors[:, 0] // 2, factors[:, 1]].astype(np.float32), factors)
    counts = np.bincount(factors[:, 0])
    p = counts / counts.sum()
    coarse = np.array([p[0] + p[1], p[2] + p[3]])
    entropy = -(p * np.log(p)).sum()
    want = (entropy - (-(coarse * np.log(coarse)).sum())) / entropy  # (H(f) - I(f; f // 2)) / H(f)
    assert half["mig_per_factor"][0] == pytest.approx(want, abs=1e-12)
    assert want == pytest.approx(0.5, abs=0.02)


def test_modularity_of_constructed_mi_matrices():
    from eoflow_fast.metrics.modularity import modularity_from_mi
    assert modularity_from_mi(np.eye(3)) == 1.0
    # Row with equal MI to both factors: delta = 1, score 0; all-zero row scores 0.
    assert modularity_from_mi(np.array([[1.0, 1.0], [0.0, 0.0]])) == 0.0
    assert modularity_from_mi(np.array([[2.0, 1.0]])) == pytest.approx(1.0 - 1.0 / 4.0)


def test_unsupervised_closed_forms(rs):
    codes = rs.randn(20000, 3) * np.array([1.0, 2.0, 0.5])  # independent dims
    scores = metrics.unsupervised(codes)
    cov = np.cov(codes, rowvar=False)
    diag_cov = np.diag(np.diag(cov))
    from eoflow_fast.metrics.unsupervised import gaussian_wasserstein_correlation, log_det_gap
    assert log_det_gap(diag_cov) == pytest.approx(0.0, abs=1e-12)
    assert gaussian_wasserstein_correlation(diag_cov) == pytest.approx(0.0, abs=1e-9)
    # 2-d Gaussian with correlation r: TC = -1/2 log(1 - r^2).
    r = 0.6
    assert log_det_gap(np.array([[1.0, r], [r, 1.0]])) == pytest.approx(-0.5 * math.log(1 - r * r), abs=1e-12)
    assert scores["gaussian_total_correlation"] < 1e-3


def test_factor_vae_and_beta_vae_on_identity_batches(rs):
    from eoflow_fast.metrics.beta_vae import beta_vae, beta_vae_features
    from eoflow_fast.metrics.factor_vae import factor_vae
    num_factors, n, batch = 3, 60, 32
    index = rs.randint(num_factors, size=n)
    batches = rs.randn(n, batch, num_factors)
    batches[np.arange(n), :, index] = 0.3  # the fixed factor's latent does not vary within a batch
    scores = factor_vae(rs.randn(500, num_factors), batches, index, batches, index, num_factors)
    assert scores["eval_accuracy"] == 1.0 and scores["num_active_dims"] == num_factors
    collapsed = factor_vae(np.zeros((50, 3)), batches, index, batches, index, num_factors)
    assert collapsed == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    second = rs.randn(n, batch, num_factors)
    second[np.arange(n), :, index] = 0.3
    features = beta_vae_features(batches, second)
    assert np.allclose(features[np.arange(n), index], 0.0)
    assert beta_vae(features, index, features, index)["eval_accuracy"] == 1.0


def test_failure_rate():
    out = metrics.failure_rate([0.05, 0.2, 0.099, 0.1, 0.5])
    assert out == {"failure_rate": 40.0, "num_failed": 2, "num_runs": 5}
    with pytest.raises(ValueError, match="mig_scores"):
        metrics.failure_rate([])
    with pytest.raises(ValueError, match=r"1-D sequence of per-run MIG, got shape \(2, 2\)"):
        metrics.failure_rate([[0.05, 0.2], [0.3, 0.4]])  # was flattened into 4 "runs"


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="factors has 3 rows, codes has 4"):
        metrics.mig(np.zeros((4, 2)), np.zeros((3, 1), dtype=int))
    with pytest.raises(TypeError, match="factors must hold integer"):
        metrics.mig(np.random.rand(4, 2), np.array([[0.5], [1.0], [0.0], [1.0]]))
    with pytest.raises(ValueError, match="codes_test has 3 latents"):
        metrics.dci(np.zeros((4, 2)), np.array([[0], [1], [0], [1]]), np.zeros((4, 3)), np.zeros((4, 1), dtype=int))
