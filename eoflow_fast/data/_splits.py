"""Seeded train / test splits for data without a published split: by row (tables), by name (images)."""
from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "test", "all")


def split_rows(n: int, split: str, test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Row indices of ``split``: a seeded permutation, the first ``round(n*test_fraction)`` rows test."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}, expected one of {SPLITS}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}, expected a value in (0, 1)")
    if split == "all":
        return np.arange(n)
    perm = np.random.RandomState(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(perm[:n_test] if split == "test" else perm[n_test:])


def split_by_name(names, split: str, test_fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of ``names`` in ``split`` where a name is "test" iff ``h(seed, name) < test_fraction``,
    ``h`` a BLAKE2b hash mapped to [0, 1): membership depends on the name alone, so a folder and its
    pack (which skips unreadable files) agree, and adding files moves no existing file."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}, expected one of {SPLITS}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}, expected a value in (0, 1)")
    if split == "all":
        return np.arange(len(names))
    u = np.array([int.from_bytes(hashlib.blake2b(f"{seed}:{n}".encode(), digest_size=8).digest(), "little")
                  for n in names], dtype=np.float64) / 2.0 ** 64
    return np.nonzero((u < test_fraction) == (split == "test"))[0]
