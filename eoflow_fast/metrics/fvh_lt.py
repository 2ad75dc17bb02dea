"""FVH-LT: feature variance heterogeneity via latent traversal (vae_deft.md §A.5).

[INFERRED] The bfVAE paper's definition is not public; this is the project's definition.
For anchors z^(a) (A, d) (encoder means of data points), a grid t_1..t_T (default 11 points on
[-3, 3]) and a decoder g mapping codes (n, d) to feature means (n, p) (images flattened):

    x^(a, i) = g(z^(a) with z_k := t_i)
    V_kj = mean_a Var_i [ x_j^(a, i) ]              (variance along the traversal, ddof 0; (d, p))
    share_kj = V_kj / sum_k V_kj                     (per-feature normalisation; 0 for a feature no dim moves)
    specificity_k = 1 - H(V_k. / sum_j V_kj) / log p (1: the dim moves one feature; 0 for a zero row,
                     i.e. a row total below 1e-12 of the largest, round-off of a constant decode)

V is the heat map; informative, disentangled dims have a few large entries in their row.
"""
from __future__ import annotations

import numpy as np

from ._common import check_finite, check_number, represent

NUM_STEPS = 11
SPAN = 3.0
NUM_ANCHORS = 64
RELATIVE_ZERO = 1e-12  # a row whose total variance is below this fraction of the largest counts as zero


def _row_specificity(v: np.ndarray) -> np.ndarray:
    totals = v.sum(axis=1, keepdims=True)
    moves = totals > RELATIVE_ZERO * max(float(totals.max()), 0.0)
    p = np.where(moves, v / np.where(moves, totals, 1.0), 0.0)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    if v.shape[1] < 2:
        return moves[:, 0].astype(np.float64)
    return np.where(moves[:, 0], 1.0 - entropy / np.log(v.shape[1]), 0.0)


def fvh_lt(decode_fn, anchors, grid=None, num_steps: int = NUM_STEPS, span: float = SPAN) -> dict:
    """Traversal variance heat map V (d, p) of ``decode_fn`` around ``anchors`` (A, d).

    decode_fn: codes (n, d) float32 array -> decoded feature means (n, ...) (flattened to (n, p)).
    grid: the traversal values (T,), default ``np.linspace(-span, span, num_steps)``.
    Returns {"variance" (d, p), "share" (d, p), "specificity" (d,), "grid" (T,)}.
    """
    anchors = np.asarray(anchors, dtype=np.float64)
    if anchors.ndim != 2 or anchors.shape[0] < 1:
        raise ValueError(f"fvh_lt: anchors must have shape (A, d), got {anchors.shape}")
    if grid is None:
        span = check_number("fvh_lt", "span", span, 0.0, low_open=True)
        num_steps = check_number("fvh_lt", "num_steps", num_steps, 2, integer=True)
    grid = np.linspace(-span, span, num_steps) if grid is None else np.asarray(grid, dtype=np.float64).reshape(-1)
    if grid.size < 2:
        raise ValueError(f"fvh_lt: grid needs at least 2 values, got {grid.size}")
    check_finite("fvh_lt", "anchors", anchors)
    check_finite("fvh_lt", "grid", grid)
    num_anchors, d = anchors.shape
    rows = []
    for k in range(d):
        codes = np.repeat(anchors[:, None, :], grid.size, axis=1).astype(np.float32)  # (A, T, d)
        codes[:, :, k] = grid[None, :]
        decoded = represent(decode_fn, codes.reshape(-1, d), 1024).reshape(num_anchors, grid.size, -1)
        check_finite("fvh_lt", f"decode_fn output (latent {k} traversed)", decoded)
        rows.append(decoded.astype(np.float64).var(axis=1).mean(axis=0))
    variance = np.stack(rows)
    totals = variance.sum(axis=0, keepdims=True)
    share = np.where(totals > 0, variance / np.where(totals > 0, totals, 1.0), 0.0)
    return {"variance": variance, "share": share, "specificity": _row_specificity(variance), "grid": grid}


def compute_fvh_lt(ground_truth_data, representation_fn, rng, decode_fn, num_anchors: int = NUM_ANCHORS,
                   num_steps: int = NUM_STEPS, span: float = SPAN) -> dict:
    """Dataset-level FVH-LT: anchors are the codes of ``num_anchors`` random observations."""
    observations = ground_truth_data.sample(num_anchors, rng)[1]
    return fvh_lt(decode_fn, represent(representation_fn, np.asarray(observations)), None, num_steps, span)
