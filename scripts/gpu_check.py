"""The GPU check: install, ``pytest -m cuda``, the headline benchmarks and a bf16 training smoke,
each stage in its own subprocess under its own time budget, one JSON per stage plus ``summary.md``.

    scripts/gpu_check.sh --out DIR [--dry-run] [--only S1,S2] [--budget STAGE=SECONDS ...]

A stage that fails, or runs past its budget (killed, recorded as ``timeout`` with the commands it
did not reach), never stops the stages after it; the exit status is 1 when any stage did not pass.
The whole run also has a total budget (``--total``, default 540 s): a stage that would start with
too little of it left is recorded as ``skipped`` with that reason.

``--dry-run`` runs the same stages on the CPU with tiny shapes (Triton under ``TRITON_INTERPRET=1``,
no pip install, a few training steps), fast enough for CI; its figures mean nothing.
``--inject-failure STAGE[:hang]`` (or ``EOFLOW_GPU_CHECK_INJECT=STAGE[:hang],...``) replaces that
stage's first command with one that fails (or sleeps past the budget), to test the reporting.

Stage JSON ``DIR/<stage>.json``: ``{"stage", "status": ok|failed|timeout|skipped, "reason",
"seconds", "budget_s", "commands": [{"argv", "rc", "seconds"}], "not_run": [argv...], "log",
"result"}``; ``result`` holds the benchmark's own result JSON, the junit counts or the smoke's
first/last loss. The driver itself imports no torch: each stage measures the installed package.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".whl"
SITE = Path("/tmp/site")  # where the carried wheels are installed on the device machine
PY = sys.executable


@dataclass
class Stage:
    """One stage: commands run in order (the next only when the previous exited 0) within
    ``budget_s`` seconds; ``collect(stage_dir)`` turns the outputs into the ``result`` dict and may
    raise ``StageFailed`` when the outputs show a failure (NaN loss, failed tests)."""

    name: str
    budget_s: float
    commands: list[list[str]]
    collect: object = None
    env: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class StageFailed(Exception):
    pass


# --- what each stage measures ----------------------------------------------------------------

def _bench(name: str, script: str, args: list[str], budget: float, device: str, out: Path) -> Stage:
    folder = out / "bench" / name
    cmd = [PY, str(REPO / "bench" / script), "--device", device, "--out", str(folder), *args]
    return Stage(name, budget, [cmd], collect=lambda _d: _bench_result(folder))


def _bench_result(folder: Path) -> dict:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise StageFailed(f"the benchmark wrote no result JSON into {folder}")
    body = json.loads(files[0].read_text())
    failed = [r for r in body.get("rows", []) if str(r.get("status", "ok")).startswith("failed")]
    body["result_file"] = str(files[0])
    if not body.get("complete", True):
        raise StageFailed("the benchmark stopped before its last shape; the rows it finished are kept", body)
    if failed:
        body["failed_rows"] = failed
        raise StageFailed(f"{len(failed)} variant(s) failed, first: {failed[0]}", body)
    return body


def _pytest_result(xml_path: Path) -> dict:
    if not xml_path.exists():
        raise StageFailed(f"pytest wrote no junit report {xml_path}")
    root = ET.parse(xml_path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    bad = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
           if case.find("failure") is not None or case.find("error") is not None]
    result = {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
              "not_passed": bad, "junit": str(xml_path)}
    if bad:
        raise StageFailed(f"{len(bad)} test(s) failed or errored, first: {bad[0]}", result)
    return result


def _smoke_result(run_dir: Path) -> dict:
    """First and last loss of a training run from its ``metrics.jsonl`` (means over the first and
    last quarter of the logged steps, at least one each: the EOFlow loss is stochastic, so single
    steps are noisy); fails on a non-finite loss or no decrease."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise StageFailed(f"no {path}")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get("kind") == "train"]
    if not train:
        raise StageFailed(f"{path} holds no training records")
    losses = [float(r["loss"]) for r in train]
    k = max(1, len(losses) // 4)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    result = {"steps": train[-1]["step"], "records": len(losses), "window": k, "first_loss": first, "last_loss": last,
              "non_finite": sum(not math.isfinite(v) for v in losses), "run_dir": str(run_dir)}
    if result["non_finite"]:
        raise StageFailed(f"{result['non_finite']} non-finite losses", result)
    if not last < first:
        raise StageFailed(f"loss did not fall: first {first:.4g}, last {last:.4g}", result)
    return result


def _facts_result(path: Path) -> dict:
    if not path.exists():
        raise StageFailed(f"no facts file {path}")
    info = json.loads(path.read_text())
    if info.get("cpp_extension") != "loaded":
        raise StageFailed(f"the C++ extension did not load: {info.get('cpp_extension')}", info)
    return info


def facts(out_file: str) -> int:
    """Write versions, device, driver and NVML facts of the installed environment (run as a stage)."""
    sys.path.insert(0, str(REPO / "bench"))
    import torch
    from common import env_info

    device = "cuda" if torch.cuda.is_available() else "cpu"
    info = env_info(device)
    info.update(cuda_runtime=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if device == "cuda":
        info["capability"] = "sm_%d%d" % torch.cuda.get_device_capability()
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    import eoflow_fast
    from eoflow_fast.ops import _dispatch

    info["eoflow_fast"] = getattr(eoflow_fast, "__version__", "?")
    info["eoflow_fast_path"] = str(Path(eoflow_fast.__file__).parent)
    info["cpp_extension"] = _dispatch._cpp_error() or "loaded"
    try:
        import FrEIA

        info["freia"] = getattr(FrEIA, "__version__", "installed")
    except ImportError:
        info["freia"] = None
    info["git_commit"] = _git_commit()
    Path(out_file).write_text(json.dumps(info, indent=2, default=str) + "\n")
    print(json.dumps(info, indent=2, default=str))
    return 0


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# --- the plan ----------------------------------------------------------------------------------

def plan(out: Path, dry: bool) -> list[Stage]:
    """The stages in order. GPU budgets sum to ~8 minutes on an H100/H200."""
    dev = "cpu" if dry else "cuda"
    stages = []
    install = Stage("install", 60 if dry else 120, [])
    if dry:
        install.notes.append("dry run: no pip install (the checkout's environment is measured as is)")
    else:
        if list(WHEELS.glob("*.whl")):
            install.commands.append([PY, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                     "--no-cache-dir", "--upgrade", "--target", str(SITE),
                                     *map(str, sorted(WHEELS.glob("*.whl")))])
        else:
            install.notes.append(f"no wheels in {WHEELS}: the FrEIA comparison will be skipped "
                                 "(prepare them with scripts/gpu_wheels.sh)")
        install.commands.append([PY, "-m", "pip", "install", "-q", "-e", str(REPO), "--no-build-isolation",
                                 "--no-deps"])
        install.env["MAX_JOBS"] = str(os.cpu_count() or 1)
    install.commands.append([PY, str(Path(__file__).resolve()), "--facts", str(out / "env.json")])
    install.collect = lambda _d: _facts_result(out / "env.json")
    stages.append(install)

    # the cuda-marked tests include memory="reversible" / "boundaries" on CUDA (bf16 autocast, TF32, and
    # float32 with restored ReLU kinks: tests/flows/test_reversible.py, a few seconds of GPU time)
    xml = out / "pytest_cuda.xml"
    pytest_cmd = [PY, "-m", "pytest", "-m", "cuda", "-rA", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                  str(REPO / ("tests/ops" if dry else "tests"))]
    if not dry:
        pytest_cmd.insert(3, "--timeout=120")
    stages.append(Stage("pytest_cuda", 90 if dry else 120, [pytest_cmd], collect=lambda _d: _pytest_result(xml)))

    fused = ["--fused", "triton"]
    for dtype, tag in (("float32", "f32"), ("bfloat16", "bf16")):
        args = (["--quick", "--shapes", "4x64,2x2x4x4", "--variants", "eager,triton"] if dry
                else ["--shapes", "256x6144,64x6x64x64"])
        stages.append(_bench(f"bench_coupling_{tag}", "bench_affine_coupling.py",
                             [*args, "--dtypes", dtype, *fused], 60 if dry else 45, dev, out))
    for op in ("pair", "tc"):
        args = (["--quick", "--shapes", "16x4,32x4", "--variants", "eager,triton"] if dry
                else ["--shapes", "1024x10,1024x64,4096x10,4096x64,16384x10,16384x64"])
        stages.append(_bench(f"bench_{op}", "bench_estimators.py", ["--op", op, *args, *fused],
                             60 if dry else 60, dev, out))
    stages.append(_bench("bench_eoflow_step", "bench_eoflow_step.py",
                         ["--config", "tiny", "--quick"] if dry else ["--config", "full"], 60 if dry else 45, dev, out))
    for batch in ((8,) if dry else (256, 2048)):
        stages.append(_bench(f"bench_betatcvae_step_{batch}", "bench_betatcvae_step.py",
                             ["--batches", str(batch)] + (["--quick"] if dry else []), 60 if dry else 30, dev, out))

    steps = 20 if dry else 300
    common = ["--steps", str(steps), "--eval-every", "0", "--ckpt-every", "0", "--plot-every", "0",
              "--no-progress", "--device", dev, "--amp", "bf16" if dry else "auto", "--log-every", "1" if dry else "10"]
    smoke = {
        "smoke_eoflow": ["eoflow", "--data", "digits"] + (["--hidden", "16", "--blocks", "2", "--lr", "1e-2"]
                                                          if dry else []),
        "smoke_deft": ["deft", "--preset", "dsprites", "--stage-steps", str(steps // 4)]
        + (["--batch-size", "8"] if dry else []),
    }
    for name, model_args in smoke.items():
        run_dir = out / "smoke" / name
        cmd = [PY, "-m", "eoflow_fast.cli.main", "train", *model_args[:1], "--run-dir", str(run_dir), *common,
               *model_args[1:]]
        stages.append(Stage(name, 60 if dry else 40, [cmd], collect=lambda _d, r=run_dir: _smoke_result(r)))
    return stages


# --- running -----------------------------------------------------------------------------------

def _injected(spec: str) -> dict[str, str]:
    """``"stage[:hang],..."`` -> {stage: "fail" | "hang"}."""
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, mode = item.partition(":")
        if mode not in ("", "fail", "hang"):
            raise SystemExit(f"gpu_check: --inject-failure {item!r}: mode must be fail or hang")
        out[name] = mode or "fail"
    return out


def run_stage(stage: Stage, out: Path, env: dict, deadline: float, inject: str | None) -> dict:
    log = out / "logs" / f"{stage.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    left = deadline - time.monotonic()
    budget = min(stage.budget_s, left)
    record = {"stage": stage.name, "status": "ok", "reason": "; ".join(stage.notes) or None,
              "budget_s": round(budget, 1), "commands": [], "not_run": [], "log": str(log), "result": None}
    if left < 5:  # too little of the total budget left to start a stage
        record.update(status="skipped", reason=f"total budget exhausted ({left:.0f} s left)",
                      not_run=stage.commands, seconds=0.0)
        return record
    commands = [list(c) for c in stage.commands]
    if inject:
        code = "import time; time.sleep(3600)" if inject == "hang" else "raise SystemExit('gpu_check: injected failure')"
        commands[0] = [PY, "-c", code]
    t0 = time.monotonic()
    with log.open("w") as fh:
        for i, cmd in enumerate(commands):
            left = budget - (time.monotonic() - t0)
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            c0 = time.monotonic()
            try:
                rc = subprocess.run(cmd, cwd=REPO, env={**env, **stage.env}, stdout=fh, stderr=subprocess.STDOUT,
                                    timeout=max(left, 1), start_new_session=True).returncode
            except subprocess.TimeoutExpired:
                record["commands"].append({"argv": cmd, "rc": None, "seconds": round(time.monotonic() - c0, 1)})
                record.update(status="timeout", not_run=commands[i + 1:],
                              reason=f"budget of {budget:.0f} s ran out in command {i + 1} of {len(commands)}; "
                                     f"its partial output is in {log.name}, later commands were not run")
                break
            record["commands"].append({"argv": cmd, "rc": rc, "seconds": round(time.monotonic() - c0, 1)})
            if rc != 0:
                record.update(status="failed", not_run=commands[i + 1:],
                              reason=f"command {i + 1} of {len(commands)} exited {rc}; see {log.name}")
                break
    if stage.collect is not None and record["status"] != "skipped":
        try:
            record["result"] = stage.collect(out)
        except StageFailed as exc:
            record["result"] = exc.args[1] if len(exc.args) > 1 else None
            if record["status"] == "ok":
                record.update(status="failed", reason=str(exc.args[0]))
        except Exception as exc:  # noqa: BLE001 -- a broken output is this stage's failure, not the run's
            if record["status"] == "ok":
                record.update(status="failed", reason=f"reading the outputs: {type(exc).__name__}: {exc}")
    record["seconds"] = round(time.monotonic() - t0, 1)
    return record


def _pythonpath(dry: bool) -> str:
    """The checkout first (so the stages measure it even if the editable install failed), then the
    carried wheels' target on the device machine, then whatever was set."""
    site = [str(SITE)] if SITE.is_dir() and not dry else []
    return os.pathsep.join(filter(None, [str(REPO), *site, os.environ.get("PYTHONPATH")]))


def _child_env(dry: bool) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=_pythonpath(dry))
    if dry:
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    return env


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="output folder (created); required unless --facts")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, Triton interpreter, no install")
    p.add_argument("--total", type=float, default=None, help="total budget in seconds (default 540; dry run 600)")
    p.add_argument("--budget", action="append", default=[], metavar="STAGE=SECONDS", help="override a stage budget")
    p.add_argument("--only", default=None, help="comma-separated stages to run (the rest are recorded as skipped)")
    p.add_argument("--inject-failure", default=os.environ.get("EOFLOW_GPU_CHECK_INJECT", ""),
                   metavar="STAGE[:hang],...", help="make these stages fail (or hang), to test the reporting")
    p.add_argument("--list", action="store_true", help="print the stages and their budgets")
    p.add_argument("--facts", metavar="FILE", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.facts:
        return facts(a.facts)
    if a.out is None and not a.list:
        p.error("--out DIR is required")
    out = (a.out or Path("/tmp/gpu_check_list")).resolve()
    stages = plan(out, a.dry_run)
    names = [s.name for s in stages]
    for item in a.budget:
        name, _, seconds = item.partition("=")
        if name not in names or not seconds:
            p.error(f"--budget {item!r}: expected STAGE=SECONDS with STAGE one of {names}")
        next(s for s in stages if s.name == name).budget_s = float(seconds)
    inject = _injected(a.inject_failure)
    only = set(a.only.split(",")) if a.only else None
    for name in [*inject, *(only or ())]:
        if name not in names:
            p.error(f"unknown stage {name!r}; stages: {names}")
    if a.list:
        print("\n".join(f"{s.name:28s} {s.budget_s:5.0f} s" for s in stages))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    total = a.total if a.total is not None else (600.0 if a.dry_run else 540.0)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    deadline = time.monotonic() + total
    env = _child_env(a.dry_run)
    records = []
    for stage in stages:
        if only is not None and stage.name not in only:
            rec = {"stage": stage.name, "status": "skipped", "reason": "not in --only", "seconds": 0.0,
                   "budget_s": stage.budget_s, "commands": [], "not_run": stage.commands, "result": None}
        else:
            print(f"gpu_check: {stage.name} (budget {min(stage.budget_s, deadline - time.monotonic()):.0f} s) ...",
                  flush=True)
            rec = run_stage(stage, out, env, deadline, inject.get(stage.name))
            env["PYTHONPATH"] = _pythonpath(a.dry_run)  # the install stage may have created SITE
        rec["dry_run"] = a.dry_run
        (out / f"{stage.name}.json").write_text(json.dumps(rec, indent=2, default=str) + "\n")
        print(f"gpu_check: {stage.name}: {rec['status']} in {rec['seconds']} s"
              + (f" ({rec['reason']})" if rec["reason"] else ""), flush=True)
        records.append(rec)
    from gpu_check_summary import write_summary

    summary = write_summary(out, records, started=started, dry_run=a.dry_run, total_budget=total)
    print(f"gpu_check: summary in {summary}")
    return 0 if all(r["status"] == "ok" or r.get("reason") == "not in --only" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
