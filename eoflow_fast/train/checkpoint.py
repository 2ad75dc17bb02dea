"""Atomic, checksummed, versioned training checkpoints in a run folder.

File layout: ``RUN_DIR/ckpt-<step:08d>.pt`` where ``step`` is the number of optimizer steps
completed. Each file is a header line and a ``torch.save`` body::

    b"EOFLOW_FAST_CKPT sha256=<64 hex> bytes=<n>\n" + torch.save({"format": "eoflow_fast.checkpoint",
                                                                  "version": 2, "step": int, ...})

The header's SHA-256 covers the body, so a flipped bit or a truncation anywhere is detected before
anything is unpickled; header and body are written in one file, so they cannot disagree after a
crash. Writes are atomic: the bytes go to a fresh temporary file created exclusively (random name,
``O_EXCL``, never through a link) in the same folder, are flushed and ``fsync``-ed, then
``os.replace``-d onto the final name and the folder is ``fsync``-ed: a crash leaves the previous
set of checkpoints or the new one, never a partial file under a final name. After a write only
the newest ``keep`` checkpoints remain.

Reads verify the checksum, then ``torch.load(weights_only=True)`` (no code from foreign pickles);
``check_payload`` verifies an engine payload's structure. Every failure is a :class:`CheckpointError` naming the file and the
problem, and it names the older checkpoints of the same folder that can be used instead. Files of
version 1 (written before checksums, plain ``torch.save``) still load, with a warning that their
integrity cannot be checked.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import warnings
from pathlib import Path

import torch

FORMAT = "eoflow_fast.checkpoint"
VERSION = 2
MAGIC = b"EOFLOW_FAST_CKPT"
_HEADER = re.compile(rb"^EOFLOW_FAST_CKPT sha256=([0-9a-f]{64}) bytes=(\d+)\n")
_NAME = re.compile(r"^ckpt-(\d{8,})\.pt$")
# keys every engine checkpoint holds, with the types they must have
REQUIRED = {"step": int, "model": dict, "optimizer": dict, "rng": list, "data": dict, "config": dict}
DATA_KEYS = ("epoch", "batch", "batches_per_epoch", "world_size")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: corrupt, foreign, or of an unsupported version."""


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / f"ckpt-{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path), ...]`` of the finished checkpoints in ``run_dir``, oldest first. A
    ``ckpt-*.pt`` that is a symbolic link is a CheckpointError: the engine never writes one, and
    it would load another file (another run's weights) as this run's."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for entry in run_dir.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_symlink():
            raise CheckpointError(f"checkpoint {entry} is a symbolic link to {os.readlink(entry)}; this engine never "
                                  f"writes links, and loading it would take another file's weights as this run's. "
                                  f"Replace it by a copy of the file, or remove it")
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


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically through an exclusively created temporary file in the
    same folder (never following a link planted at the temporary or final name)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def encode(payload: dict) -> bytes:
    """Header line + ``torch.save`` body of ``payload`` (module docstring)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    return b"%s sha256=%s bytes=%d\n" % (MAGIC, hashlib.sha256(body).hexdigest().encode(), len(body)) + body


def save(run_dir: str | os.PathLike, step: int, payload: dict, keep: int) -> Path:
    """Write ``payload`` (plus the format marker and ``step``) atomically; keep the newest ``keep``.

    Returns the final path. ``keep`` must be >= 1.
    """
    if keep < 1:
        raise ValueError(f"checkpoint.save: keep must be >= 1, got {keep}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(run_dir, step)
    write_atomic(final, encode({"format": FORMAT, "version": VERSION, "step": int(step), **payload}))
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    for stale in [*run_dir.glob(".ckpt-*.tmp"), *run_dir.glob("ckpt-*.pt.tmp")]:  # left by a crash
        stale.unlink(missing_ok=True)  # unlink removes a link itself, never its target
    return final


def _alternatives(path: Path) -> str:
    """' Older checkpoints in this folder: ... (resume from one with ...)' or ''."""
    try:
        older = [p.name for step, p in list_checkpoints(path.parent) if p != path]
    except CheckpointError:  # a linked checkpoint beside it: not one to offer
        return ""
    if not older:
        return ""
    return (f" Other checkpoints in {path.parent}: {', '.join(older[-3:])}; resume from one with "
            f"--resume {path.parent} --from-checkpoint FILE (or delete {path.name}).")


def _unpickle(path: Path, body: bytes, map_location) -> object:
    try:
        return torch.load(io.BytesIO(body), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... here
        first = str(exc).splitlines()[0] if str(exc) else ""
        if "Unsupported global" in str(exc):  # a class or function the safe unpickler does not allow
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors, numbers, strings and containers "
                f"of them; it was refused for safety (torch.load(weights_only=True)) and not unpickled. "
                f"Load it only if you trust its source, with torch.load(..., weights_only=False)."
            ) from exc
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read "
                              f"({type(exc).__name__}: {first}).{_alternatives(path)}") from exc


def check_payload(path: Path, data: dict) -> None:
    """The engine payload's keys and types (``REQUIRED``, ``DATA_KEYS``); CheckpointError naming the file."""
    for key, kind in REQUIRED.items():
        if key not in data:
            raise CheckpointError(f"checkpoint {path} has the format marker but no {key!r} entry; it was not "
                                  f"written by this engine or was altered.{_alternatives(path)}")
        value = data[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"checkpoint {path}: {key!r} must be a {kind.__name__}, got "
                                  f"{type(value).__name__}.{_alternatives(path)}")
    if data["step"] < 0:
        raise CheckpointError(f"checkpoint {path}: step must be >= 0, got {data['step']}")
    named = _NAME.match(Path(path).name)
    if named and int(named.group(1)) != data["step"]:
        raise CheckpointError(f"checkpoint {path} is named for step {int(named.group(1))} but holds step "
                              f"{data['step']}: it was renamed or copied over, so the run's history would not "
                              f"match its weights.{_alternatives(Path(path))}")
    for key in DATA_KEYS:
        value = data["data"].get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckpointError(f"checkpoint {path}: data[{key!r}] must be an int >= 0, got {value!r}")


def load(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read and verify one checkpoint file; raise :class:`CheckpointError` naming the file and the problem."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    raw = path.read_bytes()
    header = _HEADER.match(raw[:160])
    if header:
        body = raw[header.end():]
        if len(body) != int(header.group(2)):
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated: its header records "
                                  f"{int(header.group(2))} bytes, the file holds {len(body)}.{_alternatives(path)}")
        if hashlib.sha256(body).hexdigest().encode() != header.group(1):
            raise CheckpointError(f"checkpoint {path} is corrupt: its SHA-256 does not match the one recorded "
                                  f"when it was written (a changed byte).{_alternatives(path)}")
    elif raw.startswith(MAGIC):
        raise CheckpointError(f"checkpoint {path} has a damaged header line.{_alternatives(path)}")
    else:
        body = raw  # version 1 (plain torch.save) or foreign
    data = _unpickle(path, body, map_location)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        kind = type(data).__name__
        keys = sorted(map(str, data))[:8] if isinstance(data, dict) else []
        raise CheckpointError(
            f"checkpoint {path} is not an eoflow_fast checkpoint (no format marker "
            f"{FORMAT!r}; found a {kind}{' with keys ' + str(keys) if keys else ''})"
        )
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > VERSION or version < 1:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this eoflow_fast reads "
            f"versions 1 to {VERSION} (upgrade eoflow_fast)"
        )
    if header is None and version >= 2:
        raise CheckpointError(f"checkpoint {path} claims version {version} but has no checksum header; "
                              f"it was altered.{_alternatives(path)}")
    if header is None:
        warnings.warn(f"checkpoint {path} was written before checksums (version 1): its integrity cannot "
                      "be verified", RuntimeWarning, stacklevel=2)
    return data


def source(model: torch.nn.Module, step: int, path: str | os.PathLike | None = None) -> dict:
    """What an evaluation of ``model`` came from: ``{"step", "checkpoint" (file name, None during
    training before it is written), "weights" (``digest.weights_digest``)}``. Files derived from an
    evaluation (``metrics.json``, ``eval.json``) record it, so numbers of other weights are never
    read as this checkpoint's."""
    from eoflow_fast.digest import weights_digest

    return {"step": int(step), "checkpoint": None if path is None else Path(path).name,
            "weights": weights_digest(model)}


def latest_path(run_dir: str | os.PathLike) -> Path:
    """The newest checkpoint file of ``run_dir``; :class:`CheckpointError` when there is none."""
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"no checkpoint (ckpt-*.pt) in run folder {run_dir}")
    return found[-1][1]


def load_latest(run_dir: str | os.PathLike, map_location="cpu") -> dict:
    """The newest checkpoint in ``run_dir``; :class:`CheckpointError` when there is none."""
    return load(latest_path(run_dir), map_location=map_location)
