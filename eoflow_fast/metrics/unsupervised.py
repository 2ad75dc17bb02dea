"""Unsupervised scores of disentanglement_lib's ``unsupervised_metrics.py`` and the shared log-det gap.

With Sigma = np.cov of the codes (d, d), ddof 1:

    gaussian_total_correlation        = 1/2 (sum_i log Sigma_ii - logdet Sigma)        (= log_det_gap(Sigma))
    gaussian_wasserstein_correlation  = 2 tr Sigma - 2 tr sqrt(diag(Sigma) Sigma)
    gaussian_wasserstein_correlation_norm = gaussian_wasserstein_correlation / tr Sigma
    mutual_info_score = sum_{i != j} MI_ij / (d^2 - d)   (MI of 20-bin discretised code pairs, nats)

tr sqrt(D Sigma), D = diag(Sigma), is computed as sum_k sqrt(lambda_k) with lambda_k the eigenvalues
of the symmetric D^1/2 Sigma D^1/2 (similar to D Sigma), instead of ``scipy.linalg.sqrtm(D Sigma)``:
the same number, without complex round-off. The code x code MI matrix is one batched pass
(``discrete_mi.mi_of_label_rows``). Defaults (gin ``unsupervised_metrics``): num_train = 10,000, 20 bins.

``log_det_gap`` is the one routine behind the Gaussian total correlation and the flow metrics
MTC and MPMI (``flow.py``): for a symmetric positive definite A, 1/2 (sum_i log A_ii - logdet A) >= 0.
A coordinate with A_ii = 0 (a constant code, a decoder that ignores a latent) is independent of
the others and adds exactly 0 (its row and column are taken from the identity), as a constant
variable adds nothing to a total correlation; disentanglement_lib gives NaN there. Codes whose
every column is constant have no correlation: both Wasserstein scores are 0 (not 0/0).
"""
from __future__ import annotations

import numpy as np
import torch

from ._common import check_code_shape, sample_codes_factors, to_numpy
from .discrete_mi import mi_of_label_rows, single_thread_on_cpu
from .discretize import NUM_BINS, bin_labels_by_column

NUM_TRAIN = 10_000
BATCH_SIZE = 16


def log_det_gap(gram):
    """1/2 (sum_i log A_ii - logdet A) for SPD A (..., D, D) (numpy or tensor); returns shape (...).
    Rows and columns i with A_ii = 0 are replaced by the identity's (they add 0; module docstring)."""
    if isinstance(gram, torch.Tensor):
        zero = torch.diagonal(gram, dim1=-2, dim2=-1) == 0
        if bool(zero.any()):
            eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
            gram = torch.where(zero[..., :, None] | zero[..., None, :], eye, gram)
        return 0.5 * (torch.log(torch.diagonal(gram, dim1=-2, dim2=-1)).sum(-1) - torch.linalg.slogdet(gram)[1])
    gram = np.asarray(gram)
    zero = np.diagonal(gram, axis1=-2, axis2=-1) == 0
    if zero.any():
        gram = np.where(zero[..., :, None] | zero[..., None, :], np.eye(gram.shape[-1]), gram)
    return 0.5 * (np.log(np.diagonal(gram, axis1=-2, axis2=-1)).sum(-1) - np.linalg.slogdet(gram)[1])


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """2 tr Sigma - 2 tr sqrt(diag(Sigma) Sigma) for a covariance matrix (d, d)."""
    root_diag = np.sqrt(np.diag(cov))
    eigenvalues = np.linalg.eigvalsh(root_diag[:, None] * cov * root_diag[None, :])
    return float(2.0 * np.trace(cov) - 2.0 * np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def unsupervised(codes, num_bins: int = NUM_BINS, device=None) -> dict:
    """The four unsupervised scores of codes (N, d), d >= 2; also returns "covariance" and "mi_matrix" (d, d)."""
    _, d = check_code_shape("unsupervised", "codes", codes)
    if d < 2:
        raise ValueError(f"unsupervised: needs at least 2 latents, got codes of shape {tuple(codes.shape)}")
    x = codes if isinstance(codes, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(codes))
    if device is not None:
        x = x.to(device)
    cov = np.cov(to_numpy(x).astype(np.float64), rowvar=False)
    with single_thread_on_cpu(x.device):
        labels = bin_labels_by_column(x, num_bins)  # (d, N), values 1..num_bins
        mi = mi_of_label_rows(labels, num_bins + 1, labels, num_bins + 1)[0].cpu().numpy()
    np.fill_diagonal(mi, 0.0)
    wasserstein, trace = gaussian_wasserstein_correlation(cov), float(np.trace(cov))
    return {"gaussian_total_correlation": float(log_det_gap(cov)),
            "gaussian_wasserstein_correlation": wasserstein,
            "gaussian_wasserstein_correlation_norm": wasserstein / trace if trace > 0 else 0.0,
            "mutual_info_score": float(mi.sum() / (d * d - d)),
            "covariance": cov, "mi_matrix": mi}


def compute_unsupervised(ground_truth_data, representation_fn, rng, num_train: int = NUM_TRAIN,
                         batch_size: int = BATCH_SIZE, num_bins: int = NUM_BINS) -> dict:
    """Dataset-level unsupervised scores on ``num_train`` points drawn as disentanglement_lib does."""
    codes, _ = sample_codes_factors(ground_truth_data, representation_fn, num_train, rng, batch_size)
    return unsupervised(codes, num_bins)
