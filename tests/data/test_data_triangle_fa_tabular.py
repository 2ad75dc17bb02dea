"""Correlated triangle, FA tables, shipped tabular data and CSV tables."""
import numpy as np
import pytest
import torch

from eoflow_fast.data import get_dataset, get_ground_truth
from eoflow_fast.data.factor_analysis import factor_analysis
from eoflow_fast.data._splits import split_rows


def test_triangle_points_at_the_canvas_centre():
    data = get_ground_truth("triangle")
    f = data.item_factors(np.arange(1024))
    x = data.sample_observations_from_factors(f, None)[:, 0]
    assert len(data.torch_dataset()) == 1024 and set(np.unique(x)) == {0.0, 1.0}
    checked = 0
    for (px, py, orient), img in zip(f, x):
        assert orient == int(np.floor(np.mod(np.arctan2(py - 16, px - 16), 2 * np.pi) / (2 * np.pi / 32))) % 32
        r, c = np.nonzero(img)
        # the tile centre sits at pixel corner (16 + posX, 16 + posY); the centroid of a triangle lies
        # 5/3 px behind the centre, opposite the apex, so (centre - centroid) points along the apex
        apex = np.array([16 + px - (c.mean() + 0.5), 16 + py - (r.mean() + 0.5)])
        to_centre = np.array([32 - (16 + px), 32 - (16 + py)])
        if np.hypot(*to_centre) >= 4:
            cos = apex @ to_centre / np.linalg.norm(apex) / np.linalg.norm(to_centre)
            assert cos > np.cos(np.deg2rad(12)), (px, py)
            checked += 1
    assert checked > 950


def test_triangle_posx_posy_independent_orientation_determined():
    data = get_ground_truth("triangle")
    f = data.sample_factors(20000, np.random.RandomState(0))
    assert abs(np.corrcoef(f[:, 0], f[:, 1])[0, 1]) < 0.03
    np.testing.assert_array_equal(f, data.item_factors(f[:, 0] * 32 + f[:, 1]))


@pytest.mark.parametrize("name,p,q", [("fa15", 15, 3), ("fa24", 24, 4), ("fa100", 100, 10)])
def test_fa_recovers_block_structure_by_correlation(name, p, q):
    data = factor_analysis(name, seed=3)
    assert data.loadings.shape == (p, q) and (data.support.sum(1) == 1).all()
    f, x = data.table("train")
    corr = np.corrcoef(x, rowvar=False)
    np.testing.assert_allclose(corr, data.correlation, atol=0.05)
    np.testing.assert_allclose(np.diag(data.correlation), 1.0, atol=1e-12)
    # the factor each feature correlates with most is its block's factor
    xf = np.corrcoef(np.concatenate([x, f], 1), rowvar=False)[:p, p:]
    np.testing.assert_array_equal(np.abs(xf).argmax(1), data.feature_to_factor)
    # within-block |corr| exceeds every cross-block |corr|
    same = data.feature_to_factor[:, None] == data.feature_to_factor[None, :]
    off = ~np.eye(p, dtype=bool)
    assert np.abs(corr[same & off]).min() > np.abs(corr[~same]).max()


def test_fa_is_seedable_and_splits_differ():
    a, b = factor_analysis("fa24", seed=1), factor_analysis("fa24", seed=1)
    np.testing.assert_array_equal(a.loadings, b.loadings)
    np.testing.assert_array_equal(a.table("test")[1], b.table("test")[1])
    assert not np.array_equal(a.loadings, factor_analysis("fa24", seed=2).loadings)
    assert not np.array_equal(a.table("train")[1][:100], a.table("test")[1][:100])
    ds = get_dataset("fa24", split="test", seed=1, with_factors=True)
    x, f = ds[5]
    assert x.shape == (24,) and f.shape == (4,) and len(ds) == 2000
    np.testing.assert_array_equal(x.numpy(), a.table("test")[1][5])


def test_fa_uniform_factors_keep_the_loadings_and_the_correlation():
    g, u = factor_analysis("fa15"), factor_analysis("fa15", factors="uniform", n_train=40_000)
    np.testing.assert_array_equal(g.loadings, u.loadings)
    f, x = u.table("train")
    assert np.abs(f).max() <= np.sqrt(3.0) and np.abs(np.abs(f).max() - np.sqrt(3.0)) < 1e-2  # bounded: uniform
    np.testing.assert_allclose(f.var(0), 1.0, atol=0.03)
    np.testing.assert_allclose(np.corrcoef(x.T), u.correlation, atol=0.03)
    excess_kurtosis = (f ** 4).mean(0) / f.var(0) ** 2 - 3.0
    np.testing.assert_allclose(excess_kurtosis, -1.2, atol=0.05)  # uniform's; a Gaussian's is 0
    with pytest.raises(ValueError, match="factors"):
        factor_analysis("fa15", factors="laplace")


def test_digits_are_sklearn_digits_over_16_and_dequantised_within_their_bin():
    from sklearn.datasets import load_digits

    ref = load_digits().images / 16.0
    ds = get_dataset("digits", split="all")
    assert len(ds) == 1797 and ds[0].shape == (1, 8, 8) and ds[0].dtype == torch.float32
    np.testing.assert_allclose(ds.values.numpy()[:, 0], ref, atol=1e-7)
    deq = get_dataset("digits", split="all", dequantize=True)
    x = torch.stack([deq[i] for i in range(50)]).numpy()[:, 0]
    k = np.rint(ref[:50] * 16)
    assert (x >= k / 17).all() and (x < (k + 1) / 17).all()
    train, test = get_dataset("digits", "train", with_labels=True), get_dataset("digits", "test")
    assert len(train) + len(test) == 1797 and train[0][1].dtype == torch.int64


def test_wine_is_standardised_on_train_rows_with_column_names():
    from sklearn.datasets import load_wine

    train, test = get_dataset("wine"), get_dataset("wine", split="test")
    assert len(train) + len(test) == 178 and train.columns == tuple(load_wine().feature_names)
    np.testing.assert_allclose(train.values.numpy().mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(train.values.numpy().std(0), 1, atol=1e-5)


def test_csv_loader_standardises_keeps_names_and_drops_text(tmp_path):
    rng = np.random.RandomState(0)
    table = rng.normal(size=(40, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]
    lines = ["name;fixed acidity;alcohol;quality"]
    lines += [f"p{i};{a};{b};{c}" for i, (a, b, c) in enumerate(table)]
    lines.insert(5, "p_missing;1.0;;3.0")  # a row with an empty numeric cell is removed
    path = tmp_path / "winequality-white.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"left out 1 of 41 rows with a missing value \(lines \[6\]\)"):
        ds = get_dataset(f"csv:{path}", split="all", drop=["quality"])
    assert ds.columns == ("fixed acidity", "alcohol") and ds.dropped == ["name"] and len(ds) == 40
    train_rows = split_rows(40, "train")  # statistics come from the (seeded) training rows only
    assert len(train_rows) == 32
    ref = (table[:, :2] - table[train_rows, :2].mean(0)) / table[train_rows, :2].std(0)
    np.testing.assert_allclose(ds.values.numpy(), ref, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="header row"):
        get_dataset(f"csv:{tmp_path / 'nope.csv'}")
    with pytest.raises(ValueError, match=r"columns \['sugar'\] not in the header"):
        get_dataset(f"csv:{path}", columns=["sugar"])


def test_unknown_spec_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset spec 'mnist'.*dsprites_scream.*celeba:PATH"):
        get_dataset("mnist")


@pytest.mark.parametrize("spec,shape", [("dsprites", (1, 64, 64)), ("dsprites_color", (3, 64, 64)),
                                        ("dsprites_noisy", (3, 64, 64)), ("dsprites_scream", (3, 64, 64)),
                                        ("triangle", (1, 64, 64)), ("fa15", (15,)), ("fa100", (100,)),
                                        ("digits", (1, 8, 8)), ("wine", (13,))])
def test_every_plain_spec_gives_float32_items_and_test_split(spec, shape):
    for split in ("train", "test"):
        x = get_dataset(spec, split)[0]
        assert x.dtype == torch.float32 and tuple(x.shape) == shape
        if len(shape) == 3:
            assert 0.0 <= x.min() and x.max() <= 1.0
