"""Fixtures of the vae tests: one torch thread (tiny models; the CI cores are shared) and the
beta-TCVAE op (``ops.tc_decomposition``, or its reference backend until the fused op lands)."""
import pytest
import torch

from eoflow_fast import ops


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tc_op_or_reference():
    try:
        return ops.tc_decomposition
    except (ImportError, AttributeError):
        from eoflow_fast.reference.tc_decomposition import tc_decomposition

        def op(z, mu, logvar, n, *, estimator="mws", backend="auto"):
            return tc_decomposition(z, mu, logvar, n, estimator=estimator)
        return op


@pytest.fixture
def tc_op(monkeypatch):
    op = tc_op_or_reference()
    monkeypatch.setitem(vars(ops), "tc_decomposition", op)
    return op
