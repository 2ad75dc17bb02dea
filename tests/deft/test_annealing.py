"""The annealing test: schedules, the IFP rule, the exact-dataset I(x; z), and freezing points on a
linear-Gaussian toy where they are known in closed form.

Toy: x = f u (u a unit vector in R^4, f standardised to variance lam over N points). A beta-VAE with
linear encoder/decoder and unit-variance Gaussian likelihood is probabilistic PCA with noise variance
beta: the latent is used iff beta < lam, then with posterior variance beta/lam and
I(x; z) = 1/2 log(lam / beta). So I(x; z) exceeds 0.1 nats at beta* = lam exp(-0.2). Annealing
lags the equilibrium (the escape from the collapsed saddle takes steps), so the measured IFP sits
somewhat below beta*.
"""
import math

import numpy as np
import pytest
import torch

from eoflow_fast.deft import annealing as AN
from eoflow_fast.vae.architectures import MLPDecoder, MLPEncoder
from eoflow_fast.vae.objectives import VAE

U = torch.tensor([1.0, 1.0, -1.0, 1.0]) / 2


@pytest.fixture(autouse=True)
def use_tc_op(tc_op):
    return tc_op


def linear_vae():
    return VAE(MLPEncoder(4, 1, ()), MLPDecoder(1, 4, ()), reconstruction="gaussian")


def line_data(lam, n=32):
    f = torch.linspace(-1, 1, n)
    f = (f - f.mean()) / f.std(unbiased=False) * math.sqrt(lam)
    return f[:, None] * U


RATIO = 200.0 ** (1 / 19)  # plateau ratio of 20 log-spaced levels from 200 to 1
BETA_STAR = 20.0 * math.exp(-0.2)


@pytest.mark.parametrize("kind", AN.SCHEDULES)
def test_beta_schedules(kind):
    betas = [AN.beta_schedule(t, 101, 200.0, 1.0, kind) for t in range(101)]
    assert betas[0] == pytest.approx(200.0) and betas[-1] == pytest.approx(1.0, abs=1e-2 if kind == "exp" else 1e-12)
    assert all(a >= b for a, b in zip(betas, betas[1:]))
    if kind == "loglinear":
        assert betas[50] == pytest.approx(math.sqrt(200.0))
    if kind == "linear":
        assert betas[50] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="kind"):
        AN.beta_schedule(0, 10, kind="cosine")


def test_information_freezing_point_rule():
    betas = [100.0, 50.0, 25.0, 12.5, 6.25]
    # starts informative (random init), collapses, then crosses 0.1 between 25 and 12.5 at w = 0.5
    beta, idx = AN.information_freezing_point(betas, [0.5, 0.0, 0.05, 0.15, 1.0])
    assert idx == 3 and beta == pytest.approx(math.sqrt(25.0 * 12.5))
    assert AN.information_freezing_point(betas, [0.5, 0.3, 0.2, 0.2, 0.2]) == (None, None)
    assert AN.information_freezing_point(betas, [0.0] * 5) == (None, None)


def test_dataset_mutual_information_is_the_exact_mixture_estimate():
    """Against the formula written out, with the same noise."""
    class Fixed(VAE):
        def encode(self, x):
            return x[:, :2], x[:, 2:] - 1.0

    g = torch.Generator().manual_seed(0)
    data = torch.randn(10, 4, generator=g, dtype=torch.float64)
    model = Fixed(torch.nn.Identity(), torch.nn.Identity())
    torch.manual_seed(4)
    got = AN.dataset_mutual_information(model, data, samples=3)
    mu, logvar = data[:, :2].repeat(3, 1), (data[:, 2:] - 1.0).repeat(3, 1)
    torch.manual_seed(4)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    log_q = -0.5 * (math.log(2 * math.pi) + logvar[None] + (z[:, None] - mu[None]) ** 2 / logvar[None].exp())
    own = torch.diagonal(log_q.sum(2))
    mixture = torch.logsumexp(log_q.sum(2), 1) - math.log(30)
    assert got == pytest.approx(float((own - mixture).mean()), abs=1e-9)


def test_annealing_finds_the_known_freezing_point():
    ifps = {}
    for lam in (20.0, 80.0):
        torch.manual_seed(1)
        result = AN.annealing_test(linear_vae(), line_data(lam), 1500, lr=0.1, mi_every=10)
        assert len(result.betas) == len(result.kl) == 1500 and len(result.mi) == 151
        beta_star = lam * math.exp(-0.2)
        assert 0.55 * beta_star < result.ifp < 1.3 * beta_star, (lam, result.ifp, beta_star)
        assert max(result.mi) > 0.1 and result.mi[-1] > 0.5 * math.log(lam) - 0.4  # I = 1/2 log(lam / 1) at beta 1
        ifps[lam] = result.ifp
    assert 2.0 < ifps[80.0] / ifps[20.0] < 6.0


def test_staircase_schedule_holds_log_spaced_plateaus():
    betas = [AN.beta_schedule(t, 100, 200.0, 1.0, "staircase", levels=5) for t in range(100)]
    want = [200.0 ** (1 - i / 4) for i in range(5)]
    for i in range(5):
        assert betas[20 * i: 20 * (i + 1)] == pytest.approx([want[i]] * 20)
    with pytest.raises(ValueError, match="levels"):
        AN.beta_schedule(0, 10, kind="staircase", levels=11)


def test_staircase_ifp_reads_plateau_ends_and_does_not_depend_on_speed():
    """Linear VAE on a line of variance lam: the settled I(x; z) is 1/2 log(lam / beta) for beta < lam,
    so the IFP is beta* = lam e^-0.2. Once plateaus settle (90 steps here; 30 do not: 12.8 vs 16.4), at
    3x the annealing time the staircase IFP moves by less than
    one plateau ratio (200^(1/19) = 1.32), and it is read only at plateau ends."""
    ifps = {}
    for steps in (1800, 5400):
        torch.manual_seed(1)
        result = AN.annealing_test(linear_vae(), line_data(20.0), steps, lr=0.1, mi_every=1000,
                                   schedule="staircase", levels=20)
        plateau_ends = [result.mi_steps[i] for i in result.ifp_points]
        assert plateau_ends == [steps * (i + 1) // 20 - 1 for i in range(20)]
        ifps[steps] = result.ifp
    beta_star = 20.0 * math.exp(-0.2)
    assert all(0.7 * beta_star < v < 1.35 * beta_star for v in ifps.values()), (ifps, beta_star)
    assert max(ifps.values()) / min(ifps.values()) < 1.32, ifps


def test_settle_rise_compares_window_halves():
    assert AN.settle_rise([0.0, 1.0, 2.0, 3.0]) == pytest.approx(2.0)  # (2 + 3)/2 - (0 + 1)/2
    assert AN.settle_rise([1.0, 9.0, 1.0]) == pytest.approx(0.0)  # odd count: the middle one is left out
    with pytest.raises(ValueError, match="2 measurements"):
        AN.settle_rise([1.0])


@pytest.mark.parametrize("window,steps", [(20, 2000), (60, 6000)])
def test_settle_ifp_lands_at_the_known_freezing_point_whatever_the_window(window, steps):
    """Settle schedule on the line of variance 20 (beta* = 16.4), plateau caps of 100 and 300 steps:
    both IFPs within one plateau ratio of beta* (measured: 17.5 and 18.2), every plateau settled
    (none hit the cap), each at least one window long, and the recorded steps add up."""
    torch.manual_seed(1)
    result = AN.annealing_test(linear_vae(), line_data(20.0), steps, lr=0.1, schedule=AN.SETTLE, mi_every=10,
                               settle_window=window)
    assert BETA_STAR / RATIO < result.ifp < BETA_STAR * RATIO, result.ifp
    plateaus = result.plateaus
    assert [p["beta"] for p in plateaus] == pytest.approx([200.0 ** (1 - i / 19) for i in range(20)])
    assert all(p["settled"] and p["rise"] <= AN.SETTLE_TOL and window <= p["steps"] < steps // 20 for p in plateaus), plateaus
    assert sum(p["steps"] for p in plateaus) == len(result.betas) < steps
    assert [p["start"] for p in plateaus] == [sum(q["steps"] for q in plateaus[:i]) for i in range(20)]
    ends = [result.mi_steps[i] for i in result.ifp_points]
    assert ends == [p["start"] + p["steps"] - 1 for p in plateaus]


def test_short_staircase_plateaus_miss_the_freezing_point_the_settle_schedule_finds():
    """The old staircase at 10- and 20-step plateaus (200 and 400 steps; measured 5.6 and 12.1) lands
    more than one plateau ratio below beta* = 16.4, where the settle schedule with a 20-step window
    (540 steps in all) does not."""
    for steps in (200, 400):
        torch.manual_seed(1)
        result = AN.annealing_test(linear_vae(), line_data(20.0), steps, lr=0.1, schedule="staircase",
                                   mi_every=10**9)
        assert result.ifp < BETA_STAR / RATIO, (steps, result.ifp)


def test_settle_plateaus_that_hit_the_cap_are_reported_not_settled():
    """A cap of one window (40 steps here) leaves no room to settle where I(x; z) is still rising: those
    plateaus are recorded as not settled, with their rise above the tolerance and steps = cap."""
    torch.manual_seed(1)
    result = AN.annealing_test(linear_vae(), line_data(20.0), 800, lr=0.1, schedule=AN.SETTLE, mi_every=10,
                               settle_window=40, settle_tol=1e-4)
    capped = [p for p in result.plateaus if not p["settled"]]
    assert capped and all(p["steps"] == 40 and p["rise"] > 1e-4 for p in capped)
    assert len(result.betas) == sum(p["steps"] for p in result.plateaus)
    with pytest.raises(ValueError, match="settle_window=50 exceeds the plateau cap"):
        AN.annealing_test(linear_vae(), line_data(20.0), 800, schedule=AN.SETTLE, mi_every=10, settle_window=50)
    with pytest.raises(ValueError, match="annealing_test: need beta_high >= beta_low > 0"):
        AN.annealing_test(linear_vae(), line_data(20.0), 800, schedule=AN.SETTLE, mi_every=10, settle_window=40,
                          beta_low=0.0)
    with pytest.raises(ValueError, match="multiple of mi_every"):
        AN.annealing_test(linear_vae(), line_data(20.0), 800, schedule=AN.SETTLE, mi_every=10, settle_window=35)


def test_stop_after_freeze_ends_the_settle_run_on_the_crossing_plateau():
    torch.manual_seed(1)
    full = AN.annealing_test(linear_vae(), line_data(20.0), 2000, lr=0.1, schedule=AN.SETTLE, mi_every=10,
                             settle_window=20)
    torch.manual_seed(1)
    cut = AN.annealing_test(linear_vae(), line_data(20.0), 2000, lr=0.1, schedule=AN.SETTLE, mi_every=10,
                            settle_window=20, stop_after_freeze=True)
    assert cut.ifp == full.ifp and cut.ifp_step == full.ifp_step == cut.mi_steps[-1]
    assert cut.plateaus == full.plateaus[:len(cut.plateaus)] and len(cut.plateaus) < 20


class TwoLines:
    """Ground truth with two 16-valued factors moving x along orthogonal directions; factor 0
    spans variance 80, factor 1 variance 20 (so its IFP is about 4 times smaller)."""
    factor_names = ("big", "small")
    factor_sizes = (16, 16)
    num_factors = 2
    observation_shape = (4,)

    def sample_factors(self, n, rng):
        return np.stack([rng.randint(0, s, n) for s in self.factor_sizes], 1)

    def sample_observations_from_factors(self, factors, rng):
        grid = (np.arange(16) - 7.5) / np.std(np.arange(16))
        u0, u1 = np.array([1, 1, -1, 1]) / 2, np.array([1, -1, 0, 0]) / math.sqrt(2)
        x = np.sqrt(80) * grid[factors[:, 0], None] * u0 + np.sqrt(20) * grid[factors[:, 1], None] * u1
        return x.astype(np.float32)


def test_enumerate_factor_and_per_factor_distributions():
    gt, rng = TwoLines(), np.random.RandomState(0)
    obs = AN.enumerate_factor(gt, 1, rng)
    assert obs.shape == (16, 4)
    assert np.allclose(np.diff(obs @ (np.array([1, 1, -1, 1]) / 2)), 0, atol=1e-5)  # factor 0 fixed
    with pytest.raises(ValueError, match="factor_index"):
        AN.enumerate_factor(gt, 2, rng)
    torch.manual_seed(0)
    runs = AN.factor_annealing_runs(gt, linear_vae, 800, 2, rng, lr=0.1, mi_every=10)
    dist = {name: [r.ifp for r in results] for name, results in runs.items()}
    assert set(dist) == {"big", "small"} and all(len(v) == 2 for v in dist.values())
    assert min(dist["big"]) > max(dist["small"]), dist


def test_plots_are_written(tmp_path):
    result = AN.AnnealingResult(betas=[100.0, 10.0, 1.0], kl=[0.0, 0.5, 2.0], mi_steps=[0, 1, 2],
                                mi=[0.0, 0.4, 1.5], ifp=20.0, ifp_step=1)
    AN.plot_annealing(result, tmp_path / "a.png")
    plateau = AN.AnnealingResult(betas=[100.0] * 4 + [10.0] * 4, kl=[0.0] * 8, mi_steps=[3, 7], mi=[0.0, 0.0],
                                 ifp_points=[0, 1])  # plateaus, nothing crossed: no IFP line
    AN.plot_annealing(plateau, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
    AN.plot_ifp_histograms({"big": [40.0, 50.0, None], "small": [10.0]}, tmp_path / "h.png")
    assert (tmp_path / "a.png").stat().st_size > 1000 and (tmp_path / "h.png").stat().st_size > 1000


def test_ifp_rule_refuses_a_threshold_at_or_below_the_collapse_level():
    """threshold <= collapse let one value count as collapsed and crossed at once; the crossing was
    then interpolated from the value before it (extrapolating) or, at index 0, from the last one."""
    betas = [100.0, 50.0, 25.0]
    for threshold, collapse in ((0.0, 0.01), (0.01, 0.01), (float("nan"), 0.01), (0.1, -0.5), (0.1, float("nan"))):
        with pytest.raises(ValueError, match="information_freezing_point: need finite 0 <= collapse < threshold"):
            AN.information_freezing_point(betas, [0.005, 0.5, 1.0], threshold, collapse)
    with pytest.raises(ValueError, match="2 betas for 3 I"):
        AN.information_freezing_point(betas[:2], [0.5, 0.0, 0.2])


@pytest.mark.parametrize("kw, match", [
    (dict(beta_high=1.0, beta_low=200.0), "beta_high >= beta_low > 0"),
    (dict(beta_low=0.0), "beta_high >= beta_low > 0"),
    (dict(beta_high=float("nan")), "beta_high >= beta_low > 0"),
    (dict(threshold=0.0), "collapse < threshold"),
    (dict(threshold=float("nan")), "collapse < threshold"),
    (dict(schedule="staircase", levels=11), r"levels=11, expected 1 <= levels <= steps=10"),
    (dict(schedule="staircase", levels=0), r"levels=0"),
    (dict(schedule=AN.SETTLE, levels=2, settle_window=2, settle_tol=float("nan")), "settle_tol=nan"),
    (dict(lr=0.0), "lr=0.0"),
    (dict(lr=float("inf")), "lr=inf"),
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(mi_points=0), "mi_points must be >= 1"),
])
def test_annealing_test_refuses_bad_settings_before_training(kw, match):
    model = linear_vae()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        AN.annealing_test(model, line_data(20.0), 10, **kw)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # not a single step taken


def test_annealing_test_refuses_a_single_observation():
    with pytest.raises(ValueError, match="data has 1 observation"):
        AN.annealing_test(linear_vae(), line_data(20.0)[:1], 10)


def test_factor_annealing_runs_refuses_bad_factors_and_repeats_before_training():
    gt, made = TwoLines(), []

    def make():
        made.append(1)
        return linear_vae()

    for factors, repeats, match in (([0, 0], 1, "distinct"), ([0, 2], 1, "distinct indices in"), ([-1], 1, "factors=.-1."),
                                    (None, 0, "repeats must be >= 1")):
        with pytest.raises(ValueError, match=match):
            AN.factor_annealing_runs(gt, make, 10, repeats, np.random.RandomState(0), factors)
    assert not made  # refused before any model was built
