"""The GPU check's ``--dry-run`` on the CPU: every stage writes its JSON, the summary exists, and a
stage that fails, hangs past its budget or finds the total budget spent is reported while the
other stages still run. (The figures of a dry run mean nothing; only the plumbing is tested.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def _stages() -> list[str]:
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--list", "--dry-run"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _check(out: Path, *args: str) -> tuple[int, dict[str, dict], str]:
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(out), *args], env=env,
                          capture_output=True, text=True, timeout=600)
    records = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json") if p.stem != "env"}
    return proc.returncode, records, proc.stdout + proc.stderr


def test_dry_run_every_stage_reports_and_an_injected_failure_does_not_stop_the_rest(tmp_path):
    stages = _stages()
    assert {"install", "pytest_cuda", "bench_coupling_f32", "bench_coupling_bf16", "bench_pair", "bench_tc",
            "bench_eoflow_step", "smoke_eoflow", "smoke_deft"} <= set(stages)
    rc, records, log = _check(tmp_path, "--inject-failure", "bench_pair")
    assert sorted(records) == sorted(stages), log
    assert rc == 1, log  # one stage failed -> the run says so
    assert records["bench_pair"]["status"] == "failed" and "exited 1" in records["bench_pair"]["reason"]
    assert "injected failure" in Path(records["bench_pair"]["log"]).read_text()
    not_ok = {k: (r["status"], r["reason"]) for k, r in records.items() if k != "bench_pair" and r["status"] != "ok"}
    assert not not_ok, log
    # the stages after the failure ran and measured something
    assert records["bench_tc"]["result"]["rows"], records["bench_tc"]
    triton = [r for r in records["bench_coupling_f32"]["result"]["rows"] if r["variant"] == "triton"]
    assert triton and all(r["status"] == "ok" for r in triton)
    assert records["bench_coupling_f32"]["result"]["flags"]["dtypes"] == ["float32"]
    for smoke in ("smoke_eoflow", "smoke_deft"):
        res = records[smoke]["result"]
        assert res["steps"] == 20 and res["non_finite"] == 0 and res["last_loss"] < res["first_loss"]
    assert records["pytest_cuda"]["result"]["tests"] > 0
    assert records["install"]["result"]["cpp_extension"] == "loaded"
    summary = (tmp_path / "summary.md").read_text()
    assert "dry run" in summary and "| bench_pair | **failed** |" in summary
    assert all(f"| {s} |" in summary for s in stages)


def test_a_stage_past_its_budget_is_killed_and_later_stages_run(tmp_path):
    rc, records, log = _check(tmp_path, "--only", "bench_eoflow_step,bench_betatcvae_step_8",
                              "--inject-failure", "bench_eoflow_step:hang", "--budget", "bench_eoflow_step=3")
    assert rc == 1
    hung = records["bench_eoflow_step"]
    assert hung["status"] == "timeout" and "budget of 3 s ran out" in hung["reason"], hung
    assert hung["seconds"] < 30
    assert records["bench_betatcvae_step_8"]["status"] == "ok", log
    assert records["install"]["status"] == "skipped" and records["install"]["reason"] == "not in --only"


def test_the_total_budget_skips_what_no_longer_fits(tmp_path):
    rc, records, log = _check(tmp_path, "--only", "install,pytest_cuda", "--total", "6",
                              "--inject-failure", "install:hang")
    assert rc == 1
    assert records["install"]["status"] == "timeout", log
    assert records["pytest_cuda"]["status"] == "skipped"
    assert "total budget exhausted" in records["pytest_cuda"]["reason"]
    assert records["pytest_cuda"]["not_run"]  # says what it did not run


@pytest.mark.parametrize("args, message", [(["--budget", "nope=3"], "expected STAGE=SECONDS"),
                                           (["--inject-failure", "nope"], "unknown stage 'nope'")])
def test_bad_arguments_name_the_stage(tmp_path, args, message):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--dry-run", "--out",
                           str(tmp_path), *args], capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr
