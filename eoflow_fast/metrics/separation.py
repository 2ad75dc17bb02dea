"""Latent separation index from FVH-LT / DBSR-LS associations (placeholder for LSDI / LSSI, vae_deft.md §A.8).

[INFERRED] The bfVAE paper's LSDI (v1) / LSSI (v2) formula is not public. This is the project's
placeholder, which is 0 in the two documented zero cases; do not report it as "LSDI" or "LSSI".
For a non-negative association A (d, p) restricted to the m informative dims:

    m <= 1                          -> index 0
    P_kj = A_kj / sum_k A_kj                     (a feature with no association gets P uniform)
    s_j  = 1 - H(P_.j) / log m                   (feature specificity)
    q_k  = (1/p) sum_j P_kj,   b = H(q) / log m  (dimension balance; 0 when one dim owns every feature)
    index = b * (1/p) sum_j s_j   in [0, 1]

It is 1 when every feature is owned by exactly one dim and ownership is spread evenly.
``combined_association`` forms the association from both tools as the mean of FVH-LT variances and
|DBSR-LS coefficients|, each divided by its total [INFERRED].
"""
from __future__ import annotations

import numpy as np

from ._common import check_finite


def _entropy(p: np.ndarray, axis: int) -> np.ndarray:
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)


def combined_association(fvh_variance=None, dbsr_theta=None) -> np.ndarray:
    """Mean of the given association matrices (d, p), each made non-negative and divided by its total."""
    given = (("fvh_variance", fvh_variance), ("dbsr_theta", dbsr_theta))
    named = [(n, np.asarray(m, dtype=np.float64)) for n, m in given if m is not None]
    for name, m in named:
        check_finite("combined_association", name, m)
    parts = [np.abs(m) for _, m in named]
    if not parts:
        raise ValueError("combined_association: give fvh_variance and/or dbsr_theta")
    if any(p.shape != parts[0].shape for p in parts):
        raise ValueError(f"combined_association: shapes differ: {[p.shape for p in parts]}")
    return np.mean([p / p.sum() if p.sum() > 0 else p for p in parts], axis=0)


def separation_index(association, informative=None) -> dict:
    """Separation index of an association (d, p) over the informative dims (mask (d,), default all).

    Returns {"separation_index", "feature_specificity" (p,), "dimension_balance", "num_informative"}.
    """
    association = np.asarray(association, dtype=np.float64)
    if association.ndim != 2:
        raise ValueError(f"separation_index: association must have shape (d, p), got {association.shape}")
    check_finite("separation_index", "association", association)
    if np.any(association < 0):
        raise ValueError("separation_index: association must be non-negative")
    mask = np.ones(association.shape[0], dtype=bool) if informative is None else np.asarray(informative, dtype=bool)
    if mask.shape != (association.shape[0],):
        raise ValueError(f"separation_index: informative must have shape ({association.shape[0]},), got {mask.shape}")
    a = association[mask]
    m, p = a.shape
    if m <= 1:
        return {"separation_index": 0.0, "feature_specificity": np.zeros(p), "dimension_balance": 0.0,
                "num_informative": int(m)}
    totals = a.sum(axis=0, keepdims=True)
    share = np.where(totals > 0, a / np.where(totals > 0, totals, 1.0), 1.0 / m)
    specificity = 1.0 - _entropy(share, axis=0) / np.log(m)
    balance = float(_entropy(share.mean(axis=1), axis=0) / np.log(m))
    return {"separation_index": float(balance * specificity.mean()), "feature_specificity": specificity,
            "dimension_balance": balance, "num_informative": int(m)}
