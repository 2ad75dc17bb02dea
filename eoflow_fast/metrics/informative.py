"""Per-dimension KL, the informative-dimension rule and its false discovery rate (vae_deft.md §A.4).

[INFERRED] The bfVAE paper's definitions are not public; these are the project's definitions.

    KL_k = (1/N) sum_n 1/2 (mu_nk^2 + sigma_nk^2 - log sigma_nk^2 - 1)        (nats; q(z|x) vs N(0, I))
    dimension k is informative  iff  KL_k > tau                                (tau = 0.1 nats)

False discovery rate of the flagged set against q known factors:
  * without an association matrix: FDR = max(0, #flagged - q) / max(#flagged, 1);
  * with an association A (d, q) >= 0 between latents and true factors (default in the dataset
    wrapper: |Pearson correlation| of mu_k with factor j): flagged dims are matched one-to-one to
    factors greedily by decreasing A; a flagged dim is a true discovery iff it is matched to a
    factor with A >= min_association (0.5 [INFERRED]); FDR = #false / max(#flagged, 1).
"""
from __future__ import annotations

import numpy as np

from ._common import check_codes, check_factors, check_number
from .alignment import greedy_match

THRESHOLD = 0.1
MIN_ASSOCIATION = 0.5
NUM_POINTS = 10_000


def per_dimension_kl(mu, logvar) -> np.ndarray:
    """KL_k (d,) averaged over N points, from encoder means and log-variances, both (N, d)."""
    mu = check_codes("per_dimension_kl", "mu", mu).astype(np.float64)
    logvar = check_codes("per_dimension_kl", "logvar", logvar).astype(np.float64)
    if mu.shape != logvar.shape:
        raise ValueError(f"per_dimension_kl: logvar has shape {logvar.shape}, mu has shape {mu.shape}")
    return np.mean(0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1.0), axis=0)


def informative_dimensions(kl, threshold: float = THRESHOLD) -> np.ndarray:
    """Boolean mask (d,): KL_k > threshold. ``kl`` must be 1-D and finite (NaN > threshold is False:
    a NaN KL would read as an uninformative dimension)."""
    kl = np.asarray(kl)
    if kl.ndim != 1 or not np.issubdtype(kl.dtype, np.number):
        raise ValueError(f"informative_dimensions: kl must be a 1-D numeric array (d,), got shape {kl.shape}, dtype {kl.dtype}")
    if not np.all(np.isfinite(kl)):
        raise ValueError(f"informative_dimensions: kl holds NaN or inf at dims {np.nonzero(~np.isfinite(kl))[0].tolist()}")
    return kl > check_number("informative", "threshold", threshold)


def false_discovery_rate(flagged, num_factors: int | None = None, association=None,
                         min_association: float = MIN_ASSOCIATION) -> dict:
    """FDR of a flagged mask (d,) against known factors (see the module docstring).

    Give ``num_factors`` q for the count-only rule, or ``association`` (d, q) for the matched rule.
    Returns {"fdr", "num_flagged", "num_false"}.
    """
    flagged = np.asarray(flagged, dtype=bool)
    num_flagged = int(flagged.sum())
    min_association = check_number("false_discovery_rate", "min_association", min_association, 0.0, 1.0)
    if association is None:
        if num_factors is None:
            raise ValueError("false_discovery_rate: give num_factors or association")
        num_false = max(0, num_flagged - int(num_factors))
    else:
        association = np.asarray(association, dtype=np.float64)
        if association.ndim != 2 or association.shape[0] != flagged.shape[0]:
            raise ValueError(f"false_discovery_rate: association must have shape ({flagged.shape[0]}, q), "
                             f"got {association.shape}")
        pairs = greedy_match(association, rows=np.flatnonzero(flagged))
        num_true = sum(association[r, c] >= min_association for r, c in pairs)
        num_false = num_flagged - int(num_true)
    return {"fdr": num_false / max(num_flagged, 1), "num_flagged": num_flagged, "num_false": num_false}


def abs_correlation(codes, factors) -> np.ndarray:
    """|Pearson correlation| (d, F) between code columns and factor columns; 0 for constant columns."""
    x = codes - codes.mean(axis=0)
    y = factors - factors.mean(axis=0)
    norm = np.sqrt((x * x).sum(axis=0))[:, None] * np.sqrt((y * y).sum(axis=0))[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.abs(x.T @ y) / norm
    return np.where(norm > 0, corr, 0.0)


def informative(mu, logvar, factors=None, threshold: float = THRESHOLD,
                min_association: float = MIN_ASSOCIATION) -> dict:
    """KL per dimension, the informative mask and (when factors (N, F), discrete or continuous, are
    given) the matched FDR.

    Returns {"kl_per_dim" (d,), "informative" (d,) bool, "num_informative", and with factors:
    "fdr", "num_false", "association" (d, F)}.
    """
    kl = per_dimension_kl(mu, logvar)
    mask = informative_dimensions(kl, threshold)
    out = {"kl_per_dim": kl, "informative": mask, "num_informative": int(mask.sum())}
    if factors is not None:
        mu = np.asarray(mu, dtype=np.float64)
        factors = check_factors("informative", "factors", factors, mu.shape[0], "mu", integer=False)
        association = abs_correlation(mu, factors)
        fdr = false_discovery_rate(mask, association=association, min_association=min_association)
        out.update({"fdr": fdr["fdr"], "num_false": fdr["num_false"], "association": association})
    return out


def compute_informative(ground_truth_data, representation_fn, rng, encoder_fn, num_points: int = NUM_POINTS,
                        threshold: float = THRESHOLD, min_association: float = MIN_ASSOCIATION) -> dict:
    """Dataset-level rule and FDR: ``encoder_fn(observations) -> (mu, logvar)`` on ``num_points`` draws.

    ``representation_fn`` is unused (the rule needs the variances too); it is accepted so every
    dataset-level wrapper has the same leading arguments.
    """
    factors, observations = ground_truth_data.sample(num_points, rng)
    encoded = [encoder_fn(observations[i:i + 256]) for i in range(0, num_points, 256)]
    mu = np.concatenate([np.asarray(m) for m, _ in encoded])
    logvar = np.concatenate([np.asarray(v) for _, v in encoded])
    return informative(mu, logvar, factors, threshold, min_association)
