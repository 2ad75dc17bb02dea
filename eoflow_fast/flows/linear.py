"""Linear-in-x flow blocks acting on dim 1 (features of (B, c) or channels of (B, c, H, W)).

Log-dets count every spatial position: for a (B, c, H, W) input a per-channel map with
log|det W| contributes ``H*W*log|det W|``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from .base import InvertibleModule, LinearInvertible


def _spatial(x: torch.Tensor) -> int:
    return math.prod(x.shape[2:])


def _channel_matmul(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """out[:, i, ...] = sum_j W[i, j] x[:, j, ...] for (B, c) or (B, c, H, W)."""
    return F.linear(x, W) if x.dim() == 2 else F.conv2d(x, W[:, :, None, None])


class ActNorm(InvertibleModule):
    """y = x * exp(log_scale) + bias per channel; log_det = spatial * sum(log_scale).

    Data-dependent init (Glow): on the first forward (not rev) call in training mode, set
    log_scale = -log(std_c) and bias = -mean_c * exp(log_scale) from that batch, so the output has
    zero mean and unit variance per channel. Tangent: dy = dx * exp(log_scale) (inverse: / exp).
    A batch whose statistics are not finite (a NaN or inf value, or one value per channel) is a
    ValueError and leaves the layer uninitialised: NaN parameters would make every later output NaN.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.register_buffer("initialized", torch.tensor(False))

    def _shape(self, v, x):
        return v.view(1, -1, *([1] * (x.dim() - 2)))

    @torch.no_grad()
    def _init(self, x):
        dims = [0] + list(range(2, x.dim()))
        count = x.numel() // max(x.shape[1], 1)
        if count < 2:
            raise ValueError(f"ActNorm: the first training batch sets the data-dependent initialisation from each "
                             f"channel's std, but it holds {count} value per channel (shape {tuple(x.shape)}); "
                             f"start with a batch of at least 2 items. The layer stays uninitialised")
        mean, std = x.mean(dims), x.std(dims)
        if not bool(torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("ActNorm: the first training batch sets the data-dependent initialisation, but it holds "
                             "NaN or infinite values (its per-channel mean/std are not finite). The layer stays "
                             "uninitialised")
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.bias.copy_(-mean * torch.exp(self.log_scale))
        self.initialized.fill_(True)

    def _flow(self, x, dx, rev):
        if x.shape[1] != self.bias.numel():
            raise ValueError(f"ActNorm: x has {x.shape[1]} channels on dim 1, expected {self.bias.numel()}")
        if not rev and self.training and not bool(self.initialized):
            self._init(x)
        scale, bias = self._shape(torch.exp(self.log_scale), x), self._shape(self.bias, x)
        log_det = (_spatial(x) * self.log_scale.sum()).expand(x.shape[0])
        if rev:
            return (x - bias) / scale, -log_det, (None if dx is None else dx / scale)
        return x * scale + bias, log_det, (None if dx is None else dx * scale)

    def _linearize(self, x):
        out, log_det, _ = self._flow(x, None, False)
        return out, log_det, lambda dy: dy / self._shape(torch.exp(self.log_scale), dy)


class Permutation(LinearInvertible):
    """Fixed random permutation of dim 1 (seeded); log_det = 0."""

    def __init__(self, channels: int, seed: int = 0):
        super().__init__()
        perm = torch.randperm(channels, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def _map(self, x, rev):
        return x.index_select(1, self.inv_perm if rev else self.perm), 0.0


class InvConv1x1(LinearInvertible):
    """Invertible 1x1 convolution (Glow) with LU parametrisation W = P L (U + diag(sign * exp(log_s))).

    P fixed permutation, L unit lower triangular, U strictly upper triangular; initialised from a
    random orthogonal matrix. log_det = spatial * sum(log_s). Inverse applies W^{-1} (triangular solves).
    """

    def __init__(self, channels: int, seed: int = 0):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=torch.Generator().manual_seed(seed)))
        P, L, U = torch.linalg.lu(q)
        s = torch.diagonal(U)
        self.register_buffer("P", P)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.L = nn.Parameter(L)
        self.U = nn.Parameter(torch.triu(U, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def _factors(self):
        eye = torch.eye(self.P.shape[0], dtype=self.L.dtype, device=self.L.device)
        L = self.L * self.lower_mask + eye
        U = self.U * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return eye, L, U

    def weight(self) -> torch.Tensor:
        _, L, U = self._factors()
        return self.P @ L @ U

    def inverse_weight(self) -> torch.Tensor:
        eye, L, U = self._factors()
        L_inv = torch.linalg.solve_triangular(L, eye, upper=False, unitriangular=True)
        U_inv = torch.linalg.solve_triangular(U, eye, upper=True)
        return U_inv @ L_inv @ self.P.T

    def _map(self, x, rev):
        W = self.inverse_weight() if rev else self.weight()
        log_det = _spatial(x) * self.log_s.sum()
        return _channel_matmul(x, W), (-log_det if rev else log_det)


class Orthogonal(LinearInvertible):
    """Learnable rotation y = Q x over dim 1, Q orthogonal via ``parametrizations.orthogonal``
    (matrix-exponential map), initialised to the identity; log_det = 0; inverse Q^T."""

    def __init__(self, channels: int):
        super().__init__()
        lin = nn.Linear(channels, channels, bias=False)
        nn.init.eye_(lin.weight)
        self.rotation = parametrizations.orthogonal(lin)

    def _map(self, x, rev):
        Q = self.rotation.weight
        return _channel_matmul(x, Q.T if rev else Q), 0.0
