"""Benchmarks write where they are told (default: the untracked runs/bench/) and record every flag;
the tracked bench/results/ changes only with a deliberate --out (issue 16 item 7)."""
import hashlib
import importlib.util
import json
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
    bench = _load("bench_affine_coupling")
    common = sys.modules["common"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(common.OUT_ENV, raising=False)
    before = _digest(common.RESULTS_DIR)
    argv = ["--device", "cpu", "--quick", "--shapes", "4x8", "--variants", "eager", "--dtypes", "bf16"]
    bench.main(argv)
    assert _digest(common.RESULTS_DIR) == before
    (written,) = (tmp_path / "runs" / "bench").glob("affine_coupling_*.json")
    body = json.loads(written.read_text())
    assert body["flags"]["quick"] is True and body["flags"]["shapes"] == [[4, 8]] and body["flags"]["out"] is None
    assert body["argv"] == argv
    assert [(r["variant"], r["dtype"], r["status"]) for r in body["rows"]] == [("eager", "bfloat16", "ok")]

    bench.main([*argv, "--out", str(tmp_path / "x")])
    assert json.loads(next((tmp_path / "x").glob("*.json")).read_text())["flags"]["out"] == str(tmp_path / "x")


def test_a_bench_script_refuses_a_file_as_its_out_folder_before_any_work(tmp_path, capsys):
    import pytest

    bench = _load("bench_affine_coupling")
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "f", tmp_path / "f" / "sub"):
        with pytest.raises(SystemExit) as exc:
            bench.main(["--device", "cpu", "--quick", "--out", str(out)])
        assert exc.value.code == 2 and "argument --out: expected a folder" in capsys.readouterr().err
