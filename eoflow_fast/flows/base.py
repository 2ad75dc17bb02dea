"""Invertible-module protocol shared by every flow block, and the sequence container.

Every block is an ``nn.Module`` implementing one method, ``_flow(x, dx, rev)``:

``forward(x, rev=False) -> (out, log_det)``
    ``out = f(x)`` (or ``f^{-1}(x)`` when ``rev``) and ``log_det[b] = log|det d out_b / d x_b|``,
    shape ``(B,)``. The inverse is exact: ``f(f^{-1}(y)) = y`` up to rounding.
``jvp(x, dx, rev=False) -> (out, log_det, dout)``
    The same primal plus the forward-mode tangent ``dout = (d out / d x) dx`` computed with the
    block's own tangent rules (spec §6.2), no ``torch.func`` involved, so it is differentiable
    by ordinary reverse mode (reverse-over-forward) and runs under ``torch.no_grad``.
``linearize(x) -> (out, log_det, inverse_jvp)``
    The forward pass plus a function ``inverse_jvp(dy) = J_{f^{-1}}(out) dy = (df/dx)^{-1} dy``,
    the decoder JVP at ``out = f(x)``. Since f^{-1}(f(x)) = x, the inverse pass would recompute
    the forward's activations; blocks reuse them instead (spec §6.2: coupling subnets keep their
    ReLU outputs, s and t), so only the tangent is propagated. ``dy`` may also stack m tangents
    per point, shape (m*B, ...), row j*B + b belonging to point b (the caches are tiled m times:
    m Jacobian columns per point in one call). Blocks implement ``_linearize(x)``; the default
    recomputes the inverse primal through ``_flow``.
"""
from __future__ import annotations

import torch
from torch import nn


def tile_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """t (B, ...) repeated along dim 0 to (rows, ...), rows a multiple of B."""
    m = rows // t.shape[0]
    return t if m == 1 else t.repeat(m, *([1] * (t.dim() - 1)))


def chain_linearize(x: torch.Tensor, steps):
    """Linearize a composition: each step(x) -> (out, log_det, inverse_jvp) in order; returns the
    final output, the summed log-det and the composed inverse JVP (last step's inverse first)."""
    log_det, inverses = x.new_zeros(x.shape[0]), []
    for step in steps:
        x, ld, inv = step(x)
        log_det = log_det + ld
        inverses.append(inv)

    def inverse_jvp(dy):
        for inv in reversed(inverses):
            dy = inv(dy)
        return dy
    return x, log_det, inverse_jvp


class InvertibleModule(nn.Module):
    """Base class: subclasses implement ``_flow(x, dx, rev) -> (out, log_det, dout_or_None)``."""

    def _flow(self, x: torch.Tensor, dx: torch.Tensor | None, rev: bool):  # pragma: no cover - abstract
        raise NotImplementedError

    def _linearize(self, x: torch.Tensor):
        out, log_det, _ = self._flow(x, None, False)
        return out, log_det, lambda dy: self._flow(tile_rows(out, dy.shape[0]), dy, True)[2]

    def forward(self, x: torch.Tensor, rev: bool = False):
        out, log_det, _ = self._flow(x, None, rev)
        return out, log_det

    def jvp(self, x: torch.Tensor, dx: torch.Tensor, rev: bool = False):
        if dx.shape != x.shape:
            raise ValueError(f"{type(self).__name__}.jvp: dx has shape {tuple(dx.shape)}, x has shape {tuple(x.shape)}")
        return self._flow(x, dx, rev)

    def linearize(self, x: torch.Tensor):
        out, log_det, inverse_jvp = self._linearize(x)

        def checked_inverse_jvp(dy: torch.Tensor) -> torch.Tensor:
            B = out.shape[0]
            if dy.shape[1:] != out.shape[1:] or dy.shape[0] == 0 or dy.shape[0] % B:
                raise ValueError(f"{type(self).__name__}.linearize: dy has shape {tuple(dy.shape)}, expected "
                                 f"(m*{B}, {', '.join(map(str, out.shape[1:]))}) for the output {tuple(out.shape)}")
            return inverse_jvp(dy)
        return out, log_det, checked_inverse_jvp


class LinearInvertible(InvertibleModule):
    """A block that is linear in x (no offset) with an x-independent log-det.

    Subclasses implement ``_map(x, rev) -> (out, log_det_scalar)``. The tangent is the same linear
    map, so primal and tangent share one call on the stacked batch ``[x; dx]`` (one GEMM/gather).
    Under autocast the map runs in x's dtype (only coupling subnets take the lower precision).
    """

    def _map(self, x: torch.Tensor, rev: bool):  # pragma: no cover - abstract
        raise NotImplementedError

    def _full_precision_map(self, x: torch.Tensor, rev: bool):
        """``_map`` with autocast off: invertible linear maps and their log-dets stay in x's dtype."""
        with torch.autocast(x.device.type, enabled=False):
            return self._map(x, rev)

    def _flow(self, x, dx, rev):
        B = x.shape[0]
        out, log_det = self._full_precision_map(x if dx is None else torch.cat([x, dx]), rev)
        log_det = log_det.expand(B) if torch.is_tensor(log_det) else x.new_full((B,), float(log_det))
        if dx is None:
            return out, log_det, None
        return out[:B], log_det, out[B:]

    def _linearize(self, x):
        out, log_det, _ = self._flow(x, None, False)
        return out, log_det, lambda dy: self._full_precision_map(dy, True)[0]


class SequenceFlow(InvertibleModule):
    """Composition f = f_n o ... o f_1; log-dets add; ``rev`` runs the blocks backwards."""

    def __init__(self, *blocks: InvertibleModule):
        super().__init__()
        for i, b in enumerate(blocks):
            if not isinstance(b, InvertibleModule):
                raise TypeError(f"SequenceFlow: block {i} is a {type(b).__name__}, expected an InvertibleModule")
        self.blocks = nn.ModuleList(blocks)

    def _flow(self, x, dx, rev):
        log_det = x.new_zeros(x.shape[0])
        for block in (reversed(self.blocks) if rev else self.blocks):
            x, ld, dx = block._flow(x, dx, rev)
            log_det = log_det + ld
        return x, log_det, dx

    def _linearize(self, x):
        return chain_linearize(x, [block._linearize for block in self.blocks])
