"""Hostile inputs to the array-level metrics: each gives a correct number or a ValueError that names
the metric and the argument; never NaN presented as a score, a silently dropped value, or a hang."""
import json

import numpy as np
import pytest
import torch

from eoflow_fast import metrics

N = 60


def _data(seed=0):
    rs = np.random.RandomState(seed)
    factors = np.stack([rs.randint(0, 3, N), rs.randint(0, 4, N)], axis=1)
    codes = np.concatenate([factors + 0.1 * rs.randn(N, 2), rs.randn(N, 2)], axis=1).astype(np.float32)
    return codes, factors


def _features(codes):
    return np.abs(np.asarray(codes, dtype=np.float64))


# metric name -> (call taking codes (N, 4) and factors (N, 2), the argument name the error must carry)
CALLS = {
    "mig": (lambda c, f: metrics.mig(c, f), "codes"),
    "nmi": (lambda c, f: metrics.nmi(c, f), "codes"),
    "dci": (lambda c, f: metrics.dci(c, f, c, f, n_jobs=1, quick=True), "codes_train"),
    "sap": (lambda c, f: metrics.sap(c, f, c, f), "codes_train"),
    "modularity": (lambda c, f: metrics.modularity_explicitness(c, f, c, f), "codes_train"),
    "unsupervised": (lambda c, f: metrics.unsupervised(c), "codes"),
    "informative": (lambda c, f: metrics.informative(c, np.zeros(np.shape(c)), f), "mu"),
    "dbsr_ls": (lambda c, f: metrics.dbsr_ls(c, f.astype(np.float64)), "latents"),
    "alignment": (lambda c, f: metrics.greedy_alignment(c, c), "reference_codes"),
    "beta_vae": (lambda c, f: metrics.beta_vae(_features(c), f[:, 0], _features(c), f[:, 0]), "train_features"),
    "factor_vae": (lambda c, f: metrics.factor_vae(c, np.asarray(c)[None].repeat(2, 0), np.array([0, 1]),
                                                   np.asarray(c)[None].repeat(2, 0), np.array([0, 1]), 2),
                   "global_codes"),
}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300], ids=["nan", "inf", "-inf", "1e300"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_non_finite_or_out_of_float32_range_codes_are_refused_by_name(name, bad):
    call, argument = CALLS[name]
    codes, factors = _data()
    codes = codes.astype(np.float64)
    codes[3, 1] = bad
    with pytest.raises(ValueError, match=rf"{argument} holds 1 value.*at index \(3, 1\)"):
        call(codes, factors)


@pytest.mark.parametrize("name", ["mig", "nmi", "unsupervised"])
def test_non_finite_half_precision_tensor_codes_are_refused(name):
    codes, factors = _data()
    codes = torch.from_numpy(codes).half()
    codes[5, 0] = float("nan")
    with pytest.raises(ValueError, match=r"codes holds 1 value\(s\) NaN"):
        CALLS[name][0](codes, factors)


@pytest.mark.parametrize("name", ["mig", "nmi", "dci", "sap", "modularity"])
def test_a_constant_factor_is_refused_by_name(name):
    codes, factors = _data()
    factors[:, 1] = 2
    argument = "factors" if name in ("mig", "nmi") else "factors_train"
    with pytest.raises(ValueError, match=rf"{argument} column\(s\) \[1\] hold a single value \(2 in every row\)"):
        CALLS[name][0](codes, factors)


def test_beta_vae_with_one_training_class_is_refused():
    codes, factors = _data()
    with pytest.raises(ValueError, match="train_labels .* single value"):
        metrics.beta_vae(_features(codes), np.zeros(N, dtype=int), _features(codes), factors[:, 0])


def test_sap_continuous_factors_take_real_values():
    rs = np.random.RandomState(1)
    factors = rs.rand(500, 2)
    codes = np.c_[factors[:, 0], factors[:, 0] + factors[:, 1], rs.randn(500)]
    got = metrics.sap(codes, factors, continuous_factors=True)
    corr2 = np.array([[np.corrcoef(codes[:, i], factors[:, j])[0, 1] ** 2 for j in range(2)] for i in range(3)])
    top = np.sort(corr2, axis=0)
    np.testing.assert_allclose(got["score_matrix"], corr2, rtol=1e-10)
    assert got["sap"] == pytest.approx(np.mean(top[-1] - top[-2]), rel=1e-10)
    constant = factors.copy()
    constant[:, 1] = 0.25
    with pytest.raises(ValueError, match=r"factors_train column\(s\) \[1\] hold a single value \(0.25"):
        metrics.sap(codes, constant, continuous_factors=True)


def test_modularity_test_factor_without_an_evaluable_class_is_refused():
    codes, factors = _data()
    test = factors.copy()
    test[:, 1] = 1
    with pytest.raises(ValueError, match="factors_test column 1 .* ROC-AUC is undefined"):
        metrics.modularity_explicitness(codes, factors, codes, test)


def test_factor_vae_index_out_of_range_is_refused():
    codes, _ = _data()
    batches = codes[None].repeat(2, 0)
    with pytest.raises(ValueError, match=r"factor index of train_batches must hold integers in \[0, num_factors = 2\)"):
        metrics.factor_vae(codes, batches, np.array([0, 2]), batches, np.array([0, 1]), 2)


def test_unsupervised_zero_variance_latent_adds_nothing():
    """A DEFT inactive group: an all-zero latent is independent of the rest, so the Gaussian TC and
    the Wasserstein correlation equal those of the other latents (disentanglement_lib: NaN)."""
    rs = np.random.RandomState(2)
    codes = rs.randn(300, 3)
    codes[:, 1] += 0.7 * codes[:, 0]
    with_zero = np.c_[codes[:, :1], np.zeros(300), codes[:, 1:]]
    want, got = metrics.unsupervised(codes), metrics.unsupervised(with_zero)
    assert got["gaussian_total_correlation"] == pytest.approx(want["gaussian_total_correlation"], rel=1e-12)
    for key in ("gaussian_wasserstein_correlation", "gaussian_wasserstein_correlation_norm"):  # eigvalsh round-off
        assert got[key] == pytest.approx(want[key], rel=1e-6), key
    assert want["gaussian_total_correlation"] > 0.1
    constant = metrics.unsupervised(np.full((20, 3), 4.0))
    assert [constant[k] for k in ("gaussian_total_correlation", "gaussian_wasserstein_correlation",
                                  "gaussian_wasserstein_correlation_norm", "mutual_info_score")] == [0.0] * 4


def test_flow_metrics_zero_jacobian_column_and_non_finite_jacobian():
    rs = np.random.RandomState(4)
    jac = rs.randn(16, 5, 3)
    with_zero = np.concatenate([jac[:, :, :1], np.zeros((16, 5, 1)), jac[:, :, 1:]], axis=2)
    want, got = metrics.manifold_total_correlation(jac), metrics.manifold_total_correlation(with_zero)
    assert got["mtc"] == pytest.approx(want["mtc"], rel=1e-12)
    assert got["explained_entropy"][1] == -np.inf  # log ||J_1|| = log 0: the exact value
    np.testing.assert_allclose(np.delete(got["explained_entropy"], 1), want["explained_entropy"], rtol=1e-12)
    m_want, m_got = metrics.mpmi(jac).numpy(), metrics.mpmi(with_zero).numpy()
    assert np.all(m_got[1] == 0) and np.all(m_got[:, 1] == 0)
    np.testing.assert_allclose(np.delete(np.delete(m_got, 1, 0), 1, 1), m_want, rtol=1e-12)
    cross = metrics.cross_mpmi(with_zero, jac).numpy()
    assert np.all(cross[1] == 0) and np.isfinite(cross).all()
    jac[2, 1, 0] = np.nan
    for fn in (metrics.manifold_total_correlation, metrics.mpmi, metrics.flow_metrics):
        with pytest.raises(ValueError, match=r"jacobian holds 1 value\(s\) NaN"):
            fn(jac)


def test_fvh_lt_and_separation_refuse_non_finite_values():
    anchors = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"fvh_lt: decode_fn output \(latent 0 traversed\) holds"):
        metrics.fvh_lt(lambda z: np.where(z[:, :1] > 2, np.nan, z), anchors, num_steps=3)
    with pytest.raises(ValueError, match="fvh_lt: anchors holds 1 value"):
        metrics.fvh_lt(lambda z: z, np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="separation_index: association holds 1 value"):
        metrics.separation_index(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="combined_association: dbsr_theta holds 1 value"):
        metrics.combined_association(np.ones((2, 2)), np.array([[1.0, np.inf], [0.0, 1.0]]))


def test_informative_nan_mean_is_not_silently_uninformative():
    """Before: KL_k = NaN, NaN > tau is False, so a NaN dimension was silently flagged uninformative."""
    codes, factors = _data()
    codes[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"per_dimension_kl: mu holds 1 value.*\(7, 2\)"):
        metrics.informative(codes, np.zeros_like(codes), factors)


@pytest.mark.parametrize("name", ["mig", "nmi", "dci", "sap", "modularity", "unsupervised", "alignment"])
def test_bfloat16_tensor_codes_score_as_their_float32_values(name):
    """Mixed-precision encoders give bfloat16 codes, which numpy cannot hold (before: TypeError)."""
    codes, factors = _data()
    codes = torch.from_numpy(codes).bfloat16()
    got, want = CALLS[name][0](codes, factors), CALLS[name][0](codes.float(), factors)
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == value, key


@pytest.mark.parametrize("call, message", [
    (lambda c, f: metrics.mig(c, f, num_bins=True),
     r"histogram_discretize: num_bins must be an integer in \[1, inf\], got True"),
    (lambda c, f: metrics.nmi(c, f, num_bins=2.5), "num_bins must be an integer"),
    (lambda c, f: metrics.informative(c, np.zeros_like(c), threshold=np.nan),
     "informative: threshold must be a finite"),
    (lambda c, f: metrics.informative(c, np.zeros_like(c), f, min_association=np.nan), "min_association must be"),
    (lambda c, f: metrics.factor_vae(c, c[None].repeat(2, 0), np.array([0, 1]), c[None].repeat(2, 0),
                                     np.array([0, 1]), 2, threshold=np.nan), "factor_vae: threshold must be"),
    (lambda c, f: metrics.dbsr_ls(c, f.astype(float), alpha=np.nan), "dbsr_ls: alpha must be"),
    (lambda c, f: metrics.dbsr_ls(c, f.astype(float), lambda_block=-1.0), "dbsr_ls: lambda_block must be"),
    (lambda c, f: metrics.fvh_lt(lambda z: z, c[:2], span=np.inf), "fvh_lt: span must be"),
    (lambda c, f: metrics.failure_rate([0.2, 0.05], threshold=np.nan), "failure_rate: threshold must be"),
], ids=["mig-bins-bool", "nmi-bins-float", "informative-threshold", "fdr-min-association", "factor_vae-threshold",
        "dbsr-alpha", "dbsr-lambda", "fvh-span", "failure-threshold"])
def test_nan_or_mistyped_parameters_are_refused(call, message):
    """Before: NaN thresholds compared False everywhere (no informative dim, no active dim: scores 0),
    num_bins=True binned every code into one bin (MIG 0), alpha=NaN gave a NaN objective."""
    codes, factors = _data()
    with pytest.raises(ValueError, match=message):
        call(codes, factors)


def test_float_factor_values_beyond_int64_are_refused():
    """Before: 1e20 and 2e20 both cast to the same int64 and merged two factor values silently."""
    codes, factors = _data()
    huge = factors.astype(np.float64)
    huge[:, 0] *= 1e20
    with pytest.raises(ValueError, match="factors holds integer values up to 2e\\+20, beyond int64"):
        metrics.mig(codes, huge)
    assert metrics.mig(codes, factors * 10**12 - 5)["mig"] == metrics.mig(codes, factors)["mig"]  # int64: relabelled


def test_align_runs_refuses_a_matrix_without_one_row_per_latent():
    """Before: a 4-row matrix for a 3-latent run was aligned on its first 3 rows, the 4th dropped silently."""
    codes = np.random.RandomState(5).randn(100, 3)
    with pytest.raises(ValueError, match=r"matrix 1 has shape \(4, 2\), expected one row per latent of run 1 \(3\)"):
        metrics.align_runs([codes, codes[:, [2, 0, 1]]], [np.ones((3, 2)), np.ones((4, 2))])


@pytest.mark.parametrize("content", [b"[1, 2]", b'{"mig": ', b"\xff\xfe"])
def test_a_metrics_json_that_is_not_a_mapping_is_kept_aside(tmp_path, content):
    """Before: a metrics.json holding JSON of another shape was overwritten without a trace, and one
    that was not UTF-8 raised a UnicodeDecodeError."""
    (tmp_path / "metrics.json").write_bytes(content)
    metrics.write_report({"mig": {"mig": 0.5}}, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"] == {"mig": {"mig": 0.5}} and saved["earlier"] == {}
    assert (tmp_path / "metrics.unreadable.json").read_bytes() == content


TRAIN_TEST = {
    "dci": lambda ct, ft, ce, fe: metrics.dci(ct, ft, ce, fe, n_jobs=1, quick=True),
    "sap": lambda ct, ft, ce, fe: metrics.sap(ct, ft, ce, fe),
    "modularity": lambda ct, ft, ce, fe: metrics.modularity_explicitness(ct, ft, ce, fe),
}


@pytest.mark.parametrize("name", sorted(TRAIN_TEST))
@pytest.mark.parametrize("train_cols, test_cols, message", [
    (slice(0, 1), slice(0, 2), "factors_test has 2 factors, factors_train has 1"),
    (slice(0, 2), slice(1, 2), "factors_test has 1 factors, factors_train has 2"),
])
def test_train_and_test_factor_columns_must_match(name, train_cols, test_cols, message):
    """One training factor and two test factors scored (dci: NaN disentanglement, sap 0.0,
    modularity NaN) with the second test factor silently left out; the reverse was an IndexError."""
    codes, factors = _data()
    with pytest.raises(ValueError, match=f"{'modularity' if name == 'modularity' else name}: {message}"):
        TRAIN_TEST[name](codes, factors[:, train_cols], codes, factors[:, test_cols])


@pytest.mark.parametrize("name", sorted(TRAIN_TEST))
@pytest.mark.parametrize("test_latents", [3, 4])
def test_train_and_test_latents_must_match(name, test_latents):
    """sap fit one classifier per latent on 3 train latents and scored 3 of 4 test latents silently;
    modularity failed inside numpy broadcasting."""
    codes, factors = _data()
    train, test = (codes[:, :3], codes) if test_latents == 4 else (codes, codes[:, :3])
    with pytest.raises(ValueError, match=f"codes_test has {test.shape[1]} latents, codes_train has {train.shape[1]}"):
        TRAIN_TEST[name](train, factors, test, factors)


@pytest.mark.parametrize("permutation, signs, message", [
    ([0, 0, 1], None, r"each entry a distinct row of matrix \(0 .. 2\) or -1 \(unmatched\), got \[0, 0, 1\]"),
    ([0, 3, 1], None, r"got \[0, 3, 1\]"),
    ([0, 1, 2], [1, 1], r"signs has shape \(2,\), permutation \(3,\)"),
])
def test_apply_alignment_refuses_a_non_permutation(permutation, signs, message):
    """[0, 0, 1] copied row 0 twice and dropped row 2 without a word."""
    with pytest.raises(ValueError, match=message):
        metrics.apply_alignment(np.ones((3, 2)), np.array(permutation), None if signs is None else np.array(signs))
    matrix = np.arange(6.0).reshape(3, 2)
    assert np.array_equal(metrics.apply_alignment(matrix, np.array([2, -1, 0]), np.array([1, 0, -1])),
                          [[4.0, 5.0], [0.0, 0.0], [0.0, -1.0]])


@pytest.mark.parametrize("kl, message", [([0.5, np.nan], r"NaN or inf at dims \[1\]"), ([[0.5, 0.2]], "1-D")])
def test_informative_dimensions_refuses_nan_or_matrix_kl(kl, message):
    """A NaN KL compared False with the threshold: the dimension read as uninformative."""
    with pytest.raises(ValueError, match=f"informative_dimensions: .*{message}"):
        metrics.informative_dimensions(np.array(kl))
    assert metrics.informative_dimensions(np.array([0.5, 0.05])).tolist() == [True, False]
