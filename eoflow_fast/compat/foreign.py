"""Any invertible model as a flow of this project: ``ForeignFlow(model)`` and ``EOFlow.from_module``.

Supported models, each mapping data x to latents z ("encoding"):
- FrEIA ``SequenceINN`` and ``GraphINN`` (``z, log_det = inn(x)``; ``inn(z, rev=True)`` decodes), their
  blocks taking and returning tuples;
- normflows ``NormalizingFlow`` (encoding runs ``flow.inverse`` over ``flows`` in reverse order, as
  ``NormalizingFlow.inverse_and_log_det`` does) or a list/ModuleList of normflows flows;
- this project's ``InvertibleModule``s (used as they are).

``ForeignFlow.linearize(x) -> (z, log_det, inverse_jvp)`` walks the model block by block: blocks that
define ``eo_linearize`` (``eoflow_fast.compat.freia`` / ``.normflows`` blocks) reuse their subnets'
activations and the fused tangent kernel; any other block's decoder JVP runs through
``torch.func.jvp`` of its inverse at its output (recomputing that block's primal), with one notice
naming the block type.
"""
from __future__ import annotations

import torch
from torch import nn

from ..flows.base import InvertibleModule, chain_linearize, tile_rows
from ._tangent import notice_fallback


def _tile_all(ts, n):
    return tuple(tile_rows(t, n) for t in ts)


def _as_tuple(x):
    return (x,) if torch.is_tensor(x) else tuple(x)


def _log_det_like(ld, ref: torch.Tensor) -> torch.Tensor:
    return ld if torch.is_tensor(ld) and ld.dim() == 1 else ref.new_zeros(ref.shape[0]) + ld


# ---------------------------------------------------------------- FrEIA blocks (tuples in, tuples out)
def _freia_block_linearize(module: nn.Module, xs: tuple, c: tuple):
    """(outs, log_det, inverse_jvp(douts) -> dxs) for one FrEIA block."""
    if hasattr(module, "eo_linearize") and len(xs) == 1:
        out, log_det, inv = module.eo_linearize(xs[0], list(c))
        return (out,), log_det, lambda dys: (inv(dys[0]),)
    notice_fallback(f"block {type(module).__name__}", "is not one of eoflow_fast.compat's blocks")
    kw = {"c": list(c)} if c else {}
    outs, log_det = module(xs, rev=False, jac=True, **kw)
    outs = _as_tuple(outs)

    def inverse_jvp(dys):
        n = dys[0].shape[0]
        kw_n = {"c": list(_tile_all(c, n))} if c else {}
        return torch.func.jvp(lambda *ys: _as_tuple(module(ys, rev=True, jac=False, **kw_n)[0]),
                              _tile_all(outs, n), tuple(dys))[1]
    return outs, _log_det_like(log_det, xs[0]), inverse_jvp


def _sequence_inn_linearize(inn, x, c):
    log_det, inverses, xs = x.new_zeros(x.shape[0]), [], (x,)
    for module, cond in zip(inn.module_list, inn.conditions):
        xs, ld, inv = _freia_block_linearize(module, xs, () if cond is None else (c[cond],))
        log_det = log_det + ld
        inverses.append(inv)

    def inverse_jvp(dz):
        dys = (dz,)
        for inv in reversed(inverses):
            dys = inv(dys)
        return dys[0]
    return xs[0], log_det, inverse_jvp


def _graph_inn_linearize(inn, x, c):
    """GraphINN: nodes in order, each node's inverse JVP maps its outputs' tangents to its inputs'."""
    if len(inn.in_nodes) != 1 or len(inn.out_nodes) != 1:
        raise ValueError("ForeignFlow: a GraphINN with one input and one output node is supported, got "
                         f"{len(inn.in_nodes)} inputs and {len(inn.out_nodes)} outputs")
    outs = {(inn.in_nodes[0], 0): x}
    for tensor, node in zip(c, inn.condition_nodes):
        outs[node, 0] = tensor
    log_det, steps = x.new_zeros(x.shape[0]), []
    special = inn.in_nodes + inn.out_nodes + inn.condition_nodes
    for node in inn.node_list:
        if node in special:
            continue
        xs = tuple(outs[p, ch] for p, ch in node.inputs)
        conds = tuple(outs[cn, 0] for cn in node.conditions)
        ys, ld, inv = _freia_block_linearize(node.module, xs, conds)
        for i, y in enumerate(ys):
            outs[node, i] = y
        log_det = log_det + ld
        steps.append((node, inv))
    out_src = inn.out_nodes[0].inputs[0]

    def inverse_jvp(dz):
        tangents = {out_src: dz}
        for node, inv in reversed(steps):
            dys = tuple(tangents.pop((node, i)) for i in range(len(node.outputs)))
            for (p, ch), dx in zip(node.inputs, inv(dys)):
                tangents[p, ch] = tangents[p, ch] + dx if (p, ch) in tangents else dx
        return tangents[inn.in_nodes[0], 0]
    return outs[out_src], log_det, inverse_jvp


# ---------------------------------------------------------------- normflows (encode = flow.inverse)
def _normflows_block_linearize(flow: nn.Module, x):
    if hasattr(flow, "eo_linearize"):
        return flow.eo_linearize(x)
    notice_fallback(f"flow {type(flow).__name__}", "is not one of eoflow_fast.compat's blocks")
    z, log_det = flow.inverse(x)

    def inverse_jvp(dz):
        return torch.func.jvp(lambda v: flow.forward(v)[0], (tile_rows(z, dz.shape[0]),), (dz,))[1]
    return z, _log_det_like(log_det, x), inverse_jvp


def _normflows_list(model):
    flows = getattr(model, "flows", model)
    return list(flows)


def _is_normflows(model) -> bool:
    flows = getattr(model, "flows", model)
    return isinstance(flows, (list, nn.ModuleList)) and all(hasattr(f, "inverse") for f in flows)


class ForeignFlow(InvertibleModule):
    """A FrEIA / normflows model behind this project's flow interface (module docstring).

    ``forward(x, rev=False) -> (z, log_det)``; ``linearize(x)``; ``jvp`` by ``torch.func``.
    ``condition``: FrEIA conditions (a list of tensors) passed to every call, or None.
    """

    def __init__(self, model: nn.Module, condition: list | None = None):
        super().__init__()
        if isinstance(model, (list, tuple)):
            model = nn.ModuleList(model)
        self.model = model
        self.kind = self._kind(model)
        self.condition = condition

    @staticmethod
    def _kind(model) -> str:
        names = {cls.__name__ for cls in type(model).__mro__}
        if "SequenceINN" in names:
            return "sequence_inn"
        if "GraphINN" in names:
            return "graph_inn"
        if isinstance(model, InvertibleModule):
            return "native"
        if _is_normflows(model):
            return "normflows"
        raise TypeError(f"ForeignFlow: {type(model).__name__} is not a FrEIA SequenceINN/GraphINN, a normflows "
                        "NormalizingFlow or list of flows, or an eoflow_fast InvertibleModule")

    def _conditions(self) -> tuple:
        return tuple(self.condition or ())

    def _encode(self, x):
        if self.kind == "native":
            return self.model(x)
        if self.kind == "normflows":
            log_det = x.new_zeros(x.shape[0])
            for flow in reversed(_normflows_list(self.model)):
                x, ld = flow.inverse(x)
                log_det = log_det + ld
            return x, log_det
        c = list(self._conditions())
        z, log_det = self.model(x, c=c, rev=False) if c else self.model(x)
        return (z[0] if isinstance(z, (tuple, list)) else z), _log_det_like(log_det, x)

    def _decode(self, z):
        if self.kind == "native":
            return self.model(z, rev=True)
        if self.kind == "normflows":
            log_det = z.new_zeros(z.shape[0])
            for flow in _normflows_list(self.model):
                z, ld = flow.forward(z)
                log_det = log_det + ld
            return z, log_det
        c = list(self._conditions())
        x, log_det = self.model(z, c=c, rev=True) if c else self.model(z, rev=True)
        return (x[0] if isinstance(x, (tuple, list)) else x), _log_det_like(log_det, z)

    def _flow(self, x, dx, rev):
        fn = self._decode if rev else self._encode
        if dx is None:
            out, log_det = fn(x)
            return out, log_det, None
        (out, log_det), (dout, _) = torch.func.jvp(fn, (x,), (dx,))
        return out, log_det, dout

    def _linearize(self, x):
        if self.kind == "native":
            return self.model.linearize(x)
        if self.kind == "sequence_inn":
            return _sequence_inn_linearize(self.model, x, self._conditions())
        if self.kind == "graph_inn":
            return _graph_inn_linearize(self.model, x, self._conditions())
        steps = [lambda h, f=f: _normflows_block_linearize(f, h) for f in reversed(_normflows_list(self.model))]
        return chain_linearize(x, steps)
