"""Real images from the user's disk: CelebA in its published layout and any folder of images.

Transform (shared with the packer): RGB, centre crop to a ``crop`` x ``crop`` square (default the
largest centred square), resize to ``size`` x ``size`` (PIL Lanczos), uint8 -> float32 (3, H, W) in
[0, 1] as ``k / 255``; ``dequantize=True`` gives ``(k + u) / 256`` with ``u ~ U(0, 1)`` fresh per
access (uniform dequantisation for flows). CelebA's default ``crop=148`` is the usual face crop of the
178x218 aligned images [GK]; sizes 64 and 128 are the ones used here, any size works.

CelebA layout (as published)::

    ROOT/img_align_celeba/000001.jpg ... 202599.jpg
    ROOT/list_eval_partition.txt      "000001.jpg 0" per line; 0 train, 1 valid, 2 test
    ROOT/list_attr_celeba.txt         line 1: count; line 2: 40 attribute names;
                                      then "000001.jpg -1 1 ..." (only needed for attributes)

Reading an unreadable image raises an error naming the file; ``eoflow-fast data pack`` instead
reports such files by name and skips them.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from ._random import uniform_noise
from ._splits import split_by_name

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
CELEBA_SPLITS = {"train": 0, "valid": 1, "test": 2}
CELEBA_LAYOUT = ("the published CelebA layout: ROOT/img_align_celeba/*.jpg, ROOT/list_eval_partition.txt "
                 "('000001.jpg 0' per line) and, for attributes, ROOT/list_attr_celeba.txt")
FOLDER_LAYOUT = f"a directory holding image files ({', '.join(IMAGE_EXTENSIONS)}), searched recursively"


def load_image(path: str, size: int, crop: int | None = None) -> np.ndarray:
    """uint8 (3, size, size): ``path`` as RGB, centre-cropped to ``crop`` (default min(W, H)), resized.
    Raises OSError naming the file when it cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            side = min(w, h) if crop is None else crop
            if side > min(w, h):
                raise ValueError(f"crop={side} exceeds the image size {w}x{h}")
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
            return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
    except (OSError, ValueError, SyntaxError) as err:  # PIL raises these for truncated/garbled files
        raise OSError(f"unreadable image {path}: {err}") from err


def to_float(images_u8: np.ndarray, dequantize: bool) -> torch.Tensor:
    """uint8 (..., C, H, W) -> float32 tensor: ``k/255``, or ``(k + u)/256`` with ``u ~ U(0, 1)`` if
    dequantize (numpy arithmetic: torch's uint8 -> float cast is several times slower on this CPU)."""
    if dequantize:
        x = uniform_noise(images_u8.shape)
        x += images_u8
        x *= np.float32(1 / 256)
    else:
        x = np.divide(images_u8, np.float32(255), dtype=np.float32)
    return torch.from_numpy(x)


def list_image_folder(root: str) -> list[str]:
    """Sorted relative paths of the image files under ``root`` (recursive)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder: no directory at {root!r}; expected {FOLDER_LAYOUT}")
    names = []
    for dirpath, _, files in os.walk(root):
        names += [os.path.relpath(os.path.join(dirpath, f), root) for f in files
                  if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not names:
        raise FileNotFoundError(f"image folder: no image files under {root!r}; expected {FOLDER_LAYOUT}")
    return sorted(names)


def is_celeba(root: str) -> bool:
    return os.path.isdir(os.path.join(root, "img_align_celeba"))


def read_celeba_partition(root: str) -> tuple[list[str], np.ndarray]:
    """``(file names, partition int8 (n,))`` from ``list_eval_partition.txt``, in file order."""
    images = os.path.join(root, "img_align_celeba")
    part = os.path.join(root, "list_eval_partition.txt")
    for need in (images, part):
        if not os.path.exists(need):
            raise FileNotFoundError(f"celeba: {need!r} not found; expected {CELEBA_LAYOUT}")
    names, parts = [], []
    with open(part) as fh:
        for lineno, line in enumerate(fh, 1):
            cells = line.split()
            if not cells:
                continue
            if len(cells) != 2 or cells[1] not in ("0", "1", "2"):
                raise ValueError(f"celeba: {part}:{lineno} reads {line.strip()!r}; expected '<file> <0|1|2>'")
            names.append(cells[0])
            parts.append(int(cells[1]))
    return names, np.asarray(parts, dtype=np.int8)


def read_celeba_attributes(root: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """``(attribute names, {file: int64 (40,) in {0, 1}})`` from ``list_attr_celeba.txt`` (-1 -> 0)."""
    path = os.path.join(root, "list_attr_celeba.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"celeba: {path!r} not found (needed for attributes); expected {CELEBA_LAYOUT}")
    with open(path) as fh:
        lines = fh.read().splitlines()
    attr_names = lines[1].split()
    table = {}
    for lineno, line in enumerate(lines[2:], 3):
        cells = line.split()
        if not cells:
            continue
        if len(cells) != len(attr_names) + 1:
            raise ValueError(f"celeba: {path}:{lineno} has {len(cells) - 1} values for {len(attr_names)} attributes")
        table[cells[0]] = (np.asarray(cells[1:], dtype=np.int64) > 0).astype(np.int64)
    return attr_names, table


class ImageFiles(Dataset):
    """Map-style dataset over image files: item ``i`` -> float32 (3, size, size), or ``(x, label)``
    when ``labels`` is given. Decodes the file on every access (see ``packed`` for the fast path)."""

    def __init__(self, root: str, names: list[str], size: int = 64, crop: int | None = None,
                 dequantize: bool = False, labels: np.ndarray | None = None):
        self.root, self.names, self.size, self.crop = root, list(names), size, crop
        self.dequantize = dequantize
        self.labels = None if labels is None else torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i):
        x = to_float(load_image(os.path.join(self.root, self.names[i]), self.size, self.crop), self.dequantize)
        return (x, self.labels[i]) if self.labels is not None else x


def celeba(root: str, split: str = "train", size: int = 64, crop: int | None = 148, dequantize: bool = False,
           with_attributes: bool = False) -> ImageFiles:
    """CelebA ``split`` ("train" | "valid" | "test" | "all"); ``.attribute_names`` when with_attributes."""
    if split not in (*CELEBA_SPLITS, "all"):
        raise ValueError(f"celeba: split={split!r}, expected one of {(*CELEBA_SPLITS, 'all')}")
    names, parts = read_celeba_partition(root)
    keep = [n for n, p in zip(names, parts) if split == "all" or p == CELEBA_SPLITS[split]]
    labels, attr_names = None, None
    if with_attributes:
        attr_names, table = read_celeba_attributes(root)
        missing = [n for n in keep if n not in table]
        if missing:
            raise ValueError(f"celeba: list_attr_celeba.txt has no row for {missing[:3]} ({len(missing)} files)")
        labels = np.stack([table[n] for n in keep])
    ds = ImageFiles(os.path.join(root, "img_align_celeba"), keep, size, crop, dequantize, labels)
    ds.attribute_names = attr_names
    return ds


FOLDER_TEST_FRACTION = 0.05  # [INFERRED] held-out share of a folder without a published split


def image_folder(root: str, split: str = "train", size: int = 64, crop: int | None = None,
                 dequantize: bool = False, test_fraction: float = FOLDER_TEST_FRACTION, seed: int = 0) -> ImageFiles:
    """Images under ``root`` (sorted); a plain folder has no published split, so "test" holds the
    files whose seeded name hash falls below ``test_fraction``, "train" the rest, "all" everything
    (:func:`split_by_name`)."""
    names = list_image_folder(root)
    return ImageFiles(root, [names[i] for i in split_by_name(names, split, test_fraction, seed)], size, crop,
                      dequantize)
