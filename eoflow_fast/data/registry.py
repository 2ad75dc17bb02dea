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

Datasets of path specs carry ``.fingerprint`` (:func:`data_fingerprint`): the training engine
records it in a run's config and refuses to resume or evaluate the run when the files changed.
"""
from __future__ import annotations

import hashlib
import json
import os

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
    dataset.fingerprint = data_fingerprint(spec)
    return dataset


def data_fingerprint(spec: str) -> str | None:
    """SHA-256 naming the files behind a path spec, so that a run can tell its data changed on disk:
    ``packed:DIR`` its index (every shard's BLAKE2b, the names, the partition), ``csv:PATH`` the
    file's bytes, ``folder:ROOT`` / ``celeba:ROOT`` the image names and sizes (and CelebA's partition
    file). None for the procedural and built-in datasets, which the code defines."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in PATH_SPECS:
        return None
    digest = hashlib.sha256(kind.encode())
    if kind == "packed":
        index = read_index(path)
        digest.update(json.dumps([index["shards"], index["names"], index["partition"]], sort_keys=True).encode())
    elif kind == "csv":
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    else:
        root = os.path.join(path, "img_align_celeba") if kind == "celeba" else path
        for name in list_image_folder(root):
            digest.update(f"{name}\0{os.path.getsize(os.path.join(root, name))}\n".encode())
        if kind == "celeba":
            with open(os.path.join(path, "list_eval_partition.txt"), "rb") as fh:
                digest.update(fh.read())
    return digest.hexdigest()
