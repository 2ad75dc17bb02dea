"""Engine tests: one intra-op thread (the tiny models here lose time to thread contention on a
shared machine, and single-threaded CPU math is bitwise reproducible across processes)."""
import os
import sys

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def subprocess_env():
    """Environment for child processes running eoflow_fast: one thread, the repo importable."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def python():
    return sys.executable
