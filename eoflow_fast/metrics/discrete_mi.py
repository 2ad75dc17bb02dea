"""Discrete mutual information between every pair of label columns, in one batched pass.

For label arrays x (N, d) and y (N, F) the result is the (d, F) matrix

    MI[i, j] = sum_{a, b} (n_ab / N) log( N n_ab / (n_a n_b) )      (nats)

with n_ab the joint counts of (x[:, i] = a, y[:, j] = b) and n_a, n_b the marginal counts; it equals
``sklearn.metrics.mutual_info_score(y[:, j], x[:, i])`` (disentanglement_lib's
``discrete_mutual_info``) without d*F separate calls: all d*F*Kx*Ky joint counts come from one
``torch.bincount`` over the combined index ((i F + j) Kx + x[n, i]) Ky + y[n, j] (chunked over the
columns of x when N*d*F is large); the labels are held latent-major (d, N) so each step is one
broadcast op, so the whole matrix is computed on the labels' device (GPU when
given CUDA tensors). Counts are exact integers; the sums are taken in float64.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from .discretize import NUM_BINS, bin_labels_by_column

# Largest number of (i, j, n) index entries materialised at once (int64: 8 bytes each).
_MAX_INDEX_ENTRIES = 1 << 25


@contextlib.contextmanager
def single_thread_on_cpu(device):
    """Run torch CPU ops on one thread inside the block (restored after); no-op for other devices.

    The MI pass is ~20 memory-bound ops on a few MB: with torch's intra-op threads each op waits
    for every thread to be scheduled, which measured 10x slower than one thread on a busy 2-core
    machine (bench/bench_metrics.py). ``torch.set_num_threads`` is process-wide, so other threads
    of the process also see one thread while the block runs.
    """
    if torch.device(device).type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _labels_by_column(name: str, labels, device=None) -> tuple[torch.Tensor, int]:
    """Integer labels (N, k) (numpy or tensor) as a (k, N) int64 view with values in 0..K-1, and K.

    Columns are relabelled to 0..K_c-1 (``torch.unique``) only when some value is negative or large
    (>= max(2N, 64)); otherwise the values are used as they are (empty labels change neither mutual
    information nor entropy).
    """
    t = labels if isinstance(labels, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(labels))
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() != 2:
        raise ValueError(f"discrete_mi: {name} must have shape (N, k), got shape {tuple(t.shape)}")
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise TypeError(f"discrete_mi: {name} must hold integer labels, got non-integer floats")
    t = t.to(device=device if device is not None else t.device, dtype=torch.long).t()
    low, high = (int(v) for v in torch.aminmax(t))
    if low >= 0 and high < max(2 * t.shape[1], 64):
        return t, high + 1
    t = torch.stack([torch.unique(row, return_inverse=True)[1] for row in t])
    return t, int(t.max()) + 1


def _mi_from_counts(joint: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MI (nats, clamped at 0) and H(y) from joint counts (..., Kx, Ky) summing to n:

    MI = log n + (1/n) [ sum_ab n_ab log n_ab - sum_a n_a log n_a - sum_b n_b log n_b ],
    H(y) = log n - (1/n) sum_b n_b log n_b.
    """
    joint = joint.to(torch.float64)
    n_a, n_b = joint.sum(-1), joint.sum(-2)
    y_term = torch.special.xlogy(n_b, n_b).sum(-1)
    total = torch.special.xlogy(joint, joint).sum((-2, -1)) - torch.special.xlogy(n_a, n_a).sum(-1) - y_term
    return (total / n + math.log(n)).clamp_min(0.0), math.log(n) - y_term / n


def mi_of_label_rows(x: torch.Tensor, kx: int, y: torch.Tensor, ky: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MI (d, F) of label rows x (d, N) in 0..kx-1 and y (F, N) in 0..ky-1, one bincount per chunk of
    rows; also the entropies H(y_j) (F,), read off the same joint counts."""
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"discrete_mi_matrix: x_labels has {x.shape[1]} rows, y_labels has {y.shape[1]}")
    d, n = x.shape
    f = y.shape[0]
    cells = kx * ky
    y_part = y + (torch.arange(f, device=y.device) * cells)[:, None]  # (F, N)
    chunk = max(1, min(d, _MAX_INDEX_ENTRIES // max(1, n * f)))
    out, entropy = [], None
    for start in range(0, d, chunk):
        xs = x[start:start + chunk]
        c = xs.shape[0]
        x_part = xs * ky + (torch.arange(c, device=x.device) * (f * cells))[:, None]  # (c, N)
        counts = torch.bincount((x_part[:, None, :] + y_part[None, :, :]).reshape(-1), minlength=c * f * cells)
        mi, entropy_rows = _mi_from_counts(counts.view(c, f, kx, ky), n)
        out.append(mi)
        entropy = entropy_rows[0] if entropy is None else entropy
    return torch.cat(out, dim=0), entropy


def discrete_mi_matrix(x_labels, y_labels, device=None) -> torch.Tensor:
    """Mutual information matrix (d, F) float64 between the columns of x (N, d) and y (N, F).

    Labels are integers (numpy arrays or tensors; any values, relabelled per column when needed).
    Runs on ``device`` if given, else on the device of ``x_labels`` (CPU for numpy input).
    """
    with single_thread_on_cpu(device if device is not None else getattr(x_labels, "device", "cpu")):
        x, kx = _labels_by_column("x_labels", x_labels, device)
        y, ky = _labels_by_column("y_labels", y_labels, x.device)
        return mi_of_label_rows(x, kx, y, ky)[0]


def discrete_entropy(labels, device=None) -> torch.Tensor:
    """Entropy (nats) of each column of integer labels (N, F): H_j = -sum_b p_b log p_b, float64 (F,).

    Equals ``sklearn.metrics.mutual_info_score(y_j, y_j)`` (disentanglement_lib's ``discrete_entropy``).
    """
    with single_thread_on_cpu(device if device is not None else getattr(labels, "device", "cpu")):
        y, k = _labels_by_column("labels", labels, device)
        f, n = y.shape
        counts = torch.bincount((y + (torch.arange(f, device=y.device) * k)[:, None]).reshape(-1), minlength=f * k)
        counts = counts.view(f, k).to(torch.float64)
        return math.log(n) - torch.special.xlogy(counts, counts).sum(-1) / n


def mutual_info_matrix(codes, factors, num_bins: int = NUM_BINS, device=None) -> tuple[np.ndarray, np.ndarray]:
    """disentanglement_lib's MI matrix of histogram-discretised codes against factors.

    codes (N, d) float, factors (N, F) integer (numpy or tensors). Returns
    ``(mi (d, F), factor_entropy (F,))`` as float64 numpy arrays, in nats: codes are discretised
    with ``num_bins`` equal-width bins per column (as ``discretize.histogram_discretize``), then
    ``mi = discrete_mi_matrix(labels, factors)``; ``factor_entropy`` (= ``discrete_entropy(factors)``)
    comes from the same joint counts.
    """
    x = codes if isinstance(codes, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(codes))
    if device is not None:
        x = x.to(device)
    with single_thread_on_cpu(x.device):
        labels = bin_labels_by_column(x, num_bins)  # (d, N), values 1..num_bins
        y, ky = _labels_by_column("factors", factors, labels.device)
        mi, entropy = mi_of_label_rows(labels, num_bins + 1, y, ky)
    return mi.cpu().numpy(), entropy.cpu().numpy()
