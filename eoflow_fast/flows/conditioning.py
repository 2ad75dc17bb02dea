"""Conditions for conditional couplings: ``with conditioned(flow, c): flow(x)``.

Every ``AffineCoupling`` with ``cond_channels = k > 0`` inside ``flow`` reads c (B, k) as an extra
subnet input for the calls made inside the block (forward, reverse, jvp, linearize and the
``inverse_jvp`` it returns). m stacked tangents per point (m*B rows) reuse c's B rows tiled. A
conditional coupling called outside the block raises a ValueError that says so.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn


def conditional_couplings(flow: nn.Module) -> list[nn.Module]:
    return [m for m in flow.modules() if getattr(m, "cond_channels", 0)]


def cond_channels(flow: nn.Module) -> int:
    """The condition width k the flow's conditional couplings take (0: unconditional)."""
    widths = {m.cond_channels for m in conditional_couplings(flow)}
    if len(widths) > 1:
        raise ValueError(f"conditioning: the flow's couplings take different condition widths {sorted(widths)}")
    return widths.pop() if widths else 0


def set_condition(flow: nn.Module, c: torch.Tensor | None) -> None:
    """Set c on every conditional coupling of ``flow`` until changed (for a one-shot command; code
    that keeps running should use the ``conditioned`` block)."""
    for m in conditional_couplings(flow):
        m.condition = c


@contextlib.contextmanager
def conditioned(flow: nn.Module, c: torch.Tensor | None):
    """Set c (B, k) on the flow's conditional couplings for the calls inside the block."""
    mods = conditional_couplings(flow)
    if c is not None and not mods:
        raise ValueError("conditioned: the flow has no conditional coupling (cond_channels = 0)")
    if mods and c is None:
        raise ValueError(f"conditioned: the flow is conditional (cond_channels = {mods[0].cond_channels}); "
                         "pass a condition tensor of shape (B, k)")
    previous = [m.condition for m in mods]
    for m in mods:
        m.condition = c
    try:
        yield
    finally:
        for m, p in zip(mods, previous):
            m.condition = p
