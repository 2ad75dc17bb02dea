"""Activation-free training of a flow: z, log|det| and decoder-JVP columns with block recomputation.

``encode_with_tangent(flow, x, dz, mode, state) -> (z (B, D), log_det (B,), u (m*B, D) or None)``
computes what ``flow.linearize`` gives EOFlow -- z = f(x), log_det, and u = J_g(z) dz (g = f^-1, m
tangents per point) -- but keeps no block's activations for the backward. The flow is walked as a
program of units f_1..f_L (``SequenceFlow`` blocks, each coupling with the cheap linear blocks before
it; ``MultiscaleFlow`` levels' units with their factor-outs; any other flow is one unit). Notation:
h_0 = x, h_i = f_i(h_{i-1}), z = h_L (with the factored pieces); tangents v_L = dz,
v_{i-1} = G_i(h_{i-1}, v_i) = J_i^{-1} v_i with J_i = J_{f_i}(h_{i-1}), u = v_0; adjoints
a_i = dL/dv_i (a_0 = dL/du).

The four passes (both modes):
  P1 (forward, units 1..L): h_0 -> h_L without a graph.
  P2 (forward, units L..1, lam > 0): v from v_L = dz down to u = v_0, at each unit's input h_{i-1}.
  sweep A (backward, units 1..L, lam > 0): a_i = J_i^{-T} a_{i-1}, the transpose of the linear map
            G_i(h_{i-1}, .) applied directly (``layer_tangents.tangent_transpose`` for the coupling
            subnets, no forward pass of the tangent); yields a_L.
  sweep B (backward, units L..1): one graph of (f_i(h_{i-1}), log_det_i, G_i(h_{i-1}, v_i)) per unit,
            backpropagated with (dL/dh_i, dL/dlog_det, a_{i-1}) for dL/dh_{i-1} and every parameter
            gradient.
The two adjoint chains run in opposite directions (a from x to z, dL/dh from z to x), so the a chain
needs its own sweep before the gradient sweep. In subnet-evaluation counts (F: both subnets of one
coupling forward; T: their tangent; a backward costs about 2 F), the stored path spends
F + T + 2 F + 2 T per unit and a recomputing path at least F (P1) + F + T (P2) + 2 F (sweep A:
forward and transpose) + F + T + 2 F + 2 T (sweep B), plus one input-VJP (F) in reversible mode:
for lam > 0 this is 2x the stored work; for lam = 0 (no P2, no sweep A) it is (F + 3 F) / 3 F = 4/3.

``mode="reversible"`` (constant memory; kept: x, z, dz, the ReLU kinks below, the fallback units)
  P2 rebuilds h_{i-1} = f_i^{-1}(h_i) by each unit's inverse with its inverse JVP (``jvp(rev=True)``);
  sweep A recomputes h forward from x (exact); sweep B rebuilds h_{i-1} by the inverse and a_{i-1} =
  J_i^T a_i by the primal VJP. For an ``AffineCoupling`` unit sweep B follows RevNet: the inverse
  y -> x evaluates subnet1 on y1 and subnet2 on x2, which are the forward's own subnet evaluations,
  so they are evaluated once, with a graph, and serve the inverse, the tangent and the backward
  (three ``autograd.grad`` calls join the pieces: the y2 side with subnet1 and the tangent, then the
  y1 side with subnet2, then the cheap blocks).
  ReLU kinks: a rebuilt input differs from the forward's by rounding (float32: ~1e-6 relative), which
  is harmless except where a ReLU input is that close to 0: the mask flips and that position's
  gradient jumps, which is the float32 gradient drift of inversion (measured: one flipped ReLU gave
  5e-2 relative error in one weight's gradient at 24 couplings). P1 records, per ReLU module, the
  inputs with |pre| <= tol * max|pre| (index and value; ``ops.kink_select``, fused on CPU and CUDA);
  every later evaluation of that module in the unit (P2, sweep B) gets them restored
  (``_RestoreValues``: values replaced, gradient passed), so every mask equals the forward's. The
  records are sparse (float32: ~1e-3 of the hidden units); ``stats["kink_margin"]`` is the largest
  |restored - recomputed| / (tol * max|pre|) seen in sweep B.
  Drift checks (``_anchors``), on the first call and every ``state.check_every``-th: P1 holds every
  unit's input, then walks down from z by the inverses as the backward does and compares each rebuilt
  input with the forward's, e_i = max|rebuilt - h_{i-1}| / max|h_{i-1}|; where e_i > tol the unit
  keeps its input h_{i-1} (and sweep A its a_{i-1}) and the walk restarts from it, so no rebuilt input
  is off by more than tol. A per-unit round trip |f_i^{-1}(f_i(h)) - h| does not bound this: at 64
  couplings (3x32x32 Glow, float32) every round trip was within tol while the chain of inverses
  amplified them to a drift of 6e22 (measured). Between checks, a call whose
  rebuilt x misses x by more than tol (P2's end, lam > 0), whose sweep B ends more than tol from x,
  or whose kink margin exceeds ``KINK_MARGIN`` checks every unit at once and recomputes its backward
  with the units found. tol = ``state.tol`` or 1000 * eps(dtype) (float32 1.2e-4, float64 2.2e-13);
  when the subnets round to a lower precision (autocast; TF32 convolutions, PyTorch's default for
  float32 on CUDA) ``LOWP_TOL_EPS`` * that precision's eps, and no kinks are recorded: rebuilt inputs
  cannot reproduce those roundings, so gradients match the stored path's to that precision only
  (measured on CPU under bf16 autocast: as close to float32 as the stored path's; README).
  A check step holds every unit's input (the memory of ``boundaries``) for its duration.
  ``state.stats`` records the rebuild errors e_i (check calls), the kept units, the primal drift |x' - x|, the adjoint
  drift |a_0' - a_0| (relative, max-norm), the kink count and margin, and whether the backward was
  recomputed.

``mode="boundaries"`` (no inversion, linear memory): P1 keeps h_{i-1}, P2 keeps v_i and sweep A keeps
  a_{i-1} per unit; sweep B is then one graph per unit. Gradients equal the stored graph's up to
  summation order; memory 3 L B D values plus one unit's activations.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .. import ops
from . import layer_tangents
from .architectures import MultiscaleFlow
from .base import InvertibleModule, LinearInvertible, SequenceFlow, tile_rows
from .conditioning import conditional_couplings
from .coupling import AffineCoupling, Subnet
from .linear import ActNorm

MODES = ("reversible", "boundaries")
TOL_EPS = 1000.0  # default round-trip tolerance in units of the dtype's machine epsilon
LOWP_TOL_EPS = 8.0  # subnets in lower precision: in units of that precision's epsilon (bf16: 0.0625)
TF32_EPS = 2.0 ** -10  # the rounding of TF32 convolution / matmul inputs
CHECK_EVERY = 100  # default interval of the scheduled round-trip checks (calls)
KINK_MARGIN = 0.5  # a restored ReLU input this far from its recomputation (in units of its threshold) rechecks


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


def _coupling_unit(op: InvertibleModule):
    """(cheap blocks, coupling) when the unit ends in an ``AffineCoupling`` whose subnets have
    transpose rules (the RevNet path and the direct transpose); else None (generic recomputation)."""
    *pre, last = list(op.blocks) if isinstance(op, SequenceFlow) else [op]
    if type(last) is not AffineCoupling or not all(isinstance(b, (LinearInvertible, ActNorm)) for b in pre):
        return None
    nets = (last.subnet1, last.subnet2)
    if not all(isinstance(n, Subnet) and layer_tangents.has_transpose_rules(n) for n in nets):
        return None
    return pre, last


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
    x's dtype), how often every unit's round trip is checked (``check_every``: every that many calls,
    the first included), whether ReLU kinks are recorded and restored (``restore_kinks``; off, float32
    gradients drift by flipped masks: the benchmark's comparison), the units kept at the last check,
    and ``stats`` of the last call (module doc)."""

    def __init__(self, tol: float | None = None, check_every: int = CHECK_EVERY, restore_kinks: bool = True):
        if tol is not None and not tol > 0:
            raise ValueError(f"ReversibleState: tol must be > 0 or None, got {tol}")
        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
            raise ValueError(f"ReversibleState: check_every must be an int >= 1, got {check_every!r}")
        self.tol, self.check_every, self.restore_kinks = tol, check_every, restore_kinks
        self.calls, self.kept_units, self.force_check = 0, set(), False
        self.stats: dict = {}

    def tolerance(self, dtype: torch.dtype, lower_eps: float | None = None) -> float:
        """``tol``, else TOL_EPS * eps(dtype), or LOWP_TOL_EPS * lower_eps when the subnets round to a
        lower precision (``_lower_precision_eps``)."""
        if self.tol is not None:
            return self.tol
        if lower_eps is not None:
            return LOWP_TOL_EPS * lower_eps
        return TOL_EPS * torch.finfo(dtype).eps

    def check_now(self) -> bool:
        return self.force_check or self.calls % self.check_every == 0


def _lower_precision_eps(x: torch.Tensor, autocast: "_Recompute") -> float | None:
    """The epsilon the subnets round to when it is coarser than x's dtype, else None: the autocast
    dtype's, or TF32's for float32 on CUDA with TF32 convolutions or matmuls allowed (PyTorch allows
    them for cuDNN convolutions by default). Rebuilt inputs cannot reproduce such roundings, so the
    tolerance follows them and no kinks are recorded."""
    if autocast.enabled:
        return torch.finfo(autocast.dtype).eps
    if x.device.type == "cuda" and x.dtype == torch.float32 and (
            torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32):
        return TF32_EPS
    return None


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


class _RestoreValues(torch.autograd.Function):
    """pre with the flat entries ``idx`` set to ``values``, in place; the gradient passes through
    unchanged (the restored entries are the same function values, rebuilt to the forward's bits)."""

    @staticmethod
    def forward(ctx, pre, idx, values):
        pre.view(-1).index_put_((idx,), values)
        ctx.mark_dirty(pre)
        return pre

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def _kink_relus(blocks: list) -> list:
    """The ReLU / LeakyReLU modules whose input is the fresh output of a Linear or convolution in a
    Sequential (no other op reads it and its producer saves only its own input), so it can be
    restored in place."""
    producers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [layer for b in blocks for seq in b.modules() if isinstance(seq, nn.Sequential)
            for prev, layer in zip(seq, list(seq)[1:])
            if isinstance(layer, (nn.ReLU, nn.LeakyReLU)) and isinstance(prev, producers)]


class _Kinks:
    """ReLU inputs near the kink, recorded per unit in P1 and restored in its recomputations (module doc).

    ``rel``: the recording threshold relative to max|pre| of each call (None: nothing is recorded or
    restored). ``records[unit][module] = (idx, values, numel, threshold)``; ``gaps``: the restored
    entries' |values - recomputed| / threshold, one 0-dim tensor per restoring call.
    """

    def __init__(self, blocks: list, rel: float | None):
        self.relus = [] if rel is None else _kink_relus(blocks)
        self.rel, self.records, self.gaps = rel, {}, []
        self.mode, self.unit = None, None

    @contextlib.contextmanager
    def hooked(self):
        handles = [m.register_forward_pre_hook(self._hook) for m in self.relus]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    @contextlib.contextmanager
    def at(self, mode: str, unit: int):
        """Inside: ReLU calls of ``unit`` are recorded (mode "record") or restored ("restore")."""
        self.mode, self.unit = mode, unit
        try:
            yield
        finally:
            self.mode = None

    def count(self) -> int:
        return sum(int(r[0].numel()) for unit in self.records.values() for r in unit.values())

    def _hook(self, module, args):
        if self.mode is None:
            return None
        pre = args[0]
        if self.mode == "record":
            idx, values, threshold = ops.kink_select(pre, self.rel)
            self.records.setdefault(self.unit, {})[module] = (idx, values, pre.numel(), threshold)
            return None
        record = self.records.get(self.unit, {}).get(module)
        if record is None or not record[0].numel() or pre.numel() % record[2]:
            return None
        idx, values, n, threshold = record
        if pre.numel() != n:  # m tangent rows per point: the rows are the batch tiled m times
            m = pre.numel() // n
            idx = (idx + n * torch.arange(m, device=idx.device)[:, None]).reshape(-1)
            values = values.repeat(m)
        self.gaps.append((values - pre.detach().reshape(-1)[idx]).abs().max() / threshold)
        return (_RestoreValues.apply(pre, idx, values.to(pre.dtype)),)


@contextlib.contextmanager
def _nothing():
    yield


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


def _backprop(outputs_and_grads, inputs, retain_graph: bool = False):
    pairs = [(t, g) for t, g in outputs_and_grads if t is not None and g is not None and t.requires_grad]
    return torch.autograd.grad([t for t, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True,
                               retain_graph=retain_graph)


def _add(a, b):
    return b if a is None else a if b is None else a + b


# ---------------------------------------------------------------- sweep A: the transposed tangent chain
def _generic_transposed(op, h):
    """(f(h), T) with T(a) = G^T a for the linear map G = op's inverse JVP at f(h) (autograd of G)."""
    out, _, inverse_jvp = op.linearize(h)

    def transpose(a):
        with torch.enable_grad():
            w = a.new_zeros(a.shape[0], *out.shape[1:]).requires_grad_(True)
            return torch.autograd.grad(inverse_jvp(w), w, a)[0]
    return out, transpose


def _affine_tangent_transpose(cp: AffineCoupling, y, st, g):
    """(g_dy, g_dst): the transpose of the reverse affine tangent (dy, dst) -> dx at (y, st), applied to g."""
    with torch.enable_grad():
        dy, dst = torch.zeros_like(y, requires_grad=True), torch.zeros_like(st, requires_grad=True)
        return torch.autograd.grad(cp._affine(y, st, dy, dst, True)[2], [dy, dst], g)


def _coupling_transposed(cp: AffineCoupling, x):
    """(f(x), T): T is the transpose of ``AffineCoupling.linearize``'s inverse JVP at x (coupling doc):
    g_dy1, g_du2 = A1^T g_x1;  g_dx2 = g_x2 + N2'^T g_du2;  g_dy2, g_du1 = A2^T g_dx2;  g_dy1 += N1'^T g_du1."""
    x1, x2 = cp._split(x)
    st2, acts2 = cp.subnet2.forward_cached(cp._with_condition(x2)[0])
    y1 = cp._affine(x1, st2, None, None, False)[0]
    st1, acts1 = cp.subnet1.forward_cached(cp._with_condition(y1)[0])
    y2 = cp._affine(x2, st1, None, None, False)[0]

    def transpose(a):
        n = a.shape[0]
        g1, g2 = a.split([cp.c1, cp.c2], dim=1)
        g_dy1, g_du2 = _affine_tangent_transpose(cp, tile_rows(y1, n), tile_rows(st2, n), g1)
        tiled = [tile_rows(t, n) for t in acts2]
        g_dx2 = g2 + layer_tangents.tangent_transpose(cp.subnet2, g_du2, tiled)[:, :cp.c2]
        g_dy2, g_du1 = _affine_tangent_transpose(cp, tile_rows(y2, n), tile_rows(st1, n), g_dx2)
        tiled = [tile_rows(t, n) for t in acts1]
        g_dy1 = g_dy1 + layer_tangents.tangent_transpose(cp.subnet1, g_du1, tiled)[:, :cp.c1]
        return torch.cat([g_dy1, g_dy2], dim=1)
    return torch.cat([y1, y2], dim=1), transpose


def _transposed(op, unit, h):
    """(f(h), T) for one unit: T(a) = G_i(h, .)^T a, the cheap blocks first (their G is applied last)."""
    if unit is None:
        return _generic_transposed(op, h)
    pre, cp = unit
    transposes = []
    for b in pre:
        h, t = _generic_transposed(b, h)
        transposes.append(t)
    h, t = _coupling_transposed(cp, h)
    transposes.append(t)

    def transpose(a):
        for t in transposes:
            a = t(a)
        return a
    return h, transpose


def _sweep_a(program, units, x, a, keep, boundaries=None):
    """a_0 -> a_L through the units (module doc); h from x forward, or ``boundaries[i]`` when given.
    Returns (a_L, the factored pieces of a in order, {i: a_{i-1} for i in keep})."""
    h, pieces, kept, i = x, [], {}, 0
    for kind, op in _labelled(program, "reversible.sweep_a"):
        if kind == "factor":
            pieces.append(a[:, op:])
            a, h = a[:, :op], (h if boundaries is not None else h[:, :op])
            continue
        if i in keep:
            kept[i] = a
        with torch.no_grad():
            h, transpose = _transposed(op, units[i], h if boundaries is None else boundaries[i])
            a = transpose(a)
        i += 1
    return a, pieces, kept


# ---------------------------------------------------------------- reversible mode
def _primal(program, x, check: bool, tol: float, kept_units: set, kinks: _Kinks | None, record: bool = True):
    """P1: h_0 = x -> h_L without a graph, recording the ReLU kinks when ``record``. On a check the
    units to keep are chosen by ``_anchors`` (which holds every unit's input meanwhile); otherwise the
    inputs of ``kept_units`` are kept. Returns (h_L, factored pieces, log_det, kept {i: h_{i-1}},
    the rebuild error per unit (check) or [])."""
    h, pieces, log_det, kept, inputs, i = x, [], x.new_zeros(x.shape[0]), {}, [], 0
    for kind, op in _labelled(program, "reversible.primal"):
        if kind == "factor":
            h, piece = h.split([op, h.shape[1] - op], dim=1)
            pieces.append(piece)
            continue
        with kinks.at("record", i) if kinks is not None and record else _nothing():
            out, ld = op(h)
        if check:
            inputs.append(h)
        elif i in kept_units:
            kept[i] = h
        h, log_det, i = out, log_det + ld, i + 1
    if not check:
        return h, pieces, log_det, kept, []
    with torch.profiler.record_function("reversible.check"):
        kept, errors = _anchors(program, h, pieces, inputs, tol, kinks)
    return h, pieces, log_det, kept, errors


def _anchors(program, h, pieces, inputs, tol: float, kinks: _Kinks | None):
    """The units whose input cannot be rebuilt within tol: walking down from z by the inverses as the
    backward does, unit i's rebuilt input is compared with the forward's, e_i = max|rebuilt - h_{i-1}|
    / max|h_{i-1}|; where e_i > tol the input is kept and the walk restarts from it. So every rebuilt
    input is within tol of the forward's, however the errors of many individually accurate inverses
    add up. Returns ({i: h_{i-1}}, [e_i])."""
    pieces, kept, errors = list(pieces), {}, [0.0] * len(inputs)
    i = len(inputs)
    for kind, op in program[::-1]:
        if kind == "factor":
            h = torch.cat([h, pieces.pop()], 1)
            continue
        i -= 1
        with kinks.at("restore", i) if kinks is not None else _nothing():
            rebuilt = op(h, rev=True)[0]
        errors[i] = _relative_error(rebuilt, inputs[i])
        h = rebuilt
        if errors[i] > tol:
            kept[i] = h = inputs[i]
    return kept, errors


def _tangent_from_z(program, h, pieces, dz, kept, kinks: _Kinks):
    """P2, (x', u): h and v together from (h_L, v_L = dz) back to the input by each unit's inverse and
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
        with kinks.at("restore", i):
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


def _generic_step(op, h, h_kept, g_h, g_ld, v, a, a_kept, params):
    """Sweep B through any unit: h_{i-1} by the inverse (or kept), then one recomputed graph."""
    if h_kept is None:
        with torch.no_grad():
            h_kept = op(h, rev=True)[0]
    with torch.enable_grad():
        leaf = h_kept.detach().requires_grad_(True)
        if v is None:
            out_h, ld = op(leaf)
            res = _backprop([(out_h, g_h), (ld, g_ld)], [leaf, *params])
            return h_kept, res[0], None, None, res[1:]
        out_h, ld, inverse_jvp = op.linearize(leaf)
        a = a_kept if a_kept is not None else _primal_vjp(op, leaf, out_h, a)
        v = inverse_jvp(v)
        res = _backprop([(out_h, g_h), (ld, g_ld), (v, a)], [leaf, *params])
    return h_kept, res[0], v.detach(), a, res[1:]


def _coupling_step(unit, y, g_y, g_ld, v, a, params):
    """Sweep B through a [cheap blocks, AffineCoupling] unit from its output y, RevNet style (module doc).

    The inverse's subnet evaluations st1 = N1(y1), st2 = N2(x2) carry the graph; the forward pieces
    y1 = A(x1, st2), y2 = A(x2, st1) are rebuilt from leaves x1, x2 (elementwise), and the tangent
    reads y1 and a detached copy of st2. Backward in three calls: (1) y2, its log-det and the tangent
    (N1's backward); (2) y1, its cotangent plus (1)'s for y1, its log-det, and st2 with (1)'s
    cotangent for the copy (N2's backward); (3) the cheap blocks. The adjoint a_{i-1} = J^T a_i
    takes the same three calls first. Returns (h_{i-1}, dL/dh_{i-1}, v_{i-1}, a_{i-1}, parameter
    gradients in the order of ``params``)."""
    pre, cp = unit
    (y1, y2), (g_y1, g_y2) = y.split([cp.c1, cp.c2], 1), g_y.split([cp.c1, cp.c2], 1)
    with torch.enable_grad():
        y1_in = y1.detach().requires_grad_(True)
        st1, acts1 = cp.subnet1.forward_cached(cp._with_condition(y1_in)[0])
        with torch.no_grad():
            x2 = cp._affine(y2, st1, None, None, True)[0]
        x2_in = x2.requires_grad_(True)
        st2, acts2 = cp.subnet2.forward_cached(cp._with_condition(x2_in)[0])
        with torch.no_grad():
            x1 = cp._affine(y1, st2, None, None, True)[0]
            h = torch.cat([x1, x2], 1)
            for b in reversed(pre):
                h = b(h, rev=True)[0]
        x1_in, h_in = x1.requires_grad_(True), h.requires_grad_(True)
        y1_out, ld1, _ = cp._affine(x1_in, st2, None, None, False)
        y2_out, ld2, _ = cp._affine(x2_in, st1, None, None, False)
        xc, ld_pre, pre_inverses = h_in, None, []
        for b in pre:
            xc, ld, inverse_jvp = b.linearize(xc)
            ld_pre = _add(ld_pre, ld)
            pre_inverses.append(inverse_jvp)
        st2_in = st2.detach().requires_grad_(True)

        def backward(c_y1, c_y2, c_ld, tangent=(), inputs=(), retain=False):
            """(dL/dh_{i-1}, gradients of ``inputs``) for cotangents on y, the log-dets and ``tangent``
            [(v_{i-1}, a_{i-1})]."""
            inputs = list(inputs)
            r1 = _backprop([(y2_out, c_y2), (ld2, c_ld), *tangent], [y1_in, x2_in, st2_in, *inputs], retain)
            r2 = _backprop([(y1_out, _add(c_y1, r1[0])), (ld1, c_ld), (st2, r1[2])], [x1_in, x2_in, *inputs],
                           retain)
            g_h = torch.cat([r2[0], _add(r1[1], r2[1])], 1)
            grads = [_add(q1, q2) for q1, q2 in zip(r1[3:], r2[2:])]
            if pre:
                r3 = _backprop([(xc, g_h), (ld_pre, c_ld)], [h_in, *inputs], retain)
                g_h, grads = r3[0], [_add(q, q3) for q, q3 in zip(grads, r3[1:])]
            return g_h, grads

        if v is None:
            g_h, grads = backward(g_y1, g_y2, g_ld, inputs=params)
            return h.detach(), g_h, None, None, grads
        a_prev = backward(*a.split([cp.c1, cp.c2], 1), None, retain=True)[0]
        v1, v2 = v.split([cp.c1, cp.c2], 1)
        du1 = cp.subnet1.tangent(cp._zero_condition_tangent(v1), [t.detach() for t in acts1])
        dx2 = cp._affine(y2_out, st1, v2, du1, True)[2]
        du2 = cp.subnet2.tangent(cp._zero_condition_tangent(dx2), [t.detach() for t in acts2])
        v_prev = torch.cat([cp._affine(y1_in, st2_in, v1, du2, True)[2], dx2], 1)
        for inverse_jvp in reversed(pre_inverses):
            v_prev = inverse_jvp(v_prev)
        g_h, grads = backward(g_y1, g_y2, g_ld, [(v_prev, a_prev)], params)
    return h.detach(), g_h, v_prev.detach(), a_prev, grads


class _EncodeReversible(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dz, program, state, *params):
        blocks = [op for kind, op in program if kind == "block"]
        ctx.program, ctx.state, ctx.has_tangent = program, state, dz is not None
        ctx.autocast = _Recompute(x.device.type, blocks)
        lower_eps = _lower_precision_eps(x, ctx.autocast)
        tol = ctx.tol = state.tolerance(x.dtype, lower_eps)
        ctx.kinks = kinks = _Kinks(blocks, tol if lower_eps is None and state.restore_kinks else None)
        check = state.check_now()
        state.calls += 1
        with kinks.hooked():
            h, pieces, log_det, kept, errors = _primal(program, x, check, tol, state.kept_units, kinks)
            stats = {}
            if dz is not None:
                x_rec, u = _tangent_from_z(program, h, pieces, dz, kept, kinks)
                drift = _relative_error(x_rec, x)
                if drift > tol and not check:  # a unit drifted since the last check: check every unit now
                    check = True
                    h, pieces, log_det, kept, errors = _primal(program, x, True, tol, set(), kinks)
                    x_rec, u = _tangent_from_z(program, h, pieces, dz, kept, kinks)
                    drift = _relative_error(x_rec, x)
                stats["primal_drift"] = drift
            else:
                u = x.new_empty(0)
        if check:
            state.kept_units = set(kept)
            stats["rebuild_error"] = errors
        state.force_check = False
        state.stats = {**stats, "checked": check, "kept_units": sorted(kept), "tol": tol,
                       "kink_records": kinks.count()}
        z = _assemble(pieces, h)
        ctx.checked, ctx.kept = check, sorted(kept)
        ctx.shapes = ([p.new_empty((1, *p.shape[1:])) for p in pieces], h.new_empty((1, *h.shape[1:])))
        ctx.save_for_backward(x, z, *(() if dz is None else (dz,)), *(kept[i] for i in ctx.kept))
        return z, log_det, u

    @staticmethod
    def backward(ctx, g_z, g_log_det, g_u):
        x, z, *rest = ctx.saved_tensors
        dz = rest.pop(0) if ctx.has_tangent else None
        kept = dict(zip(ctx.kept, rest))
        g_log_det = x.new_zeros(x.shape[0]) if g_log_det is None else g_log_det
        stats = ctx.state.stats
        grads, drifts = _reversible_backward(ctx, x, z, dz, kept, g_z, g_log_det, g_u)
        stats.update(drifts, recomputed=False)
        if not ctx.checked and (drifts["primal_drift_backward"] > ctx.tol or drifts["kink_margin"] > KINK_MARGIN):
            with torch.no_grad(), ctx.autocast(), ctx.kinks.hooked():  # drifted since the last check: check
                *_, kept, errors = _primal(ctx.program, x, True, ctx.tol, set(), ctx.kinks, record=False)
            ctx.state.kept_units = set(kept)
            grads, drifts = _reversible_backward(ctx, x, z, dz, kept, g_z, g_log_det, g_u)
            stats.update(drifts, recomputed=True, rebuild_error=errors, kept_units=sorted(kept))
        return (*grads[:1], None, None, None, *grads[1:])


def _reversible_backward(ctx, x, z, dz, kept, g_z, g_log_det, g_u):
    """Sweeps A and B of ``mode="reversible"`` with the units ``kept`` (module doc); returns
    ([dL/dx, *parameter gradients], drift statistics)."""
    program, kinks = ctx.program, ctx.kinks
    blocks = [op for kind, op in program if kind == "block"]
    units = [_coupling_unit(op) for op in blocks]
    params = [_trainable(b) for b in blocks]
    grads = _Grads()
    piece_shapes, h_shape = ctx.shapes
    a = a_pieces = None
    a_kept = {}
    if dz is not None:
        with ctx.autocast():
            a, a_pieces, a_kept = _sweep_a(program, units, x, g_u.reshape(g_u.shape[0], *x.shape[1:]), kept)
    g_pieces, g_h = _split_like(g_z, piece_shapes, h_shape)
    z_pieces, h = _split_like(z, piece_shapes, h_shape)
    v = None
    if dz is not None:
        d_pieces, v = _split_like(dz, piece_shapes, h_shape)
    kinks.gaps = []
    i = len(blocks)
    with kinks.hooked():
        for kind, op in _labelled(program[::-1], "reversible.sweep_b"):
            if kind == "factor":
                h, g_h = torch.cat([h, z_pieces.pop()], 1), torch.cat([g_h, g_pieces.pop()], 1)
                if dz is not None:
                    v, a = torch.cat([v, d_pieces.pop()], 1), torch.cat([a, a_pieces.pop()], 1)
                continue
            i -= 1
            with ctx.autocast(), kinks.at("restore", i):
                if i not in kept and units[i] is not None and (v is None or v.shape[0] == h.shape[0]):
                    h, g_h, v, a, res = _coupling_step(units[i], h, g_h, g_log_det, v, a, params[i])
                else:
                    h, g_h, v, a, res = _generic_step(op, h, kept.get(i), g_h, g_log_det, v, a, a_kept.get(i),
                                                      params[i])
            grads.add(params[i], res)
    drifts = {"primal_drift_backward": _relative_error(h, x),
              "kink_margin": float(torch.stack(kinks.gaps).max()) if kinks.gaps else 0.0}
    if dz is not None:
        drifts["adjoint_drift"] = _relative_error(a, g_u.reshape(a.shape))
    return [g_h, *grads.ordered(program)], drifts


# ---------------------------------------------------------------- boundaries mode
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
        g_log_det = boundaries[0].new_zeros(boundaries[0].shape[0]) if g_log_det is None else g_log_det
        grads = _Grads()
        a_in = {}
        if ctx.has_tangent:  # sweep A: a_{i-1} at every unit, from the kept boundaries
            with ctx.autocast():
                a0 = g_u.reshape(g_u.shape[0], *boundaries[0].shape[1:])
                a_in = _sweep_a(program, [_coupling_unit(b) for b in blocks], None, a0, range(L), boundaries)[2]
        piece_shapes, h_shape = ctx.shapes
        g_pieces, g_h = _split_like(g_z, piece_shapes, h_shape)
        i = L
        for kind, op in _labelled(reversed(program), "boundaries.sweep_b"):
            if kind == "factor":
                g_h = torch.cat([g_h, g_pieces.pop()], 1)
                continue
            i -= 1
            with torch.enable_grad(), ctx.autocast():
                h = boundaries[i].detach().requires_grad_(True)
                if ctx.has_tangent:
                    out_h, ld, inverse_jvp = op.linearize(h)
                    roots = [(out_h, g_h), (ld, g_log_det), (inverse_jvp(tangents[i]), a_in[i])]
                else:
                    out_h, ld = op(h)
                    roots = [(out_h, g_h), (ld, g_log_det)]
                out = _backprop(roots, [h, *params[i]])
            g_h = out[0]
            grads.add(params[i], out[1:])
        return (g_h, None, None, *grads.ordered(program))


@torch.compiler.disable
def encode_with_tangent(flow: InvertibleModule, x: torch.Tensor, dz: torch.Tensor | None = None,
                        mode: str = "reversible", state: ReversibleState | None = None):
    """(z (B, D), log_det (B,), u = J_g(z) dz (m*B, D) or None) with block recomputation (module doc).

    ``x``: the flow's input (B, ...); ``dz``: flat tangents at z, (m*B, D) rows j*B + b at z_b, or None;
    ``mode``: "reversible" (inverses, constant memory) or "boundaries" (kept boundaries, no inversion);
    ``state``: the ``ReversibleState`` kept across calls (a fresh one, checking every unit, if None).
    Under ``torch.compile`` this call runs eagerly (one graph break): its passes are Python loops with
    data-dependent control (drift checks, recorded kinks) around per-unit graphs.
    """
    if mode not in MODES:
        raise ValueError(f"encode_with_tangent: mode must be one of {MODES}, got {mode!r}")
    program = _program(flow)
    params = [p for kind, op in program if kind == "block" for p in _trainable(op)]
    if mode == "boundaries":
        z, log_det, u = _EncodeBoundaries.apply(x, dz, program, *params)
    else:
        z, log_det, u = _EncodeReversible.apply(x, dz, program, ReversibleState() if state is None else state,
                                                *params)
    return z, log_det, (u if dz is not None else None)
