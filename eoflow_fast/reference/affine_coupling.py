"""PyTorch reference of the affine coupling op: the ground truth for every backend.

All tensors share one shape (B, *); reductions run over every non-batch dim.

Soft clamp s = f(s_raw) with clamp c:
    atan: s = c * (2/pi) * atan(s_raw / c)      (FrEIA's GLOW convention)
    tanh: s = c * tanh(s_raw / c)
    none: s = s_raw
Forward:  y = x * exp(s) + t,        log_det[b] = sum s[b]
Reverse:  y = (x - t) * exp(-s),     log_det[b] = -sum s[b]
Tangents (forward mode), ds = f'(s_raw) * ds_raw:
Forward:  dy = exp(s) * (dx + x * ds) + dt,    dlog_det = sum ds
Reverse:  dy = (dx - dt) * exp(-s) - y * ds,   dlog_det = -sum ds
"""
from __future__ import annotations

import math

import torch

CLAMP_FNS = ("atan", "tanh", "none")


def soft_clamp(s_raw: torch.Tensor, clamp: float, clamp_fn: str) -> torch.Tensor:
    """s = f(s_raw); see the module docstring."""
    if clamp_fn == "atan":
        return (clamp * 2.0 / math.pi) * torch.atan(s_raw / clamp)
    if clamp_fn == "tanh":
        return clamp * torch.tanh(s_raw / clamp)
    return s_raw


def soft_clamp_slope(s_raw: torch.Tensor, clamp: float, clamp_fn: str) -> torch.Tensor:
    """f'(s_raw): atan (2/pi) / (1 + (s_raw/c)^2); tanh 1 - tanh(s_raw/c)^2; none 1."""
    if clamp_fn == "atan":
        return (2.0 / math.pi) / (1.0 + (s_raw / clamp) ** 2)
    if clamp_fn == "tanh":
        return 1.0 - torch.tanh(s_raw / clamp) ** 2
    return torch.ones_like(s_raw)


def _row_sum(s: torch.Tensor) -> torch.Tensor:
    return s.reshape(s.shape[0], -1).sum(1)


def affine_coupling(x, s_raw, t, clamp: float = 2.0, clamp_fn: str = "atan", reverse: bool = False):
    """Returns ``(y, log_det)`` with ``log_det`` of shape (B,)."""
    s = soft_clamp(s_raw, clamp, clamp_fn)
    if reverse:
        return (x - t) * torch.exp(-s), -_row_sum(s)
    return x * torch.exp(s) + t, _row_sum(s)


def affine_coupling_jvp(x, s_raw, t, dx, ds_raw, dt, clamp: float = 2.0, clamp_fn: str = "atan", reverse: bool = False):
    """Primal and tangent: ``(y, log_det, dy, dlog_det)``; differentiable in all six inputs."""
    s = soft_clamp(s_raw, clamp, clamp_fn)
    ds = soft_clamp_slope(s_raw, clamp, clamp_fn) * ds_raw
    if reverse:
        e = torch.exp(-s)
        y = (x - t) * e
        return y, -_row_sum(s), (dx - dt) * e - y * ds, -_row_sum(ds)
    e = torch.exp(s)
    return x * e + t, _row_sum(s), e * (dx + x * ds) + dt, _row_sum(ds)
