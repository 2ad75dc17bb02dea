"""Eager fast path for the ops' autograd wrappers.

Two layers that ``torch.compile`` and ``torch.func`` need cost Python time on every eager call:

- a ``torch.library`` custom op routes through an autograd shim that binds its signature with
  ``inspect`` (measured on the 2-core CPU, (16, 384) float32 coupling forward: C++ kernel 19 us,
  through the custom op 43 us);
- ``autograd.Function.apply`` binds default arguments with ``inspect`` for classes that define
  ``setup_context`` (another ~40 us per call).

``direct(op, impl)`` calls the custom op only while compiling and the plain implementation
otherwise. ``eager_twin(cls)`` is a classic-style copy (``forward(ctx, *args)``) of a
``setup_context`` Function with the same forward, backward and jvp; ``pick(cls, twin)`` uses the
twin unless Dynamo is tracing or a functorch transform (``torch.func.jvp``, ``vmap``...) is active,
which require the ``setup_context`` form.
"""
from __future__ import annotations

from typing import Callable

import torch


def direct(op: Callable, impl: Callable) -> Callable:
    """``op(*args)`` under ``torch.compile`` (one opaque graph node), ``impl(*args)`` in eager."""
    def call(*args):
        return (op if torch.compiler.is_compiling() else impl)(*args)
    return call


def eager_twin(fn_cls: type[torch.autograd.Function]) -> type[torch.autograd.Function]:
    """Classic-style autograd.Function running ``fn_cls``'s forward, setup_context, backward and jvp."""

    def forward(ctx, *args):
        out = fn_cls.forward(*args)
        fn_cls.setup_context(ctx, args, out)
        return out

    body = {"forward": staticmethod(forward), "backward": staticmethod(fn_cls.backward),
            "__doc__": f"Eager twin of {fn_cls.__name__} (see eoflow_fast.ops._eager)."}
    if fn_cls.jvp is not torch.autograd.Function.jvp:
        body["jvp"] = staticmethod(fn_cls.jvp)
    return type(f"{fn_cls.__name__}Eager", (torch.autograd.Function,), body)


def pick(fn_cls: type[torch.autograd.Function], twin: type[torch.autograd.Function]):
    """``twin`` in plain eager mode, ``fn_cls`` when compiling or under a functorch transform."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return fn_cls
    return twin
