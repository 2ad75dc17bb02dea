"""Shared benchmark helpers: environment facts, timing, peak memory, result files, tables.

Every benchmark runs its variants side by side in one process and reports ratios; raw results go
to ``<out>/<name>_<device>.json`` with the device, versions, date, the command line and every
parsed flag, so a number in a note can always be traced to the run that produced it. ``<out>`` is
the benchmark's ``--out DIR``, else ``$EOFLOW_FAST_BENCH_OUT`` (``eoflow-fast bench --out DIR``),
else the untracked ``runs/bench`` under the current folder: the committed results the README cites
in ``bench/results/`` change only on purpose (``--out bench/results``).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"  # the committed results
OUT_ENV = "EOFLOW_FAST_BENCH_OUT"


def out_dir() -> Path:
    """Where results are written by default: $EOFLOW_FAST_BENCH_OUT, else runs/bench under the current folder."""
    return Path(os.environ.get(OUT_ENV) or "runs/bench")


# What the current benchmark process was asked for: set by parse_args, written into every result.
_INVOCATION: dict = {"out": None, "flags": None, "argv": None}


def parse_args(parser, argv=None):
    """``parser.parse_args(argv)`` plus the shared ``--out DIR``; remembers the flags for
    :func:`write_result` so each result file records how it was produced."""
    from eoflow_fast.train.argtypes import out_folder

    parser.add_argument("--out", type=lambda text: Path(out_folder(text)), default=None, metavar="DIR",
                        help=f"folder for the result JSON (default: ${OUT_ENV}, else runs/bench, untracked; "
                             "pass --out bench/results to update the committed figures)")
    args = parser.parse_args(argv)
    _INVOCATION.update(out=args.out, argv=list(sys.argv[1:] if argv is None else argv),
                       flags={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()})
    return args


def _nvml_facts() -> dict:
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        facts = {
            "name": pynvml.nvmlDeviceGetName(h),
            "memory_total_gib": round(mem.total / 2**30, 2),
            "driver": pynvml.nvmlSystemGetDriverVersion(),
            "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
        }
        pynvml.nvmlShutdown()
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in facts.items()}
    except Exception as exc:  # NVML missing or not permitted: say so rather than guess
        return {"nvml_error": f"{type(exc).__name__}: {exc}"}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def env_info(device: str) -> dict:
    """Device name, versions and date for a result file."""
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["nvml"] = _nvml_facts()
    return info


def device_tag(device: str) -> str:
    if device == "cuda":
        return re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name()).strip("-").lower()
    return "cpu"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_fn(fn, device: str, warmup: int = 3, reps: int = 20) -> dict:
    """Median and spread of ``fn()`` wall time in ms (CUDA: events around each call)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "reps": reps}


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 points at /dev/null inside the block (C++ writes included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory(fn, device: str) -> int:
    """Peak extra memory of one ``fn()`` call in bytes.

    CUDA: ``max_memory_allocated`` over the call minus the memory allocated before it.
    CPU: the profiler's allocation records (each op's own allocations at its start, each free as a
    ``[memory]`` record), summed in time order; the peak of that running total. Exact up to the
    ordering of allocations inside one op.
    """
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _stderr_silenced():  # Kineto's CPU build prints "USDT: ... profiler_start/stop" on fd 2
        prof.start()
    try:
        fn()
    finally:
        with _stderr_silenced():
            prof.stop()
    deltas = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = peak = 0
    for _, d in deltas:
        live += d
        peak = max(peak, live)
    return peak


def copy_bandwidth_gbs(device: str, n_bytes: int = 2**30) -> float:
    """Measured device-to-device copy bandwidth, counting bytes read plus bytes written."""
    src = torch.empty(n_bytes // 4, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    ms = time_fn(lambda: dst.copy_(src), device, warmup=3, reps=10)["median_ms"]
    return 2 * n_bytes / (ms * 1e-3) / 1e9


def write_result(name: str, device: str, payload: dict, out: str | os.PathLike | None = None) -> Path:
    """Write ``<out>/<name>_<device tag>.json``: env facts, the invoking flags and ``payload``.

    ``out``: explicit folder; else the ``--out`` given to :func:`parse_args`; else :func:`out_dir`.
    """
    folder = Path(out if out is not None else _INVOCATION["out"] or out_dir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_{device_tag(device)}.json"
    body = {"benchmark": name, "env": env_info(device), "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
            "flags": _INVOCATION["flags"], "argv": _INVOCATION["argv"], **payload}
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    return path


def csv_list(text: str) -> list[str]:
    """argparse type: ``"a,b"`` -> ``["a", "b"]``."""
    return [v for v in text.split(",") if v]


def shape_list(text: str) -> list[tuple[int, ...]]:
    """argparse type: ``"256x6144,64x6x64x64"`` -> ``[(256, 6144), (64, 6, 64, 64)]``."""
    try:
        return [tuple(int(d) for d in item.split("x")) for item in csv_list(text)]
    except ValueError:
        raise ValueError(f"expected shapes like 256x6144,64x6x64x64, got {text!r}") from None


def failure_status(exc: BaseException, device: str) -> str:
    """The ``status`` of a variant that raised: ``"oom"`` for a CUDA out-of-memory (also when a
    compiled graph re-raises it as another type), else ``"failed: <type>: <message>"``. On an
    out-of-memory the allocator cache is emptied so the next variant starts clean."""
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        if device == "cuda":
            torch.cuda.empty_cache()
        return "oom"
    return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def add_speedups(rows: list[dict], keys: tuple[str, ...], bases=("eager", "compile")) -> list[dict]:
    """Set ``speedup_vs_<base>`` = base time / row time on every timed row, against the row of
    variant ``base`` with the same ``keys`` values (idempotent; rows without a time get none)."""
    for r in rows:
        for base in bases:
            ref = next((q for q in rows if q["variant"] == base and "median_ms" in q
                        and all(q[k] == r[k] for k in keys)), None)
            if ref and "median_ms" in r:
                r[f"speedup_vs_{base}"] = ref["median_ms"] / r["median_ms"]
    return rows


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Plain aligned table of ``rows`` restricted to ``columns``."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)
