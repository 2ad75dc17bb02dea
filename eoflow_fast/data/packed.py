"""Packed images: decode once into uint8 memory-mapped shards, then load without decoding.

Layout of a pack directory ``DST``::

    DST/pack.json            settings (size, crop, shard_size, source list digest); written first
    DST/shard_00000.npy      uint8 (n_k, 3, size, size), np.save format, memory-mapped on read
    DST/shard_00000.json     the shard's manifest: names, CelebA partition, skipped files
    DST/index.json           written last: shard files and counts, names, partition, skipped

Source ``SRC`` is a CelebA root (``img_align_celeba/`` + ``list_eval_partition.txt``; the partition
is kept so splits work) or any image folder. Shard ``k`` holds the decodable images among sources
``k*shard_size .. (k+1)*shard_size - 1`` (sorted order). Each shard is written atomically (temp
file, fsync, rename; the manifest last), so an interrupted pack resumes by skipping shards whose
manifest exists; a pack with other settings in ``DST`` is an error. Unreadable images are reported
by name (stderr and ``index.json["skipped"]``) and skipped.

``PackedImages`` is a map-style dataset (``len`` + indexing), so ``DataLoader`` workers and
``DistributedSampler`` work unchanged; each process opens its own read-only memory maps lazily.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np
from torch.utils.data import Dataset

from ._splits import SPLITS, split_by_name
from .images import (CELEBA_LAYOUT, CELEBA_SPLITS, FOLDER_LAYOUT, FOLDER_TEST_FRACTION, is_celeba, list_image_folder,
                     load_image, read_celeba_partition, to_float)

FORMAT = "eoflow_fast.packed/1"
PACKED_LAYOUT = ("a directory written by `eoflow-fast data pack SRC DST`: index.json, pack.json and "
                 "shard_XXXXX.npy / shard_XXXXX.json files")


def _atomic_write(path: str, write) -> None:
    """``write(fh)`` into ``path + '.tmp'``, flush, fsync, rename over ``path``, fsync the directory."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_json(path: str, obj) -> None:
    _atomic_write(path, lambda fh: fh.write(json.dumps(obj).encode()))


def list_sources(src: str) -> tuple[str, list[str], np.ndarray | None]:
    """``(image root, relative names, CelebA partition int8 or None)`` for a CelebA root or a folder."""
    if not os.path.isdir(src):
        raise FileNotFoundError(f"data pack: no directory at {src!r}; expected {CELEBA_LAYOUT}, or {FOLDER_LAYOUT}")
    if is_celeba(src):
        names, parts = read_celeba_partition(src)
        return os.path.join(src, "img_align_celeba"), names, parts
    return src, list_image_folder(src), None


def _decode(job):
    path, size, crop = job
    try:
        return load_image(path, size, crop), None
    except OSError as err:
        return None, str(err)


def pack_images(src: str, dst: str, size: int = 64, crop: int | None = None, shard_size: int = 4096,
                workers: int = 0, progress: bool = True) -> dict:
    """Pack ``src`` into ``dst`` (see module docstring); returns the index dict. ``crop`` defaults to
    148 for CelebA and the largest centred square otherwise; ``workers > 1`` decodes in a process pool."""
    from tqdm import tqdm

    if shard_size < 1 or size < 1:
        raise ValueError(f"data pack: shard_size={shard_size} and size={size} must be positive")
    root, names, partition = list_sources(src)
    if crop is None and partition is not None:
        crop = 148
    settings = {"format": FORMAT, "size": size, "crop": crop, "shard_size": shard_size, "num_sources": len(names),
                "sources_sha1": hashlib.sha1("\n".join(names).encode()).hexdigest()}
    os.makedirs(dst, exist_ok=True)
    settings_path = os.path.join(dst, "pack.json")
    if os.path.exists(settings_path):
        with open(settings_path) as fh:
            previous = json.load(fh)
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise ValueError(f"data pack: {dst!r} holds a pack with different {changed} ({previous}); "
                             "use an empty DST or the same settings to resume")
    else:
        _write_json(settings_path, settings)

    num_shards = (len(names) + shard_size - 1) // shard_size
    shard_files = [os.path.join(dst, f"shard_{k:05d}") for k in range(num_shards)]
    done = [os.path.exists(f + ".json") and os.path.exists(f + ".npy") for f in shard_files]
    first_todo = sum(min(shard_size, len(names) - k * shard_size) for k in range(num_shards) if done[k])
    bar = tqdm(total=len(names), initial=first_todo, unit="img", desc="data pack", disable=not progress)
    pool = None
    if workers > 1:
        import multiprocessing

        pool = multiprocessing.Pool(workers)  # the platform default start method, as DataLoader workers
    try:
        for k in range(num_shards):
            if done[k]:
                continue
            chunk = names[k * shard_size:(k + 1) * shard_size]
            jobs = [(os.path.join(root, n), size, crop) for n in chunk]
            results = pool.imap(_decode, jobs, chunksize=8) if pool else map(_decode, jobs)
            images, kept, skipped = [], [], []
            for name, (img, err) in zip(chunk, results):
                bar.update(1)
                if img is None:
                    skipped.append({"name": name, "error": err})
                    bar.write(f"data pack: skipped {name}: {err}", file=sys.stderr)
                else:
                    images.append(img)
                    kept.append(name)
            array = np.stack(images) if images else np.zeros((0, 3, size, size), np.uint8)
            _atomic_write(shard_files[k] + ".npy", lambda fh: np.lib.format.write_array(fh, array))
            parts = None
            if partition is not None:
                lookup = dict(zip(chunk, partition[k * shard_size:(k + 1) * shard_size].tolist()))
                parts = [lookup[n] for n in kept]
            _write_json(shard_files[k] + ".json", {"names": kept, "partition": parts, "skipped": skipped})
    finally:
        bar.close()
        if pool is not None:  # every result is consumed or abandoned (interrupt) by now
            pool.terminate()
            pool.join()

    index = dict(settings, shards=[], names=[], partition=[] if partition is not None else None, skipped=[])
    for f in shard_files:
        with open(f + ".json") as fh:
            manifest = json.load(fh)
        index["shards"].append({"file": os.path.basename(f) + ".npy", "count": len(manifest["names"])})
        index["names"] += manifest["names"]
        index["skipped"] += manifest["skipped"]
        if partition is not None:
            index["partition"] += manifest["partition"]
    _write_json(os.path.join(dst, "index.json"), index)
    return index


def read_index(path: str) -> dict:
    index_path = os.path.join(path, "index.json")
    if not os.path.isfile(index_path):
        hint = (" (pack.json is there: the pack was interrupted; rerun `eoflow-fast data pack` with the same "
                "arguments to resume)" if os.path.isfile(os.path.join(path, "pack.json")) else "")
        raise FileNotFoundError(f"packed: no index.json in {path!r}{hint}; expected {PACKED_LAYOUT}")
    with open(index_path) as fh:
        index = json.load(fh)
    if index.get("format") != FORMAT:
        raise ValueError(f"packed: {index_path!r} has format {index.get('format')!r}, expected {FORMAT!r}")
    return index


class PackedImages(Dataset):
    """Item ``i`` -> float32 (3, size, size) in [0, 1] (``k/255``, or ``(k+u)/256`` if dequantize).

    ``split``: "all", or for CelebA packs "train" | "valid" | "test" (the published partition); a
    folder pack splits by name like ``image_folder`` (about 5% "test"). ``__getitems__`` reads a batch
    with one fancy index per shard."""

    def __init__(self, path: str, split: str = "train", dequantize: bool = False):
        index = read_index(path)
        self.path, self.dequantize = path, dequantize
        self.size = index["size"]
        self.files = [s["file"] for s in index["shards"]]
        self.counts = counts = np.asarray([s["count"] for s in index["shards"]], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        total = int(self.starts[-1])
        partition = index["partition"]
        if partition is None:  # a folder pack: the same split by name as image_folder
            self.items = split_by_name(index["names"], split, FOLDER_TEST_FRACTION) if split in SPLITS else None
        elif split == "all" or split in CELEBA_SPLITS:
            self.items = (np.arange(total) if split == "all"
                          else np.nonzero(np.asarray(partition) == CELEBA_SPLITS[split])[0])
        else:
            self.items = None
        if self.items is None:
            allowed = ("all", *CELEBA_SPLITS) if partition is not None else SPLITS
            raise ValueError(f"packed: split={split!r}, expected one of {allowed} for {path!r}")
        self.names = [index["names"][i] for i in self.items]
        self._maps = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = None  # every worker maps the shards itself
        return state

    def _shards(self):
        if self._maps is None:
            # a shard whose images were all unreadable is empty and cannot be memory-mapped
            self._maps = [np.load(os.path.join(self.path, f), mmap_mode="r") if n else None
                          for f, n in zip(self.files, self.counts)]
        return self._maps

    def __len__(self) -> int:
        return len(self.items)

    def read_uint8(self, items) -> np.ndarray:
        """uint8 (n, 3, size, size) for dataset items ``items`` (order kept)."""
        glob = self.items[np.asarray(items, dtype=np.int64)]
        shard = np.searchsorted(self.starts, glob, side="right") - 1
        out = np.empty((len(glob), 3, self.size, self.size), dtype=np.uint8)
        maps = self._shards()
        for k in np.unique(shard):
            sel = np.nonzero(shard == k)[0]
            local = glob[sel] - self.starts[k]
            order = np.argsort(local)  # ascending reads are friendlier to the page cache
            out[sel[order]] = maps[k][local[order]]
        return out

    def __getitem__(self, i):
        return self.__getitems__([i])[0]

    def __getitems__(self, items):
        return list(to_float(self.read_uint8(items), self.dequantize).unbind(0))
