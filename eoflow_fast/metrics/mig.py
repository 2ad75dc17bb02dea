"""Mutual Information Gap (Chen et al. 2018), as disentanglement_lib's ``mig.py``.

With m = MI matrix (d, F) of the 20-bin discretised codes against the factors and H_j the entropy
of factor j (both in nats, ``discrete_mi.mutual_info_matrix``):

    MIG = mean_j ( m_(1),j - m_(2),j ) / H_j

where m_(1),j >= m_(2),j are the two largest entries of column j over latents.
disentanglement_lib names the score ``discrete_mig``; here it is ``mig``.
Defaults (gin ``mig``): num_train = 10,000, batch_size = 16, 20 bins.
"""
from __future__ import annotations

import numpy as np

from ._common import check_code_shape, check_factors, sample_codes_factors
from .discrete_mi import mutual_info_matrix
from .discretize import NUM_BINS

NUM_TRAIN = 10_000
BATCH_SIZE = 16


def mig_from_mi(mi: np.ndarray, factor_entropy: np.ndarray) -> np.ndarray:
    """Per-factor gap (F,): (largest - second largest MI over latents) / H_j. Needs d >= 2."""
    if mi.shape[0] < 2:
        raise ValueError(f"mig: needs at least 2 latents, got mi matrix of shape {mi.shape}")
    top = np.sort(mi, axis=0)[::-1]
    return (top[0] - top[1]) / factor_entropy


def mig(codes, factors, num_bins: int = NUM_BINS, device=None) -> dict:
    """MIG of codes (N, d) against integer factors (N, F).

    Returns {"mig": float, "mig_per_factor": (F,), "mi_matrix": (d, F), "factor_entropy": (F,)}.
    ``device`` picks where the MI matrix is computed (default: the codes' device, CPU for numpy).
    """
    n, _ = check_code_shape("mig", "codes", codes)
    factors = check_factors("mig", "factors", factors, n, varying=True)
    mi, entropy = mutual_info_matrix(codes, factors, num_bins, device)
    per_factor = mig_from_mi(mi, entropy)
    return {"mig": float(np.mean(per_factor)), "mig_per_factor": per_factor,
            "mi_matrix": mi, "factor_entropy": entropy}


def compute_mig(ground_truth_data, representation_fn, rng, num_train: int = NUM_TRAIN,
                batch_size: int = BATCH_SIZE, num_bins: int = NUM_BINS) -> dict:
    """Dataset-level MIG: ``num_train`` points drawn as disentanglement_lib does, then ``mig``."""
    codes, factors = sample_codes_factors(ground_truth_data, representation_fn, num_train, rng, batch_size)
    return mig(codes, factors, num_bins)
