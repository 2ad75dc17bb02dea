"""Backend selection shared by every op.

Rule for ``backend="auto"``: CUDA tensors -> Triton, CPU tensors -> C++ (``eoflow_fast._C``),
anything else, or a backend that cannot be loaded -> the PyTorch reference, with one warning
per (op, reason). A forced backend that cannot run raises ``BackendUnavailable``.

Triton runs on CPU tensors only under ``TRITON_INTERPRET=1`` (how CI tests the kernels); the
variable must be set before ``triton`` is first imported.
"""
from __future__ import annotations

import importlib
import os
import warnings
from functools import lru_cache
from types import ModuleType

import torch

BACKENDS = ("auto", "triton", "cpp", "torch")
CPP_DTYPES = (torch.float32, torch.float64)
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class BackendUnavailable(RuntimeError):
    """A backend was forced with ``backend=...`` but cannot run these inputs here."""


_warned: set[tuple[str, str]] = set()


def _warn_once(op: str, reason: str) -> None:
    if (op, reason) not in _warned:
        _warned.add((op, reason))
        warnings.warn(f"eoflow_fast.ops.{op}: {reason}; using the PyTorch reference", RuntimeWarning, stacklevel=4)


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@lru_cache(maxsize=None)
def _cpp_error() -> str | None:
    try:
        importlib.import_module("eoflow_fast._C")
    except Exception as exc:  # missing build, ABI mismatch, ...
        return f"C++ extension eoflow_fast._C not importable ({type(exc).__name__}: {exc})"
    return None


def cpp_ops():
    """``torch.ops.eoflow_fast_cpp`` once the extension is loaded, else None."""
    return None if _cpp_error() else torch.ops.eoflow_fast_cpp


@lru_cache(maxsize=None)
def _kernel_module(name: str) -> ModuleType | Exception:
    try:
        return importlib.import_module(f"eoflow_fast.kernels.{name}")
    except Exception as exc:
        return exc


def triton_kernels(name: str) -> ModuleType:
    """Import ``eoflow_fast.kernels.<name>`` (raises BackendUnavailable when triton is missing)."""
    mod = _kernel_module(name)
    if isinstance(mod, Exception):
        raise BackendUnavailable(f"Triton kernels '{name}' not importable ({type(mod).__name__}: {mod})")
    return mod


def _triton_problem(kernel: str, device: torch.device, dtype: torch.dtype) -> str | None:
    if device.type == "cpu" and not triton_interpret():
        return "Triton needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)"
    if device.type not in ("cuda", "cpu"):
        return f"Triton does not run on device '{device.type}'"
    if dtype not in TRITON_DTYPES:
        return f"Triton kernels take {TRITON_DTYPES}, got {dtype}"
    mod = _kernel_module(kernel)
    if isinstance(mod, Exception):
        return f"Triton kernels not importable ({type(mod).__name__}: {mod})"
    return None


def _cpp_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    if device.type != "cpu":
        return f"C++ kernels run on CPU tensors, got device '{device.type}'"
    if dtype not in CPP_DTYPES:
        return f"C++ kernels take float32/float64, got {dtype}"
    return _cpp_error()


@torch.compiler.assume_constant_result
def resolve(op: str, backend: str, device: torch.device, dtype: torch.dtype, kernel: str | None = None) -> str:
    """Pick ``"triton" | "cpp" | "torch"`` for one call of ``op`` on tensors of ``device``/``dtype``.

    ``kernel`` names the module in ``kernels/`` (defaults to ``op``). Under ``torch.compile`` the
    choice is made once at trace time and baked into the graph as a constant.
    """
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    kernel = kernel or op
    if backend == "torch":
        return "torch"
    if backend == "triton":
        problem = _triton_problem(kernel, device, dtype)
        if problem:
            raise BackendUnavailable(f"{op}: backend='triton' unavailable: {problem}")
        return "triton"
    if backend == "cpp":
        problem = _cpp_problem(device, dtype)
        if problem:
            raise BackendUnavailable(f"{op}: backend='cpp' unavailable: {problem}")
        return "cpp"
    # auto
    if device.type == "cuda":
        problem = _triton_problem(kernel, device, dtype)
        if problem is None:
            return "triton"
        _warn_once(op, problem)
        return "torch"
    if device.type == "cpu":
        problem = _cpp_problem(device, dtype)
        if problem is None:
            return "cpp"
        if dtype in CPP_DTYPES:  # a float16 CPU tensor is not a missing build: no warning
            _warn_once(op, problem)
        return "torch"
    _warn_once(op, f"no fused kernel for device '{device.type}'")
    return "torch"
