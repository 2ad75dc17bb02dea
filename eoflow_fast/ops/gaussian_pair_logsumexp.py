"""Autograd wrapper and dispatch for the pairwise Gaussian log-sum-exp (kernels in
``kernels/gaussian_pair_logsumexp.py`` and ``csrc/gaussian_pair_logsumexp.cpp``; the math in
``eoflow_fast/reference/gaussian_pair_logsumexp.py``).

``gaussian_pair_logsumexp(z, mu, logvar, *, weights=None, exclude_self=False, backend="auto")``
    -> ``(log_joint (B',), log_marginal (B', D))`` for z (B', D), mu and logvar (B, D):
    log N_nmd = -0.5 (log 2pi + logvar_md + (z_nd - mu_md)^2 exp(-logvar_md)),
    log_joint[n] = logsumexp_m(w_nm + sum_d log N_nmd), log_marginal[n, d] = logsumexp_m(w_nm + log N_nmd).
    ``weights`` (B', B) are log-weights w (0 when None; -inf drops a pair) and receive a gradient
    too. ``exclude_self`` (a bool) drops m == n (leave-one-out; needs B' == B). Empty inputs are
    fine on every backend: B' = 0 gives empty outputs, B = 0 gives -inf (an empty log-sum-exp), D = 0
    gives log_joint = logsumexp_m w_nm and an empty log_marginal.

The fused backends stream over m with an online log-sum-exp: O((B' + B) D) memory, never the
B' x B x D tensor the reference builds. Their backward recomputes the pair densities from the
inputs and the two saved outputs (flash-attention style). The kernels are ``torch.library``
custom ops with fake implementations, so ``torch.compile`` keeps each one as a single node.
"""
from __future__ import annotations

import torch

from ..reference import gaussian_pair_logsumexp as ref
from ._checks import check_bool, check_ndim, check_same
from ._dispatch import cpp_ops, resolve, triton_kernels

OP = "gaussian_pair_logsumexp"


@torch.library.custom_op("eoflow_fast::gaussian_pair_logsumexp_fwd", mutates_args=())
def _fwd_op(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, weights: torch.Tensor | None,
            exclude_self: bool, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "triton":
        return triton_kernels(OP).pair_logsumexp_fwd(z, mu, logvar, weights, exclude_self)
    return cpp_ops().gaussian_pair_logsumexp_fwd(z, mu, logvar, weights, exclude_self)


@_fwd_op.register_fake
def _(z, mu, logvar, weights, exclude_self, backend):
    return z.new_empty(z.shape[0]), torch.empty_like(z)


@torch.library.custom_op("eoflow_fast::gaussian_pair_logsumexp_bwd", mutates_args=())
def _bwd_op(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, weights: torch.Tensor | None,
            exclude_self: bool, log_joint: torch.Tensor, log_marginal: torch.Tensor, grad_joint: torch.Tensor,
            grad_marginal: torch.Tensor, weights_grad: bool, backend: str) -> list[torch.Tensor]:
    """[dz, dmu, dlogvar] (+ [dweights] when ``weights_grad``)."""
    args = (z, mu, logvar, weights, exclude_self, log_joint, log_marginal, grad_joint, grad_marginal, weights_grad)
    if backend == "triton":
        grads = triton_kernels(OP).pair_logsumexp_bwd(*args)
    else:
        grads = cpp_ops().gaussian_pair_logsumexp_bwd(*args)
    return list(grads[:4] if weights_grad else grads[:3])


@_bwd_op.register_fake
def _(z, mu, logvar, weights, exclude_self, log_joint, log_marginal, grad_joint, grad_marginal, weights_grad,
      backend):
    grads = [torch.empty_like(z), torch.empty_like(mu), torch.empty_like(logvar)]
    return grads + [z.new_empty(z.shape[0], mu.shape[0])] if weights_grad else grads


class _PairLogSumExpFn(torch.autograd.Function):
    @staticmethod
    def forward(z, mu, logvar, weights, exclude_self, backend):
        return _fwd_op(z, mu, logvar, weights, exclude_self, backend)

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, mu, logvar, weights, exclude_self, backend = inputs
        ctx.save_for_backward(z, mu, logvar, weights, *output)
        ctx.cfg = (exclude_self, backend)

    @staticmethod
    def backward(ctx, grad_joint, grad_marginal):
        z, mu, logvar, weights, log_joint, log_marginal = ctx.saved_tensors
        exclude_self, backend = ctx.cfg
        weights_grad = weights is not None and ctx.needs_input_grad[3]
        grad_joint = torch.zeros_like(log_joint) if grad_joint is None else grad_joint.contiguous()
        grad_marginal = torch.zeros_like(log_marginal) if grad_marginal is None else grad_marginal.contiguous()
        grads = _bwd_op(z, mu, logvar, weights, exclude_self, log_joint, log_marginal, grad_joint, grad_marginal,
                        weights_grad, backend)
        return grads[0], grads[1], grads[2], grads[3] if weights_grad else None, None, None


def _validate(z, mu, logvar, weights, exclude_self) -> None:
    named = {"z": z, "mu": mu, "logvar": logvar}
    if weights is not None:
        named["weights"] = weights
    check_same(OP, named, shape=False)
    check_bool(OP, "exclude_self", exclude_self)
    for name, t in named.items():
        check_ndim(OP, name, t, 2)
    if logvar.shape != mu.shape:
        raise ValueError(f"{OP}: logvar has shape {tuple(logvar.shape)}, mu has shape {tuple(mu.shape)}")
    if z.shape[1] != mu.shape[1]:
        raise ValueError(f"{OP}: z has {z.shape[1]} columns (shape {tuple(z.shape)}), mu has {mu.shape[1]} "
                         f"(shape {tuple(mu.shape)})")
    if weights is not None and weights.shape != (z.shape[0], mu.shape[0]):
        raise ValueError(f"{OP}: weights must have shape (B', B) = {(z.shape[0], mu.shape[0])}, "
                         f"got {tuple(weights.shape)}")
    if exclude_self and z.shape[0] != mu.shape[0]:
        raise ValueError(f"{OP}: exclude_self needs as many rows in z as in mu, got z {tuple(z.shape)} "
                         f"and mu {tuple(mu.shape)}")


def gaussian_pair_logsumexp(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
                            weights: torch.Tensor | None = None, exclude_self: bool = False,
                            backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """``(log_joint (B',), log_marginal (B', D))``; see the module docstring for the math."""
    _validate(z, mu, logvar, weights, exclude_self)
    which = resolve(OP, backend, z.device, z.dtype)
    if which == "torch":
        return ref.gaussian_pair_logsumexp(z, mu, logvar, weights=weights, exclude_self=exclude_self)
    weights = None if weights is None else weights.contiguous()
    return _PairLogSumExpFn.apply(z.contiguous(), mu.contiguous(), logvar.contiguous(), weights,
                                  bool(exclude_self), which)
