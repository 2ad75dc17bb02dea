"""DCI's parallel per-factor fits give exactly the serial scores; the quick variant says so."""
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
