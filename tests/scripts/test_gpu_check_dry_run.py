"""scripts/gpu_check.sh --dry-run: every stage of the GPU check runs on the CPU (Triton under the
interpreter, tiny shapes), writes its JSON, and one failing stage does not stop the others."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_check  # noqa: E402


def test_dry_run_runs_every_stage_and_survives_a_failure(tmp_path):
    env = dict(os.environ, EOFLOW_GPU_CHECK_FAIL="bench_tc", PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--out", str(tmp_path), "--dry-run",
                           "--budget-scale", "3"], capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the injected failure is reported in the exit code
    names = [name for name, _, _ in gpu_check.stages(dry=True)]
    records = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in names}
    assert records["bench_tc"]["status"] == "failed"
    assert all(r["status"] == "ok" for n, r in records.items() if n != "bench_tc"), \
        {n: (r["status"], r["tail"][-3:]) for n, r in records.items()}
    summary = (tmp_path / "summary.md").read_text()
    assert "not ok: bench_tc" in summary and "torch" in summary
    assert json.loads((tmp_path / "env.json").read_text())["torch"]
    assert any((tmp_path / "bench").glob("affine_coupling_*.json"))
    for smoke in ("smoke_eoflow", "smoke_deft"):
        assert records[smoke]["steps_logged"] > 0 and records[smoke]["non_finite_losses"] == 0


def test_gpu_stages_cover_the_issue_targets():
    names = [name for name, _, _ in gpu_check.stages(dry=False)]
    assert names == ["install", "pytest_cuda", "bench_coupling", "bench_pair", "bench_tc", "bench_eoflow_step",
                     "bench_betatcvae", "smoke_eoflow", "smoke_deft"]
    assert sum(budget for _, budget, _ in gpu_check.stages(dry=False)) <= 630  # about 8 minutes typical, 10.5 at most
