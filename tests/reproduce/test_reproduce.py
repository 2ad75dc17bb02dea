"""The reproduction scripts' plumbing at toy sizes: rows and tables, the collector; the CLI-driven
budgets themselves are run by hand (see each script; reproduce.bfvae_fa: test_bfvae_fa.py)."""
import json

import pytest

from reproduce import collect, rows


def test_row_validates_and_markdown_escapes(tmp_path):
    with pytest.raises(ValueError, match="verdict"):
        rows.row("c", "p", "o", "cmd", "cpu", "fine")
    with pytest.raises(ValueError, match="budget"):
        rows.row("c", "p", "o", "cmd", "tpu", "not run")
    r = rows.row("a|b", "p", "o", "cmd", "cpu", "partly")
    table = rows.markdown([r])
    assert table.splitlines()[0] == "| claim | paper | ours | command | budget | verdict |"
    assert "a\\|b" in table.splitlines()[2] and table.splitlines()[2].count(" | ") == 5
    path = rows.write("x_cpu", [r], {"k": 1}, tmp_path)
    payload = json.loads(path.read_text())
    assert payload["rows"] == [r] and payload["details"] == {"k": 1} and "torch" in payload["env"]
    assert (tmp_path / "repro_x_cpu.md").read_text() == table


def test_span_prints_a_range_once_when_its_ends_format_alike():
    assert rows.span([2.0, 2.2], "{:.2f}") == "2.00-2.20" and rows.span([3.0, 3.0], "{:.1f}") == "3.0"


def test_collect_orders_sections_and_marks_scripts_without_results(tmp_path):
    a = rows.row("ifp", "p", "o", "cmd", "cpu", "partly")
    b = rows.row("bf", "p", "o", "cmd", "cpu", "partly")
    rows.write("ifp_speed_cpu", [a], {}, tmp_path)
    rows.write("bfvae_fa_cpu", [b], {}, tmp_path)
    got = collect.collect(tmp_path)
    assert [r["claim"] for r in got[:2]] == ["bf", "ifp"]
    assert len(got) == 2 + len(collect.ORDER) - 2 and all(r["verdict"] == "not run" for r in got[2:])
    assert "reproduce.triangle_toy" in {r["command"].split()[2] for r in got[2:]}


def test_collect_covers_every_script():
    from pathlib import Path

    scripts = {p.stem for p in Path(collect.__file__).parent.glob("*.py")} - {"__init__", "rows", "collect"}
    assert {collect.SCRIPT.get(n, n) for n in collect.ORDER} == scripts

