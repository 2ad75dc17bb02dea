"""Kink selection: ``kink_select(x, rel, *, backend="auto") -> (idx, values, threshold)``.

threshold = max(rel * max|x|, tiny(dtype)); idx (K,) int64 the ascending flat positions with
|x_i| <= threshold; values = x.flatten()[idx]. NaN anywhere selects nothing (NaN threshold). Not
differentiable (a selection; x is read detached). The math is in
``eoflow_fast/reference/kink_select.py``; ``flows.reversible`` calls it on every ReLU input of the
forward pass, where the reference's abs / compare / nonzero passes cost about 25x a ReLU (CPU).
"""
from __future__ import annotations

import torch

from ..reference import kink_select as ref
from ._checks import check_choice, check_float, check_positive_float
from ._dispatch import BACKENDS, cpp_ops, resolve, triton_kernels

OP = "kink_select"


def kink_select(x: torch.Tensor, rel: float, *, backend: str = "auto"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(idx (K,) int64, values (K,), threshold 0-dim) of x; see the module docstring."""
    check_float(OP, "x", x)
    rel = check_positive_float(OP, "rel", rel)
    check_choice(OP, "backend", backend, BACKENDS)
    x = x.detach()
    chosen = resolve(OP, backend, x.device, x.dtype)
    if chosen == "cpp":
        return tuple(cpp_ops().kink_select(x, rel))
    if chosen == "triton":
        return triton_kernels(OP).kink_select(x.contiguous(), rel)
    return ref.kink_select(x, rel)
