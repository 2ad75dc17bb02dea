"""Shared test set-up.

Without a GPU, Triton kernels run under the interpreter: TRITON_INTERPRET=1 must be set before
triton is imported, so it is set here, first. Tests marked ``cuda`` are skipped without a GPU.
"""
import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def gen():
    """A fresh torch.Generator (CPU) per test: new random inputs every run; the seed is printed
    (pytest shows it with a failure) so a failing draw can be replayed."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"generator seed: {seed}")
    return torch.Generator().manual_seed(seed)
