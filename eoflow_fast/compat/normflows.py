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
"""
from __future__ import annotations


from .. import ops
from ..flows.base import tile_rows
from ._tangent import linearize_subnet

try:
    import normflows as _nf
except ImportError as exc:  # pragma: no cover - exercised only without normflows
    raise ImportError("eoflow_fast.compat.normflows needs normflows (pip install normflows)") from exc

__all__ = ["AffineCoupling", "AffineCouplingBlock", "GlowBlock"]

SCALE_MAPS = {"exp": ("none", 1.0), "sigmoid": ("neg_logsigmoid", 2.0), "sigmoid_inv": ("logsigmoid", 2.0)}


class AffineCoupling(_nf.flows.AffineCoupling):
    """normflows' ``AffineCoupling`` ([z1, z2] -> [z1, z2']) on the fused op."""

    def __init__(self, param_map, scale=True, scale_map="exp"):
        if scale and scale_map not in SCALE_MAPS:
            raise NotImplementedError("This scale map is not implemented.")
        super().__init__(param_map, scale, scale_map)

    def _op_kwargs(self, reverse: bool) -> dict:
        clamp_fn, clamp = SCALE_MAPS[self.scale_map]
        return dict(clamp=clamp, clamp_fn=clamp_fn, reverse=reverse)

    def _couple(self, z2, param, reverse: bool):
        if not self.scale:
            return (z2 - param if reverse else z2 + param), z2.new_zeros(z2.shape[0])
        return ops.affine_coupling(z2, param[:, 1::2], param[:, 0::2], **self._op_kwargs(reverse))

    def forward(self, z):
        z1, z2 = z
        z2, log_det = self._couple(z2, self.param_map(z1), False)
        return [z1, z2], log_det

    def inverse(self, z):
        z1, z2 = z
        z2, log_det = self._couple(z2, self.param_map(z1), True)
        return [z1, z2], log_det

    def eo_linearize_parts(self, z1, z2):
        """Inverse z2 -> x2 at param_map(z1), and the forward JVP (dz1, dx2) -> dz2 at the result."""
        param, tangent = linearize_subnet(self.param_map, z1)
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

    def eo_linearize(self, x):
        from .foreign import ForeignFlow
        return ForeignFlow(list(self.flows))._linearize(x)
