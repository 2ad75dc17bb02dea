"""Autograd wrappers and dispatch for the fused affine coupling (kernels in ``kernels/`` and
``csrc/affine_coupling.cpp``; the math in ``eoflow_fast/reference/affine_coupling.py``).

Public functions
----------------
``affine_coupling(x, s_raw, t, *, clamp=2.0, clamp_fn="atan", reverse=False, backend="auto")``
    -> ``(y, log_det)``; x, s_raw, t share one shape (B, *), log_det has shape (B,).
    s = soft_clamp(s_raw); forward y = x e^s + t, log_det = sum s; reverse y = (x - t) e^-s,
    log_det = -sum s (sums over all non-batch dims; B = 0 or empty feature dims give empty
    outputs / zero log-dets).
    ``clamp_fn`` (formulas in ``eoflow_fast/reference/affine_coupling.py``, c = ``clamp``):
    "atan" c (2/pi) atan(s_raw/c); "tanh" c tanh(s_raw/c); "none" s_raw;
    "freia_atan" 0.636 c atan(s_raw); "freia_tanh" c tanh(s_raw); "freia_sigmoid" c 2 (sigmoid(s_raw) - 1/2)
    (FrEIA 0.2's ATAN / TANH / SIGMOID); "logsigmoid" log sigmoid(s_raw + c) and "neg_logsigmoid"
    -log sigmoid(s_raw + c) (normflows' "sigmoid_inv" / "sigmoid" scale maps with c = 2).
    ``clamp`` must be a finite float, and > 0 except for the two sigmoid maps, where it is an
    offset added to s_raw, not a bound. ``reverse`` must be a bool.
``affine_coupling_jvp(x, s_raw, t, dx, ds_raw, dt, *, ...)`` -> ``(y, log_det, dy, dlog_det)``:
    the primal and its tangent in one fused pass; its backward takes gradients for all four
    outputs (reverse-over-forward), which EOFlow's Jacobian term needs.
``soft_clamp(s_raw, clamp, clamp_fn)``: the clamp alone (reference math).

How the pieces fit
------------------
The fused kernels are wrapped as ``torch.library`` custom ops (``eoflow_fast::affine_coupling_*``)
with fake (meta) implementations, so ``torch.compile`` keeps each one as a single opaque node.
An ``autograd.Function`` around them supplies reverse mode (one fused backward that recomputes
e^s from the inputs; the gradient of t in the forward direction is the incoming gradient itself)
and forward mode (``jvp``), so the op also works under ``torch.autograd.forward_ad`` and
``torch.func.jvp``; the tangent it returns is itself differentiable. When a backward pass builds
a graph (``create_graph=True``: double backward), the Functions' backward evaluates the
reference's vector-Jacobian product with autograd instead of the fused kernel
(``ops/_reference_vjp.py``), so derivatives of every order are exact. The "torch" backend
calls the reference, which autograd differentiates directly. In plain eager mode the wrappers
skip the custom-op and ``setup_context`` layers (``ops/_eager.py``: about 100 us per call saved).
"""
from __future__ import annotations

import torch

from ..reference import affine_coupling as ref
from ._checks import check_bool, check_choice, check_finite_float, check_positive_float, check_same
from ._dispatch import BACKENDS, cpp_ops, resolve, triton_kernels
from ._eager import direct, eager_twin, pick
from ._reference_vjp import reference_vjp

OP = "affine_coupling"
CLAMP_IDS = {name: i for i, name in enumerate(ref.CLAMP_FNS)}  # the ids of csrc/ and kernels/
soft_clamp = ref.soft_clamp


# ---------------------------------------------------------------- custom ops (one kernel each)
def _fwd_impl(x: torch.Tensor, s_raw: torch.Tensor, t: torch.Tensor, clamp: float, clamp_fn: str,
              reverse: bool, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "triton":
        return triton_kernels(OP).coupling_fwd(x, s_raw, t, clamp, clamp_fn, reverse)
    return cpp_ops().affine_coupling_fwd(x, s_raw, t, clamp, CLAMP_IDS[clamp_fn], reverse)


_fwd_op = torch.library.custom_op("eoflow_fast::affine_coupling_fwd", mutates_args=())(_fwd_impl)
_fwd_call = direct(_fwd_op, _fwd_impl)


@_fwd_op.register_fake
def _(x, s_raw, t, clamp, clamp_fn, reverse, backend):
    return torch.empty_like(x), x.new_empty(x.shape[0])


def _bwd_impl(x: torch.Tensor, s_raw: torch.Tensor, t: torch.Tensor, gy: torch.Tensor, gld: torch.Tensor,
              clamp: float, clamp_fn: str, reverse: bool, backend: str) -> list[torch.Tensor]:
    """[gx, gs_raw] (+ [gt] in reverse; in forward gt is gy itself, returned by the caller)."""
    if backend == "triton":
        gx, gs, gt = triton_kernels(OP).coupling_bwd(x, s_raw, t, gy, gld, clamp, clamp_fn, reverse)
        return [gx, gs, gt] if reverse else [gx, gs]
    return list(cpp_ops().affine_coupling_bwd(x, s_raw, t, gy, gld, clamp, CLAMP_IDS[clamp_fn], reverse))


_bwd_op = torch.library.custom_op("eoflow_fast::affine_coupling_bwd", mutates_args=())(_bwd_impl)
_bwd_call = direct(_bwd_op, _bwd_impl)


@_bwd_op.register_fake
def _(x, s_raw, t, gy, gld, clamp, clamp_fn, reverse, backend):
    return [torch.empty_like(x) for _ in range(3 if reverse else 2)]


def _jvp_fwd_impl(x: torch.Tensor, s_raw: torch.Tensor, t: torch.Tensor, dx: torch.Tensor, ds_raw: torch.Tensor,
                  dt: torch.Tensor, clamp: float, clamp_fn: str, reverse: bool,
                  backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if backend == "triton":
        return triton_kernels(OP).coupling_jvp_fwd(x, s_raw, t, dx, ds_raw, dt, clamp, clamp_fn, reverse)
    return cpp_ops().affine_coupling_jvp_fwd(x, s_raw, t, dx, ds_raw, dt, clamp, CLAMP_IDS[clamp_fn], reverse)


_jvp_fwd_op = torch.library.custom_op("eoflow_fast::affine_coupling_jvp_fwd", mutates_args=())(_jvp_fwd_impl)
_jvp_fwd_call = direct(_jvp_fwd_op, _jvp_fwd_impl)


@_jvp_fwd_op.register_fake
def _(x, s_raw, t, dx, ds_raw, dt, clamp, clamp_fn, reverse, backend):
    b = x.shape[0]
    return torch.empty_like(x), x.new_empty(b), torch.empty_like(x), x.new_empty(b)


def _jvp_bwd_impl(x: torch.Tensor, s_raw: torch.Tensor, t: torch.Tensor, dx: torch.Tensor, ds_raw: torch.Tensor,
                  dt: torch.Tensor, gy: torch.Tensor, gld: torch.Tensor, gdy: torch.Tensor, gdld: torch.Tensor,
                  clamp: float, clamp_fn: str, reverse: bool, backend: str) -> list[torch.Tensor]:
    """[gx, gs_raw, gdx, gds_raw] (+ [gt, gdt] in reverse; in forward they are gy and gdy)."""
    if backend == "triton":
        gx, ga, gt, gdx, gda, gdt = triton_kernels(OP).coupling_jvp_bwd(
            x, s_raw, t, dx, ds_raw, dt, gy, gld, gdy, gdld, clamp, clamp_fn, reverse)
        return [gx, ga, gdx, gda, gt, gdt] if reverse else [gx, ga, gdx, gda]
    return list(cpp_ops().affine_coupling_jvp_bwd(x, s_raw, t, dx, ds_raw, dt, gy, gld, gdy, gdld, clamp,
                                                  CLAMP_IDS[clamp_fn], reverse))


_jvp_bwd_op = torch.library.custom_op("eoflow_fast::affine_coupling_jvp_bwd", mutates_args=())(_jvp_bwd_impl)
_jvp_bwd_call = direct(_jvp_bwd_op, _jvp_bwd_impl)


@_jvp_bwd_op.register_fake
def _(x, s_raw, t, dx, ds_raw, dt, gy, gld, gdy, gdld, clamp, clamp_fn, reverse, backend):
    return [torch.empty_like(x) for _ in range(6 if reverse else 4)]


# ---------------------------------------------------------------- autograd
def _grad_or_zeros(g, shape, like):
    return like.new_zeros(shape) if g is None else g.contiguous()


def _double_backward() -> bool:
    """True when this backward must itself be differentiable (``create_graph=True``)."""
    return torch.is_grad_enabled()


class _CouplingJvpFn(torch.autograd.Function):
    """(x, s_raw, t, dx, ds_raw, dt) -> (y, log_det, dy, dlog_det) on (B, N) tensors."""

    @staticmethod
    def forward(x, s_raw, t, dx, ds_raw, dt, clamp, clamp_fn, reverse, backend):
        return _jvp_fwd_call(x, s_raw, t, dx, ds_raw, dt, clamp, clamp_fn, reverse, backend)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:6])
        ctx.cfg = inputs[6:]

    @staticmethod
    def backward(ctx, gy, gld, gdy, gdld):
        x, s_raw, t, dx, ds_raw, dt = ctx.saved_tensors
        gy, gdy = _grad_or_zeros(gy, x.shape, x), _grad_or_zeros(gdy, x.shape, x)
        gld, gdld = _grad_or_zeros(gld, x.shape[0], x), _grad_or_zeros(gdld, x.shape[0], x)
        if _double_backward():
            clamp, clamp_fn, reverse, _ = ctx.cfg
            return *reference_vjp(lambda *v: ref.affine_coupling_jvp(*v, clamp, clamp_fn, reverse),
                                  ctx.saved_tensors, (gy, gld, gdy, gdld)), None, None, None, None
        g = _jvp_bwd_call(x, s_raw, t, dx, ds_raw, dt, gy, gld, gdy, gdld, *ctx.cfg)
        reverse = ctx.cfg[2]
        gt, gdt = (g[4], g[5]) if reverse else (gy, gdy)
        return g[0], g[1], gt, g[2], g[3], gdt, None, None, None, None


class _CouplingFn(torch.autograd.Function):
    """(x, s_raw, t) -> (y, log_det) on (B, N) tensors with a fused backward (compile path)."""

    @staticmethod
    def forward(x, s_raw, t, clamp, clamp_fn, reverse, backend):
        return _fwd_call(x, s_raw, t, clamp, clamp_fn, reverse, backend)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:3])
        ctx.save_for_forward(*inputs[:3])
        ctx.cfg = inputs[3:]

    @staticmethod
    def backward(ctx, gy, gld):
        x, s_raw, t = ctx.saved_tensors
        gy, gld = _grad_or_zeros(gy, x.shape, x), _grad_or_zeros(gld, x.shape[0], x)
        if _double_backward():
            clamp, clamp_fn, reverse, _ = ctx.cfg
            return *reference_vjp(lambda *v: ref.affine_coupling(*v, clamp, clamp_fn, reverse),
                                  ctx.saved_tensors, (gy, gld)), None, None, None, None
        g = _bwd_call(x, s_raw, t, gy, gld, *ctx.cfg)
        gt = g[2] if ctx.cfg[2] else gy
        return g[0], g[1], gt, None, None, None, None


class _CouplingFnJvp(_CouplingFn):
    """``_CouplingFn`` plus a forward-mode rule. Dynamo cannot trace an autograd.Function that
    defines ``jvp`` (it graph-breaks), so compiled code uses ``_CouplingFn``: forward-mode AD
    through this op is an eager-mode feature."""

    @staticmethod
    def jvp(ctx, dx, ds_raw, dt, *_):
        x, s_raw, t = ctx.saved_tensors
        tangents = [torch.zeros_like(x) if d is None else d.contiguous() for d in (dx, ds_raw, dt)]
        _, _, dy, dld = pick(_CouplingJvpFn, _CouplingJvpFnEager).apply(x, s_raw, t, *tangents, *ctx.cfg)
        return dy, dld


_CouplingJvpFnEager = eager_twin(_CouplingJvpFn)
_CouplingFnJvpEager = eager_twin(_CouplingFnJvp)


# ---------------------------------------------------------------- public API
def _validate(named: dict, clamp, clamp_fn, reverse, backend) -> tuple:
    """Checks every argument; returns ``(x, clamp, clamp_fn, reverse, backend)`` in canonical types."""
    check_same(OP, named)
    x = next(iter(named.values()))
    if x.dim() < 2:
        raise ValueError(f"{OP}: x must have a batch dim and at least one feature dim, got shape {tuple(x.shape)}")
    clamp_fn = check_choice(OP, "clamp_fn", clamp_fn, ref.CLAMP_FNS)
    check = check_finite_float if clamp_fn in ref.OFFSET_CLAMP_FNS else check_positive_float
    clamp = check(OP, "clamp", clamp)
    reverse = check_bool(OP, "reverse", reverse)
    backend = check_choice(OP, "backend", backend, BACKENDS)
    return x, clamp, clamp_fn, reverse, backend


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(B, *) -> a (B, N) view when its rows are contiguous (any row stride, e.g. a ``chunk`` of a
    subnet output); otherwise a contiguous copy. The kernels take row strides."""
    rows = t.flatten(1)
    return rows if rows.stride(1) == 1 or rows.shape[1] <= 1 else rows.contiguous()


def affine_coupling(x: torch.Tensor, s_raw: torch.Tensor, t: torch.Tensor, *, clamp: float = 2.0,
                    clamp_fn: str = "atan", reverse: bool = False, backend: str = "auto"):
    """Affine coupling ``(y, log_det)``; see the module docstring for the math and shapes."""
    x, clamp, clamp_fn, reverse, backend = _validate({"x": x, "s_raw": s_raw, "t": t}, clamp, clamp_fn, reverse,
                                                     backend)
    which = resolve(OP, backend, x.device, x.dtype)
    if which == "torch":
        return ref.affine_coupling(x, s_raw, t, clamp, clamp_fn, reverse)
    fn = _CouplingFn if torch.compiler.is_compiling() else pick(_CouplingFnJvp, _CouplingFnJvpEager)
    y, log_det = fn.apply(_flat(x), _flat(s_raw), _flat(t), clamp, clamp_fn, reverse, which)
    return y.view(x.shape), log_det


def affine_coupling_jvp(x: torch.Tensor, s_raw: torch.Tensor, t: torch.Tensor, dx: torch.Tensor,
                        ds_raw: torch.Tensor, dt: torch.Tensor, *, clamp: float = 2.0, clamp_fn: str = "atan",
                        reverse: bool = False, backend: str = "auto"):
    """Primal and tangent ``(y, log_det, dy, dlog_det)`` in one pass (module docstring)."""
    x, clamp, clamp_fn, reverse, backend = _validate(
        {"x": x, "s_raw": s_raw, "t": t, "dx": dx, "ds_raw": ds_raw, "dt": dt}, clamp, clamp_fn, reverse, backend)
    which = resolve(OP, backend, x.device, x.dtype)
    if which == "torch":
        return ref.affine_coupling_jvp(x, s_raw, t, dx, ds_raw, dt, clamp, clamp_fn, reverse)
    flat = [_flat(v) for v in (x, s_raw, t, dx, ds_raw, dt)]
    y, ld, dy, dld = pick(_CouplingJvpFn, _CouplingJvpFnEager).apply(*flat, clamp, clamp_fn, reverse, which)
    return y.view(x.shape), ld, dy.view(x.shape), dld
