"""Argument checks shared by the op wrappers; every message names the op and the argument and
says what was expected. Each keyword check returns the value in its canonical Python type
(``float``, ``bool``, ``str``), so the kernels never see a numpy scalar or a 0-dim tensor."""
from __future__ import annotations

import math
import numbers

import torch


def check_tensor(op: str, name: str, t) -> None:
    """``t`` is a tensor with real storage (not on the meta device, which holds no values)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type == "meta":
        raise ValueError(f"{op}: {name} is on the meta device (shape only, no values); "
                         f"pass a tensor on a real device (cpu, cuda)")


def check_float(op: str, name: str, t) -> None:
    """``t`` is a floating-point tensor with real storage."""
    check_tensor(op, name, t)
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


def check_choice(op: str, name: str, value, choices) -> str:
    """``value`` is one of the strings ``choices``; returns it."""
    if not isinstance(value, str):
        raise TypeError(f"{op}: {name} must be a string, one of {tuple(choices)}, got {value!r} "
                        f"({type(value).__name__})")
    if value not in choices:
        raise ValueError(f"{op}: {name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_bool(op: str, name: str, value) -> bool:
    """``value`` is a bool (Python or numpy); ints, strings and tensors are refused, since
    ``reverse="False"`` or ``reverse=2`` is almost always a mistake."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{op}: {name} must be a bool, got {value!r} ({type(value).__name__})")


def _real(op: str, name: str, value, what: str) -> float:
    """``value`` as a Python float if it is a real number (int, float or numpy scalar; not a bool,
    a string, None or a tensor); ``what`` names the expectation in the error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a {what}, got {value!r} ({type(value).__name__})")
    return float(value)


def check_finite_float(op: str, name: str, value) -> float:
    """``value`` is a finite real number; returns it as a Python float."""
    v = _real(op, name, value, "finite float")
    if not math.isfinite(v):
        raise ValueError(f"{op}: {name} must be a finite float, got {value!r}")
    return v


def check_positive_float(op: str, name: str, value) -> float:
    """``value`` is a finite real number > 0; returns it as a Python float."""
    v = _real(op, name, value, "finite positive float")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{op}: {name} must be a finite positive float, got {value!r}")
    return v


def check_positive_int(op: str, name: str, value) -> None:
    """``value`` is an integer >= 1 (a bool, a float such as 100.0 or a string is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be a positive int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{op}: {name} must be a positive int, got {value}")
