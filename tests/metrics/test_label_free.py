"""Label-free metrics: informative dims and FDR, alignment, DBSR-LS, FVH-LT, separation index."""
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from eoflow_fast import metrics
from eoflow_fast.metrics.dbsr_ls import project_l1_ball, prox_linf_rows


def fa_encoder_outputs(rs, n, q, d, planted, spurious=None):
    """FA-like latent factors f (n, q) and encoder (mu, logvar) (n, d): dims ``planted`` carry the factors
    (mu = f + small noise, small variance), the others are collapsed to the prior (mu ~ 0, var ~ 1);
    ``spurious`` (optional) is an extra informative dim duplicating factor 0."""
    f = rs.randn(n, q)
    mu = 0.02 * rs.randn(n, d)
    logvar = np.log(1.0 - 1e-3 * rs.rand(n, d))
    for k, dim in enumerate(planted):
        mu[:, dim] = f[:, k] + 0.1 * rs.randn(n)
        logvar[:, dim] = np.log(0.01)
    if spurious is not None:
        mu[:, spurious] = f[:, 0] + 0.3 * rs.randn(n)
        logvar[:, spurious] = np.log(0.05)
    return f, mu, logvar


def test_per_dimension_kl_closed_form(rs):
    mu, logvar = rs.randn(50, 3), rs.randn(50, 3)
    want = np.mean(0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1), axis=0)
    np.testing.assert_allclose(metrics.per_dimension_kl(mu, logvar), want, rtol=1e-12)
    np.testing.assert_allclose(metrics.per_dimension_kl(np.zeros((4, 2)), np.zeros((4, 2))), 0.0)


def test_fdr_on_fa_data_with_planted_informative_set(rs):
    q, d = 3, 8
    planted = rs.permutation(d)[:q]
    f, mu, logvar = fa_encoder_outputs(rs, 2000, q, d, planted)
    out = metrics.informative(mu, logvar, factors=np.round(f * 10).astype(np.int64))
    np.testing.assert_array_equal(np.flatnonzero(out["informative"]), np.sort(planted))
    assert out["fdr"] == 0.0
    assert metrics.false_discovery_rate(out["informative"], num_factors=q)["fdr"] == 0.0
    # One more informative dim that duplicates factor 0: one false discovery out of q + 1 flagged.
    spurious = [k for k in range(d) if k not in planted][0]
    f, mu, logvar = fa_encoder_outputs(rs, 2000, q, d, planted, spurious=spurious)
    out = metrics.informative(mu, logvar, factors=np.round(f * 10).astype(np.int64))
    assert out["num_informative"] == q + 1
    assert out["fdr"] == pytest.approx(1 / (q + 1))
    assert metrics.false_discovery_rate(out["informative"], num_factors=q)["fdr"] == pytest.approx(1 / (q + 1))
    # continuous factors (FA's are Gaussian) are taken as they are
    cont = metrics.informative(mu, logvar, factors=f)
    assert cont["num_informative"] == q + 1 and cont["fdr"] == pytest.approx(1 / (q + 1))
    with pytest.raises(ValueError, match="finite"):
        metrics.informative(mu, logvar, factors=np.where(f > 2, np.nan, f))


def test_fdr_counts_weak_matches_as_false():
    association = np.array([[0.9, 0.1], [0.2, 0.3], [0.0, 0.0]])
    out = metrics.false_discovery_rate([True, True, False], association=association, min_association=0.5)
    assert out == {"fdr": 0.5, "num_flagged": 2, "num_false": 1}
    assert metrics.false_discovery_rate([False] * 3, num_factors=2)["fdr"] == 0.0


def test_alignment_recovers_permutation_and_signs(rs):
    d = 6
    reference = rs.randn(1000, d)
    permutation = rs.permutation(d)
    signs = rs.choice([-1, 1], size=d)
    run = np.empty_like(reference)
    run[:, permutation] = reference * signs + 0.1 * rs.randn(1000, d)  # run dim permutation[k] = +-reference dim k
    out = metrics.greedy_alignment(reference, run)
    np.testing.assert_array_equal(out["permutation"], permutation)
    np.testing.assert_array_equal(out["signs"], signs)
    assert out["agrees_with_hungarian"]
    np.testing.assert_allclose(run[:, out["permutation"]] * out["signs"], reference, atol=0.6)
    # A run's (d, p) matrix has its rows in the run's order and sign; align_runs puts them back.
    reference_matrix = rs.randn(d, 4)
    run_matrix = np.empty_like(reference_matrix)
    run_matrix[permutation] = reference_matrix * signs[:, None]
    aligned = metrics.align_runs([reference, run], [reference_matrix, run_matrix], signed=True)
    np.testing.assert_allclose(aligned["aligned"][1], reference_matrix, atol=1e-12)
    np.testing.assert_allclose(aligned["mean"], reference_matrix, atol=1e-12)


def test_greedy_and_hungarian_on_a_trap_matrix():
    # Greedy takes 0.9 first and is then forced onto 0.0; Hungarian finds 0.8 + 0.8.
    from eoflow_fast.metrics.alignment import greedy_match
    sim = np.array([[0.9, 0.8], [0.8, 0.0]])
    assert greedy_match(sim) == [(0, 0), (1, 1)]
    rows, cols = linear_sum_assignment(sim, maximize=True)
    assert list(cols) == [1, 0]


def test_l1_ball_projection_and_linf_prox(rs):
    v = rs.randn(20, 7)
    radius = 0.7
    projected = project_l1_ball(v, radius)
    assert np.all(np.abs(projected).sum(axis=1) <= radius + 1e-12)
    # Optimality against many random feasible points: the projection is the closest point in the ball.
    for row, proj in zip(v, projected):
        candidates = rs.randn(200, 7)
        candidates *= radius * rs.rand(200, 1) / np.abs(candidates).sum(axis=1, keepdims=True)
        assert np.linalg.norm(row - proj) <= np.min(np.linalg.norm(row - candidates, axis=1)) + 1e-12
    inside = v[:1] * 0.01
    np.testing.assert_array_equal(project_l1_ball(inside, radius), inside)
    # Moreau: prox_{t||.||_inf}(v) + Proj_{l1 ball(t)}(v) = v, and the prox caps |entries| at one level.
    prox = prox_linf_rows(v, radius)
    np.testing.assert_allclose(prox + projected, v, atol=1e-12)


def test_dbsr_ls_kkt_and_block_recovery(rs):
    n, d, p = 800, 5, 12
    z = rs.randn(n, d)
    theta = np.zeros((d, p))
    theta[0, :] = rs.uniform(0.5, 1.0, p)  # a dense row: block component
    theta[2, 3] = 1.5                       # one feature-specific link: sparse component
    x = z @ theta + 0.3 * rs.randn(n, p)
    out = metrics.dbsr_ls(z, x, lambda_block=0.3, lambda_sparse=0.05, tol=1e-12, max_iter=20000)
    assert out["converged"]
    # KKT: -grad is a subgradient of both penalties at (B, S).
    zs = (z - z.mean(0)) / z.std(0)
    xs = (x - x.mean(0)) / x.std(0)
    grad = zs.T @ (zs @ out["theta"] - xs) / n
    s, b = out["sparse"], out["block"]
    assert np.all(np.abs(grad) <= out["lambda_sparse"] + 1e-6)
    np.testing.assert_allclose(grad[s != 0], -out["lambda_sparse"] * np.sign(s[s != 0]), atol=1e-6)
    assert np.all(np.abs(grad).sum(axis=1) <= out["lambda_block"] + 1e-6)
    for k in np.flatnonzero(out["block_support"]):
        assert -grad[k] @ b[k] == pytest.approx(out["lambda_block"] * np.abs(b[k]).max(), abs=1e-6)
    assert out["block_support"][0] and not out["block_support"][[1, 3, 4]].any()
    assert np.abs(out["theta"][[1, 3, 4]]).max() < 0.05
    assert np.abs(out["theta"][2, 3]) > 0.5


def test_fvh_lt_linear_decoder_closed_form(rs):
    d, p = 4, 6
    weights = rs.randn(d, p)
    weights[3] = 0.0  # a dim that moves nothing
    grid = np.linspace(-3, 3, 11)
    out = metrics.fvh_lt(lambda z: z @ weights, rs.randn(5, d))
    np.testing.assert_allclose(out["variance"], weights ** 2 * grid.var(), rtol=1e-5, atol=1e-12)
    assert out["specificity"][3] == 0.0
    one_hot = np.eye(d, p)
    assert np.allclose(metrics.fvh_lt(lambda z: z @ one_hot, np.zeros((1, d)))["specificity"], 1.0)


def test_separation_index_documented_cases():
    assert metrics.separation_index(np.ones((3, 4)), informative=[True, False, False])["separation_index"] == 0.0
    one_dim_dominates = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    assert metrics.separation_index(one_dim_dominates)["separation_index"] == pytest.approx(0.0, abs=1e-12)
    block = np.kron(np.eye(2), np.ones((1, 3)))  # each dim owns 3 features
    assert metrics.separation_index(block)["separation_index"] == pytest.approx(1.0)
    assert metrics.separation_index(np.ones((2, 6)))["separation_index"] == pytest.approx(0.0, abs=1e-12)
    combined = metrics.combined_association(block, 2 * block)
    np.testing.assert_allclose(combined, block / block.sum())
