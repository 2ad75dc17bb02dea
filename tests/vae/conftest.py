"""Fixtures of the vae tests: one torch thread (tiny models; the CI cores are shared) and the
beta-TCVAE op (``ops.tc_decomposition``)."""
import pytest
import torch

from eoflow_fast import ops


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tc_op():
    return ops.tc_decomposition
