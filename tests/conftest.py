"""Shared test set-up.

Without a GPU, Triton kernels run under the interpreter: TRITON_INTERPRET=1 must be set before
triton is imported, so it is set here, first. Tests marked ``cuda`` are skipped without a GPU.
"""
import os
import socket

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


@pytest.fixture
def one_thread():
    """One torch intra-op thread for the test (tiny models; the CI cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tc_op():
    """The fused beta-TCVAE estimator under test (``ops.tc_decomposition``)."""
    from eoflow_fast import ops

    return ops.tc_decomposition


@pytest.fixture
def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (a gloo / torchrun rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_ranks(free_port):
    """``two_ranks(worker) -> [out of rank 0, out of rank 1]``: runs ``worker(rank, port, out)`` in two
    spawned processes (a module-level function, so it pickles); each rank stores its result in
    ``out[rank]`` (a manager dict)."""
    import torch.multiprocessing as mp

    def run(worker):
        with mp.Manager() as manager:
            out = manager.dict()
            mp.spawn(worker, args=(free_port, out), nprocs=2, join=True)
            return [out[0], out[1]]

    return run


@pytest.fixture
def random_pngs():
    """``random_pngs(folder, names, (h, w), seed=0) -> folder``: writes one random RGB PNG of h x w
    pixels per name (numpy RandomState(seed), in the order given), making the folder and parents."""
    import numpy as np
    from PIL import Image

    def write(folder, names, size, seed=0):
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.RandomState(seed)
        for name in names:
            Image.fromarray(rng.randint(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
        return folder

    return write


@pytest.fixture(scope="session")
def tiny_eoflow_run(tmp_path_factory):
    """A 1-step digits EOFlow run folder (mlp, 1 block, hidden 8, core size 2), shared by the tests
    that only read it: a test using it must leave the folder as it found it."""
    from eoflow_fast.cli.main import main

    folder = tmp_path_factory.mktemp("tiny_eoflow") / "run"
    assert main(["train", "eoflow", "--steps", "1", "--batch-size", "32", "--blocks", "1", "--hidden", "8",
                 "--eval-samples", "16", "--entropy-samples", "8", "--core-sizes", "2", "--no-progress",
                 "--run-dir", str(folder)]) == 0
    return folder
