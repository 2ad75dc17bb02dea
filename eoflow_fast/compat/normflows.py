"""Drop-in normflows 1.7 coupling flows on the fused affine-coupling op (needs normflows installed).

``from eoflow_fast.compat.normflows import AffineCouplingBlock, GlowBlock`` in place of
``normflows.flows``: the same constructors, parameter names and random draws (each class builds
normflows' own block, then swaps in the fused coupling around the same ``param_map``), and
normflows' numbers. normflows' conventions (its ``forward`` is the generative direction z -> x),
with param = param_map(z1), shift = param[:, 0::2], a = param[:, 1::2] (interleaved):

    scale_map "exp":          z2' = z2 e^{a} + shift              -> op clamp_fn "none", s = a
              "sigmoid":      z2' = z2 / sigmoid(a + 2) + shift   -> "neg_logsigmoid", c = 2
              "sigmoid_inv":  z2' = z2 sigmoid(a + 2) + shift     -> "logsigmoid", c = 2
    scale=False:              z2' = z2 + param (no op needed)

``inverse`` (x -> z, what training runs) is the op's reverse direction. ``eo_linearize(x)`` runs
``inverse`` and returns the JVP of ``forward`` at its output, reusing ``param_map``'s activations
(``ForeignFlow`` / ``EOFlow.from_module`` use it).

Shapes are checked where normflows would fail deep inside or broadcast silently: z1 must have the
channels ``param_map`` declares (its first ``in_features`` / ``in_channels``), param_map(z1) must
have z2's shape with 2 C2 channels (C2 without scale; before, a (B, 1) param was added to a (B, C2)
z2 by broadcasting), and a ``GlowBlock`` takes (B, channels, H, W); each mismatch is a ValueError
naming the block, what it expected and what it got.
"""
from __future__ import annotations

import torch

from .. import ops
from ..flows.base import tile_rows
from ._tangent import linearize_subnet

try:
    import normflows as _nf
except ImportError as exc:  # pragma: no cover - exercised only without normflows
    raise ImportError("eoflow_fast.compat.normflows needs normflows (pip install normflows)") from exc

__all__ = ["AffineCoupling", "AffineCouplingBlock", "GlowBlock"]

SCALE_MAPS = {"exp": ("none", 1.0), "sigmoid": ("neg_logsigmoid", 2.0), "sigmoid_inv": ("logsigmoid", 2.0)}


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def declared_input(param_map) -> tuple[int, bool] | None:
    """(n, spatial) of the z1 ``param_map`` declares, from its first module that declares one: a
    Linear's ``in_features`` n (z1 is (B, n)), or a Conv's ``in_channels`` n (z1 is (B, n, ...),
    spatial True); None when no module declares one."""
    for module in param_map.modules():
        if isinstance(getattr(module, "in_features", None), int):
            return module.in_features, False
        if isinstance(getattr(module, "in_channels", None), int):
            return module.in_channels, True
    return None


def _declared_shape(declared: tuple[int, bool]) -> str:
    width, spatial = declared
    return f"(B, {width}, ...)" if spatial else f"(B, {width})"


def _matches(shape: tuple, declared: tuple[int, bool]) -> bool:
    width, spatial = declared
    return len(shape) >= 2 and shape[1] == width and (spatial or len(shape) == 2)


class AffineCoupling(_nf.flows.AffineCoupling):
    """normflows' ``AffineCoupling`` ([z1, z2] -> [z1, z2']) on the fused op."""

    def __init__(self, param_map, scale=True, scale_map="exp"):
        if scale and scale_map not in SCALE_MAPS:
            raise NotImplementedError("This scale map is not implemented.")
        super().__init__(param_map, scale, scale_map)

    def _op_kwargs(self, reverse: bool) -> dict:
        clamp_fn, clamp = SCALE_MAPS[self.scale_map]
        return dict(clamp=clamp, clamp_fn=clamp_fn, reverse=reverse)

    def _param(self, z1, z2, subnet=None):
        """``subnet(z1)`` (default ``param_map``; ``linearize_subnet`` returns (param, tangent)) after
        checking z1 against param_map's declared input, and its param against z2."""
        name = type(self).__name__
        if not (isinstance(z1, torch.Tensor) and isinstance(z2, torch.Tensor)) or z1.dim() < 2 \
                or z1.dim() != z2.dim() or z1.shape[0] != z2.shape[0] or z1.shape[2:] != z2.shape[2:]:
            raise ValueError(f"{name}: z1 and z2 must be tensors (B, C1, ...) and (B, C2, ...) with the same batch "
                             f"and spatial sizes, got {_shape(z1)} and {_shape(z2)}")
        declared = declared_input(self.param_map)
        if declared is not None and not _matches(tuple(z1.shape), declared):
            raise ValueError(f"{name}: param_map takes z1 of shape {_declared_shape(declared)}, got z1 {_shape(z1)} "
                             f"(z2 {_shape(z2)}): "
                             f"the input of the block has other dims than its param_map was built for")
        out = (subnet or self.param_map)(z1)
        param = out[0] if isinstance(out, tuple) else out
        expected = (z2.shape[0], (2 if self.scale else 1) * z2.shape[1], *z2.shape[2:])
        if tuple(param.shape) != expected:
            raise ValueError(f"{name}: param_map(z1) must have shape {expected} ({'2 x ' if self.scale else ''}z2's "
                             f"{z2.shape[1]} channels{', shift and scale interleaved' if self.scale else ''}), "
                             f"got {_shape(param)}")
        return out

    def _couple(self, z2, param, reverse: bool):
        if not self.scale:
            return (z2 - param if reverse else z2 + param), z2.new_zeros(z2.shape[0])
        return ops.affine_coupling(z2, param[:, 1::2], param[:, 0::2], **self._op_kwargs(reverse))

    def forward(self, z):
        z1, z2 = z
        z2, log_det = self._couple(z2, self._param(z1, z2), False)
        return [z1, z2], log_det

    def inverse(self, z):
        z1, z2 = z
        z2, log_det = self._couple(z2, self._param(z1, z2), True)
        return [z1, z2], log_det

    def eo_linearize_parts(self, z1, z2):
        """Inverse z2 -> x2 at param_map(z1), and the forward JVP (dz1, dx2) -> dz2 at the result."""
        param, tangent = self._param(z1, z2, lambda z: linearize_subnet(self.param_map, z))
        x2, log_det = self._couple(z2, param, True)

        def forward_jvp(dz1, dx2):
            n = dz1.shape[0]
            dparam = tangent(dz1)
            if not self.scale:
                return dx2 + dparam
            p = tile_rows(param, n)
            return ops.affine_coupling_jvp(tile_rows(x2, n), p[:, 1::2], p[:, 0::2], dx2, dparam[:, 1::2],
                                           dparam[:, 0::2], **self._op_kwargs(False))[2]
        return x2, log_det, forward_jvp


class AffineCouplingBlock(_nf.flows.AffineCouplingBlock):
    """normflows' ``AffineCouplingBlock`` (Split, AffineCoupling, Merge) with the fused coupling."""

    def __init__(self, param_map, scale=True, scale_map="exp", split_mode="channel"):
        super().__init__(param_map, scale, scale_map, split_mode)
        self.flows[1] = AffineCoupling(param_map, scale, scale_map)

    def eo_linearize(self, x):
        split, coupling, merge = self.flows
        (z1, z2), _ = merge.inverse(x)
        x2, log_det, forward_jvp = coupling.eo_linearize_parts(z1, z2)
        out, _ = split.inverse([z1, x2])

        def inverse_jvp(dz):
            (dz1, dx2), _ = split.forward(dz)
            return merge.forward([dz1, forward_jvp(dz1, dx2)])[0]
        return out, log_det, inverse_jvp


class GlowBlock(_nf.flows.GlowBlock):
    """normflows' ``GlowBlock`` (coupling, invertible 1x1 conv, ActNorm) with the fused coupling."""

    def __init__(self, channels, hidden_channels, scale=True, scale_map="sigmoid", split_mode="channel",
                 leaky=0.0, init_zeros=True, use_lu=True, net_actnorm=False):
        super().__init__(channels, hidden_channels, scale, scale_map, split_mode, leaky, init_zeros, use_lu,
                         net_actnorm)
        self.flows[0] = AffineCouplingBlock(self.flows[0].flows[1].param_map, scale, scale_map, split_mode)
        self.channels = channels

    def _check(self, x) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"GlowBlock: x must have shape (B, {self.channels}, H, W) (channels={self.channels}), "
                             f"got {_shape(x)}")

    def forward(self, z):
        self._check(z)
        return super().forward(z)

    def inverse(self, z):
        self._check(z)
        return super().inverse(z)

    def eo_linearize(self, x):
        from .foreign import ForeignFlow
        self._check(x)
        return ForeignFlow(list(self.flows))._linearize(x)
