"""dSprites factors act as defined; variants keep factors; the npz loader reads the original layout."""
import os

import numpy as np
import pytest

from eoflow_fast.data import get_dataset, get_ground_truth
from eoflow_fast.data.dsprites import NPZ_NAME, ORIENTATIONS, SCALES, DSpritesNpz, procedural_scream_texture

D = get_ground_truth("dsprites")


def render(**kw):
    f = {"shape": 0, "scale": 5, "orientation": 0, "posX": 16, "posY": 16}
    f.update(kw)
    return D.sample_observations_from_factors(np.array([[f[n] for n in D.factor_names]]), None)[0, 0]


def moments(img):
    """(centroid col, centroid row, principal-axis angle in (x right, y up), in [0, pi))."""
    r, c = np.nonzero(img)
    x, y = c - c.mean(), -(r - r.mean())
    cov = np.cov(np.stack([x, y]))
    w, v = np.linalg.eigh(cov)
    major = v[:, 1]
    return c.mean(), r.mean(), np.mod(np.arctan2(major[1], major[0]), np.pi)


def test_images_are_binary():
    x = D.sample_observations_from_factors(D.sample_factors(64, np.random.RandomState(0)), None)
    assert set(np.unique(x)) <= {0.0, 1.0}


def test_square_area_is_closed_form_and_scale_grows_every_shape():
    # square of side 20*scale px centred on a pixel corner covers exactly (20*scale)^2 pixel centres
    np.testing.assert_array_equal([render(scale=j).sum() for j in range(6)], (20 * SCALES) ** 2)
    # ellipse area -> pi * (10 s) * (5 s) within the pixel discretisation
    ellipse = np.array([render(shape=1, scale=j).sum() for j in range(6)])
    np.testing.assert_allclose(ellipse, np.pi * 50 * SCALES ** 2, rtol=0.12)
    for shape in range(3):
        for orient in (0, 7, 23):
            areas = [render(shape=shape, scale=j, orientation=orient).sum() for j in range(6)]
            assert np.all(np.diff(areas) > 0), (shape, orient, areas)


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_positions_translate_the_centroid_by_one_pixel_per_step(shape):
    c0, r0, _ = moments(render(shape=shape, orientation=9, posX=0, posY=0))
    for k in range(32):
        cx, rx, _ = moments(render(shape=shape, orientation=9, posX=k, posY=0))
        cy, ry, _ = moments(render(shape=shape, orientation=9, posX=0, posY=k))
        np.testing.assert_allclose([cx - c0, rx - r0], [k, 0], atol=1e-9)
        np.testing.assert_allclose([cy - c0, ry - r0], [0, k], atol=1e-9)


def test_orientation_rotates_the_second_moments():
    # the ellipse's major axis (second-moment eigenvector) turns with theta, modulo pi
    for k in range(40):
        _, _, angle = moments(render(shape=1, orientation=k))
        diff = np.angle(np.exp(2j * (angle - ORIENTATIONS[k]))) / 2
        assert abs(diff) < np.deg2rad(3), (k, np.rad2deg(angle), np.rad2deg(ORIENTATIONS[k]))


def test_shapes_differ_and_have_their_symmetries():
    imgs = [render(shape=s, orientation=3) for s in range(3)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.abs(imgs[a] - imgs[b]).sum() > 30
    # square: quarter-turn symmetric; ellipse: half-turn symmetric; heart: not half-turn symmetric
    assert np.abs(render(shape=0, orientation=3) - render(shape=0, orientation=13)).sum() <= 2
    assert np.abs(render(shape=1, orientation=3) - render(shape=1, orientation=23)).sum() <= 2
    assert np.abs(render(shape=2, orientation=3) - render(shape=2, orientation=23)).sum() > 40
    assert np.abs(render(shape=1, orientation=3) - render(shape=1, orientation=13)).sum() > 40


def test_variants_keep_factors_and_follow_their_formulas():
    rng = np.random.RandomState(11)
    f = D.sample_factors(16, rng)
    sprite = D.sample_observations_from_factors(f, None)  # (16, 1, 64, 64)
    on = np.broadcast_to(sprite == 1, (16, 3, 64, 64))

    color = get_ground_truth("dsprites_color")
    assert color.factor_sizes == D.factor_sizes and color.factor_names == D.factor_names
    x = color.sample_observations_from_factors(f, np.random.RandomState(1))
    c = np.random.RandomState(1).uniform(0.5, 1.0, size=(16, 3)).astype(np.float32)
    np.testing.assert_array_equal(x, sprite * c[:, :, None, None])

    x = get_ground_truth("dsprites_noisy").sample_observations_from_factors(f, np.random.RandomState(2))
    e = np.random.RandomState(2).uniform(0.0, 1.0, size=(16, 3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(x, np.where(on, 1.0, e))

    scream = get_ground_truth("dsprites_scream")
    x = scream.sample_observations_from_factors(f, np.random.RandomState(3))
    r = np.random.RandomState(3)
    tex = procedural_scream_texture()
    rows, cols = r.randint(0, tex.shape[0] - 64, 16), r.randint(0, tex.shape[1] - 64, 16)
    tint = r.uniform(0.0, 1.0, size=(16, 3)).astype(np.float32)
    for i in range(16):
        bg = (tex[rows[i]:rows[i] + 64, cols[i]:cols[i] + 64].transpose(2, 0, 1) + tint[i, :, None, None]) / 2
        np.testing.assert_allclose(x[i], np.where(on[i], 1 - bg, bg), atol=1e-6)
    # sampling through the variant returns factors of the same product space
    fv, xv = scream.sample(4, np.random.RandomState(0))
    assert fv.shape == (4, 5) and xv.shape == (4, 3, 64, 64)


def test_scream_background_from_user_file(tmp_path):
    from PIL import Image

    path = tmp_path / "scream.jpg"
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (548, 438, 3), dtype=np.uint8)).save(path)
    data = get_ground_truth("dsprites_scream", background=str(path))
    assert data.background.shape == (274, 219, 3)  # PIL thumbnail((350, 274)) keeps the aspect ratio
    x = data.sample_observations(3, np.random.RandomState(0))
    assert x.shape == (3, 3, 64, 64) and 0.0 <= x.min() and x.max() <= 1.0
    with pytest.raises(FileNotFoundError, match="background image"):
        get_ground_truth("dsprites_scream", background=str(tmp_path / "nope.jpg"))


def write_npz(path, sizes=(3, 2, 4, 3, 2)):
    """A small file in the original layout: C-order product, colour column constant 0."""
    n = int(np.prod(sizes))
    grids = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(n, -1)
    classes = np.concatenate([np.zeros((n, 1), np.int64), grids], 1)
    values = classes.astype(np.float64) / 7.0
    # the procedural renderer's images for these factors, as uint8 like the original file
    imgs = D.sample_observations_from_factors(grids, None)[:, 0].astype(np.uint8)
    np.savez(path, imgs=imgs, latents_classes=classes, latents_values=values)
    return grids, imgs


def test_npz_loader_reads_the_original_layout(tmp_path):
    grids, imgs = write_npz(tmp_path / NPZ_NAME)
    data = get_ground_truth("dsprites", npz=str(tmp_path))  # a directory holding the file works too
    assert data.factor_sizes == (3, 2, 4, 3, 2) and data.factor_names == D.factor_names
    rng = np.random.RandomState(0)
    f = data.sample_factors(50, rng)
    x = data.sample_observations_from_factors(f, rng)
    idx = [np.nonzero((grids == row).all(1))[0][0] for row in f]
    np.testing.assert_array_equal(x[:, 0], imgs[idx].astype(np.float32))
    np.testing.assert_array_equal(data.factors_to_index(f), idx)
    colored = get_ground_truth("dsprites_color", npz=str(tmp_path / NPZ_NAME))
    assert colored.sample_observations_from_factors(f, rng).shape == (50, 3, 64, 64)
    assert len(get_dataset("dsprites", npz=str(tmp_path))) == len(imgs)


def test_npz_loader_errors_name_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dsprites_ndarray_co1sh3sc6or40x32y32_64x64\.npz.*latents_classes"):
        DSpritesNpz(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "bad.npz", imgs=np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"lacks arrays \['latents_classes', 'latents_values'\]"):
        DSpritesNpz(str(tmp_path / "bad.npz"))
    grids, imgs = write_npz(tmp_path / "shuffled.npz")
    with np.load(tmp_path / "shuffled.npz") as z:
        perm = np.random.RandomState(0).permutation(len(imgs))
        np.savez(tmp_path / "shuffled.npz", imgs=z["imgs"][perm], latents_classes=z["latents_classes"][perm],
                 latents_values=z["latents_values"][perm])
    with pytest.raises(ValueError, match="not the C-order product"):
        DSpritesNpz(os.path.join(tmp_path, "shuffled.npz"))
