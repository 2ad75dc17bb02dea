"""Agreement with disentanglement_lib's definitions (transcribed in dl_reference.py) to 1e-6 on the same codes.

DCI and SAP use the same classifier ``random_state`` on both sides (disentanglement_lib leaves it unset).
Dataset-level wrappers draw the same points as disentanglement_lib's loops for the same seed.
"""
import numpy as np
import pytest

import dl_reference as ref
from eoflow_fast import metrics
from eoflow_fast.metrics.dci import completeness, disentanglement
from eoflow_fast.metrics.factor_vae import factor_vae_votes
from metric_fakes import GridData, entangled_codes, identity_representation

TOL = 1e-6


def noisy_representation(observations):
    """A deterministic, entangled representation of GridData observations (4 codes)."""
    obs = np.asarray(observations, dtype=np.float64)
    mixing = np.array([[1.0, 0.3, 0.0, 0.5], [0.2, 1.0, 0.4, -0.5], [0.0, -0.6, 1.0, 0.5],
                       [0.1, 0.0, 0.0, 0.2], [0.0, 0.1, 0.0, 0.2], [0.3, 0.0, 0.1, 0.0], [0.0, 0.0, 0.2, 0.1]])
    return (obs @ mixing + 0.05 * np.sin(37.0 * obs[:, :1] + 11.0 * obs[:, 1:2])).astype(np.float32)


def test_mig_nmi_agree(rs):
    codes, factors = entangled_codes(rs)
    want = ref.mig(codes.T, factors.T)
    assert abs(metrics.mig(codes, factors)["mig"] - want) < TOL
    nmi = metrics.nmi(codes, factors)
    assert abs(nmi["nmi1_mean"] - nmi["nmi2_mean"] - want) < TOL  # eq. 7: MIG = mean NMI(c_k, 1) - NMI(c_k, 2)


def test_dci_agrees(rs):
    codes, factors = entangled_codes(rs, n=300, factor_sizes=(2, 3), d=3)
    test_codes, test_factors = entangled_codes(np.random.RandomState(rs.randint(1 << 30)), n=100,
                                               factor_sizes=(2, 3), d=3)
    got = metrics.dci(codes, factors, test_codes, test_factors, random_state=7)
    importance, train_acc, test_acc = ref.compute_importance_gbt(codes.T, factors.T, test_codes.T, test_factors.T, 7)
    np.testing.assert_allclose(got["importance_matrix"], importance, rtol=0, atol=TOL)
    assert abs(got["disentanglement"] - ref.disentanglement(importance)) < TOL
    assert abs(got["completeness"] - ref.completeness(importance)) < TOL
    assert abs(got["informativeness_train"] - train_acc) < TOL
    assert abs(got["informativeness_test"] - test_acc) < TOL


@pytest.mark.parametrize("importance", [np.zeros((4, 3)), np.eye(4, 3), None])
def test_dci_scores_of_importance_matrices(rs, importance):
    importance = rs.rand(5, 3) if importance is None else importance
    assert abs(disentanglement(importance) - ref.disentanglement(importance)) < TOL
    assert abs(completeness(importance) - ref.completeness(importance)) < TOL


@pytest.mark.parametrize("continuous", [False, True])
def test_sap_agrees(rs, continuous):
    codes, factors = entangled_codes(rs, n=600, factor_sizes=(3, 4, 2), d=4)
    codes[:, 3] = 2.0  # constant latent: the continuous branch scores it 0
    test_codes, test_factors = entangled_codes(np.random.RandomState(rs.randint(1 << 30)), n=300,
                                               factor_sizes=(3, 4, 2), d=4)
    got = metrics.sap(codes, factors, test_codes, test_factors, continuous_factors=continuous, random_state=3)["sap"]
    want = ref.sap(codes.T, factors.T, test_codes.T, test_factors.T, continuous, random_state=3)
    assert abs(got - want) < TOL


def test_modularity_explicitness_agree(rs):
    codes, factors = entangled_codes(rs, n=800, factor_sizes=(3, 2, 5), d=4)
    test_codes, test_factors = entangled_codes(np.random.RandomState(rs.randint(1 << 30)), n=400,
                                               factor_sizes=(3, 2, 5), d=4)
    got = metrics.modularity_explicitness(codes, factors, test_codes, test_factors)
    modularity, explicit_train, explicit_test = ref.modularity_explicitness(codes.T, factors.T, test_codes.T,
                                                                            test_factors.T)
    assert abs(got["modularity_score"] - modularity) < TOL
    assert abs(got["explicitness_score_train"] - explicit_train) < TOL
    assert abs(got["explicitness_score_test"] - explicit_test) < TOL


def test_unsupervised_agrees(rs):
    codes, _ = entangled_codes(rs, n=3000, d=5)
    got = metrics.unsupervised(codes)
    want = ref.unsupervised(codes.T)
    for key, value in want.items():
        assert abs(got[key] - np.real(value)) < TOL, key


def test_factor_vae_votes_agree(rs):
    batches = rs.randn(40, 16, 5) * rs.uniform(0.1, 2.0, size=5)
    index = rs.randint(3, size=40)
    global_variances = rs.uniform(0.5, 2.0, size=5)
    active = np.array([True, False, True, True, False])
    np.testing.assert_array_equal(factor_vae_votes(batches, index, global_variances, active, 3),
                                  ref.factor_vae_votes(batches, index, global_variances, active, 3))


def test_dataset_wrappers_draw_disentanglement_lib_points():
    data = GridData()
    codes, factors = ref.generate_batch_factor_code(data, noisy_representation, 1000, np.random.RandomState(0), 16)
    got = metrics.evaluate(["mig", "unsupervised"], data, noisy_representation, 0, num_train=1000)
    assert abs(got["mig"]["mig"] - ref.mig(codes, factors)) < TOL
    assert abs(got["unsupervised"]["mutual_info_score"] - ref.unsupervised(codes)["mutual_info_score"]) < TOL


def test_factor_vae_dataset_level_agrees():
    data = GridData()
    got = metrics.evaluate(["factor_vae"], data, noisy_representation, 0,
                           factor_vae={"num_train": 60, "num_eval": 40, "num_variance_estimate": 300, "batch_size": 8})
    want = ref.compute_factor_vae(data, noisy_representation, np.random.RandomState(0), batch_size=8, num_train=60,
                                  num_eval=40, num_variance_estimate=300)
    assert got["factor_vae"] == pytest.approx(want, abs=TOL)


def test_beta_vae_dataset_level_agrees():
    data = GridData()
    got = metrics.evaluate(["beta_vae"], data, identity_representation, 0,
                           beta_vae={"num_train": 60, "num_eval": 40, "batch_size": 8})
    want = ref.compute_beta_vae_sklearn(data, identity_representation, np.random.RandomState(0), batch_size=8,
                                        num_train=60, num_eval=40)
    assert got["beta_vae"] == pytest.approx(want, abs=TOL)
