"""Hostile CSV files: each loads correctly, or is refused with a CsvError (a ValueError) naming the file
and, where there is one, the column and the line; never a NaN column, never an IndexError."""
import warnings

import numpy as np
import pytest

from eoflow_fast.data import get_dataset
from eoflow_fast.data._splits import split_rows
from eoflow_fast.data.tabular import CsvError, read_csv, standardise

RNG_ROWS = [(float(i), float(i * i % 7)) for i in range(10)]


def body(rows):
    return "".join(",".join(repr(v) for v in r) + "\n" for r in rows)


# name -> (file bytes, regex the CsvError must match; the file name is checked for every case)
REFUSED = {
    "inf_cell": ("a,b\n" + body(RNG_ROWS[:3]) + "3.0,inf\n", r"column 'b', line 5: 'inf' is not a finite number"),
    "minus_inf": ("a,b\n1,2\n-Infinity,4\n5,6\n", r"column 'a', line 3: '-Infinity' is not a finite"),
    "overflowing_literal": ("a,b\n1,2\n3,1e309\n5,6\n", r"column 'b', line 3: '1e309'"),
    "duplicate_header": ("a,b,a\n1,2,3\n4,5,6\n", r"column name 'a' appears twice \(columns 1 and 3\)"),
    "nan_in_every_row": ("a,b,c\n1,,3\n,5,6\n7,8,nan\n", r"every row misses a value; most missing: column 'a'"),
    "empty_file": ("", r"is empty; expected a header row"),
    "whitespace_only": ("\n  \n\t\n", r"is empty"),
    "header_only": ("a,b\n", r"has a header but no rows"),
    "binary": (bytes(range(256)) * 4, r"binary file \(NUL byte at offset 0\)"),
    "not_utf8": (b"a,b\n1,2\n\xff\xfe,3\n", r"not UTF-8 text \(invalid byte at offset 8\)"),
    "ragged_short": ("a,b,c\n1,2,3\n4,5\n6,7,8\n", r"lines \[3\] have \[2\] cells, the header has 3"),
    "ragged_long": ("a;b\n1;2\n3;4;5\n", r"lines \[3\] have \[3\] cells, the header has 2 \(';'-delimited\)"),
    "all_text": ("name,city\nx,y\nz,w\n", r"has no numeric columns"),
    "unnamed_numbers": ("a,,c\n1,2,3\n4,5,6\n7,8,1\n", r"column 2 holds numbers but has no name"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_hostile_csv_is_refused_naming_file_and_place(tmp_path, name):
    content, match = REFUSED[name]
    path = tmp_path / f"{name}.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CsvError, match=match) as exc:
        get_dataset(f"csv:{path}", split="all")
    assert isinstance(exc.value, ValueError) and str(path) in str(exc.value)


def test_explicit_columns_name_the_text_cell_and_an_empty_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c\n1,2,\n3,oops,\n5,6,\n")
    with pytest.raises(CsvError, match=r"column 'b', line 3: 'oops' is not a number"):
        read_csv(str(path), columns=["a", "b"])
    with pytest.raises(CsvError, match=r"column 'c' is empty in every row"):
        read_csv(str(path), columns=["a", "c"])


def test_an_underscored_number_is_text_not_a_python_literal(tmp_path):
    """float("1_000") is 1000.0 (Python literal syntax); in a CSV cell it is text."""
    path = tmp_path / "u.csv"
    path.write_text("a,b\n1,2\n1_000,4\n5,6\n")
    with pytest.raises(CsvError, match=r"column 'a', line 3: '1_000' is not a number"):
        read_csv(str(path), columns=["a", "b"])


def load(path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = get_dataset(f"csv:{path}", split="all", **kw)
    return ds, [str(w.message) for w in caught]


def reference(values, test_fraction=0.2):
    train = split_rows(len(values), "train", test_fraction)
    return (values - values[train].mean(0)) / values[train].std(0)


def test_single_column_csv_loads_without_delimiter_sniffing(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("height\n" + "".join(f"{v}\n" for v in [1.5, 2.0, 2.5, 4.0, 3.0]))
    ds, caught = load(path)
    assert ds.columns == ("height",) and len(ds) == 5 and not caught
    np.testing.assert_allclose(ds.values.numpy()[:, 0], reference(np.array([[1.5], [2.0], [2.5], [4.0], [3.0]]))[:, 0],
                               rtol=1e-6)


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiter_is_the_one_that_splits_the_header_most(tmp_path, delimiter):
    path = tmp_path / "d.csv"
    header = delimiter.join(['"x, the first"', "y;z" if delimiter != ";" else "yz"])
    path.write_text(header + "\n" + "".join(f"{i}{delimiter}{i * i % 5}\n" for i in range(8)))
    ds, _ = load(path)
    assert len(ds.columns) == 2 and ds.columns[0] == "x, the first" and len(ds) == 8


def test_huge_values_standardise_without_overflow(tmp_path):
    values = np.array([[(-1) ** i * 1e307 * (i + 8), i] for i in range(10)])  # up to 1.7e308
    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + body(values.tolist()))
    ds, _ = load(path)
    scaled = values / [1e308, 1.0]  # the same table in units where the plain formula does not overflow
    np.testing.assert_allclose(ds.values.numpy(), reference(scaled), rtol=1e-5, atol=1e-6)
    assert np.isfinite(ds.mean).all() and np.isfinite(ds.std).all()
    np.testing.assert_allclose(ds.std[0], scaled[split_rows(10, "train"), 0].std() * 1e308, rtol=1e-12)


def test_an_outlier_beyond_float32_after_standardising_is_refused():
    values = np.array([[0.0], [1.0], [2.0], [1e300]])
    with pytest.raises(ValueError, match=r"column 'a' row 3: 1e\+300 lies beyond float32 range"):
        standardise(values, np.array([0, 1, 2]), ["a"])
    with pytest.raises(ValueError, match=r"columns \['a'\] hold inf or NaN"):
        standardise(np.array([[0.0], [np.inf], [1.0]]), np.array([0, 2]), ["a"])


def test_all_empty_and_all_nan_columns_are_left_out_with_a_warning(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("a,empty,b,nans,\n" + "".join(f"{i},,{i % 3},NaN,\n" for i in range(6)))
    ds, caught = load(path)
    assert ds.columns == ("a", "b") and len(ds) == 6 and np.isfinite(ds.values.numpy()).all()
    assert ds.dropped == ["empty", "nans", "#5 (unnamed)"]
    assert any("left out 3 column(s) empty in every row" in c for c in caught)


def test_rows_with_missing_values_are_left_out_and_named(tmp_path):
    path = tmp_path / "miss.csv"
    path.write_text("a,b\n" + "".join(f"{i},{'' if i in (2, 5) else i * 2 % 7}\n" for i in range(9)))
    ds, caught = load(path)
    assert len(ds) == 7 and np.isfinite(ds.values.numpy()).all()
    assert any("left out 2 of 9 rows with a missing value (lines [4, 7])" in c for c in caught)
