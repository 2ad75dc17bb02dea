"""``summary.md`` of a GPU check: environment header, one line per stage, then each stage's figures.

Reads only the stage records that ``gpu_check.py`` wrote (plain dicts); no torch import.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

# Columns shown for benchmark rows, in this order, where a row has them.
BENCH_COLUMNS = ("shape", "B", "D", "dtype", "variant", "median_ms", "step_ms", "speedup_vs_eager",
                 "speedup_vs_compile", "time_ratio_vs_eoflow_fast", "achieved_gbs", "fraction_of_copy",
                 "peak_mib", "peak_mb", "status")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v).replace("|", "/")


def _table(rows: list[dict], columns) -> list[str]:
    cols = [c for c in columns if any(c in r for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return lines


def _environment(records: list[dict]) -> dict:
    install = next((r for r in records if r["stage"] == "install"), None)
    return (install or {}).get("result") or {}


def write_summary(out: Path, records: list[dict], started: str, dry_run: bool, total_budget: float) -> Path:
    env = _environment(records)
    nvml = env.get("nvml") or {}
    lines = [f"# GPU check{' (dry run on the CPU: figures mean nothing)' if dry_run else ''}", "",
             f"- started {started}, finished {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}, "
             f"total budget {total_budget:.0f} s, used {sum(r.get('seconds', 0) for r in records):.0f} s",
             f"- device: {env.get('gpu') or env.get('cpu') or 'unknown (the install stage gave no facts)'}"
             + (f" ({env['capability']}, {env.get('gpu_memory_gib')} GiB)" if env.get("capability") else ""),
             f"- driver: {nvml.get('driver', nvml.get('nvml_error', '-'))}; CUDA runtime {env.get('cuda_runtime')}",
             f"- torch {env.get('torch')}, triton {env.get('triton')}, python {env.get('python')}, "
             f"FrEIA {env.get('freia')}, C++ extension: {env.get('cpp_extension')}",
             f"- eoflow_fast commit {env.get('git_commit')}", "",
             "| stage | status | seconds / budget | reason |", "|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['stage']} | **{r['status']}** | {r.get('seconds', 0):.0f} / {r.get('budget_s', 0):.0f} | "
                     f"{_fmt(r.get('reason'))} |")
    for r in records:
        result = r.get("result")
        if not isinstance(result, dict):
            continue
        body = []
        if result.get("rows"):
            body = _table(result["rows"], BENCH_COLUMNS)
            if result.get("copy_gbs"):
                body.insert(0, f"copy bandwidth measured in the same run: {result['copy_gbs']:.0f} GB/s\n")
            if result.get("skipped"):
                body.append(f"\nskipped: {result['skipped']}")
        elif "first_loss" in result:
            body = [f"{result['steps']} steps: loss {result['first_loss']:.4g} -> {result['last_loss']:.4g} "
                    f"(means over the first / last {result['window']} of {result['records']} logged), "
                    f"{result['non_finite']} non-finite"]
        elif "tests" in result:
            body = [f"{result['passed']} passed, {result['failures']} failed, {result['errors']} errors, "
                    f"{result['skipped']} skipped of {result['tests']}"]
            body += [f"- not passed: `{t}`" for t in result["not_passed"][:30]]
        if body:
            lines += ["", f"## {r['stage']}", "", *body]
    lines += ["", "Raw: one `<stage>.json` per stage, benchmark JSON under `bench/`, logs under `logs/`."]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path
