"""Complete flows: the flat MLP-coupling flow (B-EOFlow, spec §4.1) and multiscale image flows
(spec §4.4 [INFERRED]); all map an input to one flat z of dimension D = prod(input_shape)."""
from __future__ import annotations

import math

import torch

from .base import InvertibleModule, SequenceFlow
from .coupling import AffineCoupling
from .linear import ActNorm, InvConv1x1, Orthogonal, Permutation
from .reshape import HaarDownsample, Squeeze


def mlp_flow(dim: int, blocks: int = 8, hidden: int = 256, clamp: float = 2.0, clamp_fn: str = "atan",
             rotate: bool = True, n_hidden_layers: int = 2, seed: int = 0,
             cond_channels: int = 0) -> SequenceFlow:
    """(B, dim) -> (B, dim): [Orthogonal] ActNorm, blocks x [AffineCoupling(mlp), Permutation, ActNorm],
    [Orthogonal]. The learnable pre/post rotations follow B-EOFlow (the post-rotation lets the latent
    basis rotate freely, which helps MTC -> 0). ``cond_channels`` > 0: conditional couplings."""
    layers: list[InvertibleModule] = [Orthogonal(dim)] if rotate else []
    layers.append(ActNorm(dim))
    for i in range(blocks):
        layers += [AffineCoupling(dim, hidden, "mlp", clamp, clamp_fn, n_hidden_layers,
                                  cond_channels=cond_channels),
                   Permutation(dim, seed=seed + i), ActNorm(dim)]
    if rotate:
        layers.append(Orthogonal(dim))
    return SequenceFlow(*layers)


class MultiscaleFlow(InvertibleModule):
    """Multiscale image flow (RealNVP/Glow layout) with a flat output.

    Level l maps (c_l, h_l, w_l) through ``levels[l]`` (which starts with a 2x downsampling); after
    every level but the last, the trailing ``c - c//2`` channels are factored out. The output
    z = concat(flatten(factored_1), ..., flatten(final)) has D = C*H*W entries; ``rev`` takes a flat
    z of that length and ``jvp`` carries flat tangents the same way.
    """

    def __init__(self, input_shape: tuple[int, int, int], levels: list[InvertibleModule], shapes: list[tuple]):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.levels = torch.nn.ModuleList(levels)
        self.shapes = shapes  # per level: (kept_shape, factored_shape or None) after that level

    def _check_input(self, x):
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"MultiscaleFlow: x has shape {tuple(x.shape)}, expected (B, {self.input_shape})")

    def _flow(self, x, dx, rev):
        B = x.shape[0]
        log_det = x.new_zeros(B)
        if not rev:
            self._check_input(x)
            outs, douts = [], []
            for level, (kept, out_shape) in zip(self.levels, self.shapes):
                x, ld, dx = level._flow(x, dx, False)
                log_det = log_det + ld
                if out_shape is not None:
                    x, z_l = x.split([kept[0], out_shape[0]], dim=1)
                    outs.append(z_l.reshape(B, -1))
                    if dx is not None:
                        dx, dz_l = dx.split([kept[0], out_shape[0]], dim=1)
                        douts.append(dz_l.reshape(B, -1))
            outs.append(x.reshape(B, -1))
            z = torch.cat(outs, 1)
            return z, log_det, (None if dx is None else torch.cat(douts + [dx.reshape(B, -1)], 1))
        D = math.prod(self.input_shape)
        if x.dim() != 2 or x.shape[1] != D:
            raise ValueError(f"MultiscaleFlow: rev input must be (B, {D}), got shape {tuple(x.shape)}")

        def step(i, hs):
            nonlocal log_det
            h, ld, dh = self.levels[i]._flow(hs[0], hs[1] if len(hs) > 1 else None, True)
            log_det = log_det + ld
            return [h] if dh is None else [h, dh]
        hs = self._reverse_walk([x] if dx is None else [x, dx], step)
        return hs[0], log_det, (hs[1] if len(hs) > 1 else None)

    def _reverse_walk(self, flats, step):
        """Undo the factoring out, last level first, on flat tensors of shape (n, D) side by side.

        Every tensor of ``flats`` is split like z; the walk starts from the last level's kept block,
        re-attaches level i's factored piece (channels last) before ``hs = step(i, hs)`` and returns
        the (n, *input_shape) tensors.
        """
        shapes = [o for _, o in self.shapes if o is not None] + [self.shapes[-1][0]]
        sizes = [math.prod(s) for s in shapes]
        parts = [[p.reshape(f.shape[0], *s) for p, s in zip(f.split(sizes, dim=1), shapes)] for f in flats]
        hs, j = [p[-1] for p in parts], len(sizes) - 2
        for i in reversed(range(len(self.levels))):
            if self.shapes[i][1] is not None:
                hs = [torch.cat([h, p[j]], 1) for h, p in zip(hs, parts)]
                j -= 1
            hs = step(i, hs)
        return hs

    def _linearize(self, x):
        B = x.shape[0]
        self._check_input(x)
        log_det, outs, inverses = x.new_zeros(B), [], []
        for level, (kept, out_shape) in zip(self.levels, self.shapes):
            x, ld, inv = level._linearize(x)
            log_det = log_det + ld
            inverses.append(inv)
            if out_shape is not None:
                x, z_l = x.split([kept[0], out_shape[0]], dim=1)
                outs.append(z_l.reshape(B, -1))
        outs.append(x.reshape(B, -1))

        def inverse_jvp(dz):
            return self._reverse_walk([dz], lambda i, hs: [inverses[i](hs[0])])[0]
        return torch.cat(outs, 1), log_det, inverse_jvp


def multiscale_flow(input_shape, arch: str = "glow", levels: int = 2, steps: int = 4, hidden: int = 64,
                    clamp: float = 2.0, clamp_fn: str = "atan", seed: int = 0,
                    cond_channels: int = 0) -> MultiscaleFlow:
    """Build a multiscale flow for images of ``input_shape`` = (C, H, W).

    ``arch="glow"``: per level Squeeze, then ``steps`` x [ActNorm, InvConv1x1, AffineCoupling(conv)].
    ``arch="realnvp"``: per level HaarDownsample, then ``steps`` x [AffineCoupling(conv), Permutation]
    [INFERRED: the GLOW two-sided coupling with fixed channel permutations stands in for RealNVP's
    alternating checkerboard/channel masks; no ActNorm, as in RealNVP].
    H and W must be divisible by 2**levels. ``cond_channels`` > 0: conditional couplings (a (B, k)
    condition broadcast over each level's H, W).
    """
    if arch not in ("glow", "realnvp"):
        raise ValueError(f"multiscale_flow: arch must be 'glow' or 'realnvp', got {arch!r}")
    c, h, w = input_shape
    if h % (2 ** levels) or w % (2 ** levels):
        raise ValueError(f"multiscale_flow: H, W = {h}, {w} must be divisible by 2**levels = {2 ** levels}")
    mods, shapes = [], []
    for lvl in range(levels):
        layers: list[InvertibleModule] = [Squeeze() if arch == "glow" else HaarDownsample(c)]
        c, h, w = 4 * c, h // 2, w // 2
        for k in range(steps):
            s = seed + 100 * lvl + k
            if arch == "glow":
                layers += [ActNorm(c), InvConv1x1(c, seed=s),
                           AffineCoupling(c, hidden, "conv", clamp, clamp_fn, cond_channels=cond_channels)]
            else:
                layers += [AffineCoupling(c, hidden, "conv", clamp, clamp_fn, cond_channels=cond_channels),
                           Permutation(c, seed=s)]
        mods.append(SequenceFlow(*layers))
        if lvl < levels - 1:
            keep = c // 2
            shapes.append(((keep, h, w), (c - keep, h, w)))
            c = keep
        else:
            shapes.append(((c, h, w), None))
    return MultiscaleFlow(input_shape, mods, shapes)
