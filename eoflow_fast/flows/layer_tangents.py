"""Tangent rules of subnet layers at a cached primal, shared by ``Subnet`` and the compat blocks.

For a chain of layers h_{l+1} = layer_l(h_l), the JVP is dh_{l+1} = J_l dh_l with
- Linear / Conv1d / Conv2d / Conv3d (zero padding): the layer's weight without its bias;
- ReLU: dh * 1[out > 0] = ``threshold_backward(dh, out, 0)`` (its backward saves nothing new);
- LeakyReLU with negative_slope >= 0: where(out > 0, dh, slope * dh);
- Identity / Flatten: the layer itself.
Only the activations' outputs are kept by ``forward_cached`` (autograd keeps them anyway);
dh may stack m tangents per point when the kept outputs are tiled to its rows.

``tangent_transpose`` applies J^T (the VJP of the tangent map, no forward pass): Linear -> a W,
stride-1 convolution -> the transposed convolution, ReLU / LeakyReLU -> the same mask, Identity ->
itself, layers in reverse order.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


def layer_tangent(layer: nn.Module) -> tuple[bool, Callable] | None:
    """(reads_output, rule(dh, out) -> J dh) for a layer with a tangent rule, else None."""
    if isinstance(layer, nn.Linear):
        return False, lambda dh, _: F.linear(dh, layer.weight)
    conv = _CONV.get(type(layer))
    if conv is not None and layer.padding_mode == "zeros":
        return False, lambda dh, _: conv(dh, layer.weight, None, layer.stride, layer.padding, layer.dilation,
                                         layer.groups)
    if isinstance(layer, nn.ReLU):
        return True, lambda dh, out: torch.ops.aten.threshold_backward(dh, out, 0.0)
    if isinstance(layer, nn.LeakyReLU) and layer.negative_slope >= 0:
        return True, lambda dh, out: torch.where(out > 0, dh, dh * layer.negative_slope)
    if isinstance(layer, (nn.Identity, nn.Flatten)):
        return False, lambda dh, _: layer(dh)
    return None


def has_tangent_rules(layers) -> bool:
    return isinstance(layers, nn.Sequential) and all(layer_tangent(layer) is not None for layer in layers)


def forward_cached(layers, h: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The primal pass and the outputs of the layers whose tangent rule reads them."""
    acts = []
    for layer in layers:
        h = layer(h)
        rule = layer_tangent(layer)
        if rule is not None and rule[0]:
            acts.append(h)
    return h, acts


def _transpose_rule(layer: nn.Module) -> Callable | None:
    """rule(a, out) -> J^T a for a layer whose tangent map is J, else None."""
    if isinstance(layer, nn.Linear):
        return lambda a, _: a @ layer.weight
    conv = {nn.Conv1d: F.conv_transpose1d, nn.Conv2d: F.conv_transpose2d, nn.Conv3d: F.conv_transpose3d}.get(type(layer))
    if conv is not None and layer.padding_mode == "zeros" and all(s == 1 for s in layer.stride) \
            and not isinstance(layer.padding, str):
        return lambda a, _: conv(a, layer.weight, None, 1, layer.padding, 0, layer.groups, layer.dilation)
    if isinstance(layer, (nn.ReLU, nn.LeakyReLU, nn.Identity)):
        return layer_tangent(layer)[1]
    return None


def has_transpose_rules(layers) -> bool:
    return isinstance(layers, nn.Sequential) and all(_transpose_rule(layer) is not None for layer in layers)


def tangent_transpose(layers, a: torch.Tensor, acts: list[torch.Tensor]) -> torch.Tensor | None:
    """J^T a for the tangent map J of ``tangent(layers, ., acts)``: a has the subnet output's shape,
    the result its input's. None when a layer has no transpose rule (strided convolutions, Flatten)."""
    rules = [_transpose_rule(layer) for layer in layers]
    if any(r is None for r in rules):
        return None
    outs = iter(reversed(acts))
    for layer, rule in zip(reversed(list(layers)), reversed(rules)):
        a = rule(a, next(outs) if layer_tangent(layer)[0] else None)
    return a


def tangent(layers, dh: torch.Tensor, acts: list[torch.Tensor], owner: str = "Subnet") -> torch.Tensor:
    """J dh from the kept outputs of ``forward_cached`` (tiled to dh's rows)."""
    acts = iter(acts)
    for layer in layers:
        rule = layer_tangent(layer)
        if rule is None:
            raise TypeError(f"{owner}: no tangent rule for layer {type(layer).__name__}")
        reads_output, fn = rule
        dh = fn(dh, next(acts) if reads_output else None)
    return dh
