"""Histogram discretisation of continuous codes (disentanglement_lib's ``histogram_discretizer``).

For each latent column i of codes (N, d), the bin edges are those of ``np.histogram(codes[:, i],
num_bins)``: ``num_bins`` equal-width bins over that column's own [min, max] (a constant column
gets the range [v - 0.5, v + 0.5]); the label of x is ``np.digitize(x, edges[:-1]) - 1``, i.e. the
number of left edges <= x minus one, in 0..num_bins-1 (disentanglement_lib's labels are 1..num_bins;
mutual information does not depend on the naming of the bins).

The edges are computed by numpy on [min, max] in the codes' own dtype, so they are bit-identical
to ``np.histogram``'s; the labelling is one batched ``torch.searchsorted`` over all columns and
runs on the codes' device.
"""
from __future__ import annotations

import numpy as np
import torch

from ._common import check_number

NUM_BINS = 20


def histogram_edges(column_min: np.ndarray, column_max: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Left bin edges (d, num_bins), identical to ``np.histogram(x, num_bins)[1][:-1]`` per column.

    ``column_min``/``column_max`` (d,) hold each column's min and max in the codes' dtype.
    """
    return np.stack([np.histogram_bin_edges(np.array([lo, hi]), num_bins)[:-1]
                     for lo, hi in zip(column_min, column_max)])


def bin_labels_by_column(codes, num_bins: int = NUM_BINS) -> torch.Tensor:
    """Histogram labels in 1..num_bins, latent-major: int64 (d, N) on the codes' device.

    This is disentanglement_lib's labelling exactly (``np.digitize`` of each row); the layout and
    the 1-based labels are what ``discrete_mi`` consumes without further copies.
    """
    num_bins = check_number("histogram_discretize", "num_bins", num_bins, 1, integer=True)
    x = codes if isinstance(codes, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(codes))
    if x.dim() != 2:
        raise ValueError(f"histogram_discretize: codes must have shape (N, d), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.float64)
    elif x.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every bfloat16 value exactly
        x = x.float()
    column_min, column_max = (t.cpu().numpy() for t in torch.aminmax(x, dim=0))
    if not (np.all(np.isfinite(column_min)) and np.all(np.isfinite(column_max))):
        raise ValueError("histogram_discretize: codes contain NaN or infinite values")
    edges = torch.from_numpy(histogram_edges(column_min, column_max, num_bins)).to(device=x.device, dtype=x.dtype)
    return torch.searchsorted(edges, x.t().contiguous(), right=True)


def histogram_discretize(codes, num_bins: int = NUM_BINS) -> torch.Tensor:
    """Equal-width histogram labels of each column of ``codes``.

    codes: (N, d) float numpy array or tensor (any device). Returns int64 tensor (N, d) on the
    codes' device with values in 0..num_bins-1 (see the module docstring for the exact edges).
    """
    return (bin_labels_by_column(codes, num_bins) - 1).t()
