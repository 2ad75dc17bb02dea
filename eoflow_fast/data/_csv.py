"""Reading a numeric table from a user's CSV file: load it correctly or refuse, naming file, column, line.

Rules (each refusal is a :class:`CsvError`, a ValueError whose message names the file and, where
there is one, the column and the line):

- the file must be UTF-8 text (a NUL byte or invalid UTF-8 is refused as binary), with a header row;
  an empty file, a header without rows, an empty column name and a duplicated column name are refused;
- the delimiter, unless given, is the one of ``,`` ``;`` tab that splits the header, preferring
  one that splits the first 20 lines into equally many cells (no sniffing: a header without any of
  them is one column, a valid single-column CSV);
- every row must have as many cells as the header (ragged rows are refused with their lines);
- a kept column's cells must be numbers: ``inf``/``-inf``/overflowing literals (``1e309``) are
  refused with their line; an empty cell or ``nan`` is missing, and a row with a missing value in a
  kept column is left out (a warning names how many and the first lines);
- a column that is empty in every row is left out with a warning; if missing values would leave no
  row, that is refused, naming the columns with the most missing cells.
"""
from __future__ import annotations

import csv
import io
import math
import os
import warnings

import numpy as np

DELIMITERS = (",", ";", "\t")
_MISSING = ("", "nan", "na", "n/a", "null")


class CsvError(ValueError):
    """A CSV file that cannot be read as a numeric table; the message says where and why."""


def _text(path: str) -> str:
    with open(path, "rb") as fh:
        data = fh.read()
    nul = data.find(b"\0")
    if nul >= 0:
        raise CsvError(f"csv: {path!r} is a binary file (NUL byte at offset {nul}); expected delimited text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CsvError(f"csv: {path!r} is not UTF-8 text (invalid byte at offset {err.start}); expected "
                       "delimited UTF-8 text") from None


def _delimiter(lines: list[str]) -> str:
    """Of DELIMITERS, one that splits the header into several cells, preferring one that splits the
    first (up to 20) lines into equally many, then the most cells (ties: the order of DELIMITERS); a
    header with none of them is a single column."""
    def score(d):
        widths = [len(r) for r in csv.reader(lines, delimiter=d)]
        return (widths[0] > 1, len(set(widths)) == 1, widths[0])

    return max(DELIMITERS, key=score)


def _rows(path: str, text: str, delimiter: str | None) -> tuple[list[str], list[tuple[int, list[str]]], str]:
    """``(header, [(line number, cells)] of the non-blank rows, delimiter)``."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise CsvError(f"csv: {path!r} is empty; expected a header row of column names and one sample per line")
    delimiter = delimiter or _delimiter([line for line in lines[first:] if line.strip()][:20])
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header, body = None, []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = [h.strip() for h in cells]
            else:
                body.append((reader.line_num, cells))
    except csv.Error as err:
        raise CsvError(f"csv: {path!r} line {reader.line_num}: {err}") from None
    return header, body, delimiter


def _check_header(path: str, header: list[str]) -> None:
    seen = {}
    for j, name in enumerate(header, 1):
        if name in seen:
            raise CsvError(f"csv: {path!r}: column name {name!r} appears twice (columns {seen[name]} and {j}); "
                           "column names must be unique")
        seen[name] = j


def _parse(path: str, name: str, body, j: int, strict: bool) -> np.ndarray | None:
    """Column ``j`` as float64 with NaN for missing cells; None if a cell is text (``strict``: refuse)."""
    out = np.empty(len(body))
    for i, (line, cells) in enumerate(body):
        cell = cells[j].strip()
        if cell.lower() in _MISSING:
            out[i] = np.nan
            continue
        try:
            if "_" in cell:  # float() reads "1_000" as 1000 (Python literal syntax); a CSV cell means text
                raise ValueError(cell)
            value = float(cell)
        except ValueError:
            if strict:
                raise CsvError(f"csv: {path!r} column {name!r}, line {line}: {cell!r} is not a number") from None
            return None
        if not math.isfinite(value):
            raise CsvError(f"csv: {path!r} column {name!r}, line {line}: {cell!r} is not a finite number "
                           "(leave the cell empty to mark it missing)")
        out[i] = value
    return out


def read_csv(path: str, columns=None, drop=(), delimiter: str | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """Numeric table from a CSV file with a header row -> (values float64 (n, p), columns, dropped).

    Kept columns: ``columns`` if given (each must be numeric), else every column whose cells all
    parse as numbers (others, e.g. names, are listed in ``dropped``, as are all-empty columns);
    ``drop`` removes columns (e.g. a target). See the module docstring for what is refused."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"csv: no file at {path!r}; expected a delimited text file with a header row "
                                "of column names and one sample per line")
    header, body, delimiter = _rows(path, _text(path), delimiter)
    if not body:
        raise CsvError(f"csv: {path!r} has a header but no rows")
    _check_header(path, header)
    ragged = [(line, len(r)) for line, r in body if len(r) != len(header)]
    if ragged:
        raise CsvError(f"csv: {path!r} lines {[line for line, _ in ragged[:5]]} have {[n for _, n in ragged[:5]]} "
                       f"cells, the header has {len(header)} ({delimiter!r}-delimited)")
    unknown = [c for c in list(columns or []) + list(drop) if c not in header]
    if unknown:
        raise CsvError(f"csv: columns {unknown} not in the header of {path!r}: {header}")

    numeric, dropped, empty = {}, [], []
    for j, name in enumerate(header):
        if name in drop or (columns is not None and name not in columns):
            continue
        label = name or f"#{j + 1} (unnamed)"
        values = _parse(path, label, body, j, strict=columns is not None)
        if values is None:
            dropped.append(label)
        elif np.isnan(values).all():
            if columns is not None:
                raise CsvError(f"csv: {path!r} column {name!r} is empty in every row")
            empty.append(label)
        elif not name:
            raise CsvError(f"csv: {path!r}: column {j + 1} holds numbers but has no name in the header")
        else:
            numeric[name] = values
    if empty:
        warnings.warn(f"csv: {path!r}: left out {len(empty)} column(s) empty in every row: {empty}", stacklevel=3)
        dropped += empty
    keep = [c for c in (columns or header) if c in numeric]
    if not keep:
        raise CsvError(f"csv: {path!r} has no numeric columns (header: {header})")
    values = np.stack([numeric[c] for c in keep], axis=1)
    missing = np.isnan(values)
    complete = ~missing.any(1)
    if not complete.any():
        worst = np.argsort(-missing.sum(0), kind="stable")[:3]
        raise CsvError(f"csv: {path!r}: every row misses a value; most missing: "
                       + ", ".join(f"column {keep[k]!r} in {int(missing[:, k].sum())} of {len(values)} rows"
                                   for k in worst))
    if not complete.all():
        lines = [body[i][0] for i in np.nonzero(~complete)[0][:5]]
        warnings.warn(f"csv: {path!r}: left out {int((~complete).sum())} of {len(values)} rows with a missing "
                      f"value (lines {lines}{' ...' if (~complete).sum() > 5 else ''})", stacklevel=3)
    return values[complete], keep, dropped
