"""Kink selection: the entries of a tensor near zero, relative to its largest magnitude.

``kink_select(x, rel) -> (idx (K,) int64, values (K,), threshold 0-dim)`` with
    threshold = max(rel * max_i |x_i|, tiny(dtype)),   idx = ascending {i : |x_i| <= threshold},
    values = x.flatten()[idx]   (i over the flattened x; threshold in x's dtype).
NaN follows torch's ``max``: one NaN entry makes the threshold NaN and selects nothing; a NaN entry
is never selected. Used by ``flows.reversible`` to record the ReLU inputs whose sign a rebuilt input
could flip (``rel`` = the rebuild tolerance).
"""
from __future__ import annotations

import torch


def kink_select(x: torch.Tensor, rel: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    flat = x.detach().reshape(-1)
    magnitude = flat.abs()
    peak = magnitude.max() if flat.numel() else flat.new_zeros(())
    threshold = (rel * peak).clamp_min(torch.finfo(flat.dtype).tiny)
    idx = (magnitude <= threshold).nonzero().squeeze(1)
    return idx, flat[idx], threshold
