"""One prepared check of the CUDA path: install, the CUDA tests, the headline benchmarks and short
training smokes, each a stage with its own time budget, none stopping the others.

    python scripts/gpu_check.py --out DIR            # on a GPU machine (about 8 minutes on an H100/H200)
    python scripts/gpu_check.py --out DIR --dry-run  # the same stages on the CPU, tiny shapes (CI)

Every stage runs as a subprocess under ``timeout``: its output goes to ``DIR/<stage>.log``, and
``DIR/<stage>.json`` records the command, status (ok / failed / timeout / skipped), exit code,
seconds and the last lines of output; benchmark JSON lands in ``DIR/bench/``. ``DIR/summary.md``
lists every stage with date, device, driver and versions (``DIR/env.json``). Budgets are seconds;
``--budget-scale`` multiplies them. ``EOFLOW_GPU_CHECK_FAIL=stage`` makes that stage fail on
purpose (the CI test checks that the other stages still run).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def stages(dry: bool) -> list[tuple[str, int, list[str]]]:
    """(name, budget seconds, command) in order; dry-run: CPU, Triton interpreter, tiny shapes."""
    bench = [PY, "-m", "eoflow_fast.cli.main", "bench"]
    quick = ["--quick", "--device", "cpu"] if dry else ["--device", "cuda"]
    if dry:
        return [
            ("install", 60, [PY, "-c", "import eoflow_fast.ops._dispatch as d; "
                             "print('C++ extension:', 'built' if d.cpp_ops() else d._cpp_error())"]),
            ("pytest_cuda", 60, [PY, "-m", "pytest", "-q", "-m", "cuda", "--co", "-p", "no:cacheprovider"]),
            ("bench_coupling", 60, [PY, "bench/bench_affine_coupling.py", *quick, "--shapes", "4x64",
                                    "--dtypes", "f32"]),
            ("bench_pair", 60, [PY, "bench/bench_estimators.py", *quick, "--op", "pair", "--shapes", "16x4"]),
            ("bench_tc", 60, [PY, "bench/bench_estimators.py", *quick, "--op", "tc", "--shapes", "16x4"]),
            ("bench_eoflow_step", 90, [PY, "bench/bench_eoflow_step.py", *quick, "--config", "small"]),
            ("bench_betatcvae", 90, [PY, "bench/bench_betatcvae_step.py", *quick, "--batches", "8"]),
            ("smoke_eoflow", 90, [PY, "-m", "eoflow_fast.cli.main", "train", "eoflow", "--data", "digits", "--steps",
                                  "5", "--blocks", "1", "--hidden", "8", "--eval-samples", "16",
                                  "--entropy-samples", "8", "--no-progress", "--run-dir", "{out}/smoke_eoflow"]),
            ("smoke_deft", 90, [PY, "-m", "eoflow_fast.cli.main", "train", "deft", "--preset", "dsprites", "--steps",
                                "4", "--stage-steps", "1", "--batch-size", "8", "--no-progress",
                                "--run-dir", "{out}/smoke_deft"]),
        ]
    return [
        ("install", 180, ["bash", "-c", "MAX_JOBS=$(nproc) " + shlex.join([PY, "-m", "pip", "install", "-q",
                                                                           "--no-build-isolation", "--no-deps",
                                                                           "-e", "."])]),
        ("pytest_cuda", 120, [PY, "-m", "pytest", "-m", "cuda", "-rA", "-p", "no:cacheprovider",
                              "--junitxml", "{out}/pytest_cuda.xml"]),
        ("bench_coupling", 45, [PY, "bench/bench_affine_coupling.py", *quick, "--quick", "--dtypes", "f32,bf16"]),
        ("bench_pair", 45, [PY, "bench/bench_estimators.py", *quick, "--quick", "--op", "pair", "--shapes",
                            "1024x10,1024x64,4096x10,4096x64,16384x10,16384x64"]),
        ("bench_tc", 45, [PY, "bench/bench_estimators.py", *quick, "--quick", "--op", "tc", "--shapes",
                          "1024x10,1024x64,4096x10,4096x64,16384x10,16384x64"]),
        ("bench_eoflow_step", 45, [PY, "bench/bench_eoflow_step.py", *quick, "--quick", "--config", "full"]),
        ("bench_betatcvae", 45, [PY, "bench/bench_betatcvae_step.py", *quick, "--quick", "--batches", "256,2048"]),
        ("smoke_eoflow", 45, [PY, "-m", "eoflow_fast.cli.main", "train", "eoflow", "--data", "digits", "--steps",
                              "300", "--device", "cuda", "--amp", "bf16", "--no-progress",
                              "--run-dir", "{out}/smoke_eoflow"]),
        ("smoke_deft", 45, [PY, "-m", "eoflow_fast.cli.main", "train", "deft", "--preset", "dsprites", "--steps",
                            "400", "--stage-steps", "100", "--device", "cuda", "--amp", "bf16", "--no-progress",
                            "--run-dir", "{out}/smoke_deft"]),
    ]


def env_facts() -> dict:
    facts = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
             "python": platform.python_version()}
    try:
        import torch
        facts.update(torch=torch.__version__, cuda=torch.version.cuda, gpu_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            facts.update(gpu=torch.cuda.get_device_name(), capability=".".join(map(str, torch.cuda.get_device_capability())))
    except Exception as exc:  # the check reports, it never stops here
        facts["torch_error"] = repr(exc)
    try:
        import triton
        facts["triton"] = triton.__version__
    except Exception as exc:
        facts["triton"] = f"unavailable: {exc!r}"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        facts["nvidia_smi"] = out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        facts["nvidia_smi"] = f"unavailable: {exc!r}"
    return facts


def run_stage(name: str, budget: float, cmd: list[str], out: Path, env: dict) -> dict:
    cmd = [c.replace("{out}", str(out)) for c in cmd]
    if os.environ.get("EOFLOW_GPU_CHECK_FAIL") == name:
        cmd = [PY, "-c", f"raise SystemExit('{name}: failure injected by EOFLOW_GPU_CHECK_FAIL')"]
    log = out / f"{name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=budget).returncode
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            rc, status = None, "timeout"
    seconds = time.perf_counter() - t0
    tail = log.read_text(errors="replace").splitlines()[-15:]
    record = {"stage": name, "status": status, "returncode": rc, "seconds": round(seconds, 1), "budget_s": budget,
              "command": cmd, "log": log.name, "tail": tail}
    if name.startswith("smoke_"):
        record.update(_losses(out / name))
    (out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _losses(run_dir: Path) -> dict:
    """First and last logged loss of a smoke run, and whether any logged loss is non-finite."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {"losses": None}
    losses = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "train" and "loss" in rec:
            losses.append(rec["loss"])
    finite = [v for v in losses if isinstance(v, (int, float)) and v == v and abs(v) != float("inf")]
    return {"first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "steps_logged": len(losses), "non_finite_losses": len(losses) - len(finite)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the stage JSON, logs and summary.md")
    p.add_argument("--dry-run", action="store_true", help="CPU, Triton interpreter, tiny shapes (what CI runs)")
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply every stage's time budget")
    p.add_argument("--only", default=None, help="comma-separated stage names to run (default: all)")
    args = p.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", EOFLOW_FAST_BENCH_OUT=str(out / "bench"))
    if args.dry_run:
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    facts = env_facts()
    (out / "env.json").write_text(json.dumps(facts, indent=2) + "\n")
    selected = set(args.only.split(",")) if args.only else None
    records = []
    for name, budget, cmd in stages(args.dry_run):
        if selected is not None and name not in selected:
            records.append({"stage": name, "status": "skipped", "reason": "not in --only"})
            continue
        rec = run_stage(name, budget * args.budget_scale, cmd, out, env)
        records.append(rec)
        print(f"{name:18s} {rec['status']:8s} {rec['seconds']:7.1f} s  (budget {rec['budget_s']:.0f} s)", flush=True)
    lines = [f"# GPU check ({'dry run on the CPU' if args.dry_run else 'CUDA'})", "",
             f"date {facts['date']}, host {facts['host']}, torch {facts.get('torch')}, triton {facts.get('triton')}, "
             f"GPU {facts.get('gpu', 'none')}, nvidia-smi: {facts.get('nvidia_smi')}", "",
             "| stage | status | seconds | budget | log |", "|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['stage']} | {r['status']} | {r.get('seconds', '-')} | {r.get('budget_s', '-')} | "
                     f"{r.get('log', r.get('reason', ''))} |")
    bad = [r["stage"] for r in records if r["status"] in ("failed", "timeout")]
    lines += ["", f"{len(records) - len(bad)} of {len(records)} stages ok or skipped" +
              (f"; not ok: {', '.join(bad)}" if bad else "")]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-1:]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
