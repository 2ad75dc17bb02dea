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

Unreadable images: when a dataset is built, every file's header is read; a file that is no image,
or that declares more than ``max_pixels`` pixels (default PIL's 89,478,485; a 24 KB PNG can declare
14000 x 14000 -- a decompression bomb), is reported on stderr by name, listed in ``.skipped`` and
left out. A file whose header reads but whose body does not raises UnreadableImage naming the file
on access; ``eoflow-fast data pack`` decodes every file and skips all such files by name.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from ._random import uniform_noise
from ._splits import canonical_split, name_rule, split_by_name

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
CELEBA_SPLITS = {"train": 0, "valid": 1, "test": 2}
CELEBA_RULE = "the published CelebA partition (list_eval_partition.txt: 0 train, 1 valid, 2 test)"
CELEBA_LAYOUT = ("the published CelebA layout: ROOT/img_align_celeba/*.jpg, ROOT/list_eval_partition.txt "
                 "('000001.jpg 0' per line) and, for attributes, ROOT/list_attr_celeba.txt")
FOLDER_LAYOUT = f"a directory holding image files ({', '.join(IMAGE_EXTENSIONS)}), searched recursively"


DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default MAX_IMAGE_PIXELS (1024**3 // 4 // 3): ~9459 x 9459
_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pixel_limit(max_pixels: int | None):
    """PIL with ``max_pixels`` as its decompression-bomb limit, and its between-1x-and-2x warning
    raised as an error: every size PIL checks (the header, each GIF/TIFF frame) above ``max_pixels``
    fails inside the block. PIL's limit is a module global, so the block holds a lock and restores it."""
    from PIL import Image

    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


class UnreadableImage(OSError):
    """An image file that cannot be decoded, or declares more pixels than allowed; names the file."""


@contextlib.contextmanager
def _reading(path: str, max_pixels: int | None):
    """PIL under :func:`_pixel_limit`; any decoding error leaves as UnreadableImage naming ``path``."""
    from PIL import Image

    try:
        with _pixel_limit(max_pixels):
            yield Image
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        declared = re.search(r"\((\d+) pixels\)", str(err))  # PIL: "Image size (N pixels) exceeds limit ..."
        raise _too_large(path, f"declares {declared[1] if declared else 'too many'} pixels", max_pixels) from None
    except (OSError, ValueError, SyntaxError) as err:  # PIL raises these for truncated/garbled files
        raise UnreadableImage(f"unreadable image {path}: {err}") from err


def _too_large(path: str, detail: str, max_pixels: int | None) -> UnreadableImage:
    return UnreadableImage(f"unreadable image {path}: {detail}; above max_pixels={max_pixels} (a decompression-"
                           "bomb guard; raise it with --max-pixels N or max_pixels=N, or max_pixels=None for none)")


def _open_checked(Image, path: str, max_pixels: int | None):
    """``Image.open(path)`` (reads the header only), refused when ``width * height > max_pixels``."""
    im = Image.open(path)
    w, h = im.size
    if max_pixels is not None and w * h > max_pixels:
        im.close()
        raise _too_large(path, f"declares {w}x{h} = {w * h} pixels", max_pixels)
    return im


def probe_image(path: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Read only the header of ``path``: UnreadableImage if it is no image or declares more than
    ``max_pixels`` pixels (the body is decoded, and may still fail, on first use)."""
    with _reading(path, max_pixels) as Image:
        _open_checked(Image, path, max_pixels).close()


def load_image(path: str, size: int, crop: int | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """uint8 (3, size, size): ``path`` as RGB, centre-cropped to ``crop`` (default min(W, H)), resized.
    Raises UnreadableImage (an OSError) naming the file when it cannot be decoded or declares more
    than ``max_pixels`` pixels (width * height; None: no limit): a tiny file may declare a huge image."""
    with _reading(path, max_pixels) as Image, _open_checked(Image, path, max_pixels) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h) if crop is None else crop
        if side > min(w, h):
            raise ValueError(f"crop={side} exceeds the image size {w}x{h}")
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
        return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))


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


def readable_images(root: str, names: list[str], max_pixels: int | None, who: str) -> tuple[list[int], list[dict]]:
    """``(indices of names whose header reads, [{"name", "error"} of the others])``; each skipped file
    is reported on stderr by name. Reads headers only (:func:`probe_image`), so it is cheap."""
    kept, skipped = [], []
    for i, name in enumerate(names):
        try:
            probe_image(os.path.join(root, name), max_pixels)
            kept.append(i)
        except UnreadableImage as err:
            skipped.append({"name": name, "error": str(err)})
            print(f"{who}: skipped {name}: {err}", file=sys.stderr)
    return kept, skipped


class ImageFiles(Dataset):
    """Map-style dataset over image files: item ``i`` -> float32 (3, size, size), or ``(x, label)``
    when ``labels`` is given. Decodes the file on every access (see ``packed`` for the fast path);
    ``.skipped`` lists the files left out because their header did not read or declared more than
    ``max_pixels`` pixels."""

    def __init__(self, root: str, names: list[str], size: int = 64, crop: int | None = None,
                 dequantize: bool = False, labels: np.ndarray | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, who: str = "images"):
        keep, self.skipped = readable_images(root, list(names), max_pixels, who)
        self.root, self.names, self.size, self.crop = root, [names[i] for i in keep], size, crop
        self.dequantize, self.max_pixels = dequantize, max_pixels
        self.labels = None if labels is None else torch.from_numpy(labels[keep])

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i):
        path = os.path.join(self.root, self.names[i])
        x = to_float(load_image(path, self.size, self.crop, self.max_pixels), self.dequantize)
        return (x, self.labels[i]) if self.labels is not None else x


def celeba(root: str, split: str = "train", size: int = 64, crop: int | None = 148, dequantize: bool = False,
           with_attributes: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageFiles:
    """CelebA ``split`` ("train" | "valid" | "test" | "all"); ``.attribute_names`` when with_attributes.
    Files whose header does not read (or declares more than ``max_pixels``) are skipped by name."""
    split = canonical_split(split)
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
    ds = ImageFiles(os.path.join(root, "img_align_celeba"), keep, size, crop, dequantize, labels, max_pixels, "celeba")
    ds.attribute_names = attr_names
    ds.split_rule = CELEBA_RULE
    return ds


FOLDER_TEST_FRACTION = 0.05  # [INFERRED] held-out share of a folder without a published split


def image_folder(root: str, split: str = "train", size: int = 64, crop: int | None = None,
                 dequantize: bool = False, test_fraction: float = FOLDER_TEST_FRACTION, seed: int = 0,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageFiles:
    """Images under ``root`` (sorted); a plain folder has no published split, so "test" holds the
    files whose seeded name hash falls below ``test_fraction``, "train" the rest, "all" everything
    (:func:`split_by_name`). Files whose header does not read (or declares more than ``max_pixels``
    pixels) are skipped by name."""
    names = list_image_folder(root)
    ds = ImageFiles(root, [names[i] for i in split_by_name(names, split, test_fraction, seed)], size, crop,
                    dequantize, max_pixels=max_pixels, who="folder")
    ds.split_rule = name_rule(test_fraction, seed)
    return ds
