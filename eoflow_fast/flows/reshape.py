"""Downsampling blocks (B, c, H, W) -> (B, 4c, H/2, W/2); both orthonormal, so log_det = 0."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LinearInvertible


def _check(name, x):
    if x.dim() != 4 or x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"{name}: x must be (B, c, H, W) with even H and W, got shape {tuple(x.shape)}")


class Squeeze(LinearInvertible):
    """Space-to-depth: out[:, 4c'+2i+j, h, w] = x[:, c', 2h+i, 2w+j] (``pixel_unshuffle``)."""

    def _map(self, x, rev):
        if rev:
            return F.pixel_shuffle(x, 2), 0.0
        _check("Squeeze", x)
        return F.pixel_unshuffle(x, 2), 0.0


class HaarDownsample(LinearInvertible):
    """Orthonormal 2x2 Haar transform per channel, wavelet-major output order:
    out channels [LL(c), LH(c), HL(c), HH(c)] each of size c, filters
    LL = [[1,1],[1,1]]/2, LH = [[1,1],[-1,-1]]/2, HL = [[1,-1],[1,-1]]/2, HH = [[1,-1],[-1,1]]/2.
    The low-pass block comes first, so multiscale splits factor out high frequencies."""

    def __init__(self, channels: int):
        super().__init__()
        h = torch.tensor([[[1, 1], [1, 1]], [[1, 1], [-1, -1]], [[1, -1], [1, -1]], [[1, -1], [-1, 1]]],
                         dtype=torch.float32) / 2
        self.channels = channels
        self.register_buffer("filters", h[:, None].repeat(channels, 1, 1, 1))  # (4c, 1, 2, 2), channel-major
        idx = torch.arange(4 * channels).view(channels, 4).T.reshape(-1)  # channel-major -> wavelet-major
        self.register_buffer("order", idx)
        self.register_buffer("inv_order", torch.argsort(idx))

    def _map(self, x, rev):
        w = self.filters.to(x.dtype)
        if rev:
            return F.conv_transpose2d(x.index_select(1, self.inv_order), w, stride=2, groups=self.channels), 0.0
        _check("HaarDownsample", x)
        if x.shape[1] != self.channels:
            raise ValueError(f"HaarDownsample: x has {x.shape[1]} channels, expected {self.channels}")
        return F.conv2d(x, w, stride=2, groups=self.channels).index_select(1, self.order), 0.0
