"""Argument checks shared by the op wrappers; every message names the op and the argument."""
from __future__ import annotations

import math
import numbers

import torch


def check_float(op: str, name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {t.dtype}")


def check_same(op: str, named: dict[str, torch.Tensor], shape: bool = True) -> None:
    """All tensors share device and dtype (and shape when ``shape``); the first one is the anchor."""
    (first_name, first), *rest = named.items()
    for name, t in named.items():
        check_float(op, name, t)
    for name, t in rest:
        if t.device != first.device:
            raise ValueError(f"{op}: {name} is on {t.device}, {first_name} is on {first.device}")
        if t.dtype != first.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype}, {first_name} has dtype {first.dtype}")
        if shape and t.shape != first.shape:
            raise ValueError(f"{op}: {name} has shape {tuple(t.shape)}, {first_name} has shape {tuple(first.shape)}")


def check_ndim(op: str, name: str, t: torch.Tensor, ndim: int) -> None:
    if t.dim() != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} dims, got shape {tuple(t.shape)}")


def check_choice(op: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{op}: {name} must be one of {tuple(choices)}, got {value!r}")


def check_bool(op: str, name: str, value) -> None:
    """``value`` is a Python bool (1, "yes" or a tensor are refused, not read as truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a bool, got {type(value).__name__} {value!r}")


def check_positive_int(op: str, name: str, value) -> None:
    """``value`` is an integer >= 1 (a bool, a float such as 100.0 or a string is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be a positive int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{op}: {name} must be a positive int, got {value}")


def check_finite_positive_real(op: str, name: str, value) -> None:
    """``value`` is a real number (not a bool or a string) with 0 < value < inf."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a finite positive number, got {type(value).__name__} {value!r}")
    if not 0.0 < float(value) < math.inf:
        raise ValueError(f"{op}: {name} must be a finite positive number, got {value!r}")
