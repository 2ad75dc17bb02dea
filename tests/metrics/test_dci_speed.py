"""DCI's parallel per-factor fits give exactly the serial scores; the quick variant says so."""
import os

import numpy as np
import pytest

from eoflow_fast import metrics
from eoflow_fast.metrics.dci import QUICK_ESTIMATORS
from metric_fakes import GridData, identity_representation


def _data(seed=0, n=240, d=4):
    rs = np.random.RandomState(seed)
    factors = rs.randint(0, 3, size=(n, 3))
    codes = factors[:, [0, 1, 2, 0]] + 0.7 * rs.randn(n, d)
    return codes[:160], factors[:160], codes[160:], factors[160:]


def test_parallel_equals_serial_exactly():
    serial = metrics.dci(*_data(), random_state=11, n_jobs=1)
    parallel = metrics.dci(*_data(), random_state=11, n_jobs=2)
    np.testing.assert_array_equal(parallel["importance_matrix"], serial["importance_matrix"])
    for key in ("disentanglement", "completeness", "informativeness_train", "informativeness_test"):
        assert parallel[key] == serial[key]
    assert serial["variant"] == "default" and "deviation" not in serial
    assert 0.0 < serial["informativeness_test"] < 1.0  # a non-trivial fit, so equality means something


def test_quick_variant_states_its_deviation():
    quick = metrics.dci(*_data(), random_state=11, quick=True)
    default = metrics.dci(*_data(), random_state=11)
    assert quick["variant"] == "quick" and f"{QUICK_ESTIMATORS} boosting trees" in quick["deviation"]
    assert quick["informativeness_train"] != default["informativeness_train"]


def test_dataset_level_options_and_bad_n_jobs():
    out = metrics.evaluate(["dci"], GridData(), identity_representation, 0, dci={"num_train": 200, "num_test": 100,
                                                                                   "quick": True, "n_jobs": 1},
                           progress=False)
    assert out["dci"]["variant"] == "quick"
    with pytest.raises(ValueError, match="n_jobs must be an int >= 1 or -1"):
        metrics.dci(*_data(), n_jobs=0)


def test_parallel_fits_run_in_threads_largest_factor_first_and_come_back_in_factor_order(monkeypatch):
    """n_jobs=2: every fit runs in this process (threads, no worker start or re-import), the factor with
    the most classes is submitted first, and the importance matrix columns stay in factor order."""
    import os
    import threading

    import importlib

    dci_module = importlib.import_module("eoflow_fast.metrics.dci")  # the package exports the function dci

    calls = []

    def fake_fit(codes_train, labels_train, codes_test, labels_test, random_state, n_estimators):
        calls.append((os.getpid(), threading.get_ident(), int(labels_train.max()) + 1))
        assert codes_train.dtype == np.float32 and codes_train.flags.c_contiguous
        k = int(labels_train.max()) + 1
        return np.full(codes_train.shape[1], float(k)), k / 10.0, k / 100.0

    monkeypatch.setattr(dci_module, "_fit_factor", fake_fit)
    rs = np.random.RandomState(0)
    sizes = [2, 7, 3, 5]
    factors = np.stack([np.arange(60) % k for k in sizes], axis=1)
    codes = rs.randn(60, 3)
    importance, train_acc, test_acc = dci_module.importance_matrix_gbt(codes, factors, codes, factors, 5, n_jobs=2)
    assert [k for _, _, k in calls][:1] == [7]  # most classes first
    assert sorted(k for _, _, k in calls) == sorted(sizes)
    assert {pid for pid, _, _ in calls} == {os.getpid()}
    np.testing.assert_array_equal(importance[0], np.array(sizes, dtype=float))  # factor order kept
    assert train_acc == np.mean(sizes) / 10.0 and test_acc == np.mean(sizes) / 100.0


def test_worker_count():
    from eoflow_fast.metrics.dci import _workers

    assert _workers(3, 5) == 3 and _workers(8, 5) == 5 and _workers(1, 5) == 1
    assert _workers(-1, 5) == min(5, os.cpu_count() or 1) and _workers(-1, 1) == 1
