"""Activation-free training of a flow: z, log|det| and decoder-JVP columns with block recomputation.

``encode_with_tangent(flow, x, dz) -> (z (B, D), log_det (B,), u (m*B, D) or None)`` computes what
``flow.linearize`` gives EOFlow -- z = f(x), log_det, and u = J_g(z) dz (g = f^-1, m tangents per
point) -- but keeps no block's activations for the backward. The flow is walked as a program of
units (``SequenceFlow`` blocks, each coupling with the cheap linear blocks before it;
``MultiscaleFlow`` levels' units with their factor-outs; any other flow is one unit).

Forward (no graph):  h_0 = x, h_i = f_i(h_{i-1}); the tangent v_L = dz runs back,
                     v_{i-1} = J_{f_i}(h_{i-1})^{-1} v_i (each block re-linearized at h_{i-1});
                     kept: the block-boundary tensors h_{i-1} and v_i, each of size B*D (m*B*D).
Backward, two sweeps, each block recomputed once per sweep with a graph:
    A (i = 1..L, the tangent chain's adjoint): from g_{v_0} = dL/du, backprop v_{i-1} = G_i(h_{i-1}, v_i)
      to get g_{v_i}, the parameters' share and the cross term c_{i-1} = dL/dh_{i-1} through G_i;
    B (i = L..1, the primal chain's adjoint): from g_{h_L} = dL/dz, backprop (h_i, log_det_i) =
      f_i(h_{i-1}) and add c_{i-1}.
The two sweeps run in opposite block orders, so the cross terms c_i (B*D each) are kept between them.
Nothing is inverted in the backward (the boundaries are exact), so there is no reconstruction drift:
gradients equal the stored graph's up to summation order. Peak memory: one unit's activations plus
3 L B D boundary values (x, v, c) for L units, against every block's activations when stored; it
still grows linearly in depth, with a slope about 1/10 of the stored one (bench/bench_reversible.py).
Compute: about two extra forward passes per block.
"""
from __future__ import annotations

import contextlib

import torch

from .architectures import MultiscaleFlow
from .base import InvertibleModule, LinearInvertible, SequenceFlow
from .conditioning import conditional_couplings
from .linear import ActNorm


def _units(blocks) -> list:
    """Blocks grouped into recomputation units: each run of cheap blocks (linear maps, ActNorm,
    reshapes) joins the block that follows it, so boundaries are kept once per coupling step."""
    units, group = [], []
    for b in blocks:
        group.append(b)
        if not isinstance(b, (LinearInvertible, ActNorm)):
            units.append(group)
            group = []
    if group:
        units.append(group)
    return [("block", g[0] if len(g) == 1 else SequenceFlow(*g)) for g in units]


def _program(flow: InvertibleModule) -> list:
    """[("block", module) | ("factor", kept_channels)] in forward order."""
    if isinstance(flow, SequenceFlow):
        return _units(flow.blocks)
    if isinstance(flow, MultiscaleFlow):
        ops = []
        for level, (kept, out_shape) in zip(flow.levels, flow.shapes):
            ops += _program(level)
            if out_shape is not None:
                ops.append(("factor", kept[0]))
        return ops
    return [("block", flow)]


def _assemble(pieces: list, h: torch.Tensor) -> torch.Tensor:
    return torch.cat([p.reshape(p.shape[0], -1) for p in pieces] + [h.reshape(h.shape[0], -1)], 1)


def _split_like(flat: torch.Tensor, pieces: list, h: torch.Tensor) -> tuple[list, torch.Tensor]:
    """Inverse of ``_assemble`` for a flat (n, D) tensor, n a multiple of the batch."""
    sizes = [p[0].numel() for p in pieces] + [h[0].numel()]
    parts = flat.split(sizes, dim=1)
    n = flat.shape[0]
    return [q.reshape(n, *p.shape[1:]) for q, p in zip(parts, pieces)], parts[-1].reshape(n, *h.shape[1:])


class _Recompute:
    """The forward's autocast state and coupling conditions, re-entered for the recomputations in
    backward (which runs outside both)."""

    def __init__(self, device_type: str, blocks: list):
        self.device_type = device_type
        self.enabled = torch.is_autocast_enabled(device_type)
        self.dtype = torch.get_autocast_dtype(device_type) if self.enabled else None
        self.conditions = [(m, m.condition) for b in blocks for m in conditional_couplings(b)]

    @contextlib.contextmanager
    def __call__(self):
        previous = [m.condition for m, _ in self.conditions]
        for m, c in self.conditions:
            m.condition = c
        try:
            with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled):
                yield
        finally:
            for (m, _), c in zip(self.conditions, previous):
                m.condition = c


class _EncodeWithTangent(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dz, program, *params):
        ctx.program, ctx.has_tangent = program, dz is not None
        ctx.autocast = _Recompute(x.device.type, [op for kind, op in program if kind == "block"])
        h, pieces, boundaries, log_det = x, [], [], x.new_zeros(x.shape[0])
        for kind, op in program:
            if kind == "block":
                boundaries.append(h)
                h, ld = op(h)
                log_det = log_det + ld
            else:
                h, piece = h.split([op, h.shape[1] - op], dim=1)
                pieces.append(piece)
        z = _assemble(pieces, h)
        ctx.shapes = ([p.new_empty((1, *p.shape[1:])) for p in pieces], h.new_empty((1, *h.shape[1:])))
        if dz is None:
            ctx.save_for_backward(*boundaries)
            return z, log_det, z.new_empty(0)
        d_pieces, dh = _split_like(dz, pieces, h)
        tangents = []
        block = len(boundaries)
        for kind, op in reversed(program):
            if kind == "factor":
                dh = torch.cat([dh, d_pieces.pop()], 1)
                continue
            block -= 1
            tangents.append(dh)
            dh = op.linearize(boundaries[block])[2](dh)
        tangents.reverse()  # tangents[i] = v at block i's output
        ctx.save_for_backward(*boundaries, *tangents)
        return z, log_det, dh.reshape(dh.shape[0], -1)

    @staticmethod
    def backward(ctx, g_z, g_log_det, g_u):
        program, saved = ctx.program, ctx.saved_tensors
        blocks = [op for kind, op in program if kind == "block"]
        L = len(blocks)
        boundaries, tangents = saved[:L], saved[L:]
        params = [_trainable(b) for b in blocks]
        grads: dict[int, torch.Tensor] = {}

        def accumulate(ps, gs):
            for p, g in zip(ps, gs):
                if g is not None:
                    grads[id(p)] = grads[id(p)] + g if id(p) in grads else g

        cross = [None] * L
        if ctx.has_tangent:  # sweep A: the tangent chain's adjoint, first block first
            g_v = g_u.reshape(g_u.shape[0], *boundaries[0].shape[1:])
            i = 0
            for kind, op in program:
                if kind == "factor":
                    g_v = g_v[:, :op]
                    continue
                with torch.enable_grad(), ctx.autocast():
                    h = boundaries[i].detach().requires_grad_(True)
                    v = tangents[i].detach().requires_grad_(True)
                    v_prev = op.linearize(h)[2](v)
                    out = torch.autograd.grad(v_prev, [h, v, *params[i]], g_v, allow_unused=True)
                cross[i], g_v = out[0], out[1]
                accumulate(params[i], out[2:])
                i += 1
        piece_shapes, h_shape = ctx.shapes
        g_pieces, g_h = _split_like(g_z, piece_shapes, h_shape)
        i = L
        for kind, op in reversed(program):  # sweep B: the primal chain's adjoint, last block first
            if kind == "factor":
                g_h = torch.cat([g_h, g_pieces.pop()], 1)
                continue
            i -= 1
            with torch.enable_grad(), ctx.autocast():
                h = boundaries[i].detach().requires_grad_(True)
                out_h, ld = op(h)
                pairs = [(t, g) for t, g in ((out_h, g_h), (ld, g_log_det)) if t.requires_grad]
                out = torch.autograd.grad([t for t, _ in pairs], [h, *params[i]], [g for _, g in pairs],
                                          allow_unused=True)
            g_h = out[0] if cross[i] is None else out[0] + cross[i]
            accumulate(params[i], out[1:])
        flat = [p for ps in params for p in ps]
        return (g_h, None, None, *[grads.get(id(p)) for p in flat])


def _trainable(module) -> list:
    return [p for p in module.parameters() if p.requires_grad]


def encode_with_tangent(flow: InvertibleModule, x: torch.Tensor, dz: torch.Tensor | None = None):
    """(z (B, D), log_det (B,), u = J_g(z) dz (m*B, D) or None) with block recomputation (module doc).

    ``x``: the flow's input (B, ...); ``dz``: flat tangents at z, (m*B, D) rows j*B + b at z_b, or None.
    """
    program = _program(flow)
    params = [p for kind, op in program if kind == "block" for p in _trainable(op)]
    z, log_det, u = _EncodeWithTangent.apply(x, dz, program, *params)
    return z, log_det, (u if dz is not None else None)
