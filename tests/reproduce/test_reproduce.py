"""The reproduction scripts' plumbing at toy sizes: rows and tables, the bfVAE summary on planted
inputs, the collector; the CLI-driven budgets themselves are run by hand (see each script)."""
import json

import numpy as np
import pytest

from reproduce import bfvae_fa, collect, rows


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


def planted_result(kl, corr):
    kl = np.asarray(kl)
    flagged = np.flatnonzero(kl > 0.1).tolist()
    return {"kl_per_dim": kl.tolist(), "informative_dims": flagged,
            "fdr": max(0, len(flagged) - 2) / max(len(flagged), 1), "abs_corr": np.asarray(corr).tolist()}


def test_bfvae_summary_counts_matched_discoveries():
    good = planted_result([2.0, 0.001, 2.5, 0.002], [[0.99, 0.0], [0.1, 0.1], [0.0, 0.98], [0.0, 0.0]])
    mixed = planted_result([2.0, 0.001, 2.5, 0.002], [[0.7, 0.6], [0.1, 0.1], [0.65, 0.3], [0.0, 0.0]])
    s = bfvae_fa.summarise([good], planted=2)
    assert s["all_found"] and s["max_fdr"] == 0 and s["max_fdr_matched"] == 0
    assert s["median_min_informative_kl"] == 2.0 and s["median_max_other_kl"] == 0.002
    m = bfvae_fa.summarise([mixed], planted=2)  # both latents load on factor 0: one is a false discovery
    assert m["max_fdr"] == 0 and m["max_fdr_matched"] == 0.5 and not m["all_found"]


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


def test_bfvae_summary_reports_ranges_and_the_linear_gaussian_optimum():
    a = planted_result([2.0, 0.001, 2.5, 0.002], [[0.99, 0.0], [0.1, 0.1], [0.0, 0.98], [0.0, 0.0]])
    b = planted_result([2.2, 0.004, 2.6, 0.003], [[0.99, 0.0], [0.1, 0.1], [0.0, 0.98], [0.0, 0.0]])
    a["ideal_kl"] = b["ideal_kl"] = [2.7, 2.6, 0.0, 0.0]
    s = bfvae_fa.summarise([a, b], planted=2)
    assert s["range_min_informative_kl"] == [2.0, 2.2] and s["range_max_other_kl"] == [0.002, 0.004]
    assert bfvae_fa.ideal_range(s) == [2.6, 2.7] and s["per_run"][1]["kl_flagged"] == [2.6, 2.2]
    assert rows.span([2.0, 2.2], "{:.2f}") == "2.00-2.20" and rows.span([3.0, 3.0], "{:.1f}") == "3.0"
    assert np.isnan(bfvae_fa.ideal_kl("fa15", 1.0, 4)).all()  # vanilla: the optimum is unbounded


def test_bfvae_fa_toy_budget_end_to_end(tmp_path):
    """The script through the CLI (train, eval --json) at 20 steps: rows for each table and the
    ablations, the trained KLs next to the linear-Gaussian optimum."""
    bfvae_fa.main(["--budget", "toy", "--run-root", str(tmp_path)])
    payload = json.loads((tmp_path / "toy" / "repro_bfvae_fa_toy.json").read_text())
    claims = [r["claim"] for r in payload["rows"]]
    assert any(c.startswith("bfVAE FA15") for c in claims) and any("ablation" in c for c in claims)
    assert all(r["verdict"] in rows.VERDICTS for r in payload["rows"])
