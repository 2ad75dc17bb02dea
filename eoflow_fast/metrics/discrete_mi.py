"""Discrete mutual information between every pair of label columns, in one batched pass.

For label arrays x (N, d) and y (N, F) the result is the (d, F) matrix

    MI[i, j] = sum_{a, b} (n_ab / N) log( N n_ab / (n_a n_b) )      (nats)

with n_ab the joint counts of (x[:, i] = a, y[:, j] = b) and n_a, n_b the marginal counts; it equals
``sklearn.metrics.mutual_info_score(y[:, j], x[:, i])`` (disentanglement_lib's
``discrete_mutual_info``) without d*F separate calls: all d*F*Kx*Ky joint counts come from one
``torch.bincount`` over the combined index ((i F + j) Kx + x[n, i]) Ky + y[n, j] (chunked over the
columns of x when N*d*F is large), so the whole matrix is computed on the labels' device (GPU when
given CUDA tensors). Counts are exact integers; the sums are taken in float64.
"""
from __future__ import annotations

import numpy as np
import torch

from .discretize import NUM_BINS, histogram_discretize

# Largest number of (n, i, j) index entries materialised at once (int64: 8 bytes each).
_MAX_INDEX_ENTRIES = 1 << 25


def _as_long(name: str, labels, device=None) -> torch.Tensor:
    t = labels if isinstance(labels, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(labels))
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() != 2:
        raise ValueError(f"discrete_mi: {name} must have shape (N, k), got shape {tuple(t.shape)}")
    if t.is_floating_point():
        if not torch.equal(t, t.round()):
            raise TypeError(f"discrete_mi: {name} must hold integer labels, got non-integer floats")
    t = t.to(torch.long)
    return t if device is None else t.to(device)


def compact_labels(labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Relabel each column of an integer tensor (N, k) to 0..K_c-1 (sorted order of its values).

    Returns the relabelled (N, k) int64 tensor and K = max_c K_c. Columns whose values already lie
    in 0..K-1 are left as they are (empty labels do not change mutual information or entropy).
    """
    if labels.numel() and int(labels.min()) >= 0 and int(labels.max()) < max(2 * labels.shape[0], 64):
        return labels, int(labels.max()) + 1
    cols = [torch.unique(labels[:, c], return_inverse=True)[1] for c in range(labels.shape[1])]
    out = torch.stack(cols, dim=1)
    return out, int(out.max()) + 1


def _mi_from_counts(joint: torch.Tensor, n: int) -> torch.Tensor:
    """MI (nats) from joint counts (..., Kx, Ky) summing to n: sum n_ab/n log(n n_ab / (n_a n_b))."""
    joint = joint.to(torch.float64)
    n_a = joint.sum(-1, keepdim=True)
    n_b = joint.sum(-2, keepdim=True)
    safe = joint > 0
    ratio = torch.where(safe, joint * n / (n_a * n_b).clamp_min(1.0), torch.ones_like(joint))
    mi = (joint * torch.log(ratio)).sum((-2, -1)) / n
    return mi.clamp_min(0.0)


def discrete_mi_matrix(x_labels, y_labels, device=None) -> torch.Tensor:
    """Mutual information matrix (d, F) float64 between the columns of x (N, d) and y (N, F).

    Labels are integers (numpy arrays or tensors; any values, relabelled per column when needed).
    Runs on ``device`` if given, else on the device of ``x_labels`` (CPU for numpy input).
    """
    x = _as_long("x_labels", x_labels, device)
    y = _as_long("y_labels", y_labels, x.device)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"discrete_mi_matrix: x_labels has {x.shape[0]} rows, y_labels has {y.shape[0]}")
    n, d = x.shape
    f = y.shape[1]
    x, kx = compact_labels(x)
    y, ky = compact_labels(y)
    cells = kx * ky
    chunk = max(1, min(d, _MAX_INDEX_ENTRIES // max(1, n * f)))
    y_part = y[:, None, :] + (torch.arange(f, device=y.device) * cells)[None, None, :]  # (N, 1, F)
    out = []
    for start in range(0, d, chunk):
        xs = x[:, start:start + chunk]
        c = xs.shape[1]
        base = (torch.arange(c, device=x.device) * (f * cells))[None, :, None]  # (1, c, 1)
        index = base + (xs * ky)[:, :, None] + y_part  # (N, c, F)
        counts = torch.bincount(index.reshape(-1), minlength=c * f * cells)
        out.append(_mi_from_counts(counts.view(c, f, kx, ky), n))
    return torch.cat(out, dim=0)


def discrete_entropy(labels, device=None) -> torch.Tensor:
    """Entropy (nats) of each column of integer labels (N, F): H_j = -sum_b p_b log p_b, float64 (F,).

    Equals ``sklearn.metrics.mutual_info_score(y_j, y_j)`` (disentanglement_lib's ``discrete_entropy``).
    """
    y = _as_long("labels", labels, device)
    y, k = compact_labels(y)
    n, f = y.shape
    counts = torch.bincount((y + torch.arange(f, device=y.device)[None, :] * k).reshape(-1), minlength=f * k)
    p = counts.view(f, k).to(torch.float64) / n
    return -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(-1)


def mutual_info_matrix(codes, factors, num_bins: int = NUM_BINS, device=None) -> tuple[np.ndarray, np.ndarray]:
    """disentanglement_lib's MI matrix of histogram-discretised codes against factors.

    codes (N, d) float, factors (N, F) integer (numpy or tensors). Returns
    ``(mi (d, F), factor_entropy (F,))`` as float64 numpy arrays, in nats: codes are discretised
    with ``num_bins`` equal-width bins per column (``discretize.histogram_discretize``), then
    ``mi = discrete_mi_matrix(labels, factors)`` and ``factor_entropy = discrete_entropy(factors)``.
    """
    x = codes if isinstance(codes, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(codes))
    if device is not None:
        x = x.to(device)
    labels = histogram_discretize(x, num_bins)
    mi = discrete_mi_matrix(labels, factors, device=labels.device)
    entropy = discrete_entropy(factors, device=labels.device)
    return mi.cpu().numpy(), entropy.cpu().numpy()
