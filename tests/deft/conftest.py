"""Every test here runs on one torch thread (fixtures ``one_thread``, ``tc_op``: tests/conftest.py)."""
import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    yield
