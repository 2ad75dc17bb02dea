"""Ground-truth interface: index bijection, factor checks, torch view (determinism, batching)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from eoflow_fast.data import get_ground_truth


@pytest.mark.parametrize("spec", ["dsprites", "dsprites_scream", "triangle"])
def test_index_factor_bijection_round_trips(spec):
    data = get_ground_truth(spec)
    rng = np.random.RandomState(0)
    total = int(np.prod(data.factor_sizes))
    idx = np.concatenate([[0, total - 1], rng.randint(0, total, size=500)])
    f = data.index_to_factors(idx)
    assert f.shape == (len(idx), data.num_factors)
    np.testing.assert_array_equal(data.factors_to_index(f), idx)
    g = np.stack([rng.randint(0, s, size=300) for s in data.factor_sizes], 1)
    np.testing.assert_array_equal(data.index_to_factors(data.factors_to_index(g)), g)


def test_index_is_c_order_with_last_factor_fastest():
    data = get_ground_truth("dsprites")
    # sizes (3, 6, 40, 32, 32): strides (245760, 40960, 1024, 32, 1)
    expected = 245760 + 2 * 40960 + 3 * 1024 + 4 * 32 + 5
    np.testing.assert_array_equal(data.factors_to_index([[1, 2, 3, 4, 5]]), [expected])
    assert data.num_items == 737_280


def test_bad_factors_name_the_factor():
    data = get_ground_truth("dsprites")
    with pytest.raises(ValueError, match=r"factors\[:, 2\] \(orientation\)"):
        data.factors_to_index([[0, 0, 40, 0, 0]])
    with pytest.raises(ValueError, match=r"expected \(n, 5\)"):
        data.sample_observations_from_factors(np.zeros((2, 4), np.int64), np.random.RandomState(0))


def test_sample_factors_uniform_and_sample_consistent():
    data = get_ground_truth("dsprites")
    f, x = data.sample(2000, np.random.RandomState(3))
    assert f.dtype == np.int64 and x.dtype == np.float32 and x.shape == (2000, 1, 64, 64)
    for k, s in enumerate(data.factor_sizes):
        assert f[:, k].min() == 0 and f[:, k].max() == s - 1
    np.testing.assert_array_equal(x, data.sample_observations_from_factors(f, np.random.RandomState(9)))


def test_torch_view_items_batches_and_factors():
    data = get_ground_truth("dsprites")
    ds = data.torch_dataset(with_factors=True)
    x, f = ds[123_456]
    assert x.dtype == torch.float32 and x.shape == (1, 64, 64) and f.dtype == torch.int64
    np.testing.assert_array_equal(f.numpy(), data.index_to_factors([123_456])[0])
    np.testing.assert_array_equal(x.numpy(), data.sample_observations_from_factors(f.numpy()[None], None)[0])
    xb, fb = next(iter(DataLoader(ds, batch_size=8, shuffle=False)))
    assert xb.shape == (8, 1, 64, 64)
    np.testing.assert_array_equal(fb.numpy(), data.index_to_factors(np.arange(8)))


def test_random_variant_items_are_deterministic_per_seed_and_item():
    ds = get_ground_truth("dsprites_noisy").torch_dataset(seed=5)
    batch = ds.__getitems__([7, 1000, 7])
    assert torch.equal(batch[0], batch[2])
    assert torch.equal(batch[1], ds[1000])
    other = get_ground_truth("dsprites_noisy").torch_dataset(seed=6)
    assert not torch.equal(other[7], batch[0])


def test_item_random_rows_depend_only_on_seed_and_item_and_are_uniform():
    from scipy import stats

    from eoflow_fast.data._random import ItemRandom

    a = ItemRandom(4, [3, 7, 11])
    ua, ia = a.uniform(0.5, 1.0, size=(3, 2000)), a.randint(0, 10, size=(3, 500))
    b = ItemRandom(4, [7])
    np.testing.assert_array_equal(b.uniform(0.5, 1.0, size=(1, 2000))[0], ua[1])
    np.testing.assert_array_equal(b.randint(0, 10, size=(1, 500))[0], ia[1])
    assert not np.array_equal(ItemRandom(5, [7]).uniform(0.5, 1.0, size=(1, 2000))[0], ua[1])
    assert ua.min() >= 0.5 and ua.max() < 1.0 and ia.min() == 0 and ia.max() == 9
    assert stats.kstest(ua.ravel(), stats.uniform(0.5, 0.5).cdf).pvalue > 1e-4
    counts = np.bincount(ia.ravel(), minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-4
    # rows of different items are uncorrelated
    assert abs(np.corrcoef(ua[0], ua[2])[0, 1]) < 0.1
