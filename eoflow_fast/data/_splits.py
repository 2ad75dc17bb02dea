"""One split vocabulary, and seeded train / test splits for data without a published split.

Every dataset and command names its splits from ``SPLIT_NAMES``: "train", "test", "all", and
"valid" where the data publishes a validation partition (CelebA). Old spellings in ``ALIASES``
("eval" -> "test", "val"/"validation" -> "valid") are accepted with a FutureWarning.
Data without a published split is split by row (tables, :func:`split_rows`) or by name (image
folders and their packs, :func:`split_by_name`); :func:`row_rule` / :func:`name_rule` describe the rule.
"""
from __future__ import annotations

import hashlib
import sys
import warnings

import numpy as np

SPLITS = ("train", "test", "all")
SPLIT_NAMES = ("train", "valid", "test", "all")
ALIASES = {"eval": "test", "val": "valid", "validation": "valid"}


def canonical_split(split: str, stream=None) -> str:
    """``split`` in the one vocabulary: an alias is mapped, with a FutureWarning (or, given ``stream``,
    a one-line message there, for command lines); others pass unchanged for the dataset to judge."""
    if split not in ALIASES:
        return split
    message = f"split {split!r} is deprecated; use {ALIASES[split]!r} (splits: {', '.join(SPLIT_NAMES)})"
    if stream is not None:
        print(f"eoflow-fast: {message}", file=stream)
    else:
        warnings.warn(message, FutureWarning, stacklevel=3)
    return ALIASES[split]


def split_arg(text: str) -> str:
    """argparse ``type`` for a ``--split`` flag: :func:`canonical_split` reporting aliases on stderr."""
    return canonical_split(text, sys.stderr)


def row_rule(test_fraction: float, seed: int) -> str:
    """The rule of :func:`split_rows`, in words."""
    return (f"by row: numpy RandomState(seed={seed}).permutation(n); the first round(n * {test_fraction}) "
            "rows are 'test', the rest 'train'")


def name_rule(test_fraction: float, seed: int) -> str:
    """The rule of :func:`split_by_name`, in words."""
    return (f"by file name: 'test' iff int(blake2b(f'{seed}:{{name}}', digest_size=8), little-endian) / 2**64 "
            f"< {test_fraction} (about {test_fraction:.0%} of the files), the rest 'train'")


def split_rows(n: int, split: str, test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Row indices of ``split``: a seeded permutation, the first ``round(n*test_fraction)`` rows test."""
    split = canonical_split(split)
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
    split = canonical_split(split)
    if split not in SPLITS:
        raise ValueError(f"split={split!r}, expected one of {SPLITS}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}, expected a value in (0, 1)")
    if split == "all":
        return np.arange(len(names))
    u = np.array([int.from_bytes(hashlib.blake2b(f"{seed}:{n}".encode(), digest_size=8).digest(), "little")
                  for n in names], dtype=np.float64) / 2.0 ** 64
    return np.nonzero((u < test_fraction) == (split == "test"))[0]
