"""Benchmarks write where they are told (default: the untracked runs/bench/) and record every flag;
the tracked bench/results/ changes only with a deliberate --out (issue 16 item 7)."""
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


def _load(name):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*"))}


def test_default_run_leaves_tracked_results_alone_and_records_its_flags(tmp_path, monkeypatch):
    common = _load("common")
    assert common.DEFAULT_OUT != common.RESULTS_DIR
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(common.DEFAULT_OUT / "x.json")])
    assert ignored.returncode in (0, 128)  # 0: git-ignored; 128: not a git checkout (nothing to protect)
    before = _digest(common.RESULTS_DIR)
    bench = _load("bench_affine_coupling")
    monkeypatch.setattr(sys.modules["common"], "DEFAULT_OUT", tmp_path / "default")
    bench.main(["--device", "cpu", "--quick", "--shapes", "4x8", "--variants", "eager"])
    assert _digest(common.RESULTS_DIR) == before
    (written,) = (tmp_path / "default").glob("affine_coupling_*.json")
    body = json.loads(written.read_text())
    assert body["flags"]["quick"] is True and body["flags"]["shapes"] == [[4, 8]]
    assert body["argv"] == ["--device", "cpu", "--quick", "--shapes", "4x8", "--variants", "eager"]
    assert [r["variant"] for r in body["rows"]] == ["eager"] and body["rows"][0]["status"] == "ok"

    bench.main(["--device", "cpu", "--quick", "--shapes", "4x8", "--variants", "eager", "--out", str(tmp_path / "x")])
    assert json.loads(next((tmp_path / "x").glob("*.json")).read_text())["flags"]["out"] == str(tmp_path / "x")


def test_cli_passes_out_and_quick_through(monkeypatch, tmp_path):
    from eoflow_fast.cli import bench as cli
    from eoflow_fast.cli.main import main

    seen = []
    monkeypatch.setattr(cli, "_load", lambda path: type("M", (), {"main": staticmethod(seen.append)}))
    assert main(["bench", "affine_coupling", "--quick", "--out", str(tmp_path)]) == 0
    assert seen == [["--quick", "--out", str(tmp_path)]]
    seen.clear()
    assert main(["bench", "affine_coupling"]) == 0
    assert seen == [[]]  # no --out: the benchmark's own default, runs/bench/
