"""Run metrics: one JSON object per line in ``RUN_DIR/metrics.jsonl``, plus a tqdm progress bar.

Records (flat dicts, every value a number or string):

* ``{"kind": "train", "step": s, "time": t, <term>: value, ..., "loss": sum, "lr/<group>": lr,
  "grad_norm": |g|_2 (with clipping), <auxiliary>: value}`` -- one per optimizer step; ``step`` is
  the number of steps completed after that update (1 for the first), ``loss`` the optimized sum,
  ``time`` seconds since the run (or resumed run) started.
* ``{"kind": "eval", "step": s, "time": t, <name>: value, ...}`` -- one per evaluation.
* ``{"kind": "event", "step": s, "event": "start" | "resume" | "checkpoint" | "interrupt" | "end", ...}``.

On resume, :func:`truncate_after` drops records past the checkpoint's step (and a partial last
line left by a kill) so the file reads as one uninterrupted run. Only rank 0 writes.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from tqdm.auto import tqdm

from eoflow_fast.progress import line_every

from .checkpoint import write_atomic

METRICS_FILE = "metrics.jsonl"


def shown_values(record: dict, prefix: str = "", diagnostics: bool = True) -> dict:
    """The numbers of a train record (or the ``prefix``ed loss terms of an eval result) that a
    person reads, each once: no ``kind``/``step``/``time``/``lr/*``, no ``_``-diagnostics unless
    ``diagnostics``, and no ``loss`` when a single term is optimized (the sum IS that term, e.g.
    EOFlow's ``objective``: showing both prints one number twice). The progress bar and the
    end-of-run summaries of ``train`` and ``eval`` use this one rule; ``metrics.jsonl`` keeps all."""
    def name(key: str) -> str:
        return key[len(prefix):] if prefix and key.startswith(prefix) else key

    shown = {k: v for k, v in record.items()
             if k not in ("kind", "step", "time") and not name(k).startswith("lr/")
             and isinstance(v, (int, float)) and not isinstance(v, bool)
             and (diagnostics or not name(k).startswith("_"))}
    terms = [k for k in shown if (not prefix or k.startswith(prefix)) and not name(k).startswith("_")]
    optimized = [k for k in terms if name(k) not in ("loss", "grad_norm")]
    if len(optimized) == 1:
        shown.pop(prefix + "loss", None)
    return shown


def read_metrics(run_dir: str | os.PathLike, kind: str | None = None) -> list[dict]:
    """All complete records of ``RUN_DIR/metrics.jsonl`` (optionally only those of ``kind``); a line
    that is not a JSON object (cut by a kill, or damaged) is not a record."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if not isinstance(rec, dict):  # before: AttributeError in resume (truncate_after) and plots
            continue
        if kind is None or rec.get("kind") == kind:
            records.append(rec)
    return records


def append_record(path: str | os.PathLike, record: dict, sync: bool = False) -> None:
    """Append ``record`` as one JSON line to ``path`` (``sync``: fsync before returning). A last line
    cut short by a crash (no final newline) is ended first, so the new record is never glued to it
    and lost with it."""
    with open(path, "ab+") as f:  # appends always go to the end
        cut = f.seek(0, os.SEEK_END) > 0 and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n"
        f.write((b"\n" if cut else b"") + json.dumps(record).encode() + b"\n")
        if sync:
            f.flush()
            os.fsync(f.fileno())


LOSS_CURVE_FILE = "loss_curve.png"


def plot_loss_curve(run_dir: str | os.PathLike) -> Path | None:
    """``RUN_DIR/loss_curve.png`` from ``metrics.jsonl``: every logged term of the "train" records
    (and "loss" of the "eval" records, dashed) against the step, one panel per term. Returns the
    path, or None when there is no train record to draw."""
    train = read_metrics(run_dir, "train")
    if not train:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = read_metrics(run_dir, "eval")
    terms = [k for k in train[-1] if k not in ("kind", "step", "time") and isinstance(train[-1][k], (int, float))]
    fig, axes = plt.subplots(len(terms), 1, figsize=(6, 1.6 + 1.4 * len(terms)), sharex=True, squeeze=False)
    for ax, term in zip(axes[:, 0], terms):
        points = [(r["step"], r[term]) for r in train if isinstance(r.get(term), (int, float))]
        ax.plot(*zip(*points), lw=1.0, label=f"train {term}")
        held_out = [(r["step"], r[term]) for r in evals if isinstance(r.get(term), (int, float))]
        if held_out:
            ax.plot(*zip(*held_out), "--o", ms=3, lw=1.0, label=f"eval {term}")
        ax.set_ylabel(term)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(f"{Path(run_dir).name}: training curves")
    fig.tight_layout()
    path = Path(run_dir) / LOSS_CURVE_FILE
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def truncate_after(run_dir: str | os.PathLike, step: int) -> None:
    """Rewrite ``metrics.jsonl`` keeping only complete records with ``step <= step``.

    An ``eval`` record at ``step`` itself is kept only when the checkpoint was written after it,
    which the engine guarantees (eval runs before the checkpoint of the same step).
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return
    kept = [json.dumps(r) for r in read_metrics(run_dir) if r.get("step", 0) <= step]
    write_atomic(path, "".join(line + "\n" for line in kept).encode())  # exclusive temp file, no links followed


def jsonable(value):
    """JSON form of a metric value: numbers stay numbers (non-finite ones become "nan"/"inf",
    which JSON has no literal for), numpy/torch scalars become numbers, arrays nested lists."""
    if hasattr(value, "tolist"):  # numpy and torch scalars and arrays
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class RunLog:
    """Rank-0 writer of ``metrics.jsonl`` and owner of the progress bar (inert on other ranks)."""

    def __init__(self, run_dir: str | os.PathLike, active: bool, total_steps: int, start_step: int,
                 progress: bool):
        self.active = active
        self._file = None
        self._bar = None
        self._lines = None  # not a terminal: (every, next step to report, total) for plain progress lines
        if not active:
            return
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)  # never through a link
        self._file = os.fdopen(os.open(Path(run_dir) / METRICS_FILE, flags, 0o644), "a", buffering=1)
        if progress and sys.stderr.isatty():
            self._bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True,
                             mininterval=0.5, desc="train")
        elif progress:  # logs, CI, pipes: a line per ~5% of the run, as eoflow_fast.progress does
            every = line_every(total_steps)
            self._lines = (every, (start_step // every + 1) * every, total_steps)

    def write(self, record: dict) -> None:
        if self._file is not None:
            self._file.write(json.dumps({k: jsonable(v) for k, v in record.items()}) + "\n")

    def sync(self) -> None:
        """Flush and fsync, so the records up to a checkpoint survive a crash with it."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def progress(self, step: int, shown: dict) -> None:
        """Advance the bar to ``step`` and show ``shown`` (name -> float) as its postfix."""
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
        elif self._lines is not None and (step >= self._lines[1] or step == self._lines[2]):
            every, _, total = self._lines
            self._lines = (every, (step // every + 1) * every, total)
            values = ", ".join(f"{k}={v:.4g}" for k, v in shown.items())
            print(f"train: {step}/{total} steps" + (f", {values}" if values else ""), file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if not self.active:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)  # beside the bar; stdout is for the result
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._file is not None:
            self._file.close()
            self._file = None
