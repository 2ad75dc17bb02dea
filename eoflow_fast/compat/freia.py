"""Drop-in FrEIA 0.2 coupling blocks on the fused affine-coupling op.

``import eoflow_fast.compat.freia as Fm`` in place of ``import FrEIA.modules as Fm``: the same
constructors (``dims_in, dims_c, subnet_constructor, clamp, clamp_activation, split_len``;
AllInOneBlock's ``affine_clamping, gin_block, global_affine_init, global_affine_type,
permute_soft, learned_householder_permutation, reverse_permutation``), the same parameter names
(a FrEIA ``state_dict`` loads unchanged), the same random draws at construction, and FrEIA's
numbers. When FrEIA is installed the blocks subclass ``FrEIA.modules.InvertibleModule``, so they
compose in ``SequenceINN`` / ``GraphINN``; without it they keep the same interface.

FrEIA's conventions (checked against FrEIA 0.2's source), with the clamp c and subnet output a:
    clamp_activation "ATAN":    s = c * 0.636 * atan(s_raw)   -> op clamp_fn "freia_atan"
                     "TANH":    s = c * tanh(s_raw)           -> "freia_tanh"
                     "SIGMOID": s = c * 2 (sigmoid(s_raw) - 1/2) -> "freia_sigmoid"
                     callable f: s = c * f(s_raw), computed in torch, then the op with "none"
    split: x1 = x[:, :round(split_len * C)] (a float split_len; Python's round), x2 the rest
    GLOW / RNVP:  y1 = x1 e^{s2(x2)} + t2(x2),  y2 = x2 e^{s1(y1)} + t1(y1); [s, t] = a[:, :len], a[:, len:]
    OneSided:     y = [x1, x2 e^{s(x1)} + t(x1)]
    AllInOne:     u2 = x2 e^{c tanh(a_s / 10)} + a_t / 10 with a = subnet(x1); y = P(scale * u + offset),
                  log_det += n_pixels * sum log(scale)
Conditions are concatenated to every subnet's input along dim 1, as FrEIA does.

Each block also has ``eo_linearize(x, c) -> (out, log_det, inverse_jvp)``: the forward pass plus the
decoder JVP at its output, reusing the subnets' activations (``_tangent.linearize_subnet``) and the
fused tangent kernel; ``EOFlow.from_module`` uses it (spec §6.2).
"""
from __future__ import annotations

import warnings
from typing import Callable, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..flows.base import tile_rows
from ._tangent import linearize_subnet

try:  # compose in FrEIA's SequenceINN / GraphINN when FrEIA is there
    from FrEIA.modules import InvertibleModule as _InvertibleBase
    HAVE_FREIA = True
except ImportError:  # pragma: no cover - exercised only without FrEIA
    HAVE_FREIA = False

    class _InvertibleBase(nn.Module):
        """FrEIA's ``InvertibleModule`` interface: ``dims_in``, ``dims_c``, ``output_dims``."""

        def __init__(self, dims_in, dims_c=None):
            super().__init__()
            self.dims_in = list(dims_in)
            self.dims_c = list(dims_c or [])

        def output_dims(self, input_dims):
            return input_dims

__all__ = ["AffineCouplingOneSided", "AllInOneBlock", "GLOWCouplingBlock", "HAVE_FREIA", "RNVPCouplingBlock"]

FREIA_CLAMPS = {"ATAN": "freia_atan", "TANH": "freia_tanh", "SIGMOID": "freia_sigmoid"}


def _cat(h: torch.Tensor, c) -> torch.Tensor:
    return torch.cat([h, *c], 1) if c else h


def _with_zero_condition(dh: torch.Tensor, c) -> torch.Tensor:
    """Tangent of cat([h, *c]) when only h moves: the conditions' tangent is zero."""
    return torch.cat([dh, *[dh.new_zeros(dh.shape[0], *ci.shape[1:]) for ci in c]], 1) if c else dh


class _FusedAffine:
    """The affine half-step y = x e^s + t (or its inverse) on the fused op, with FrEIA's clamp."""

    def _init_clamp(self, clamp: float, clamp_activation) -> None:
        self.clamp = clamp
        if isinstance(clamp_activation, str):
            if clamp_activation not in FREIA_CLAMPS:
                raise ValueError(f'Unknown clamp activation "{clamp_activation}"')
            self.clamp_fn, self.f_clamp = FREIA_CLAMPS[clamp_activation], None
        elif callable(clamp_activation):
            self.clamp_fn, self.f_clamp = None, clamp_activation
        else:
            raise TypeError(f"clamp_activation must be 'ATAN', 'TANH', 'SIGMOID' or a callable, "
                            f"got {type(clamp_activation).__name__}")

    def _conditions(self, x: torch.Tensor, c) -> list:
        """The conditions as a list, after checking x and them against ``dims_in`` / ``dims_c``: the
        rank and channels of x, one condition per dims_c entry with x's batch and spatial sizes and
        its declared channels (spatial sizes are free, as in FrEIA: convolutional subnets take any).
        A mismatch is a ValueError naming the block and the shapes, not a matmul or cat error."""
        name, dims_in = type(self).__name__, tuple(self.dims_in[0])
        if not isinstance(x, torch.Tensor) or x.dim() != len(dims_in) + 1 or x.shape[1] != dims_in[0]:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name}: x must have shape (B, {', '.join(map(str, dims_in))}) (dims_in), got {got}")
        if isinstance(c, torch.Tensor):
            raise TypeError(f"{name}: c must be a list of condition tensors, one per dims_c entry, got a tensor")
        conditions = list(c or [])
        if len(conditions) != len(self.dims_c):
            raise ValueError(f"{name}: dims_c {self.dims_c} declares {len(self.dims_c)} condition(s), "
                             f"got {len(conditions)}")
        for i, (ci, dc) in enumerate(zip(conditions, self.dims_c)):
            if (ci.dim() != len(dc) + 1 or ci.shape[0] != x.shape[0] or ci.shape[1] != dc[0]
                    or ci.shape[2:] != x.shape[2:]):
                raise ValueError(f"{name}: condition {i} must have shape ({x.shape[0]}, {dc[0]}"
                                 f"{''.join(f', {n}' for n in x.shape[2:])}) (x's batch and spatial sizes, "
                                 f"dims_c channels), got {tuple(ci.shape)}")
        return conditions

    def _s_in_torch(self) -> bool:
        return self.clamp_fn is None or not self.clamp > 0

    def _s(self, s_raw: torch.Tensor) -> torch.Tensor:
        """s = c f(s_raw) in torch (callable clamps, clamp <= 0)."""
        if self.f_clamp is None:
            return ops.soft_clamp(s_raw, self.clamp, self.clamp_fn)
        return self.clamp * self.f_clamp(s_raw)

    def _affine(self, x, s_raw, t, rev):
        if self._s_in_torch():
            return ops.affine_coupling(x, self._s(s_raw), t, clamp=1.0, clamp_fn="none", reverse=rev)
        return ops.affine_coupling(x, s_raw, t, clamp=self.clamp, clamp_fn=self.clamp_fn, reverse=rev)

    def _affine_tangent_rev(self, y, s_raw, t, dy, ds_raw, dt):
        """Tangent of the inverse x = (y - t) e^{-s} at the primal (y, s_raw, t), all tiled to dy's rows."""
        if self._s_in_torch():
            s, ds = torch.func.jvp(self._s, (s_raw,), (ds_raw,))
            return ops.affine_coupling_jvp(y, s, t, dy, ds, dt, clamp=1.0, clamp_fn="none", reverse=True)[2]
        return ops.affine_coupling_jvp(y, s_raw, t, dy, ds_raw, dt, clamp=self.clamp, clamp_fn=self.clamp_fn,
                                       reverse=True)[2]


def _inverse_tangent(block, y, st, dy, dst):
    """dx for x = (y - t) e^{-s}: primal (y, st = (s_raw, t)) tiled to dy's rows, dst = (ds_raw, dt)."""
    n = dy.shape[0]
    s_raw, t = (tile_rows(v, n) for v in st)
    return block._affine_tangent_rev(tile_rows(y, n), s_raw, t, dy, *dst)


class _CouplingBase(_FusedAffine, _InvertibleBase):
    """FrEIA's ``_BaseCouplingBlock``: split sizes, conditions and the clamp (same checks)."""

    def __init__(self, dims_in, dims_c=None, clamp: float = 2., clamp_activation: Union[str, Callable] = "ATAN",
                 split_len: Union[float, int] = 0.5):
        dims_c = [] if dims_c is None else dims_c
        super().__init__(dims_in, dims_c)
        self.channels = dims_in[0][0]
        self.ndims = len(dims_in[0])
        if isinstance(split_len, float):
            if not 0 <= split_len <= 1:
                raise ValueError(f"Float split_len must be in range [0, 1], but is: {split_len}")
            split_len = round(self.channels * split_len)
        elif not 0 <= split_len <= self.channels:
            raise ValueError(f"Integer split_len must be in range 0 <= split_len <= {self.channels}, "
                             f"but is: {split_len}")
        self.split_len1, self.split_len2 = split_len, self.channels - split_len
        if not all(tuple(dc[1:]) == tuple(dims_in[0][1:]) for dc in dims_c):
            raise ValueError(f"Dimensions of input {dims_in} and one or more conditions {dims_c} don't agree.")
        self.conditional = len(dims_c) > 0
        self.condition_length = sum(dc[0] for dc in dims_c)
        self._init_clamp(clamp, clamp_activation)

    def output_dims(self, input_dims):
        if len(input_dims) != 1:
            raise ValueError("Can only use 1 input")
        return input_dims

    def _split(self, x):
        return torch.split(x, [self.split_len1, self.split_len2], dim=1)


class _TwoSided(_CouplingBase):
    """GLOW / RNVP order: x1 moves with coefficients of x2, then x2 with those of y1."""

    def _coefficients(self, passive: int, u):  # pragma: no cover - abstract
        raise NotImplementedError

    def _coefficients_linearized(self, passive: int, u):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x, c=None, rev=False, jac=True):
        c = self._conditions(x[0], c)
        x1, x2 = self._split(x[0])
        if not rev:
            y1, j1 = self._affine(x1, *self._coefficients(2, _cat(x2, c)), False)
            y2, j2 = self._affine(x2, *self._coefficients(1, _cat(y1, c)), False)
        else:
            y2, j2 = self._affine(x2, *self._coefficients(1, _cat(x1, c)), True)
            y1, j1 = self._affine(x1, *self._coefficients(2, _cat(y2, c)), True)
        return (torch.cat((y1, y2), 1),), j1 + j2

    def eo_linearize(self, x, c=None):
        c = self._conditions(x, c)
        x1, x2 = self._split(x)
        st2, tangent2 = self._coefficients_linearized(2, _cat(x2, c))
        y1, j1 = self._affine(x1, *st2, False)
        st1, tangent1 = self._coefficients_linearized(1, _cat(y1, c))
        y2, j2 = self._affine(x2, *st1, False)

        def inverse_jvp(dy):
            dy1, dy2 = self._split(dy)
            dx2 = _inverse_tangent(self, y2, st1, dy2, tangent1(_with_zero_condition(dy1, c)))
            dx1 = _inverse_tangent(self, y1, st2, dy1, tangent2(_with_zero_condition(dx2, c)))
            return torch.cat((dx1, dx2), 1)
        return torch.cat((y1, y2), 1), j1 + j2, inverse_jvp


class GLOWCouplingBlock(_TwoSided):
    """FrEIA's GLOWCouplingBlock: one subnet per half predicts [s, t] (``subnet1``, ``subnet2``)."""

    def __init__(self, dims_in, dims_c=None, subnet_constructor: Callable = None, clamp: float = 2.,
                 clamp_activation: Union[str, Callable] = "ATAN", split_len: Union[float, int] = 0.5):
        super().__init__(dims_in, dims_c, clamp, clamp_activation, split_len=split_len)
        self.subnet1 = subnet_constructor(self.split_len1 + self.condition_length, self.split_len2 * 2)
        self.subnet2 = subnet_constructor(self.split_len2 + self.condition_length, self.split_len1 * 2)

    def _active_len(self, passive: int) -> int:
        return self.split_len2 if passive == 1 else self.split_len1

    def _coefficients(self, passive, u):
        a = (self.subnet1 if passive == 1 else self.subnet2)(u)
        n = self._active_len(passive)
        return a[:, :n], a[:, n:]

    def _coefficients_linearized(self, passive, u):
        a, tangent = linearize_subnet(self.subnet1 if passive == 1 else self.subnet2, u)
        n = self._active_len(passive)

        def coefficient_tangent(du):
            da = tangent(du)
            return da[:, :n], da[:, n:]
        return (a[:, :n], a[:, n:]), coefficient_tangent


class RNVPCouplingBlock(_TwoSided):
    """FrEIA's RNVPCouplingBlock: separate s and t subnets (``subnet_s1, subnet_t1, subnet_s2, subnet_t2``)."""

    def __init__(self, dims_in, dims_c=None, subnet_constructor: Callable = None, clamp: float = 2.,
                 clamp_activation: Union[str, Callable] = "ATAN", split_len: Union[float, int] = 0.5):
        super().__init__(dims_in, dims_c, clamp, clamp_activation, split_len=split_len)
        self.subnet_s1 = subnet_constructor(self.split_len1 + self.condition_length, self.split_len2)
        self.subnet_t1 = subnet_constructor(self.split_len1 + self.condition_length, self.split_len2)
        self.subnet_s2 = subnet_constructor(self.split_len2 + self.condition_length, self.split_len1)
        self.subnet_t2 = subnet_constructor(self.split_len2 + self.condition_length, self.split_len1)

    def _nets(self, passive):
        return (self.subnet_s1, self.subnet_t1) if passive == 1 else (self.subnet_s2, self.subnet_t2)

    def _coefficients(self, passive, u):
        net_s, net_t = self._nets(passive)
        return net_s(u), net_t(u)

    def _coefficients_linearized(self, passive, u):
        (s_raw, tangent_s), (t, tangent_t) = (linearize_subnet(net, u) for net in self._nets(passive))
        return (s_raw, t), lambda du: (tangent_s(du), tangent_t(du))


class AffineCouplingOneSided(_CouplingBase):
    """FrEIA's AffineCouplingOneSided: y = [x1, x2 e^{s(x1)} + t(x1)] with one ``subnet``."""

    def __init__(self, dims_in, dims_c=None, subnet_constructor: Callable = None, clamp: float = 2.,
                 clamp_activation: Union[str, Callable] = "ATAN", split_len: Union[float, int] = 0.5):
        super().__init__(dims_in, dims_c, clamp, clamp_activation, split_len=split_len)
        self.subnet = subnet_constructor(self.split_len1 + self.condition_length, 2 * self.split_len2)

    def forward(self, x, c=None, rev=False, jac=True):
        c = self._conditions(x[0], c)
        x1, x2 = self._split(x[0])
        a = self.subnet(_cat(x1, c))
        y2, j = self._affine(x2, a[:, :self.split_len2], a[:, self.split_len2:], rev)
        return (torch.cat((x1, y2), 1),), j

    def eo_linearize(self, x, c=None):
        c = self._conditions(x, c)
        x1, x2 = self._split(x)
        a, tangent = linearize_subnet(self.subnet, _cat(x1, c))
        n = self.split_len2
        st = (a[:, :n], a[:, n:])
        y2, j = self._affine(x2, *st, False)

        def inverse_jvp(dy):
            dy1, dy2 = self._split(dy)
            da = tangent(_with_zero_condition(dy1, c))
            return torch.cat((dy1, _inverse_tangent(self, y2, st, dy2, (da[:, :n], da[:, n:]))), 1)
        return torch.cat((x1, y2), 1), j, inverse_jvp


def _gin_free_tanh(clamp: float) -> Callable:
    return lambda u: clamp * torch.tanh(u)


class AllInOneBlock(_FusedAffine, _InvertibleBase):
    """FrEIA's AllInOneBlock (affine coupling, permutation, global affine scale) on the fused op.

    y = V R (Psi(s_global) * Coupling(R^-1 V^-1 x) + t_global) in FrEIA's notation; the coupling
    moves x2 with s = affine_clamping * tanh(a_s / 10), t = a_t / 10 from a = subnet([x1, c]).
    """

    def __init__(self, dims_in, dims_c=None, subnet_constructor: Callable = None, affine_clamping: float = 2.,
                 gin_block: bool = False, global_affine_init: float = 1., global_affine_type: str = 'SOFTPLUS',
                 permute_soft: bool = False, learned_householder_permutation: int = 0,
                 reverse_permutation: bool = False):
        dims_c = [] if dims_c is None else dims_c
        super().__init__(dims_in, dims_c)
        channels = dims_in[0][0]
        self.input_rank = len(dims_in[0]) - 1
        self.sum_dims = tuple(range(1, 2 + self.input_rank))
        if len(dims_c) == 0:
            self.conditional, self.condition_channels = False, 0
        else:
            if tuple(dims_c[0][1:]) != tuple(dims_in[0][1:]):
                raise ValueError(f"Dimensions of input and condition don't agree: {dims_c} vs {dims_in}.")
            self.conditional, self.condition_channels = True, sum(dc[0] for dc in dims_c)
        self.splits = [channels - channels // 2, channels // 2]
        try:
            self.permute_function = {0: F.linear, 1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[self.input_rank]
        except KeyError:
            raise ValueError(f"Data is {1 + self.input_rank}D. Must be 1D-4D.") from None
        self.in_channels = channels
        self.GIN = gin_block
        self.reverse_pre_permute = reverse_permutation
        self.householder = learned_householder_permutation
        # the coupling: s = c tanh(a_s / 10) is "freia_tanh" at s_raw = a_s / 10; GIN recentres s in torch
        self._init_clamp(affine_clamping, _gin_free_tanh(affine_clamping) if gin_block else "TANH")
        if permute_soft and channels > 512:
            warnings.warn(("Soft permutation will take a very long time to initialize "
                           f"with {channels} feature channels. Consider using hard permutation instead."))
        if global_affine_type == 'SIGMOID':
            global_scale = 2. - np.log(10. / global_affine_init - 1.)
            self.global_scale_activation = (lambda a: 10 * torch.sigmoid(a - 2.))
        elif global_affine_type == 'SOFTPLUS':
            global_scale = 2. * np.log(np.exp(0.5 * 10. * global_affine_init) - 1)
            self.softplus = nn.Softplus(beta=0.5)
            self.global_scale_activation = (lambda a: 0.1 * self.softplus(a))
        elif global_affine_type == 'EXP':
            global_scale = np.log(global_affine_init)
            self.global_scale_activation = (lambda a: torch.exp(a))
        else:
            raise ValueError('Global affine activation must be "SIGMOID", "SOFTPLUS" or "EXP"')
        self.global_scale = nn.Parameter(torch.ones(1, channels, *([1] * self.input_rank)) * float(global_scale))
        self.global_offset = nn.Parameter(torch.zeros(1, channels, *([1] * self.input_rank)))
        if permute_soft:
            from scipy.stats import special_ortho_group
            w = special_ortho_group.rvs(channels)
        else:
            w = np.zeros((channels, channels))
            for i, j in enumerate(np.random.permutation(channels)):
                w[i, j] = 1.
        if self.householder:
            self.vk_householder = nn.Parameter(0.2 * torch.randn(self.householder, channels), requires_grad=True)
            self.w_perm = None
            self.w_perm_inv = None
            self.w_0 = nn.Parameter(torch.FloatTensor(w), requires_grad=False)
        else:
            shape = (channels, channels, *([1] * self.input_rank))
            self.w_perm = nn.Parameter(torch.FloatTensor(w).view(*shape), requires_grad=False)
            self.w_perm_inv = nn.Parameter(torch.FloatTensor(w.T).view(*shape), requires_grad=False)
        if subnet_constructor is None:
            raise ValueError("Please supply a callable subnet_constructor function or object (see docstring)")
        self.subnet = subnet_constructor(self.splits[0] + self.condition_channels, 2 * self.splits[1])
        self.last_jac = None

    def _s(self, s_raw):
        s = self.f_clamp(s_raw) if self.GIN else ops.soft_clamp(s_raw, self.clamp, self.clamp_fn)
        return s - s.mean(dim=self.sum_dims, keepdim=True) if self.GIN else s

    def _construct_householder_permutation(self):
        w = self.w_0
        for vk in self.vk_householder:
            w = torch.mm(w, torch.eye(self.in_channels).to(w.device) - 2 * torch.ger(vk, vk) / torch.dot(vk, vk))
        for _ in range(self.input_rank):
            w = w.unsqueeze(-1)
        return w

    def _refresh_permutation(self, rev: bool) -> None:
        if self.householder:
            self.w_perm = self._construct_householder_permutation()
            if rev or self.reverse_pre_permute:
                self.w_perm_inv = self.w_perm.transpose(0, 1).contiguous()

    def _scale(self):
        """(global scale Psi(s_global) or 1, its log-det per pixel)."""
        if self.GIN:
            return 1., 0.
        scale = self.global_scale_activation(self.global_scale)
        return scale, torch.sum(torch.log(scale))

    def _coupling(self, x, c, rev):
        x1, x2 = torch.split(x, self.splits, dim=1)
        a = self.subnet(_cat(x1, c)) * 0.1
        ch = x2.shape[1]
        x2, j = self._affine(x2, a[:, :ch], a[:, ch:], rev)
        return torch.cat((x1, x2), 1), j

    def forward(self, x, c=None, rev=False, jac=True):
        c = self._conditions(x[0], c)
        self._refresh_permutation(rev)
        x = x[0]
        scale, scale_jac = self._scale()
        if rev:
            x = (self.permute_function(x, self.w_perm_inv) - self.global_offset) / scale
        elif self.reverse_pre_permute:
            x = self.permute_function(x, self.w_perm_inv)
        x_out, log_jac_det = self._coupling(x, c, rev)
        if not rev:
            x_out = self.permute_function(x_out * scale + self.global_offset, self.w_perm)
        elif self.reverse_pre_permute:
            x_out = self.permute_function(x_out, self.w_perm)
        n_pixels = x_out[0, :1].numel()
        return (x_out,), log_jac_det + (-1) ** rev * n_pixels * scale_jac

    def eo_linearize(self, x, c=None):
        c = self._conditions(x, c)
        self._refresh_permutation(True)
        scale, scale_jac = self._scale()
        if self.reverse_pre_permute:
            x = self.permute_function(x, self.w_perm_inv)
        x1, x2 = torch.split(x, self.splits, dim=1)
        a, tangent = linearize_subnet(self.subnet, _cat(x1, c))
        ch = x2.shape[1]
        st = (0.1 * a[:, :ch], 0.1 * a[:, ch:])
        y2, j = self._affine(x2, *st, False)
        out = self.permute_function(torch.cat((x1, y2), 1) * scale + self.global_offset, self.w_perm)
        w_perm, w_perm_inv = self.w_perm, self.w_perm_inv

        def inverse_jvp(dy):
            du1, du2 = torch.split(self.permute_function(dy, w_perm_inv) / scale, self.splits, dim=1)
            da = 0.1 * tangent(_with_zero_condition(du1, c))
            dx = torch.cat((du1, _inverse_tangent(self, y2, st, du2, (da[:, :ch], da[:, ch:]))), 1)
            return self.permute_function(dx, w_perm) if self.reverse_pre_permute else dx
        return out, j + out[0, :1].numel() * scale_jac, inverse_jvp

    def output_dims(self, input_dims):
        return input_dims
