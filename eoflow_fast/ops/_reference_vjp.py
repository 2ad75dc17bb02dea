"""Differentiable backward for the fused ops: what their autograd Functions run when a backward
pass itself builds a graph (``create_graph=True``, i.e. double backward, gradient penalties,
Hessian-vector products).

The fused kernels' backward passes are single opaque calls with no derivative of their own; rather
than fail (or, as ``once_differentiable`` does, return silent zeros one order up), the Function's
backward evaluates the vector-Jacobian product of the op's PyTorch reference with
``create_graph=True``. The result is exact (closed-form derivatives of the reference formulas, to
any order) and stays connected to the graph of the op's inputs and of the incoming gradients.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch


def reference_vjp(fn: Callable, inputs: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> tuple:
    """``(d <grads, fn(*inputs)> / d inputs)`` as a differentiable graph.

    Each input enters through its own alias (a view if it already has a graph, a fresh leaf
    otherwise), so an input tensor passed in two argument slots gets each slot's gradient, not the
    sum twice."""
    with torch.enable_grad():
        aliases = [v.view_as(v) if v.requires_grad else v.detach().requires_grad_() for v in inputs]
        outputs = fn(*aliases)
        return torch.autograd.grad(outputs, aliases, grads, create_graph=True, allow_unused=True,
                                   materialize_grads=True)
