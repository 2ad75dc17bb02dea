"""Tabular data: a torch view over a float table, scikit-learn's bundled wine and digits, CSV files.

Tables are standardised column-wise with the training rows' statistics,
``x' = (x - mean_train) / std_train`` (population std; a constant column is an error), and keep
their column names. Splits: ``"train"``, ``"test"`` (a seeded ``test_fraction`` of the rows, 0.2 by
default) or ``"all"``. Nothing is downloaded: wine and digits ship inside scikit-learn.
"""
from __future__ import annotations

import csv
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from ._random import uniform_noise
from ._splits import split_rows

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
    """``(values - mean) / std`` with mean and std of ``values[train_rows]``; returns (z, mean, std)."""
    mean = values[train_rows].mean(0)
    std = values[train_rows].std(0)
    if (std == 0).any():
        bad = [c for c, s in zip(columns, std) if s == 0]
        raise ValueError(f"standardise: columns {bad} are constant on the training rows")
    return (values - mean) / std, mean, std


def _standardised_split(values, columns, split, test_fraction, seed, with_factors=False) -> TabularDataset:
    rows = split_rows(len(values), split, test_fraction, seed)
    z, mean, std = standardise(values, split_rows(len(values), "train", test_fraction, seed), columns)
    ds = TabularDataset(z[rows], columns, with_factors=with_factors)
    ds.mean, ds.std = mean, std
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
    return TabularDataset(bunch.images[rows, None] / 16.0, factors=bunch.target[rows].astype(np.int64),
                          with_factors=with_labels, dequantize_levels=17 if dequantize else None)


def read_csv(path: str, columns=None, drop=(), delimiter: str | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """Numeric table from a CSV file with a header row -> (values float64 (n, p), columns, dropped).

    Kept columns: ``columns`` if given (each must be numeric), else every column whose cells all
    parse as numbers (others, e.g. names, are listed in ``dropped``); ``drop`` removes columns
    (e.g. a target). Rows with an empty cell in a kept column are removed. The delimiter is sniffed
    (comma, semicolon, tab) unless given; the UCI wine-quality files use ``;``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"csv: no file at {path!r}; expected a delimited text file with a header row "
                                "of column names and one sample per line")
    with open(path, newline="") as fh:
        text = fh.read()
    if delimiter is None:
        delimiter = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t").delimiter
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise ValueError(f"csv: {path!r} has a header but no rows")
    ragged = [i + 2 for i, r in enumerate(body) if len(r) != len(header)]
    if ragged:
        raise ValueError(f"csv: {path!r} lines {ragged[:5]} have a different number of cells than the header")
    unknown = [c for c in list(columns or []) + list(drop) if c not in header]
    if unknown:
        raise ValueError(f"csv: columns {unknown} not in the header of {path!r}: {header}")

    def as_float(cell: str) -> float:
        return float(cell) if cell.strip() else np.nan

    numeric, dropped = {}, []
    for j, name in enumerate(header):
        if name in drop or (columns is not None and name not in columns):
            continue
        try:
            numeric[name] = np.array([as_float(r[j]) for r in body])
        except ValueError:
            if columns is not None:
                raise ValueError(f"csv: column {name!r} of {path!r} is not numeric") from None
            dropped.append(name)
    keep = [c for c in (columns or header) if c in numeric]
    if not keep:
        raise ValueError(f"csv: {path!r} has no numeric columns")
    values = np.stack([numeric[c] for c in keep], axis=1)
    return values[~np.isnan(values).any(1)], keep, dropped


def csv_table(path: str, split: str = "train", columns=None, drop=(), delimiter: str | None = None,
              test_fraction: float = 0.2, seed: int = 0) -> TabularDataset:
    """A CSV file (see :func:`read_csv`) standardised with training-row statistics; ``.columns`` names
    the features and ``.dropped`` the non-numeric columns left out."""
    values, names, dropped = read_csv(path, columns, drop, delimiter)
    ds = _standardised_split(values, names, split, test_fraction, seed)
    ds.dropped = dropped
    return ds
