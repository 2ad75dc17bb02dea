"""Tabular data: a torch view over a float table, scikit-learn's bundled wine and digits, CSV files.

Tables are standardised column-wise with the training rows' statistics,
``x' = (x - mean_train) / std_train`` (population std; a constant column is an error), and keep
their column names. Splits: ``"train"``, ``"test"`` (a seeded ``test_fraction`` of the rows, 0.2 by
default) or ``"all"``. Nothing is downloaded: wine and digits ship inside scikit-learn.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ._csv import CsvError, read_csv
from ._random import uniform_noise
from ._splits import row_rule, split_rows

__all__ = ["CsvError", "TabularDataset", "csv_table", "digits", "read_csv", "standardise", "wine"]


class TabularDataset(Dataset):
    """Item ``i`` -> float32 tensor of shape ``values.shape[1:]`` (``(p,)`` for a table), or
    ``(x, factors[i])`` when ``factors`` is given and ``with_factors=True``."""

    def __init__(self, values: np.ndarray, columns=None, factors: np.ndarray | None = None,
                 with_factors: bool = False, dequantize_levels: int | None = None):
        self.values = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
        self.columns = tuple(columns) if columns is not None else None
        if with_factors and factors is None:
            raise ValueError("TabularDataset: with_factors=True but this data has no factors")
        self.factors = torch.from_numpy(np.ascontiguousarray(factors)) if with_factors else None
        self.dequantize_levels = dequantize_levels

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i):
        x = self.values[i]
        if self.dequantize_levels is not None:
            # values are k / (L - 1), k in {0..L-1}: uniform dequantisation (k + u) / L, u ~ U(0, 1)
            levels = self.dequantize_levels
            x = (x * (levels - 1) + torch.from_numpy(uniform_noise(tuple(x.shape)))) / levels
        return (x, self.factors[i]) if self.factors is not None else x


def standardise(values: np.ndarray, train_rows: np.ndarray, columns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values - mean) / std`` with mean and population std of ``values[train_rows]``; returns
    (z, mean, std). Computed on ``y = values / s`` with ``s = max |values[train_rows]|`` per column
    (so ``|y| <= 1``, and ``mean = s mean(y)``, ``std = s std(y)`` cannot overflow even for entries
    near 1.8e308, where the plain sum of squares would): ``z = (y - mean(y)) / std(y)``."""
    if not np.isfinite(values).all():
        bad = [c for c, ok in zip(columns, np.isfinite(values).all(0)) if not ok]
        raise ValueError(f"standardise: columns {bad} hold inf or NaN")
    if len(train_rows) < 2:
        raise ValueError(f"standardise: {len(train_rows)} training rows, need at least 2 to estimate a std")
    scale = np.abs(values[train_rows]).max(0)
    scale = np.where(scale > 0, scale, 1.0)
    y = values / scale
    mean_y, std_y = y[train_rows].mean(0), y[train_rows].std(0)
    if (std_y == 0).any():
        bad = [c for c, s in zip(columns, std_y) if s == 0]
        raise ValueError(f"standardise: columns {bad} are constant on the training rows")
    with np.errstate(over="ignore"):
        z = (y - mean_y) / std_y
        far = ~np.isfinite(z.astype(np.float32))
    if far.any():
        row, col = (int(v[0]) for v in np.nonzero(far))
        raise ValueError(f"standardise: column {columns[col]!r} row {row}: {float(values[row, col])!r} lies beyond "
                         f"float32 range after standardising (training std {std_y[col] * scale[col]:.3g}): "
                         "an extreme outlier")
    return z, mean_y * scale, std_y * scale


def _standardised_split(values, columns, split, test_fraction, seed, with_factors=False) -> TabularDataset:
    rows = split_rows(len(values), split, test_fraction, seed)
    z, mean, std = standardise(values, split_rows(len(values), "train", test_fraction, seed), columns)
    ds = TabularDataset(z[rows], columns, with_factors=with_factors)
    ds.mean, ds.std = mean, std
    ds.split_rule = row_rule(test_fraction, seed)
    return ds


def wine(split: str = "train", test_fraction: float = 0.2, seed: int = 0) -> TabularDataset:
    """scikit-learn's bundled UCI wine recognition table: 178 x 13, standardised; columns named."""
    from sklearn.datasets import load_wine

    bunch = load_wine()
    return _standardised_split(bunch.data.astype(np.float64), bunch.feature_names, split, test_fraction, seed)


def digits(split: str = "train", dequantize: bool = False, with_labels: bool = False,
           test_fraction: float = 0.2, seed: int = 0) -> TabularDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16) as float32 (1, 8, 8) = x/16 in
    [0, 1]; ``dequantize=True`` returns ``(x + u)/17``, u ~ U(0, 1) fresh per access (17 levels), for
    flows. ``with_labels=True`` yields ``(x, label)``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rows = split_rows(len(bunch.images), split, test_fraction, seed)
    ds = TabularDataset(bunch.images[rows, None] / 16.0, factors=bunch.target[rows].astype(np.int64),
                        with_factors=with_labels, dequantize_levels=17 if dequantize else None)
    ds.split_rule = row_rule(test_fraction, seed)
    return ds


def csv_table(path: str, split: str = "train", columns=None, drop=(), delimiter: str | None = None,
              test_fraction: float = 0.2, seed: int = 0) -> TabularDataset:
    """A CSV file (see :func:`read_csv`) standardised with training-row statistics; ``.columns`` names
    the features and ``.dropped`` the non-numeric columns left out."""
    values, names, dropped = read_csv(path, columns, drop, delimiter)
    ds = _standardised_split(values, names, split, test_fraction, seed)
    ds.dropped = dropped
    return ds
