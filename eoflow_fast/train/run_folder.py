"""The run folder's own files: a checksummed ``config.json``, the fresh-run check, and moving
checkpoints out of the way when a run branches from an older one.

``config.json`` holds the resolved config plus ``"_checksum"``, the SHA-256 of the config's
canonical JSON (sorted keys, no spaces), written atomically (``checkpoint.write_atomic``). Reading
verifies it: a changed byte, a file that is not JSON or not a mapping is a
:class:`checkpoint.CheckpointError` naming the file (an older file without ``_checksum`` is read
with a warning).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from .checkpoint import CheckpointError, list_checkpoints, write_atomic

CONFIG_FILE = "config.json"
CHECKSUM_KEY = "_checksum"


def _digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_config(run_dir: str | os.PathLike, config: dict) -> Path:
    path = Path(run_dir) / CONFIG_FILE
    body = {**config, CHECKSUM_KEY: _digest(config)}
    write_atomic(path, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())
    return path


def read_config(run_dir: str | os.PathLike) -> dict:
    """The verified config of ``run_dir`` (without the checksum key)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {CONFIG_FILE} is missing")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the run's config is damaged") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object (the run's config), got a {type(data).__name__}")
    recorded = data.pop(CHECKSUM_KEY, None)
    if recorded is None:
        warnings.warn(f"{path} has no checksum (written by an older eoflow_fast): its integrity cannot be "
                      "verified", RuntimeWarning, stacklevel=2)
    elif recorded != _digest(data):
        raise CheckpointError(f"{path} does not match the checksum written with it: it was edited or damaged. "
                              "Settings change through --resume ... --branch KEY=VALUE, which records the change")
    return data


ENGINE_FILES = ("config.json", "metrics.jsonl")


def check_fresh(run_dir: str | os.PathLike, overwrite: bool) -> None:
    """A fresh run writes only into a missing or empty folder, unless ``overwrite``."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ValueError(f"run folder {run_dir} exists and is not a folder")
    entries = sorted(p.name for p in run_dir.iterdir())
    if not entries or overwrite:
        return
    try:
        holds_run = bool(list_checkpoints(run_dir)) or any(name in entries for name in ENGINE_FILES)
    except CheckpointError:  # a ckpt-*.pt link: named like a run's file
        holds_run = True
    shown = ", ".join(entries[:6]) + (", ..." if len(entries) > 6 else "")
    what = "already holds a run" if holds_run else "is not empty"
    hint = f"resume it (--resume {run_dir}), " if holds_run else ""
    raise ValueError(f"run folder {run_dir} {what} ({shown}); {hint}choose another --run-dir, or pass "
                     "--overwrite to write into it anyway (files the engine does not write are left alone)")


def supersede_after(run_dir: str | os.PathLike, step: int) -> Path | None:
    """Move the checkpoints newer than ``step`` to ``RUN_DIR/superseded-<step>/`` (a branch from an
    older checkpoint must not resume from them later); returns that folder, or None."""
    run_dir = Path(run_dir)
    newer = [p for s, p in list_checkpoints(run_dir) if s > step]
    if not newer:
        return None
    target = run_dir / f"superseded-{step:08d}"
    target.mkdir(exist_ok=True)
    for p in newer:
        os.replace(p, target / p.name)
    return target
