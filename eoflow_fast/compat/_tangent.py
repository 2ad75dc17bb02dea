"""Tangents through a user's subnet at a cached point.

``linearize_subnet(net, h) -> (out, tangent)`` returns out = net(h) and a function
tangent(dh) = J_net(h) dh, where dh may stack m tangents per point, shape (m*B, ...).

- ``nn.Sequential`` of layers with a rule in ``flows.layer_tangents`` (Linear, Conv1d-3d, ReLU,
  LeakyReLU, Identity, Flatten): the forward keeps the activations' outputs, the tangent reuses
  them (no second primal pass).
- Anything else: ``torch.func.jvp`` at the tiled point (it recomputes the subnet's primal), with one
  notice per module type naming it.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..flows import layer_tangents
from ..flows.base import tile_rows

_noticed: set[str] = set()


def notice_fallback(what: str, why: str) -> None:
    """One warning per ``what``: the EOFlow JVP runs through torch.func there (slower, correct)."""
    if what not in _noticed:
        _noticed.add(what)
        warnings.warn(f"eoflow_fast.compat: {what} {why}; its Jacobian-vector products run through "
                      "torch.func.jvp (recomputing its forward) instead of the fused tangent rules", RuntimeWarning,
                      stacklevel=3)


def linearize_subnet(net: nn.Module, h: torch.Tensor):
    """(net(h), tangent) as in the module docstring."""
    if layer_tangents.has_tangent_rules(net):
        out, acts = layer_tangents.forward_cached(net, h)

        def tangent(dh):
            return layer_tangents.tangent(net, dh, [tile_rows(a, dh.shape[0]) for a in acts])
        return out, tangent
    notice_fallback(f"subnet {type(net).__name__}", "has no tangent rule (not an nn.Sequential of "
                    "Linear/Conv/ReLU/LeakyReLU layers)")
    out = net(h)

    def tangent(dh):
        return torch.func.jvp(net, (tile_rows(h, dh.shape[0]),), (dh,))[1]
    return out, tangent
