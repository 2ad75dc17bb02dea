"""Fixtures of the metric tests: a fresh numpy RandomState and the fake ground-truth data."""
import os

import numpy as np
import pytest

from metric_fakes import GridData


@pytest.fixture
def grid_data():
    return GridData()


@pytest.fixture
def rs():
    """A fresh numpy RandomState per test; its seed is printed (shown when the test fails)."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"numpy seed: {seed}")
    return np.random.RandomState(seed)
