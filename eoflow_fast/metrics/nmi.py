"""DEFT's normalised mutual information NMI(c_k, m), NMI1 and NMI2 (arXiv 2102.03986, eqs. 6-8).

From the same MI matrix m (d, F) and factor entropies H as MIG (20-bin discretised codes):

    NMI(c_k, r) = r-th largest of m[:, k] over latents, divided by H_k       (eq. 6)
    NMI1 = sum_k NMI(c_k, 1),   NMI2 = sum_k NMI(c_k, 2)                      (eq. 8)
    MIG  = mean_k [NMI(c_k, 1) - NMI(c_k, 2)]                                 (eq. 7)

[INFERRED] Eq. 8 writes sums over factors while the text says "mean"; both are returned, named
for what they are: ``nmi1_sum`` / ``nmi2_sum`` (eq. 8, per metrics.md §3; in [0, F]) and
``nmi1_mean`` / ``nmi2_mean`` (= sum / F, in [0, 1]). MIG (eq. 7) = nmi1_mean - nmi2_mean is the
``mig`` metric's score and is not repeated here. ``nmi_matrix`` = m / H (d, F) is the heat map.
"""
from __future__ import annotations

import numpy as np

from ._common import check_code_shape, check_factors, sample_codes_factors
from .discrete_mi import mutual_info_matrix
from .discretize import NUM_BINS
from .mig import BATCH_SIZE, NUM_TRAIN


def nmi_from_mi(mi: np.ndarray, factor_entropy: np.ndarray) -> dict:
    """NMI scores from an MI matrix (d, F) and factor entropies (F,); see the module docstring."""
    if mi.shape[0] < 2:
        raise ValueError(f"nmi: needs at least 2 latents, got mi matrix of shape {mi.shape}")
    nmi_matrix = mi / factor_entropy[None, :]
    top = np.sort(nmi_matrix, axis=0)[::-1]
    return {"nmi1_sum": float(top[0].sum()), "nmi1_mean": float(top[0].mean()),
            "nmi2_sum": float(top[1].sum()), "nmi2_mean": float(top[1].mean()),
            "nmi1_per_factor": top[0], "nmi2_per_factor": top[1], "nmi_matrix": nmi_matrix}


def nmi(codes, factors, num_bins: int = NUM_BINS, device=None) -> dict:
    """NMI1, NMI2 (sum and mean over factors), per-factor NMI(c_k, 1..2) and the NMI matrix (d, F)
    of codes (N, d) vs factors (N, F)."""
    n, _ = check_code_shape("nmi", "codes", codes)
    factors = check_factors("nmi", "factors", factors, n, varying=True)
    mi, entropy = mutual_info_matrix(codes, factors, num_bins, device)
    return nmi_from_mi(mi, entropy)


def compute_nmi(ground_truth_data, representation_fn, rng, num_train: int = NUM_TRAIN,
                batch_size: int = BATCH_SIZE, num_bins: int = NUM_BINS) -> dict:
    """Dataset-level NMI: ``num_train`` points drawn as for MIG, then ``nmi``."""
    codes, factors = sample_codes_factors(ground_truth_data, representation_fn, num_train, rng, batch_size)
    return nmi(codes, factors, num_bins)
