"""PyTorch reference of the affine coupling op: the ground truth for every backend.

All tensors share one shape (B, *); reductions run over every non-batch dim (B = 0 and
zero-size feature dims give empty outputs / zero log-dets).

Scale map s = f(s_raw) with parameter c (``clamp``):
    atan:           s = c * (2/pi) * atan(s_raw / c)   (bounded by c)
    tanh:           s = c * tanh(s_raw / c)            (bounded by c)
    none:           s = s_raw                          (c unused)
    freia_atan:     s = c * 0.636 * atan(s_raw)        (FrEIA 0.2 "ATAN"; the literal 0.636, not 2/pi)
    freia_tanh:     s = c * tanh(s_raw)                (FrEIA "TANH")
    freia_sigmoid:  s = c * 2 * (sigmoid(s_raw) - 0.5) = c * tanh(s_raw / 2)   (FrEIA "SIGMOID")
    logsigmoid:     s =  log sigmoid(s_raw + c) = -softplus(-(s_raw + c))
                    (normflows "sigmoid_inv": y = x * sigmoid(a + 2) + t, i.e. c = 2)
    neg_logsigmoid: s = -log sigmoid(s_raw + c) =  softplus(-(s_raw + c))
                    (normflows "sigmoid": y = x / sigmoid(a + 2) + t, i.e. c = 2)
For the two sigmoid maps c is an offset added to s_raw, not a bound (any finite c); for the
others it is a bound or scale (c > 0).
Forward:  y = x * exp(s) + t,        log_det[b] = sum s[b]
Reverse:  y = (x - t) * exp(-s),     log_det[b] = -sum s[b]
Tangents (forward mode), ds = f'(s_raw) * ds_raw:
Forward:  dy = exp(s) * (dx + x * ds) + dt,    dlog_det = sum ds
Reverse:  dy = (dx - dt) * exp(-s) - y * ds,   dlog_det = -sum ds
Everything here is built from differentiable torch ops, so autograd gives exact derivatives of
any order (the fused backends use this for double backward).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CLAMP_FNS = ("atan", "tanh", "none", "freia_atan", "freia_tanh", "freia_sigmoid", "logsigmoid", "neg_logsigmoid")
OFFSET_CLAMP_FNS = ("logsigmoid", "neg_logsigmoid")  # c is an offset: any finite value
FREIA_ATAN_SCALE = 0.636  # FrEIA 0.2's literal, not 2/pi


def soft_clamp(s_raw: torch.Tensor, clamp: float, clamp_fn: str) -> torch.Tensor:
    """s = f(s_raw); see the module docstring."""
    if clamp_fn == "atan":
        return (clamp * 2.0 / math.pi) * torch.atan(s_raw / clamp)
    if clamp_fn == "tanh":
        return clamp * torch.tanh(s_raw / clamp)
    if clamp_fn == "freia_atan":
        return (clamp * FREIA_ATAN_SCALE) * torch.atan(s_raw)
    if clamp_fn == "freia_tanh":
        return clamp * torch.tanh(s_raw)
    if clamp_fn == "freia_sigmoid":
        return clamp * torch.tanh(0.5 * s_raw)
    if clamp_fn == "logsigmoid":  # F.logsigmoid is exact where e^-v is tiny (F.softplus linearises past 20)
        return F.logsigmoid(s_raw + clamp)
    if clamp_fn == "neg_logsigmoid":
        return -F.logsigmoid(s_raw + clamp)
    if clamp_fn == "none":
        return s_raw
    raise ValueError(f"soft_clamp: clamp_fn must be one of {CLAMP_FNS}, got {clamp_fn!r}")


def soft_clamp_slope(s_raw: torch.Tensor, clamp: float, clamp_fn: str) -> torch.Tensor:
    """f'(s_raw): atan (2/pi) / (1 + (s_raw/c)^2); tanh 1 - tanh(s_raw/c)^2; none 1;
    freia_atan 0.636 c / (1 + s_raw^2); freia_tanh c (1 - tanh(s_raw)^2);
    freia_sigmoid (c/2) (1 - tanh(s_raw/2)^2); logsigmoid sigmoid(-(s_raw + c));
    neg_logsigmoid -sigmoid(-(s_raw + c))."""
    if clamp_fn == "atan":
        return (2.0 / math.pi) / (1.0 + (s_raw / clamp) ** 2)
    if clamp_fn == "tanh":
        return 1.0 - torch.tanh(s_raw / clamp) ** 2
    if clamp_fn == "freia_atan":
        return (clamp * FREIA_ATAN_SCALE) / (1.0 + s_raw ** 2)
    if clamp_fn == "freia_tanh":
        return clamp * (1.0 - torch.tanh(s_raw) ** 2)
    if clamp_fn == "freia_sigmoid":
        return (0.5 * clamp) * (1.0 - torch.tanh(0.5 * s_raw) ** 2)
    if clamp_fn == "logsigmoid":
        return torch.sigmoid(-(s_raw + clamp))
    if clamp_fn == "neg_logsigmoid":
        return -torch.sigmoid(-(s_raw + clamp))
    if clamp_fn == "none":
        return torch.ones_like(s_raw)
    raise ValueError(f"soft_clamp_slope: clamp_fn must be one of {CLAMP_FNS}, got {clamp_fn!r}")


def _row_sum(s: torch.Tensor) -> torch.Tensor:
    return s.flatten(1).sum(1)


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
