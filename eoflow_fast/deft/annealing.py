"""DEFT's annealing test and information freezing point (IFP) ([PAPER] §4.1, §5.3, §5.5).

A beta-VAE, loss = recon + beta_t KL, is trained on a dataset X of N observations while beta_t
anneals from ``beta_high`` to ``beta_low``. Tracked every step:
- the KL proxy  KL_t = sum_k mean_b KL(q(z_k|x_b) || N(0, 1))  >= I(x; z) (the step's minibatch);
- every ``mi_every`` steps, the exact dataset estimate:
      I(x; z) = (1/N) sum_n [ log q(z_n|x_n) - log (1/N) sum_m q(z_n|x_m) ],  z_n ~ q(z|x_n),
  (``mi_samples`` draws of z per point; see ``dataset_mutual_information``) computed by
  ``ops.tc_decomposition``; data sets larger than ``mi_points`` use a fixed random subset of
  ``mi_points`` observations.
The IFP is the first beta at which I(x; z) exceeds ``threshold`` (0.1 nats) after the high beta has
collapsed it to ``collapse`` (0.01 nats) or below [INFERRED: the random initialisation carries
information before the first collapse], interpolated linearly in log beta between the two bracketing
measurements.

beta schedules (t in [0, T - 1], s = t / (T - 1)):
    loglinear (default, [INFERRED] vae_deft.md §B.3): beta = exp((1 - s) log beta_high + s log beta_low)
    linear    (authors' ``dlib_annealing``):          beta = max((1 - s) beta_high, beta_low)
    exp       (authors' ``examples/IFP.py``, g = 10): beta = (beta_high - beta_low) exp(-g s) + beta_low
    staircase ([INFERRED]): ``levels`` log-spaced betas from beta_high to beta_low, each held for
              T / levels steps (level i = floor(levels t / T)). I(x; z) is also measured on the
              last step of every plateau, and the IFP uses only those plateau-end values, so it
              reads the (settled) I(x; z) at each beta instead of a value lagging behind a moving
              beta: with plateaus long enough to settle, the IFP no longer depends on T, up to the
              plateau spacing (a factor (beta_high / beta_low)^(1 / (levels - 1))).
    settle    ([INFERRED], ``SETTLE``): the staircase's betas, but each plateau lasts until I(x; z)
              has settled: it ends at the first measurement (every ``mi_every`` steps, from
              ``settle_window`` steps into the plateau) where the rise over the last
              ``settle_window`` steps,
                  rise = mean(I over the window's second half) - mean(I over its first half),
              is <= ``settle_tol`` nats, or at the cap of T / levels steps (T = ``steps`` is then
              the most steps the run may take). Each plateau's steps, rise and whether it settled
              (False: it hit the cap) are recorded; the IFP reads plateau ends as for the staircase.
              A collapsed plateau (I = 0) settles after one window: an escape from the collapsed
              state that has not started within the window is not seen.

Per-factor IFP distributions (§5.3): draw a random base factor vector, enumerate every value of
factor i with the others fixed, run the test on those ``factor_sizes[i]`` images, record the IFP;
repeat ``repeats`` times (50 in the paper).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from eoflow_fast import ops, progress
from eoflow_fast.vae.likelihoods import gaussian_kl_per_dim
from eoflow_fast.vae.objectives import VAE

SCHEDULES = ("loglinear", "linear", "exp", "staircase")  # beta a function of the step
SETTLE = "settle"  # plateaus of the staircase's betas, each as long as I(x; z) takes to settle
LEVELS = 20
SETTLE_WINDOW = 200  # steps; dSprites seeds 0 / 1: IFP 179 / 175 at 200, 162 / 142 at 100 (an escape at beta 151 missed)
SETTLE_TOL = 0.005  # nats, 5% of the IFP threshold; at 0.02 the dSprites IFP moved 1.26x between windows 100 and 200, at 0.005 1.10x
THRESHOLD = 0.1  # nats: the IFP is the first beta with I(x; z) above this ...
COLLAPSE = 0.01  # nats: ... after I(x; z) has fallen to this or below


def staircase_level(step: int, total_steps: int, levels: int = LEVELS) -> int:
    """The plateau index (0 .. levels - 1) of ``step`` in the staircase schedule."""
    if not 1 <= levels <= total_steps:
        raise ValueError(f"staircase: levels={levels}, expected 1 <= levels <= total_steps={total_steps}")
    return min(max(step * levels // total_steps, 0), levels - 1)


def _check_betas(caller: str, beta_high: float, beta_low: float) -> None:
    if not beta_high >= beta_low > 0:
        raise ValueError(f"{caller}: need beta_high >= beta_low > 0, got {beta_high}, {beta_low}")


def _check_crossing(caller: str, threshold: float, collapse: float) -> None:
    """The IFP rule needs 0 <= collapse < threshold: with threshold <= collapse a measurement can
    count as collapsed and as crossed at once, and the crossing is then interpolated from a value
    before the collapse (or, at index 0, from the last one)."""
    if not (math.isfinite(threshold) and math.isfinite(collapse) and 0 <= collapse < threshold):
        raise ValueError(f"{caller}: need finite 0 <= collapse < threshold, got collapse={collapse}, "
                         f"threshold={threshold}")


def level_beta(level: int, levels: int, beta_high: float, beta_low: float) -> float:
    """beta of plateau ``level`` (0 .. levels - 1): log-spaced from beta_high to beta_low."""
    _check_betas("level_beta", beta_high, beta_low)
    w = level / max(levels - 1, 1)
    return math.exp((1 - w) * math.log(beta_high) + w * math.log(beta_low))


def beta_schedule(step: int, total_steps: int, beta_high: float = 200.0, beta_low: float = 1.0,
                  kind: str = "loglinear", decay: float = 10.0, levels: int = LEVELS) -> float:
    if kind not in SCHEDULES:
        raise ValueError(f"beta_schedule: kind={kind!r}; expected one of {SCHEDULES}")
    _check_betas("beta_schedule", beta_high, beta_low)
    if kind == "staircase":
        return level_beta(staircase_level(step, total_steps, levels), levels, beta_high, beta_low)
    s = min(max(step / max(total_steps - 1, 1), 0.0), 1.0)
    if kind == "loglinear":
        return math.exp((1 - s) * math.log(beta_high) + s * math.log(beta_low))
    if kind == "linear":
        return max((1 - s) * beta_high, beta_low)
    return (beta_high - beta_low) * math.exp(-decay * s) + beta_low


@dataclass
class AnnealingResult:
    betas: list[float] = field(default_factory=list)       # beta_t at every step
    kl: list[float] = field(default_factory=list)          # KL proxy at every step
    mi_steps: list[int] = field(default_factory=list)      # steps where I(x; z) was estimated
    mi: list[float] = field(default_factory=list)          # exact-dataset I(x; z) at those steps
    ifp_points: list[int] = field(default_factory=list)   # indices into mi used by the IFP (staircase, settle: plateau ends)
    plateaus: list[dict] = field(default_factory=list)     # settle: per plateau beta, start, steps, rise, settled
    ifp: float | None = None                               # None: I(x; z) never exceeded the threshold
    ifp_step: int | None = None


@torch.no_grad()
def dataset_mutual_information(model: VAE, data: torch.Tensor, samples: int = 8, batch_size: int = 256) -> float:
    """I(x; z) over the whole of ``data`` (N, ...) with the exact aggregate posterior
    q(z) = (1/N) sum_m q(z|x_m), averaged over ``samples`` draws z ~ q(z|x_n) per point:

        I = (1/(S N)) sum_{s, n} [ log q(z_sn|x_n) - log (1/N) sum_m q(z_sn|x_m) ]

    Computed by ``ops.tc_decomposition`` (MWS) on the S N rows (mu, logvar repeated S times, so the
    batch mixture is q(z)); MWS weighs the batch mixture by 1/(B^2) at dataset_size = B = S N,
    so I = mi_mws - log(S N)."""
    if samples < 1:
        raise ValueError(f"dataset_mutual_information: samples must be >= 1, got {samples}")
    mus, logvars = zip(*(model.encode(chunk) for chunk in data.split(batch_size)))
    mu, logvar = torch.cat(mus).repeat(samples, 1), torch.cat(logvars).repeat(samples, 1)
    z = model.sample(mu, logvar)
    mi, _, _ = ops.tc_decomposition(z, mu, logvar, z.shape[0], estimator="mws")
    return float(mi) - math.log(z.shape[0])


def information_freezing_point(betas: list[float], mi: list[float], threshold: float = THRESHOLD,
                               collapse: float = COLLAPSE):
    """First upward crossing of ``threshold`` by ``mi`` along ``betas``, after ``mi`` has first
    fallen to ``collapse`` or below (a freshly initialised encoder carries information until the
    high beta collapses it). Returns (beta, index) with beta interpolated linearly in log beta between the
    bracketing measurements, or (None, None) if there is no such crossing."""
    _check_crossing("information_freezing_point", threshold, collapse)
    if len(betas) != len(mi):
        raise ValueError(f"information_freezing_point: {len(betas)} betas for {len(mi)} I(x; z) values; "
                         "expected one beta per value")
    collapsed = False
    for i, value in enumerate(mi):
        collapsed = collapsed or value <= collapse
        if collapsed and value > threshold:
            lo, hi = mi[i - 1], value
            w = (threshold - lo) / (hi - lo)
            log_beta = (1 - w) * math.log(betas[i - 1]) + w * math.log(betas[i])
            return math.exp(log_beta), i
    return None, None


def settle_rise(values: list[float]) -> float:
    """Rise of I(x; z) over a settle window: mean of the window's second half of measurements minus
    the mean of its first half (the middle one of an odd count is left out)."""
    if len(values) < 2:
        raise ValueError(f"settle_rise: need >= 2 measurements in the window, got {len(values)}")
    half = len(values) // 2
    return sum(values[-half:]) / half - sum(values[:half]) / half


def _train_step(model: VAE, opt, data: torch.Tensor, beta: float, batch_size: int, generator) -> torch.Tensor:
    """One Adam step on loss recon + beta KL over a minibatch (all of ``data`` when N <= batch_size);
    returns the minibatch KL proxy (a device scalar)."""
    n = data.shape[0]
    x = data if n <= batch_size else data[torch.randint(n, (batch_size,), generator=generator).to(data.device)]
    out, mu, logvar, _ = model(x)
    kl = gaussian_kl_per_dim(mu, logvar).sum()
    loss = model.reconstruction_loss(out, x) + beta * kl
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return kl.detach()


def annealing_test(model: VAE, data: torch.Tensor, steps: int, *, beta_high: float = 200.0,
                   beta_low: float = 1.0, schedule: str = "loglinear", lr: float = 5e-4,
                   batch_size: int = 64, mi_every: int = 1, mi_samples: int = 8, mi_points: int = 512,
                   threshold: float = THRESHOLD, collapse: float = COLLAPSE, stop_after_freeze: bool = False,
                   generator: torch.Generator | None = None, levels: int = LEVELS,
                   settle_window: int = SETTLE_WINDOW, settle_tol: float = SETTLE_TOL) -> AnnealingResult:
    """Run the annealing test on ``data`` (N, ...), a tensor on the model's device.

    Each step trains ``model`` (any ``VAE``: its encode/decode/reconstruction; its own
    regulariser is not used) with Adam(lr) on a minibatch (all of ``data`` when N <= batch_size)
    and loss recon + beta_t KL. With ``stop_after_freeze`` the run ends at the freezing point.
    The staircase schedule (``levels`` plateaus) adds a measurement at every plateau end and takes
    the IFP from those alone; the settle schedule (``SETTLE``) ends each plateau once I(x; z) has
    settled (``settle_window``, ``settle_tol``; see the module docstring) or after steps / levels.
    """
    if steps < 2:
        raise ValueError(f"annealing_test: steps must be >= 2, got {steps}")
    if mi_every < 1:
        raise ValueError(f"annealing_test: mi_every must be >= 1, got {mi_every}")
    if schedule not in (*SCHEDULES, SETTLE):
        raise ValueError(f"annealing_test: schedule={schedule!r}; expected one of {(*SCHEDULES, SETTLE)}")
    # every setting is checked before the first step: a bad one fails at once, not after training
    _check_betas("annealing_test", beta_high, beta_low)
    _check_crossing("annealing_test", threshold, collapse)
    if schedule in ("staircase", SETTLE) and not 1 <= levels <= steps:
        raise ValueError(f"annealing_test: levels={levels}, expected 1 <= levels <= steps={steps}")
    if schedule == SETTLE and not (math.isfinite(settle_tol) and settle_tol >= 0):
        raise ValueError(f"annealing_test: settle_tol={settle_tol}, expected a finite number >= 0 (nats)")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"annealing_test: lr={lr}, expected a finite number > 0")
    for name, value in (("batch_size", batch_size), ("mi_samples", mi_samples), ("mi_points", mi_points)):
        if value < 1:
            raise ValueError(f"annealing_test: {name} must be >= 1, got {value}")
    if data.shape[0] < 2:
        raise ValueError(f"annealing_test: data has {data.shape[0]} observation(s); expected >= 2 "
                         "(I(x; z) of a single observation is 0 whatever the encoder)")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = data.shape[0]
    probe = data if n <= mi_points else data[torch.randperm(n, generator=generator)[:mi_points].to(data.device)]
    res = AnnealingResult()
    kls = []  # device scalars, read back once at the end (no host sync per step)
    collapsed = False

    def measure(step: int) -> None:
        res.mi_steps.append(step)
        res.mi.append(dataset_mutual_information(model, probe, mi_samples))

    def ifp_point() -> bool:
        """Marks the last measurement as read by the IFP; True when the run is to stop there."""
        nonlocal collapsed
        res.ifp_points.append(len(res.mi) - 1)
        collapsed = collapsed or res.mi[-1] <= collapse
        return stop_after_freeze and collapsed and res.mi[-1] > threshold

    def train(beta: float) -> None:
        res.betas.append(beta)
        kls.append(_train_step(model, opt, data, beta, batch_size, generator))

    if schedule == SETTLE:
        _settle_plateaus(res, train, measure, ifp_point, steps // levels, levels, beta_high, beta_low, mi_every,
                         settle_window, settle_tol)
    else:
        stairs = schedule == "staircase"
        for step in progress.bar(range(steps), "annealing steps", unit="step", max_lines=5):
            train(beta_schedule(step, steps, beta_high, beta_low, schedule, levels=levels))
            plateau_end = stairs and (step == steps - 1 or staircase_level(step + 1, steps, levels) != staircase_level(step, steps, levels))
            if step % mi_every == 0 or step == steps - 1 or plateau_end:
                measure(step)
                if (plateau_end or not stairs) and ifp_point():
                    break
    res.kl = torch.stack(kls).tolist()
    points = res.ifp_points
    ifp, idx = information_freezing_point([res.betas[res.mi_steps[i]] for i in points], [res.mi[i] for i in points],
                                          threshold, collapse)
    res.ifp, res.ifp_step = ifp, (res.mi_steps[points[idx]] if idx is not None else None)
    return res


def _settle_plateaus(res: AnnealingResult, train, measure, ifp_point, cap: int, levels: int, beta_high: float, beta_low: float,
                     mi_every: int, window: int, tol: float) -> None:
    """The settle schedule: plateau ``level`` holds ``level_beta`` until ``settle_rise`` of the
    measurements in the last ``window`` steps is <= ``tol`` (checked from ``window`` steps in) or
    for ``cap`` steps; appends each plateau's record to ``res.plateaus``. ``train(beta)`` takes one
    step, ``measure(step)`` estimates I(x; z), ``ifp_point()`` marks the last estimate as a plateau
    end and says whether to stop."""
    if window < 2 * mi_every or window % mi_every:
        raise ValueError(f"annealing_test: settle_window={window} must be a multiple of mi_every={mi_every} "
                         f"holding at least 2 measurements")
    if window > cap:
        raise ValueError(f"annealing_test: settle_window={window} exceeds the plateau cap steps // levels = {cap}")
    step = 0
    for level in progress.bar(range(levels), "settle plateaus", unit="plateau", max_lines=5):
        beta, start, grid, rise, settled = level_beta(level, levels, beta_high, beta_low), step, [], None, False
        for r in range(1, cap + 1):
            train(beta)
            step += 1
            if r % mi_every and r < cap:
                continue
            if r % mi_every == 0:
                measure(step - 1)
                grid.append(res.mi[-1])
                if r >= window:
                    rise = settle_rise(grid[-(window // mi_every):])
                    settled = rise <= tol
            if settled or r == cap:
                if res.mi_steps[-1] != step - 1:  # the cap, off the mi_every grid
                    measure(step - 1)
                break
        res.plateaus.append({"beta": beta, "start": start, "steps": step - start, "rise": rise, "settled": settled})
        if ifp_point():
            return


def enumerate_factor(ground_truth, factor_index: int, rng: np.random.RandomState) -> np.ndarray:
    """Observations (factor_sizes[i], *observation_shape): one random base factor vector with
    factor ``factor_index`` set to each of its values in turn."""
    if not 0 <= factor_index < ground_truth.num_factors:
        raise ValueError(f"enumerate_factor: factor_index={factor_index}, the data has "
                         f"{ground_truth.num_factors} factors")
    size = ground_truth.factor_sizes[factor_index]
    factors = np.repeat(ground_truth.sample_factors(1, rng), size, axis=0)
    factors[:, factor_index] = np.arange(size)
    return ground_truth.sample_observations_from_factors(factors, rng)


def factor_annealing_runs(ground_truth, make_model: Callable[[], VAE], steps: int, repeats: int,
                          rng: np.random.RandomState, factors: list[int] | None = None,
                          device: str | torch.device = "cpu", done: dict | None = None,
                          on_result: Callable[[int, int, AnnealingResult], None] | None = None,
                          **test_kw) -> dict[str, list[AnnealingResult]]:
    """{factor name: [AnnealingResult of each repeat]}; each repeat trains a fresh ``make_model()``
    on one enumerated factor (``enumerate_factor``). The IFP distribution of a factor is
    ``[r.ifp for r in runs[name]]`` (None where the test never froze).

    Test (factor i, repeat r) draws its base sample and its model's initial weights from its own
    seed (SeedSequence([one draw of ``rng``, i, r])), so a test gives the same result whichever
    tests ran before and whatever ``repeats`` and ``factors`` are:
    ``done`` = {(i, r): AnnealingResult} of tests finished earlier (an interrupted run) are reused,
    not rerun, and ``on_result(i, r, result)`` is called after each new test (to save it)."""
    chosen = list(factors if factors is not None else range(ground_truth.num_factors))
    if repeats < 1:
        raise ValueError(f"factor_annealing_runs: repeats must be >= 1, got {repeats}")
    bad = [i for i in chosen if not 0 <= i < ground_truth.num_factors]
    if bad or len(set(chosen)) != len(chosen):
        raise ValueError(f"factor_annealing_runs: factors={chosen}, expected distinct indices in "
                         f"[0, {ground_truth.num_factors}) ({', '.join(ground_truth.factor_names)})")
    base = int(rng.randint(0, 2**31 - 1))
    done = dict(done or {})
    out: dict[str, list[AnnealingResult]] = {ground_truth.factor_names[i]: [] for i in chosen}
    todo = [(i, r) for i in chosen for r in range(repeats)]
    for i, r in progress.bar(todo, "ifp: factor x repeat", unit="run"):
        if (i, r) not in done:
            seed = int(np.random.SeedSequence([base, i, r]).generate_state(1)[0] & 0x7FFFFFFF)
            data = torch.as_tensor(enumerate_factor(ground_truth, i, np.random.RandomState(seed)),
                                   dtype=torch.float32, device=device)
            torch.manual_seed(seed)
            done[(i, r)] = annealing_test(make_model().to(device), data, steps, **test_kw)
            if on_result is not None:
                on_result(i, r, done[(i, r)])
        out[ground_truth.factor_names[i]].append(done[(i, r)])
    return out


def plot_annealing(result: AnnealingResult, path: str, threshold: float = THRESHOLD) -> None:
    """Against the training step: I(x; z), the KL proxy and the threshold (left axis, nats) and
    beta_t (right axis, log), the IFP marked at its step. Steps, not beta, on the x axis: plateau
    schedules (staircase, settle) hold beta for many steps, which a beta axis stacks into one line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.6))
    steps = np.arange(len(result.betas))
    ax.plot(steps, result.kl, lw=0.8, alpha=0.5, color="C0", label="KL proxy (minibatch)")
    ax.plot(result.mi_steps, result.mi, lw=1.2, color="C1", label="I(x; z) (MWS, dataset)")
    if 0 < len(result.ifp_points) < len(result.mi):  # plateau schedules: the IFP reads plateau ends only
        ax.plot([result.mi_steps[i] for i in result.ifp_points], [result.mi[i] for i in result.ifp_points], "o",
                ms=3, color="C1", label="I(x; z) read at plateau ends")
    ax.axhline(threshold, color="grey", ls=":", lw=0.8, label=f"threshold {threshold:g} nats")
    if result.ifp_step is not None:
        ax.axvline(result.ifp_step, color="red", ls="--", lw=0.8, label=f"IFP: beta = {result.ifp:.3g}")
    ax.set_xlabel("step")
    ax.set_ylabel("nats")
    beta_ax = ax.twinx()
    beta_ax.plot(steps, result.betas, lw=1.0, color="k", alpha=0.7, label="beta")
    beta_ax.set_yscale("log")
    beta_ax.set_ylabel("beta (log)")
    handles = ax.get_legend_handles_labels()[0] + beta_ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    if result.ifp is None:
        ax.set_title("I(x; z) never crossed the threshold: no IFP", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ifp_histograms(distributions: dict[str, list], path: str) -> None:
    """One histogram of log10 IFP per factor (repeats that never froze are left out); when no
    repeat of any factor froze the figure says so instead of drawing empty axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if not any(v is not None for values in distributions.values() for v in values):
        runs = sum(len(values) for values in distributions.values())
        ax.text(0.5, 0.5, f"no factor froze\n(0 of {runs} runs of {', '.join(distributions)})",
                ha="center", va="center", transform=ax.transAxes, wrap=True)
        ax.set_axis_off()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return
    for name, values in distributions.items():
        finite = [v for v in values if v is not None]
        label = f"{name} ({len(finite)}/{len(values)} froze)"
        if finite:
            ax.hist(np.log10(finite), bins=20, alpha=0.5, label=label)
        else:
            ax.plot([], [], " ", label=label)
    ax.set_xlabel("log10 IFP (beta)")
    ax.set_ylabel("count")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
