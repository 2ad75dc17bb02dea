"""Randomness for datasets: per-item reproducible draws and fresh dequantisation noise.

- :class:`ItemRandom` is a ``RandomState``-like source (``uniform``, ``randint``) for a batch of
  items whose row ``k`` depends only on ``(seed, items[k], draw number, element)``: a SplitMix64
  hash of a counter, vectorized over the batch. An item's draws are therefore the same whichever
  batch, worker or epoch fetches it, and a batch costs one hash per random number.
- :func:`uniform_noise` gives fresh U[0, 1 - 2^-16) float32 noise from a numpy generator seeded with
  ``torch.initial_seed()`` (re-seeded when that changes), so DataLoader workers, which torch seeds
  differently, never share noise, and ``torch.manual_seed`` makes runs repeatable.
"""
from __future__ import annotations

import os

import numpy as np
import torch

_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of uint64 ``z`` (a bijection with good avalanche); wraps mod 2^64."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


class ItemRandom:
    """Counter-based random source for ``items`` (n,); ``size[0]`` of every draw must be n."""

    def __init__(self, seed: int, items: np.ndarray):
        self.items = np.asarray(items, dtype=np.uint64).reshape(-1)
        self.key = splitmix64(np.array([seed], dtype=np.uint64) * _GOLDEN)
        self.draw = 0

    def _bits(self, size) -> np.ndarray:
        size = (size,) if np.isscalar(size) else tuple(size)
        if size[0] != len(self.items):
            raise ValueError(f"ItemRandom: size[0]={size[0]} must equal the number of items {len(self.items)}")
        per_item = int(np.prod(size[1:], dtype=np.int64))
        counter = (np.uint64(self.draw) << np.uint64(40)) + np.arange(per_item, dtype=np.uint64)
        self.draw += 1
        item_key = splitmix64(self.items * _GOLDEN + self.key)
        return splitmix64(item_key[:, None] + counter[None, :] * _GOLDEN).reshape(size)

    def uniform(self, low: float = 0.0, high: float = 1.0, size=None) -> np.ndarray:
        """float64 U[low, high) from the top 53 bits."""
        return low + (high - low) * (self._bits(size) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53

    def randint(self, low: int, high: int, size=None) -> np.ndarray:
        """int64 uniform on {low..high-1} (modulo bias below 2^-40 for ranges under 2^24)."""
        return low + (self._bits(size) % np.uint64(high - low)).astype(np.int64)


_NOISE: dict = {}


_TOP = np.float32(1 - 2.0 ** -16)


def uniform_noise(shape) -> np.ndarray:
    """float32 dequantisation noise ``u ~ U[0, 1 - 2^-16)`` of ``shape``, fresh on every call (see the
    module docstring for seeding). The top is trimmed so that ``k + u < k + 1`` holds in float32 for
    every integer ``0 <= k < 256``: a float32 U[0, 1) reaches ``1 - 2^-24``, and ``k + u`` then rounds
    up to ``k + 1`` for ``k >= 128`` (ulp 2^-16), leaving the dequantisation bin."""
    key = (os.getpid(), torch.initial_seed())
    rng = _NOISE.get(key)
    if rng is None:
        _NOISE.clear()
        rng = _NOISE[key] = np.random.default_rng(key[1])
    u = rng.random(shape, dtype=np.float32)
    u *= _TOP
    return u
