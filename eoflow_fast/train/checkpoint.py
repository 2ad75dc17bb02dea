"""Atomic, versioned training checkpoints in a run folder.

File layout: ``RUN_DIR/ckpt-<step:08d>.pt`` where ``step`` is the number of optimizer steps
completed. Each file is a ``torch.save`` dict::

    {"format": "eoflow_fast.checkpoint", "version": 1, "step": int, ...engine payload...}

Writes are atomic: the payload goes to ``ckpt-<step>.pt.tmp`` in the same folder, is flushed and
``fsync``-ed, then ``os.replace``-d onto its final name and the folder is ``fsync``-ed, so a crash
(SIGKILL, power loss) leaves either the previous set of checkpoints or the new one, never a partial
file under a final name. After a write only the newest ``keep`` checkpoints remain.

Reads use ``torch.load(weights_only=True)`` (no arbitrary code from foreign pickles), so payloads
hold only tensors, numbers, strings, ``None`` and lists/tuples/dicts of them. A file that cannot be
read raises :class:`CheckpointError` saying it is corrupt; a readable file without the format
marker raises saying it is foreign; a newer ``version`` raises saying so. Nothing falls back to an
older checkpoint or to a fresh start silently.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

FORMAT = "eoflow_fast.checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{8,})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: corrupt, foreign, or of an unsupported version."""


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / f"ckpt-{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path), ...]`` of the finished checkpoints in ``run_dir``, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for entry in run_dir.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory fds (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(run_dir: str | os.PathLike, step: int, payload: dict, keep: int) -> Path:
    """Write ``payload`` (plus the format marker and ``step``) atomically; keep the newest ``keep``.

    Returns the final path. ``keep`` must be >= 1.
    """
    if keep < 1:
        raise ValueError(f"checkpoint.save: keep must be >= 1, got {keep}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, "step": int(step), **payload}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(run_dir)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    for stale in run_dir.glob("ckpt-*.pt.tmp"):  # left by a crash during an earlier write
        if stale != tmp:
            stale.unlink(missing_ok=True)
    return final


def load(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read one checkpoint file; raise :class:`CheckpointError` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... here
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            f"Delete it to resume from an older checkpoint, or start a new run."
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        kind = type(data).__name__
        keys = sorted(map(str, data))[:8] if isinstance(data, dict) else []
        raise CheckpointError(
            f"checkpoint {path} is not an eoflow_fast checkpoint (no format marker "
            f"{FORMAT!r}; found a {kind}{' with keys ' + str(keys) if keys else ''})"
        )
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this eoflow_fast reads "
            f"versions <= {VERSION} (upgrade eoflow_fast)"
        )
    return data


def load_latest(run_dir: str | os.PathLike, map_location="cpu") -> dict:
    """The newest checkpoint in ``run_dir``; :class:`CheckpointError` when there is none."""
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"no checkpoint (ckpt-*.pt) in run folder {run_dir}")
    return load(found[-1][1], map_location=map_location)
