"""Ground-truth factor interface (disentanglement_lib's ``GroundTruthData``) and its torch view.

A ground-truth dataset is a finite product of discrete factors ``f = (f_0, ..., f_{F-1})`` with
``0 <= f_k < factor_sizes[k]`` and a renderer ``f -> x``. The index bijection is the mixed-radix
(C-order, last factor fastest) encoding used by the dSprites file::

    index(f) = sum_k f_k * prod_{j > k} factor_sizes[j]

Differences from disentanglement_lib: observations are channel-first ``(n, C, H, W)`` float32 (so
a ``representation_fn`` can hand them to a PyTorch model as they are), and ``rng`` is a
``np.random.RandomState`` as there.

Random renderers (the coloured / noisy / scream dSprites) split their randomness into ``_draw(n,
rng)`` (row k of every draw belongs to image k) and ``_observe(factors, draws)`` (deterministic).
``sample_observations_from_factors`` passes its ``RandomState``; the torch view passes an
``ItemRandom`` whose row k depends only on ``(seed, item)``, so item ``i`` of a view with ``seed`` is
always the same image while batches are still drawn and rendered in single vectorized calls.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ._random import ItemRandom


class GroundTruthData:
    """Base class. Subclasses set ``factor_names``, ``factor_sizes``, ``observation_shape`` and
    implement ``_observe(factors, draws)``; random ones also implement ``_draw(n, rng)``."""

    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    observation_shape: tuple[int, ...] = ()

    # ---- factor space -------------------------------------------------------------------------
    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def num_items(self) -> int:
        """Number of items in the torch view (default: every factor combination)."""
        return int(np.prod(self.factor_sizes, dtype=np.int64))

    def _strides(self) -> np.ndarray:
        sizes = np.asarray(self.factor_sizes, dtype=np.int64)
        return np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]]).astype(np.int64)

    def check_factors(self, factors, name: str = "factors") -> np.ndarray:
        """``factors`` as an int64 array (n, F) with every column in range; ValueError otherwise."""
        f = np.asarray(factors)
        if f.ndim != 2 or f.shape[1] != self.num_factors:
            raise ValueError(f"{type(self).__name__}: {name} has shape {f.shape}, expected (n, {self.num_factors}) "
                             f"for factors {self.factor_names}")
        if f.size and not np.issubdtype(f.dtype, np.integer):
            raise ValueError(f"{type(self).__name__}: {name} has dtype {f.dtype}, expected integers")
        f = f.astype(np.int64, copy=False)
        bad = (f < 0) | (f >= np.asarray(self.factor_sizes))
        if bad.any():
            k = int(np.nonzero(bad.any(0))[0][0])
            raise ValueError(f"{type(self).__name__}: {name}[:, {k}] ({self.factor_names[k]}) has values outside "
                             f"[0, {self.factor_sizes[k]})")
        return f

    def factors_to_index(self, factors) -> np.ndarray:
        """(n, F) int factors -> (n,) int64 indices, ``sum_k f_k * stride_k`` (C order)."""
        return self.check_factors(factors) @ self._strides()

    def index_to_factors(self, index) -> np.ndarray:
        """(n,) indices in ``[0, prod(factor_sizes))`` -> (n, F) int64 factors; inverse of ``factors_to_index``."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        total = int(np.prod(self.factor_sizes, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= total):
            raise ValueError(f"{type(self).__name__}: index outside [0, {total})")
        return (idx[:, None] // self._strides()) % np.asarray(self.factor_sizes, dtype=np.int64)

    def item_factors(self, items) -> np.ndarray:
        """Factors of torch-view items (default: item = product index)."""
        return self.index_to_factors(items)

    # ---- sampling (disentanglement_lib interface) -----------------------------------------------
    def sample_factors(self, num: int, rng: np.random.RandomState) -> np.ndarray:
        """(num, F) int64 factors, each column uniform on ``[0, factor_sizes[k])``."""
        return np.stack([rng.randint(0, s, size=num) for s in self.factor_sizes], axis=1).astype(np.int64)

    def sample_observations_from_factors(self, factors, rng: np.random.RandomState) -> np.ndarray:
        """(n, F) factors -> float32 (n, *observation_shape) observations."""
        f = self.check_factors(factors)
        return self._observe(f, self._draw(len(f), rng))

    def sample(self, num: int, rng: np.random.RandomState):
        """``(factors (num, F) int64, observations (num, *observation_shape) float32)``."""
        factors = self.sample_factors(num, rng)
        return factors, self.sample_observations_from_factors(factors, rng)

    def sample_observations(self, num: int, rng: np.random.RandomState) -> np.ndarray:
        return self.sample(num, rng)[1]

    # ---- rendering hooks ------------------------------------------------------------------------
    is_random = False

    def _draw(self, n: int, rng):
        """Per-image random draws from ``rng`` (RandomState or ItemRandom: ``uniform``, ``randint``),
        a dict of arrays with leading dim n; None for deterministic data."""
        return None

    def _observe(self, factors: np.ndarray, draws) -> np.ndarray:
        raise NotImplementedError

    def torch_dataset(self, with_factors: bool = False, seed: int = 0) -> "GroundTruthDataset":
        return GroundTruthDataset(self, with_factors=with_factors, seed=seed)


class GroundTruthDataset(Dataset):
    """Map-style torch view: item ``i`` -> float32 tensor ``(C, H, W)``, or ``(x, factors int64 (F,))``
    with ``with_factors=True``. Random variants draw item ``i``'s randomness from
    ``ItemRandom(seed, [i])``, so an item is the same image every epoch and in every worker.
    ``__getitems__`` renders a whole batch in one vectorized call (used by ``DataLoader``)."""

    def __init__(self, data: GroundTruthData, with_factors: bool = False, seed: int = 0):
        self.data = data
        self.with_factors = with_factors
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.data.num_items

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, items):
        items = np.asarray(items, dtype=np.int64)
        if items.size and (items.min() < -len(self) or items.max() >= len(self)):
            raise IndexError(f"{type(self.data).__name__}: index out of range for {len(self)} items")
        items = items % len(self)
        factors = self.data.item_factors(items)
        draws = self.data._draw(len(items), ItemRandom(self.seed, items)) if self.data.is_random else None
        x = torch.from_numpy(self.data._observe(factors, draws))
        if not self.with_factors:
            return list(x.unbind(0))
        f = torch.from_numpy(factors)
        return [(xi, fi) for xi, fi in zip(x.unbind(0), f.unbind(0))]
