"""Packed images: decode once into uint8 memory-mapped shards, then load without decoding.

Layout of a pack directory ``DST``::

    DST/pack.json            settings (size, crop, shard_size, source list digest); written first
    DST/shard_00000.npy      uint8 (n_k, 3, size, size), np.save format, memory-mapped on read
    DST/shard_00000.json     the shard's manifest: names, CelebA partition, skipped files, and the
                             shard's integrity record (bytes, dtype, shape, head and full BLAKE2b)
    DST/index.json           written last: shard records, names, partition, skipped

Source ``SRC`` is a CelebA root (``img_align_celeba/`` + ``list_eval_partition.txt``; the partition
is kept so splits work) or any image folder. Shard ``k`` holds the decodable images among sources
``k*shard_size .. (k+1)*shard_size - 1`` (sorted order). Each shard is written atomically (temp
file, fsync, rename; the manifest last), so an interrupted pack resumes: it keeps the shards whose
manifest exists and whose file passes :func:`verify_shard` (size, dtype, shape, checksum) and
re-packs the others, saying which; a pack with other settings in ``DST`` is an error. Unreadable
images, including ones declaring more than ``max_pixels`` pixels (decompression bombs), are reported
by name (stderr and ``index.json["skipped"]``) and skipped.

Integrity (see ``_shards``): opening a pack checks every shard's size, npy dtype and shape and the
digest of its first 64 KiB against the index (cheap), and names the shard on a mismatch;
:func:`verify_pack` (``eoflow-fast data verify DIR``) hashes every byte. Packs written before shard
records existed (format ``eoflow_fast.packed/1``) are refused with that explanation: rerun
``data pack`` with the same arguments into the same DST to re-pack them (their shards cannot be
verified, so all are decoded again).

Splits: a CelebA pack keeps the published partition ("train" | "valid" | "test" | "all"); a folder
pack splits by file name exactly as ``folder:`` does (:func:`~._splits.split_by_name`, seed 0,
``FOLDER_TEST_FRACTION`` = 5% "test"); :meth:`PackedImages.split_sizes` and ``split_rule`` say so.

``PackedImages`` is a map-style dataset (``len`` + indexing), so ``DataLoader`` workers and
``DistributedSampler`` work unchanged; each process opens its own read-only memory maps lazily.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
from torch.utils.data import Dataset

from ._progress import Progress
from ._shards import ShardError, check_record, check_shard, describe_shard, verify_shard
from ._splits import SPLITS, canonical_split, name_rule, split_by_name
from .images import (CELEBA_LAYOUT, CELEBA_RULE, CELEBA_SPLITS, DEFAULT_MAX_PIXELS, FOLDER_LAYOUT,
                     FOLDER_TEST_FRACTION, is_celeba, list_image_folder, load_image, read_celeba_partition, to_float)

FORMAT = "eoflow_fast.packed/2"
OLD_FORMATS = ("eoflow_fast.packed/1",)  # no shard records: refused on open, re-packed by `data pack`
INDEX_KEYS = {"size": int, "shards": list, "names": list, "partition": (list, type(None)), "skipped": list}
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


def check_outside(src: str, dst: str) -> None:
    """ValueError, before anything is written, when DST is SRC or lies inside it (links resolved):
    the pack's ``pack.json`` and ``shard_*`` files would be written among the images it reads
    (over a source file of the same name, and into the folder a later pack of SRC lists)."""
    source, target = os.path.realpath(src), os.path.realpath(dst)
    if target == source or target.startswith(source.rstrip(os.sep) + os.sep):
        where = "is SRC itself" if target == source else f"lies inside SRC ({src!r})"
        raise ValueError(f"data pack: DST {dst!r} {where}; the pack would be written among the images it reads. "
                         f"Choose a DST outside SRC")


def _decode(job):
    path, size, crop, max_pixels = job
    try:
        return load_image(path, size, crop, max_pixels), None
    except OSError as err:
        return None, str(err)


def _read_settings(settings_path: str, settings: dict, dst: str) -> bool:
    """Compare DST's pack.json with ``settings``; True if it is an old-format pack of the same settings
    (to be re-packed). A pack with other settings is a ValueError."""
    with open(settings_path) as fh:
        previous = json.load(fh)
    if previous == settings:
        return False
    changed = sorted(k for k in settings if previous.get(k) != settings[k])
    if changed == ["format"] and previous.get("format") in OLD_FORMATS:
        return True
    raise ValueError(f"data pack: {dst!r} holds a pack with different {changed} ({previous}); "
                     "use an empty DST or the same settings to resume")


def _kept_shard(base: str, size: int, progress: Progress) -> bool:
    """True if shard ``base`` (.npy + .json) is complete and passes :func:`verify_shard`; else report why
    and return False so that it is packed again."""
    if not os.path.exists(base + ".json"):  # the manifest is written last: the shard was never finished
        return False
    name = os.path.basename(base) + ".npy"
    try:
        with open(base + ".json") as fh:
            record = json.load(fh).get("shard")
    except (ValueError, UnicodeDecodeError, AttributeError) as err:
        progress.write(f"data pack: manifest {os.path.basename(base)}.json is unreadable ({err}); re-packing {name}")
        return False
    try:
        if record is None:
            raise ShardError(f"shard {name}: its manifest has no integrity record (an older pack format)")
        check_record(record, size)
        if record["file"] != name:
            raise ShardError(f"shard {name}: its manifest describes {record['file']}")
        verify_shard(base + ".npy", record)
        return True
    except ShardError as err:
        progress.write(f"data pack: {err}; re-packing it")
        return False


def pack_images(src: str, dst: str, size: int = 64, crop: int | None = None, shard_size: int = 4096,
                workers: int = 0, progress: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                progress_every: int = 500) -> dict:
    """Pack ``src`` into ``dst`` (see module docstring); returns the index dict. ``crop`` defaults to
    148 for CelebA and the largest centred square otherwise; ``workers > 1`` decodes in a process pool;
    images declaring more than ``max_pixels`` pixels are skipped by name. Progress goes to stderr: a
    tqdm bar on a terminal, else a line per ``progress_every`` images."""
    if shard_size < 1 or size < 1:
        raise ValueError(f"data pack: shard_size={shard_size} and size={size} must be positive")
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"data pack: max_pixels={max_pixels}, expected a positive integer or None")
    check_outside(src, dst)
    root, names, partition = list_sources(src)
    if crop is None and partition is not None:
        crop = 148
    settings = {"format": FORMAT, "size": size, "crop": crop, "shard_size": shard_size, "num_sources": len(names),
                "sources_sha1": hashlib.sha1("\n".join(names).encode()).hexdigest()}
    os.makedirs(dst, exist_ok=True)
    settings_path = os.path.join(dst, "pack.json")
    if not os.path.exists(settings_path) or _read_settings(settings_path, settings, dst):
        _write_json(settings_path, settings)

    num_shards = (len(names) + shard_size - 1) // shard_size
    shard_files = [os.path.join(dst, f"shard_{k:05d}") for k in range(num_shards)]
    bar = Progress(len(names), "data pack", "images", enabled=progress, every=progress_every)
    done = [_kept_shard(f, size, bar) for f in shard_files]
    bar.update(sum(min(shard_size, len(names) - k * shard_size) for k in range(num_shards) if done[k]))
    pool = None
    if workers > 1:
        import multiprocessing

        pool = multiprocessing.Pool(workers)  # the platform default start method, as DataLoader workers
    try:
        for k in range(num_shards):
            if done[k]:
                continue
            chunk = names[k * shard_size:(k + 1) * shard_size]
            jobs = [(os.path.join(root, n), size, crop, max_pixels) for n in chunk]
            results = pool.imap(_decode, jobs, chunksize=8) if pool else map(_decode, jobs)
            images, kept, skipped = [], [], []
            for name, (img, err) in zip(chunk, results):
                bar.update(1)
                if img is None:
                    skipped.append({"name": name, "error": err})
                    bar.write(f"data pack: skipped {name}: {err}")
                else:
                    images.append(img)
                    kept.append(name)
            array = np.stack(images) if images else np.zeros((0, 3, size, size), np.uint8)
            _atomic_write(shard_files[k] + ".npy", lambda fh: np.lib.format.write_array(fh, array))
            parts = None
            if partition is not None:
                lookup = dict(zip(chunk, partition[k * shard_size:(k + 1) * shard_size].tolist()))
                parts = [lookup[n] for n in kept]
            _write_json(shard_files[k] + ".json", {"names": kept, "partition": parts, "skipped": skipped,
                                                   "shard": describe_shard(shard_files[k] + ".npy")})
    finally:
        bar.close()
        if pool is not None:  # every result is consumed or abandoned (interrupt) by now
            pool.terminate()
            pool.join()

    index = dict(settings, shards=[], names=[], partition=[] if partition is not None else None, skipped=[])
    for f in shard_files:
        with open(f + ".json") as fh:
            manifest = json.load(fh)
        index["shards"].append(manifest["shard"])
        index["names"] += manifest["names"]
        index["skipped"] += manifest["skipped"]
        if partition is not None:
            index["partition"] += manifest["partition"]
    _write_json(os.path.join(dst, "index.json"), index)
    return index


def read_index(path: str) -> dict:
    """``DIR/index.json`` of a pack, checked for format and consistency (shard records vs names)."""
    index_path = os.path.join(path, "index.json")
    if not os.path.isfile(index_path):
        hint = (" (pack.json is there: the pack was interrupted; rerun `eoflow-fast data pack` with the same "
                "arguments to resume)" if os.path.isfile(os.path.join(path, "pack.json")) else "")
        raise FileNotFoundError(f"packed: no index.json in {path!r}{hint}; expected {PACKED_LAYOUT}")
    try:
        with open(index_path) as fh:
            index = json.load(fh)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"packed: {index_path!r} is not JSON ({err}); rerun `eoflow-fast data pack` to rewrite it")
    fmt = index.get("format") if isinstance(index, dict) else None
    if fmt in OLD_FORMATS:
        raise ValueError(f"packed: {index_path!r} has the old format {fmt!r}, which records no shard sizes or "
                         f"checksums, so its shards cannot be checked; re-pack it: rerun `eoflow-fast data pack "
                         f"SRC {path}` with the original arguments (it decodes every image again)")
    if fmt != FORMAT:
        raise ValueError(f"packed: {index_path!r} has format {fmt!r}, expected {FORMAT!r}")
    wrong = [k for k, t in INDEX_KEYS.items() if not isinstance(index.get(k), t)]
    if wrong:
        raise ValueError(f"packed: {index_path!r} lacks or mistypes {wrong}; rerun `eoflow-fast data pack` to "
                         "rewrite it")
    for record in index["shards"]:
        try:
            check_record(record, index["size"])
        except ShardError as err:
            raise ShardError(f"packed: {index_path!r}: {err}; rerun `eoflow-fast data pack` to rewrite it") from None
    total = sum(r["count"] for r in index["shards"])
    if total != len(index["names"]) or (index["partition"] is not None and len(index["partition"]) != total):
        raise ValueError(f"packed: {index_path!r} records {total} images in its shards but {len(index['names'])} "
                         "names; rerun `eoflow-fast data pack` to rewrite it")
    return index


def verify_pack(path: str, progress: bool = True) -> list[tuple[str, str]]:
    """Full check of every shard of the pack at ``path`` (size, dtype, shape, BLAKE2b of every byte):
    ``[(shard file, what is wrong)]``, empty when all are intact. Progress counts shards."""
    index = read_index(path)
    bar = Progress(len(index["shards"]), "data verify", "shards", enabled=progress, every=10)
    bad = []
    try:
        for record in index["shards"]:
            try:
                verify_shard(os.path.join(path, record["file"]), record)
            except ShardError as err:
                bad.append((record["file"], str(err)))
                bar.write(f"data verify: {err}")
            bar.update(1)
    finally:
        bar.close()
    return bad


def _split_items(index: dict, split: str, path: str) -> np.ndarray:
    """Item indices (into ``index["names"]``) of ``split``; ValueError naming the allowed splits."""
    partition = index["partition"]
    if partition is None:  # a folder pack: the same split by name as image_folder
        if split in SPLITS:
            return split_by_name(index["names"], split, FOLDER_TEST_FRACTION)
    elif split == "all":
        return np.arange(len(partition))
    elif split in CELEBA_SPLITS:
        return np.nonzero(np.asarray(partition) == CELEBA_SPLITS[split])[0]
    allowed = ("all", *CELEBA_SPLITS) if partition is not None else SPLITS
    raise ValueError(f"packed: split={split!r}, expected one of {allowed} for {path!r}")


class PackedImages(Dataset):
    """Item ``i`` -> float32 (3, size, size) in [0, 1] (``k/255``, or ``(k+u)/256`` if dequantize).

    ``split``: "all", or for CelebA packs "train" | "valid" | "test" (the published partition); a
    folder pack splits by name like ``image_folder`` (about 5% "test"); ``split_rule`` says which,
    :meth:`split_sizes` counts each. Opening checks every shard cheaply (:func:`check_shard`) and
    raises ShardError naming the bad shard. ``__getitems__`` reads a batch with one fancy index per shard."""

    def __init__(self, path: str, split: str = "train", dequantize: bool = False):
        index = read_index(path)
        self.path, self.dequantize, self.split = path, dequantize, canonical_split(split)
        self.size = index["size"]
        for record in index["shards"]:
            try:
                check_shard(os.path.join(path, record["file"]), record)
            except ShardError as err:
                raise ShardError(f"packed: {path!r}: {err}; run `eoflow-fast data verify {path}` to check every "
                                 "shard, and rerun `eoflow-fast data pack` with the same arguments to re-pack "
                                 "the bad ones") from None
        self.files = [s["file"] for s in index["shards"]]
        self.counts = counts = np.asarray([s["count"] for s in index["shards"]], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self._index = {"names": index["names"], "partition": index["partition"]}
        self.items = _split_items(self._index, self.split, path)
        self.split_rule = CELEBA_RULE if index["partition"] is not None else name_rule(FOLDER_TEST_FRACTION, 0)
        self.names = [index["names"][i] for i in self.items]
        self.skipped = index["skipped"]
        self._maps = None

    def split_sizes(self) -> dict[str, int]:
        """``{split: number of images}`` for every split this pack offers."""
        names = ("all", *CELEBA_SPLITS) if self._index["partition"] is not None else SPLITS
        return {s: len(_split_items(self._index, s, self.path)) for s in names}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = None  # every worker maps the shards itself
        return state

    def _map(self, file: str, count: int):
        # a shard whose images were all unreadable is empty and cannot be memory-mapped
        if not count:
            return None
        try:
            return np.load(os.path.join(self.path, file), mmap_mode="r")
        except (OSError, ValueError) as err:
            raise ShardError(f"packed: shard {file} in {self.path!r} cannot be memory-mapped ({err}); "
                             "run `eoflow-fast data verify` on the pack") from err

    def _shards(self):
        if self._maps is None:
            self._maps = [self._map(f, n) for f, n in zip(self.files, self.counts)]
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
