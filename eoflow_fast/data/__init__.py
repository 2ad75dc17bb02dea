"""Datasets for eoflow_fast: ground-truth factor data generated from its definition, shipped real data,
and the user's own images and tables. Nothing is downloaded.

- ``ground_truth``: disentanglement_lib's ``GroundTruthData`` interface, index bijection, torch view.
- ``dsprites``: procedural dSprites, Color / Noisy / Scream variants, loader for the original npz.
- ``triangle``: DEFT's correlated-triangle toy.   ``factor_analysis``: FA15 / FA24 / FA100.
- ``tabular``: scikit-learn digits and wine, CSV tables.   ``images``: CelebA layout, image folders.
- ``packed``: uint8 memory-mapped shards (``eoflow-fast data pack``, ``data verify``).   ``registry``: spec strings.
- ``_splits``: the one split vocabulary ``SPLIT_NAMES`` ("train", "valid", "test", "all").
"""
from ._splits import SPLIT_NAMES, canonical_split, split_arg
from .ground_truth import GroundTruthData, GroundTruthDataset
from .registry import get_dataset, get_ground_truth

__all__ = ["SPLIT_NAMES", "GroundTruthData", "GroundTruthDataset", "canonical_split", "get_dataset",
           "get_ground_truth", "split_arg"]
