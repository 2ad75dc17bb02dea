"""Integrity records for packed shards: what a shard file must be, a cheap check and a full one.

A shard is an ``np.save`` file of uint8 ``(n, 3, size, size)``. Its record (in the shard's manifest
and in ``index.json["shards"]``) holds::

    file     "shard_00000.npy"
    count    n
    bytes    the file's size in bytes (npy header + n*3*size*size)
    dtype    "uint8"
    shape    [n, 3, size, size]
    head     BLAKE2b-128 of the first HEAD_BYTES bytes of the file (hex)
    blake2b  BLAKE2b-128 of the whole file (hex)

:func:`check_shard` (run when a pack is opened) compares the size, the npy header's dtype and shape,
and ``head``: one ``stat`` and a 64 KiB read per shard, enough to catch truncated, zero-byte, swapped
and foreign shards. :func:`verify_shard` (``eoflow-fast data verify``, ``pack`` on resume) also
hashes every byte, which catches flipped pixel bytes anywhere.
"""
from __future__ import annotations

import hashlib
import os
import re

import numpy as np

HEAD_BYTES = 1 << 16
_CHUNK = 1 << 22


class ShardError(ValueError):
    """A shard file does not match its record; the message names the shard file."""


def _blake2b():
    return hashlib.blake2b(digest_size=16)


RECORD_KEYS = {"file": str, "count": int, "bytes": int, "dtype": str, "shape": list, "head": str, "blake2b": str}
SHARD_NAME = re.compile(r"shard_\d{5}\.npy")


def check_record(record, size: int) -> None:
    """A shard record as read from an index: the keys and types of RECORD_KEYS, a plain shard file
    name (no path: the index cannot point outside its directory), shape ``[count, 3, size, size]``."""
    if not isinstance(record, dict):
        raise ShardError(f"shard record {record!r} is not a mapping")
    name = record.get("file")
    wrong = [k for k, t in RECORD_KEYS.items() if not isinstance(record.get(k), t) or isinstance(record.get(k), bool)]
    if wrong:
        raise ShardError(f"shard record of {name!r} lacks or mistypes {wrong} (expected {list(RECORD_KEYS)})")
    if not SHARD_NAME.fullmatch(name):
        raise ShardError(f"shard record names file {name!r}, expected shard_NNNNN.npy in the pack directory")
    if record["shape"] != [record["count"], 3, size, size]:
        raise ShardError(f"shard {name}: recorded shape {record['shape']} and count {record['count']}, expected "
                         f"[count, 3, {size}, {size}]")


def _digest_of(fh, limit: int | None) -> str:
    """BLAKE2b-128 hex of ``fh`` from its start, at most ``limit`` bytes (None: to the end)."""
    fh.seek(0)
    h, left = _blake2b(), limit
    while left is None or left > 0:
        block = fh.read(_CHUNK if left is None else min(_CHUNK, left))
        if not block:
            break
        h.update(block)
        if left is not None:
            left -= len(block)
    return h.hexdigest()


def describe_shard(path: str) -> dict:
    """The integrity record of the shard file at ``path`` as it is on disk (after writing it)."""
    dtype, shape = _read_header(path)
    with open(path, "rb") as fh:
        head = _digest_of(fh, HEAD_BYTES)
        full = _digest_of(fh, None)
    return {"file": os.path.basename(path), "count": int(shape[0]), "bytes": os.path.getsize(path),
            "dtype": str(dtype), "shape": list(shape), "head": head, "blake2b": full}


def _read_header(path: str) -> tuple[np.dtype, tuple]:
    """``(dtype, shape)`` from the npy header of ``path``; ShardError naming the file if it has none."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
    except FileNotFoundError:
        raise ShardError(f"shard {name}: file missing") from None
    except (ValueError, OSError, EOFError) as err:
        size = os.path.getsize(path)
        raise ShardError(f"shard {name}: not an npy array file ({size} bytes: "
                         f"{'zero-byte file' if size == 0 else err})") from None
    if fortran:
        raise ShardError(f"shard {name}: Fortran-ordered array, expected C order")
    return dtype, tuple(shape)


def check_shard(path: str, record: dict) -> None:
    """Cheap check of the shard file at ``path`` against ``record``: size, dtype, shape, head digest.
    Raises ShardError naming the shard and what differs."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise ShardError(f"shard {name}: file missing (expected {record['bytes']} bytes)")
    size = os.path.getsize(path)
    if size != record["bytes"]:
        what = "zero-byte file" if size == 0 else ("truncated" if size < record["bytes"] else "too long")
        raise ShardError(f"shard {name}: {size} bytes, expected {record['bytes']} ({what})")
    dtype, shape = _read_header(path)
    if str(dtype) != record["dtype"]:
        raise ShardError(f"shard {name}: dtype {dtype}, expected {record['dtype']}")
    if list(shape) != list(record["shape"]):
        raise ShardError(f"shard {name}: shape {list(shape)}, expected {record['shape']}")
    with open(path, "rb") as fh:
        if _digest_of(fh, HEAD_BYTES) != record["head"]:
            raise ShardError(f"shard {name}: its first {HEAD_BYTES} bytes differ from the ones packed "
                             "(another shard's file, or overwritten)")


def verify_shard(path: str, record: dict) -> None:
    """:func:`check_shard`, then the BLAKE2b of every byte."""
    check_shard(path, record)
    with open(path, "rb") as fh:
        if _digest_of(fh, None) != record["blake2b"]:
            raise ShardError(f"shard {os.path.basename(path)}: checksum mismatch (content changed since "
                             "it was packed: flipped or overwritten bytes)")
