"""One entry point for every dataset: ``get_dataset(spec, split, **kw)`` and ``get_ground_truth(spec, **kw)``.

Specs and their keyword arguments:

    dsprites | dsprites_color | dsprites_noisy | dsprites_scream   (procedural; GroundTruthData)
        npz=PATH        read the original dSprites file instead of rendering
        background=PATH scream background image (default: procedural texture)
        with_factors, seed (torch view: (x, factors); per-item variant randomness)
    triangle                                                        (DEFT §5.4; GroundTruthData)
    fa15 | fa24 | fa100      seed, communality, n_train, n_test, with_factors (FactorAnalysisData)
    digits                   dequantize, with_labels, test_fraction, seed
    wine                     test_fraction, seed
    csv:PATH                 columns, drop, delimiter, test_fraction, seed
    celeba:ROOT              size (64), crop (148), dequantize, with_attributes, max_pixels
    folder:ROOT              size (64), crop (largest square), dequantize, test_fraction (0.05), seed, max_pixels
    packed:DIR               dequantize (a directory from `eoflow-fast data pack`)

Splits, one vocabulary (``_splits.SPLIT_NAMES``; "eval" is a deprecated alias of "test"):
tables, folders and folder packs "train" | "test" | "all" (seeded held-out fraction);
CelebA and CelebA packs "train" | "valid" | "test" | "all" (the published partition); FA tables
"train" | "test" (independent samples). Ground-truth image data has no held-out split
(disentanglement_lib evaluates on freshly sampled factors): "train", "test" and "all" all give the
full factor product.

Datasets of path specs carry ``.fingerprint`` (:func:`data_fingerprint`) and ``.data_spec``: the
training engine records the fingerprint in a run's config and refuses to resume or evaluate the run
when the files changed (:func:`fingerprint_matches`).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings

from ._splits import canonical_split
from .dsprites import VARIANTS, DSprites, DSpritesNpz, DSpritesVariant
from .factor_analysis import FA_CONFIGS, factor_analysis
from .ground_truth import GroundTruthData
from .images import celeba, image_folder, list_image_folder
from .packed import PackedImages, read_index
from .tabular import csv_table, digits, wine
from .triangle import CorrelatedTriangle

GROUND_TRUTH_SPECS = ("dsprites", *(f"dsprites_{v}" for v in VARIANTS), "triangle")
PLAIN_SPECS = (*GROUND_TRUTH_SPECS, *FA_CONFIGS, "digits", "wine")
PATH_SPECS = ("csv", "celeba", "folder", "packed")


def _unknown(spec: str) -> ValueError:
    import difflib

    known = (*PLAIN_SPECS, *(p + ":PATH" for p in PATH_SPECS))
    near = difflib.get_close_matches(str(spec).split(":")[0], [k.split(":")[0] for k in known], n=1, cutoff=0.6)
    hint = f"did you mean {next(k for k in known if k.split(':')[0] == near[0])!r}? " if near else ""
    return ValueError(f"unknown dataset spec {spec!r}; {hint}expected one of {', '.join(known)}")


def get_ground_truth(spec: str, **kw):
    """GroundTruthData for ``dsprites*`` / ``triangle`` (kw: npz, background), or
    FactorAnalysisData for ``fa15`` / ``fa24`` / ``fa100`` (kw as FactorAnalysisData)."""
    if spec in FA_CONFIGS:
        return factor_analysis(spec, **kw)
    if spec == "triangle":
        if kw:
            raise TypeError(f"get_ground_truth('triangle'): unexpected arguments {sorted(kw)}")
        return CorrelatedTriangle()
    if spec in GROUND_TRUTH_SPECS:
        npz = kw.pop("npz", None)
        background = kw.pop("background", None)
        if kw:
            raise TypeError(f"get_ground_truth({spec!r}): unexpected arguments {sorted(kw)}")
        base = DSpritesNpz(npz) if npz is not None else DSprites()
        if spec == "dsprites":
            if background is not None:
                raise ValueError("get_ground_truth('dsprites'): background is only used by 'dsprites_scream'")
            return base
        return DSpritesVariant(spec.split("_", 1)[1], base, background)
    raise _unknown(spec)


GROUND_TRUTH_RULE = ("none held out: 'train', 'test' and 'all' are each the full factor product "
                     "(disentanglement_lib evaluates on freshly sampled factors)")


def get_dataset(spec: str, split: str = "train", **kw):
    """torch Dataset for ``spec`` (see module docstring): items float32 images (C, H, W) in [0, 1] or
    standardised rows (p,), or tuples ``(x, factors)`` when asked (with_factors / with_labels /
    with_attributes)."""
    split = canonical_split(split)
    if spec in GROUND_TRUTH_SPECS:
        if split not in ("train", "test", "all"):
            raise ValueError(f"get_dataset({spec!r}): split={split!r}, expected 'train', 'test' or 'all'")
        view = {k: kw.pop(k) for k in ("with_factors", "seed") if k in kw}
        data: GroundTruthData = get_ground_truth(spec, **kw)
        ds = data.torch_dataset(**view)
        ds.split_rule = GROUND_TRUTH_RULE
        return ds
    if spec in FA_CONFIGS:
        with_factors = kw.pop("with_factors", False)
        return factor_analysis(spec, **kw).torch_dataset(split, with_factors=with_factors)
    if spec == "digits":
        return digits(split, **kw)
    if spec == "wine":
        return wine(split, **kw)
    kind, sep, path = spec.partition(":")
    if not sep or kind not in PATH_SPECS or not path:
        raise _unknown(spec)
    build = {"csv": csv_table, "celeba": celeba, "folder": image_folder, "packed": PackedImages}[kind]
    dataset = build(path, split, **kw)
    dataset.fingerprint, dataset.data_spec = data_fingerprint(spec), spec
    return dataset


IMAGE_FILES_FORMAT = "files/2:"
"""Prefix of an image-folder fingerprint that covers the files' contents (older ones, without it,
covered names and sizes only)."""
_CONTENT_CACHE: dict[str, tuple[str, str]] = {}  # "kind:ABS_PATH" -> (names, sizes, mtimes; fingerprint)


def data_fingerprint(spec: str, contents: bool = True) -> str | None:
    """SHA-256 naming the files behind a path spec, so that a run can tell its data changed on disk:
    ``packed:DIR`` its index (every shard's BLAKE2b, the names, the partition), ``csv:PATH`` the
    file's bytes, ``folder:ROOT`` / ``celeba:ROOT`` every image's name, size and BLAKE2b-128 of its
    bytes (and CelebA's partition file), prefixed :data:`IMAGE_FILES_FORMAT`; ``contents=False``
    gives the older names-and-sizes form (no prefix) that runs recorded before. None for the
    procedural and built-in datasets, which the code defines. An image folder is hashed once per
    process while no file's name, size or modification time changes (the train and test splits
    share the pass)."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in PATH_SPECS:
        return None
    digest = hashlib.sha256(kind.encode())
    if kind == "packed":
        index = read_index(path)
        digest.update(json.dumps([index["shards"], index["names"], index["partition"]], sort_keys=True).encode())
        return digest.hexdigest()
    if kind == "csv":
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    root = os.path.join(path, "img_align_celeba") if kind == "celeba" else path
    files = [(name, os.path.join(root, name)) for name in list_image_folder(root)]
    if kind == "celeba":
        files.append(("list_eval_partition.txt", os.path.join(path, "list_eval_partition.txt")))
    if not contents:  # the older form: image names and sizes, then the partition file's bytes
        for name, file in files[:-1] if kind == "celeba" else files:
            digest.update(f"{name}\0{os.path.getsize(file)}\n".encode())
        if kind == "celeba":
            with open(files[-1][1], "rb") as fh:
                digest.update(fh.read())
        return digest.hexdigest()
    stats = [os.stat(file) for _, file in files]
    signature = repr([(name, st.st_size, st.st_mtime_ns) for (name, _), st in zip(files, stats)])
    key = f"{kind}:{os.path.abspath(path)}"
    if key in _CONTENT_CACHE and _CONTENT_CACHE[key][0] == signature:
        return _CONTENT_CACHE[key][1]
    for (name, file), st in zip(files, stats):
        with open(file, "rb") as fh:
            digest.update(f"{name}\0{st.st_size}\0{hashlib.blake2b(fh.read(), digest_size=16).hexdigest()}\n".encode())
    fingerprint = IMAGE_FILES_FORMAT + digest.hexdigest()
    _CONTENT_CACHE[key] = (signature, fingerprint)
    return fingerprint


def fingerprint_matches(dataset, recorded: str) -> bool:
    """Whether ``dataset``'s files are those a run recorded as ``recorded`` (its ``data_fingerprint``).
    A names-and-sizes fingerprint of an image folder, recorded before contents were hashed, is
    compared in its own form, with a RuntimeWarning that the contents cannot be checked."""
    current = getattr(dataset, "fingerprint", None)
    if current == recorded:
        return True
    spec = getattr(dataset, "data_spec", None)
    if current is None or spec is None or not current.startswith(IMAGE_FILES_FORMAT) or ":" in recorded:
        return False
    if data_fingerprint(spec, contents=False) != recorded:
        return False
    warnings.warn(f"{spec}: the run recorded the image names and sizes only (before file contents were "
                  f"fingerprinted); they match, but a change of an image's content at the same size cannot be "
                  f"detected for this run", RuntimeWarning, stacklevel=3)
    return True
