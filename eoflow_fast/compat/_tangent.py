"""Tangents through a user's subnet at a cached point.

``linearize_subnet(net, h) -> (out, tangent)`` returns out = net(h) and a function
tangent(dh) = J_net(h) dh, where dh may stack m tangents per point, shape (m*B, ...).

- ``nn.Sequential`` of Linear / Conv1d / Conv2d / Conv3d / ReLU / LeakyReLU / Identity / Flatten:
  the forward keeps the activation masks, the tangent reuses them (no second primal pass):
  linear and conv layers apply their weight without bias, ReLU-type layers multiply by the slope
  at the primal (1 where the output is > 0, else 0 / negative_slope >= 0).
- Anything else: ``torch.func.jvp`` at the tiled point (it recomputes the subnet's primal), with one
  notice per module type naming it.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..flows.base import tile_rows

_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}
_noticed: set[str] = set()


def notice_fallback(what: str, why: str) -> None:
    """One warning per ``what``: the EOFlow JVP runs through torch.func there (slower, correct)."""
    if what not in _noticed:
        _noticed.add(what)
        warnings.warn(f"eoflow_fast.compat: {what} {why}; its Jacobian-vector products run through "
                      "torch.func.jvp (recomputing its forward) instead of the fused tangent rules", RuntimeWarning,
                      stacklevel=3)


def _tangent_rule(layer: nn.Module):
    """(primal_out -> slope or None, tangent fn) for a supported layer, else None."""
    if isinstance(layer, nn.Linear):
        return lambda dh, _: F.linear(dh, layer.weight)
    for cls, conv in _CONV.items():
        if type(layer) is cls and layer.padding_mode == "zeros":
            return lambda dh, _, c=conv: c(dh, layer.weight, None, layer.stride, layer.padding, layer.dilation,
                                           layer.groups)
    if isinstance(layer, nn.ReLU):
        return lambda dh, act: torch.ops.aten.threshold_backward(dh, act, 0.0)
    if isinstance(layer, nn.LeakyReLU) and layer.negative_slope >= 0:
        slope = layer.negative_slope
        return lambda dh, act: torch.where(act > 0, dh, dh * slope)
    if isinstance(layer, (nn.Identity, nn.Flatten)):
        return lambda dh, _: layer(dh)
    return None


def _sequential_rules(net: nn.Module):
    if not isinstance(net, nn.Sequential):
        return None
    rules = [_tangent_rule(layer) for layer in net]
    return None if any(r is None for r in rules) else rules


def linearize_subnet(net: nn.Module, h: torch.Tensor):
    """(net(h), tangent) as in the module docstring."""
    rules = _sequential_rules(net)
    if rules is not None:
        acts = []
        for layer in net:
            h = layer(h)
            acts.append(h)

        def tangent(dh):
            n = dh.shape[0]
            for rule, act in zip(rules, acts):
                dh = rule(dh, tile_rows(act, n) if act.shape[0] != n else act)
            return dh
        return h, tangent
    notice_fallback(f"subnet {type(net).__name__}", "has no tangent rule (not an nn.Sequential of "
                    "Linear/Conv/ReLU/LeakyReLU layers)")
    out = net(h)

    def tangent(dh):
        return torch.func.jvp(net, (tile_rows(h, dh.shape[0]),), (dh,))[1]
    return out, tangent
