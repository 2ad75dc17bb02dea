"""Activation-free training of a flow: z, log|det| and decoder-JVP columns with block recomputation.

``encode_with_tangent(flow, x, dz, mode, state) -> (z (B, D), log_det (B,), u (m*B, D) or None)``
computes what ``flow.linearize`` gives EOFlow -- z = f(x), log_det, and u = J_g(z) dz (g = f^-1, m
tangents per point) -- but keeps no block's activations for the backward. The flow is walked as a
program of units f_1..f_L (``SequenceFlow`` blocks, each coupling with the cheap linear blocks before
it; ``MultiscaleFlow`` levels' units with their factor-outs; any other flow is one unit). Notation:
h_0 = x, h_i = f_i(h_{i-1}), z = h_L (with the factored pieces); tangents v_L = dz,
v_{i-1} = G_i(h_{i-1}, v_i) = J_i^{-1} v_i with J_i = J_{f_i}(h_{i-1}), u = v_0; adjoints
a_i = dL/dv_i (a_0 = dL/du).

``mode="reversible"`` (constant memory; kept: x, z, dz and the fallback units below)
  forward:  h_0 -> h_L without a graph; then h and v together from (z, dz) back to (x', u) by each
            unit's exact inverse and its inverse JVP (``jvp(rev=True)``).
  sweep A (units 1..L, transport): a_i = J_i^{-T} a_{i-1}, the VJP of the linear map G_i in v, at
            h_{i-1} recomputed forward from x (exact); yields a_L. No parameter gradients.
  sweep B (units L..1, everything): h_{i-1} = f_i^{-1}(h_i) by the inverse; a_{i-1} = J_i^T a_i by
            the primal VJP (the inverse of the adjoint map), v_i carried down from v_L = dz; one graph
            of (f_i(h_{i-1}), log_det_i, G_i(h_{i-1}, v_i)) is backpropagated with (dL/dh_i,
            dL/dlog_det, a_{i-1}) for dL/dh_{i-1} and every parameter gradient.
  The two adjoint chains run in opposite directions (a from x to z, dL/dh from z to x), so a_L is
  carried to the z end first (sweep A); at factor-outs sweep A keeps a's factored piece (< B*D in
  all, independent of depth). Peak memory: one unit's activations plus O(B*D), whatever the depth.
  Drift: every unit's round trip e_i = max|f_i^{-1}(f_i(h)) - h| / max|h| is measured in the forward
  (every ``state.check_every``-th call, and whenever the reconstructed x' misses x by more than the
  tolerance); a unit with e_i > tol keeps its input h_{i-1} (and sweep A its a_{i-1}), so neither
  chain is inverted through it. tol = ``state.tol`` or 1000 * eps(dtype) (float32 1.2e-4, float64
  2.2e-13). ``state.stats`` records the round trips, the kept units, the primal drift |x' - x| and
  the adjoint drift |a_0' - a_0| (relative, max-norm).

``mode="boundaries"`` (no inversion, linear memory): the forward keeps h_{i-1} and v_i per unit; the
  backward recomputes each unit twice, first-to-last for the a chain (keeping the cross terms
  dL/dh_{i-1} through G_i, B*D per unit) and last-to-first for the primal chain. Gradients equal the
  stored graph's up to summation order; memory 3 L B D values plus one unit's activations.
"""
from __future__ import annotations

import contextlib
import warnings

import torch

from .architectures import MultiscaleFlow
from .base import InvertibleModule, LinearInvertible, SequenceFlow, tile_rows
from .conditioning import conditional_couplings
from .linear import ActNorm

MODES = ("reversible", "boundaries")
TOL_EPS = 1000.0  # default round-trip tolerance in units of the dtype's machine epsilon


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


def _relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """max|approx - exact| / max|exact| (max-norms over the whole tensor; 0 for an all-zero exact)."""
    scale = float(exact.abs().max())
    return float((approx - exact).abs().max()) / scale if scale > 0 else float((approx - exact).abs().max())


class ReversibleState:
    """What ``mode="reversible"`` keeps between calls: the round-trip tolerance (None: TOL_EPS * eps of
    x's dtype), how often every unit's round trip is checked (1: every call), the units kept at the
    last check, and ``stats`` of the last call (module doc)."""

    def __init__(self, tol: float | None = None, check_every: int = 1):
        if tol is not None and not tol > 0:
            raise ValueError(f"ReversibleState: tol must be > 0 or None, got {tol}")
        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
            raise ValueError(f"ReversibleState: check_every must be an int >= 1, got {check_every!r}")
        self.tol, self.check_every = tol, check_every
        self.calls, self.kept_units, self.force_check = 0, set(), False
        self.stats: dict = {}

    def tolerance(self, dtype: torch.dtype) -> float:
        return self.tol if self.tol is not None else TOL_EPS * torch.finfo(dtype).eps

    def check_now(self) -> bool:
        return self.force_check or self.calls % self.check_every == 0


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


def _trainable(module) -> list:
    return [p for p in module.parameters() if p.requires_grad]


class _Grads:
    """Parameter gradients summed over the recomputed units (a parameter may sit in several)."""

    def __init__(self):
        self.sums: dict[int, torch.Tensor] = {}

    def add(self, params, grads):
        for p, g in zip(params, grads):
            if g is not None:
                self.sums[id(p)] = self.sums[id(p)] + g if id(p) in self.sums else g

    def ordered(self, program):
        return [self.sums.get(id(p)) for kind, op in program if kind == "block" for p in _trainable(op)]


def _labelled(ops, name: str):
    """Iterate ops, each step inside a profiler range ``name`` (for ``torch.profiler`` traces)."""
    for op in ops:
        with torch.profiler.record_function(name):
            yield op


def _backprop(outputs_and_grads, inputs):
    pairs = [(t, g) for t, g in outputs_and_grads if t is not None and t.requires_grad]
    return torch.autograd.grad([t for t, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True)


class _EncodeReversible(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dz, program, state, *params):
        ctx.program, ctx.state, ctx.has_tangent = program, state, dz is not None
        ctx.autocast = _Recompute(x.device.type, [op for kind, op in program if kind == "block"])
        tol = ctx.tol = state.tolerance(x.dtype)
        check = state.check_now()
        state.calls += 1
        h, pieces, log_det, kept, trips = _primal(program, x, check, tol, state.kept_units)
        if dz is not None:
            x_rec, u = _tangent_from_z(program, h, pieces, dz, kept)
            drift = _relative_error(x_rec, x)
            if drift > tol and not check:  # a unit drifted since the last check: check every unit now
                check = True
                h, pieces, log_det, kept, trips = _primal(program, x, True, tol, set())
                x_rec, u = _tangent_from_z(program, h, pieces, dz, kept)
                drift = _relative_error(x_rec, x)
            state.stats = {"primal_drift": drift}
        else:
            u, state.stats = x.new_empty(0), {}
        if check:
            state.kept_units = set(kept)
            state.stats["roundtrip"] = trips
        state.force_check = False
        state.stats.update(checked=check, kept_units=sorted(kept), tol=tol)
        z = _assemble(pieces, h)
        ctx.kept = sorted(kept)
        ctx.shapes = ([p.new_empty((1, *p.shape[1:])) for p in pieces], h.new_empty((1, *h.shape[1:])))
        ctx.save_for_backward(x, z, *(() if dz is None else (dz,)), *(kept[i] for i in ctx.kept))
        return z, log_det, u

    @staticmethod
    def backward(ctx, g_z, g_log_det, g_u):
        program, state = ctx.program, ctx.state
        x, z, *rest = ctx.saved_tensors
        dz = rest.pop(0) if ctx.has_tangent else None
        kept = dict(zip(ctx.kept, rest))
        blocks = [op for kind, op in program if kind == "block"]
        params = [_trainable(b) for b in blocks]
        grads = _Grads()
        piece_shapes, h_shape = ctx.shapes
        a_kept, a_pieces, a = {}, [], None
        if dz is not None:  # sweep A: a_i = J_i^{-T} a_{i-1}, first unit first, h recomputed from x
            a, h, i = g_u.reshape(g_u.shape[0], *x.shape[1:]), x, 0
            for kind, op in _labelled(program, "reversible.sweep_a"):
                if kind == "factor":
                    a_pieces.append(a[:, op:])
                    a, h = a[:, :op], h[:, :op]
                    continue
                if i in kept:
                    a_kept[i] = a
                with ctx.autocast():
                    with torch.no_grad():
                        h, _, inverse_jvp = op.linearize(h)
                    with torch.enable_grad():
                        w = a.new_zeros(a.shape[0], *h.shape[1:]).requires_grad_(True)
                        a = torch.autograd.grad(inverse_jvp(w), w, a)[0]
                i += 1
        g_pieces, g_h = _split_like(g_z, piece_shapes, h_shape)
        z_pieces, h = _split_like(z, piece_shapes, h_shape)
        if dz is not None:
            d_pieces, v = _split_like(dz, piece_shapes, h_shape)
        i = len(blocks)
        for kind, op in _labelled(program[::-1], "reversible.sweep_b"):  # sweep B: last unit first
            if kind == "factor":
                h, g_h = torch.cat([h, z_pieces.pop()], 1), torch.cat([g_h, g_pieces.pop()], 1)
                if dz is not None:
                    v, a = torch.cat([v, d_pieces.pop()], 1), torch.cat([a, a_pieces.pop()], 1)
                continue
            i -= 1
            with ctx.autocast():
                if i in kept:
                    h_prev = kept[i]
                else:
                    with torch.no_grad():
                        h_prev = op(h, rev=True)[0]
                with torch.enable_grad():
                    leaf = h_prev.detach().requires_grad_(True)
                    if dz is None:
                        out_h, ld = op(leaf)
                        res = _backprop([(out_h, g_h), (ld, g_log_det)], [leaf, *params[i]])
                    else:
                        out_h, ld, inverse_jvp = op.linearize(leaf)
                        a = a_kept[i] if i in a_kept else _primal_vjp(op, leaf, out_h, a)
                        v = inverse_jvp(v)
                        res = _backprop([(out_h, g_h), (ld, g_log_det), (v, a)], [leaf, *params[i]])
                        v = v.detach()
            g_h, h = res[0], h_prev
            grads.add(params[i], res[1:])
        state.stats["primal_drift_backward"] = _relative_error(h, x)
        if dz is not None:
            state.stats["adjoint_drift"] = _relative_error(a, g_u.reshape(a.shape))
        if state.stats["primal_drift_backward"] > ctx.tol:
            state.force_check = True
        return (g_h, None, None, None, *grads.ordered(program))


class _EncodeBoundaries(torch.autograd.Function):
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
        grads = _Grads()
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
                grads.add(params[i], out[2:])
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
                out = _backprop([(out_h, g_h), (ld, g_log_det)], [h, *params[i]])
            g_h = out[0] if cross[i] is None else out[0] + cross[i]
            grads.add(params[i], out[1:])
        return (g_h, None, None, *grads.ordered(program))


def _primal(program, x, check: bool, tol: float, kept_units: set):
    """h_0 = x -> h_L without a graph. On a check, every unit's round trip e_i is measured and the
    inputs of units with e_i > tol are kept; otherwise the inputs of ``kept_units`` are kept."""
    h, pieces, log_det, kept, trips, i = x, [], x.new_zeros(x.shape[0]), {}, [], 0
    for kind, op in _labelled(program, "reversible.primal"):
        if kind == "factor":
            h, piece = h.split([op, h.shape[1] - op], dim=1)
            pieces.append(piece)
            continue
        out, ld = op(h)
        if check:
            with torch.profiler.record_function("reversible.roundtrip"):
                trips.append(_relative_error(op(out, rev=True)[0], h))
            if trips[-1] > tol:
                kept[i] = h
        elif i in kept_units:
            kept[i] = h
        h, log_det, i = out, log_det + ld, i + 1
    return h, pieces, log_det, kept, trips


def _tangent_from_z(program, h, pieces, dz, kept):
    """(x', u): h and v together from (h_L, v_L = dz) back to the input by each unit's inverse and
    inverse JVP; a kept unit restarts h from its kept input."""
    pieces = list(pieces)
    d_pieces, v = _split_like(dz, pieces, h)
    single = dz.shape[0] == h.shape[0]
    i = sum(kind == "block" for kind, _ in program)
    for kind, op in _labelled(program[::-1], "reversible.tangent"):
        if kind == "factor":
            h, v = torch.cat([h, pieces.pop()], 1), torch.cat([v, d_pieces.pop()], 1)
            continue
        i -= 1
        if i in kept or not single:  # m > 1 tangents per point: the inverse JVP at the recomputed input
            h = kept[i] if i in kept else op(h, rev=True)[0]
            v = op.linearize(h)[2](v)
        else:
            h, _, v = op.jvp(h, v, rev=True)
    return h, v.reshape(v.shape[0], -1)


def _primal_vjp(op, leaf, out_h, a):
    """J_{f}(leaf)^T a for a (m*B, ...) cotangent: through the recomputed graph when m = 1, else
    through a primal pass on leaf tiled to a's rows."""
    if a.shape[0] == leaf.shape[0]:
        return torch.autograd.grad(out_h, leaf, a, retain_graph=True)[0]
    tiled = tile_rows(leaf.detach(), a.shape[0]).requires_grad_(True)
    return torch.autograd.grad(op(tiled)[0], tiled, a)[0]


DRIFT_WARN_UNITS = 8  # float32 units beyond which inverted gradients drift past 1e-4 (measured, README)
_warned_drift = False


def _warn_if_deep_low_precision(program, dtype: torch.dtype) -> None:
    """One warning per process: below float64, the gradient chains rebuilt by inversion amplify
    round-off with depth (measured on a 3x32x32 Glow, float32: 7e-4 relative gradient error at 16
    couplings, 1.1e-2 at 64; float64: 6e-14), which the primal round-trip fallback does not see."""
    global _warned_drift
    if _warned_drift or dtype == torch.float64:
        return
    units = sum(kind == "block" for kind, _ in program)
    if units <= DRIFT_WARN_UNITS:
        return
    _warned_drift = True
    warnings.warn(f"memory='reversible' with {units} blocks in {dtype}: gradients rebuilt by inversion drift with "
                  f"depth (about 1e-3 relative at 16 couplings, 1e-2 at 64 in float32); memory='boundaries' keeps "
                  f"them exact at B*D per coupling step", RuntimeWarning, stacklevel=3)


def encode_with_tangent(flow: InvertibleModule, x: torch.Tensor, dz: torch.Tensor | None = None,
                        mode: str = "reversible", state: ReversibleState | None = None):
    """(z (B, D), log_det (B,), u = J_g(z) dz (m*B, D) or None) with block recomputation (module doc).

    ``x``: the flow's input (B, ...); ``dz``: flat tangents at z, (m*B, D) rows j*B + b at z_b, or None;
    ``mode``: "reversible" (inverses, constant memory) or "boundaries" (kept boundaries, no inversion);
    ``state``: the ``ReversibleState`` kept across calls (a fresh one, checking every unit, if None).
    """
    if mode not in MODES:
        raise ValueError(f"encode_with_tangent: mode must be one of {MODES}, got {mode!r}")
    program = _program(flow)
    params = [p for kind, op in program if kind == "block" for p in _trainable(op)]
    if mode == "reversible":
        _warn_if_deep_low_precision(program, x.dtype)
    if mode == "boundaries":
        z, log_det, u = _EncodeBoundaries.apply(x, dz, program, *params)
    else:
        z, log_det, u = _EncodeReversible.apply(x, dz, program, ReversibleState() if state is None else state,
                                                *params)
    return z, log_det, (u if dz is not None else None)
