"""Benchmarks write where the user says (default runs/bench), record their command line, and leave
the committed bench/results/ alone unless it is named."""
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import common  # noqa: E402


def test_default_results_go_to_runs_bench_with_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(common.OUT_ENV, raising=False)
    monkeypatch.setattr(sys, "argv", ["bench_x.py", "--quick", "--device", "cpu"])
    committed = {p: p.read_bytes() for p in (BENCH / "results").glob("*.json")}
    path = common.write_result("affine_coupling", "cpu", {"rows": []})
    assert path == Path("runs/bench/affine_coupling_cpu.json")
    body = json.loads((tmp_path / path).read_text())
    assert body["command"] == ["bench_x.py", "--quick", "--device", "cpu"] and body["env"]["device"] == "cpu"
    assert {p: p.read_bytes() for p in (BENCH / "results").glob("*.json")} == committed


def test_cli_out_folder_is_used(tmp_path, monkeypatch):
    from eoflow_fast.cli import bench as cli_bench

    calls = []

    class Fake:
        @staticmethod
        def main(argv):
            calls.append((argv, common.out_dir()))

    monkeypatch.setattr(cli_bench, "_load", lambda path: Fake)
    monkeypatch.delenv(common.OUT_ENV, raising=False)
    import argparse
    args = argparse.Namespace(list=False, names=["affine_coupling"], quick=True, device="cpu", out=tmp_path / "o")
    assert cli_bench.run(args) == 0
    assert calls == [(["--quick", "--device", "cpu"], tmp_path / "o")]
    monkeypatch.delenv(common.OUT_ENV, raising=False)


@pytest.mark.parametrize("name", ["affine_coupling", "estimators", "eoflow_step", "betatcvae_step", "compat",
                                  "reversible"])
def test_every_benchmark_writes_through_write_result(name):
    text = (BENCH / f"bench_{name}.py").read_text()
    assert "write_result(" in text and "results/" not in text.replace("bench/results", "")
