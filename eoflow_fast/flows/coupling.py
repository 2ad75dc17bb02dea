"""GLOW-style two-sided affine coupling (FrEIA ``GLOWCouplingBlock`` semantics, spec §4.2).

Split x = [x1, x2] along dim 1 (features, or channels of an image), sizes (c1, c2) = (c//2, c-c//2):

    [s2_raw, t2] = subnet2(x2);  y1 = x1 * exp(s2) + t2
    [s1_raw, t1] = subnet1(y1);  y2 = x2 * exp(s1) + t1
    log_det[b] = sum(s1) + sum(s2),   s = soft_clamp(s_raw, clamp, clamp_fn)

Inverse: x2 = (y2 - t1) * exp(-s1), then x1 = (y1 - t2) * exp(-s2). The elementwise affine part and
its tangent run through ``eoflow_fast.ops.affine_coupling`` / ``affine_coupling_jvp`` (fused kernels).
Subnet tangents (spec §6.2): linear/conv -> the same weight without bias, ReLU -> the primal mask;
in ``jvp`` primal and tangent rows are stacked [h; dh] so each layer is one GEMM/convolution.
``linearize`` keeps the forward's subnet ReLU outputs, s_raw and t and propagates only the tangent
of the inverse (spec §6.2, inverse direction, with u = s_raw):

    [du1, dt1] = J_subnet1(y1) dy1;  dx2 = (dy2 - dt1) e^{-s1} - x2 s1'(u1) du1
    [du2, dt2] = J_subnet2(x2) dx2;  dx1 = (dy1 - dt2) e^{-s2} - x1 s2'(u2) du2
The subnets' last layer is zero-initialised, so every block starts as the identity.

Conditional coupling (``cond_channels = k > 0``, FrEIA's ``dims_c``): every subnet reads
[h, c] with the condition c of shape (B, k) concatenated along dim 1 (broadcast over H, W for conv
subnets); c is set for a call with ``flows.conditioning.conditioned(flow, c)``. The condition is
not transformed, so its tangent is zero and the formulas above hold with J_subnet taken in h.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from . import layer_tangents
from .base import InvertibleModule, tile_rows


class Subnet(nn.Sequential):
    """A Sequential of Linear / Conv2d / ReLU layers with a tangent pass ``(h, dh) -> (out, dout)``."""

    def forward(self, h: torch.Tensor, dh: torch.Tensor | None = None):
        if dh is None:
            for layer in self:
                h = layer(h)
            return h, None
        B = h.shape[0]
        for layer in self:
            if isinstance(layer, nn.ReLU):  # the module is called, so its forward hooks see h
                h = layer(h)
                dh = dh * (h > 0)
            elif isinstance(layer, (nn.Linear, nn.Conv2d)):
                stacked = torch.cat([h, dh])
                out = (F.linear(stacked, layer.weight) if isinstance(layer, nn.Linear)
                       else F.conv2d(stacked, layer.weight, None, layer.stride, layer.padding))
                h, dh = out[:B], out[B:]
                if layer.bias is not None:
                    h = h + (layer.bias if isinstance(layer, nn.Linear) else layer.bias[:, None, None])
            else:
                raise TypeError(f"Subnet: no tangent rule for layer {type(layer).__name__}")
        return h, dh

    def forward_cached(self, h: torch.Tensor):
        """Primal pass that also returns the ReLU outputs (which autograd keeps alive anyway)."""
        return layer_tangents.forward_cached(self, h)

    def tangent(self, dh: torch.Tensor, acts: list[torch.Tensor]) -> torch.Tensor:
        """J_subnet(h) dh from the ReLU outputs of ``forward_cached(h)`` (``flows.layer_tangents``)."""
        return layer_tangents.tangent(self, dh, acts)


def mlp_subnet(c_in: int, c_out: int, hidden: int, n_hidden_layers: int = 2) -> Subnet:
    """Linear -> ReLU (x n_hidden_layers) -> Linear(zero-init): (B, c_in) -> (B, c_out)."""
    layers, width = [], c_in
    for _ in range(n_hidden_layers):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    last = nn.Linear(width, c_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return Subnet(*layers, last)


def conv_subnet(c_in: int, c_out: int, hidden: int) -> Subnet:
    """Conv3x3 -> ReLU -> Conv1x1 -> ReLU -> Conv3x3(zero-init): (B, c_in, H, W) -> (B, c_out, H, W)."""
    last = nn.Conv2d(hidden, c_out, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return Subnet(nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(), last)


class AffineCoupling(InvertibleModule):
    """Two-sided GLOW affine coupling over dim 1 of (B, c) or (B, c, H, W) inputs.

    ``subnet="mlp"`` (flat inputs) or ``"conv"`` (images); ``clamp``/``clamp_fn`` as in
    ``eoflow_fast.ops.soft_clamp`` (default atan with clamp 2, as B-EOFlow).
    """

    def __init__(self, channels: int, hidden: int, subnet: str = "mlp", clamp: float = 2.0,
                 clamp_fn: str = "atan", n_hidden_layers: int = 2, backend: str = "auto", cond_channels: int = 0):
        super().__init__()
        if channels < 2:
            raise ValueError(f"AffineCoupling: channels must be >= 2, got {channels}")
        if subnet not in ("mlp", "conv"):
            raise ValueError(f"AffineCoupling: subnet must be 'mlp' or 'conv', got {subnet!r}")
        if isinstance(cond_channels, bool) or not isinstance(cond_channels, int) or cond_channels < 0:
            raise ValueError(f"AffineCoupling: cond_channels must be an int >= 0, got {cond_channels!r}")
        self.c1, self.c2 = channels // 2, channels - channels // 2
        k = self.cond_channels = cond_channels
        if subnet == "mlp":
            self.subnet1 = mlp_subnet(self.c1 + k, 2 * self.c2, hidden, n_hidden_layers)
            self.subnet2 = mlp_subnet(self.c2 + k, 2 * self.c1, hidden, n_hidden_layers)
        else:
            self.subnet1 = conv_subnet(self.c1 + k, 2 * self.c2, hidden)
            self.subnet2 = conv_subnet(self.c2 + k, 2 * self.c1, hidden)
        self.clamp, self.clamp_fn, self.backend = clamp, clamp_fn, backend
        self.condition: torch.Tensor | None = None  # (B, k), set by flows.conditioning.conditioned

    def _with_condition(self, h, dh=None):
        """[h, c] (c tiled to h's rows, broadcast over spatial dims) and its tangent [dh, 0]."""
        if not self.cond_channels:
            return h, dh
        c = self.condition
        if c is None:
            raise ValueError("AffineCoupling: this coupling is conditional (cond_channels="
                             f"{self.cond_channels}); call it inside flows.conditioning.conditioned(flow, c)")
        if c.dim() != 2 or c.shape[1] != self.cond_channels or h.shape[0] % c.shape[0]:
            raise ValueError(f"AffineCoupling: condition has shape {tuple(c.shape)}, expected "
                             f"(B, {self.cond_channels}) with B dividing the batch {h.shape[0]}")
        c = tile_rows(c.to(h), h.shape[0]).reshape(h.shape[0], -1, *[1] * (h.dim() - 2)).expand(
            -1, -1, *h.shape[2:])
        return torch.cat([h, c], 1), (None if dh is None else self._zero_condition_tangent(dh))

    def _zero_condition_tangent(self, dh):
        """[dh, 0]: the condition's tangent is zero (it is not transformed)."""
        if not self.cond_channels:
            return dh
        return torch.cat([dh, dh.new_zeros(dh.shape[0], self.cond_channels, *dh.shape[2:])], 1)

    def _subnet(self, net, h, dh=None):
        return net(*self._with_condition(h, dh))

    def _affine(self, x, st, dx, dst, rev):
        """x -> x*exp(s)+t (or its inverse) with [s_raw, t] = st split along dim 1; tangent optional.
        Subnet outputs are cast to x's dtype, so under autocast only the subnets run in low precision."""
        s_raw, t = st.to(x.dtype).chunk(2, dim=1)
        kw = dict(clamp=self.clamp, clamp_fn=self.clamp_fn, reverse=rev, backend=self.backend)
        if dx is None:
            y, log_det = ops.affine_coupling(x, s_raw, t, **kw)
            return y, log_det, None
        ds_raw, dt = dst.to(x.dtype).chunk(2, dim=1)
        y, log_det, dy, _ = ops.affine_coupling_jvp(x, s_raw, t, dx, ds_raw, dt, **kw)
        return y, log_det, dy

    def _split(self, x):
        if x.shape[1] != self.c1 + self.c2:
            raise ValueError(f"AffineCoupling: x has {x.shape[1]} channels on dim 1, expected {self.c1 + self.c2}")
        return x.split([self.c1, self.c2], dim=1)

    def _flow(self, x, dx, rev):
        a, b = self._split(x)
        da, db = (None, None) if dx is None else dx.split([self.c1, self.c2], dim=1)
        if not rev:  # a = x1, b = x2
            st2, dst2 = self._subnet(self.subnet2, b, db)
            y1, ld1, dy1 = self._affine(a, st2, da, dst2, False)
            st1, dst1 = self._subnet(self.subnet1, y1, dy1)
            y2, ld2, dy2 = self._affine(b, st1, db, dst1, False)
        else:  # a = y1, b = y2
            st1, dst1 = self._subnet(self.subnet1, a, da)
            y2, ld2, dy2 = self._affine(b, st1, db, dst1, True)
            st2, dst2 = self._subnet(self.subnet2, y2, dy2)
            y1, ld1, dy1 = self._affine(a, st2, da, dst2, True)
        out = torch.cat([y1, y2], dim=1)
        return out, ld1 + ld2, (None if dx is None else torch.cat([dy1, dy2], dim=1))

    def _linearize(self, x):
        x1, x2 = self._split(x)
        st2, acts2 = self.subnet2.forward_cached(self._with_condition(x2)[0])
        y1, ld1, _ = self._affine(x1, st2, None, None, False)
        st1, acts1 = self.subnet1.forward_cached(self._with_condition(y1)[0])
        y2, ld2, _ = self._affine(x2, st1, None, None, False)

        def inverse_jvp(dy):
            n = dy.shape[0]
            dy1, dy2 = dy.split([self.c1, self.c2], dim=1)
            tiled = [tile_rows(a, n) for a in acts1]
            du1 = self.subnet1.tangent(self._zero_condition_tangent(dy1), tiled)
            _, _, dx2 = self._affine(tile_rows(y2, n), tile_rows(st1, n), dy2, du1, True)
            tiled = [tile_rows(a, n) for a in acts2]
            du2 = self.subnet2.tangent(self._zero_condition_tangent(dx2), tiled)
            _, _, dx1 = self._affine(tile_rows(y1, n), tile_rows(st2, n), dy1, du2, True)
            return torch.cat([dx1, dx2], dim=1)
        return torch.cat([y1, y2], dim=1), ld1 + ld2, inverse_jvp
