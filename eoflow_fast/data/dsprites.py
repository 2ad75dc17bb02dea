"""dSprites, rendered procedurally; its Color / Noisy / Scream variants; a loader for the original file.

Factors (disentanglement_lib ``dsprites_full``; the constant colour factor is left out):

    shape        3   square, ellipse, heart
    scale        6   linspace(0.5, 1, 6)
    orientation 40   2*pi*k/40, k = 0..39 (in [0, 2*pi); the original file repeats 0 as 2*pi)
    posX        32   linspace(0, 1, 32), moves the sprite right
    posY        32   linspace(0, 1, 32), moves the sprite down (image rows)

737,280 binary 64x64 images, observation shape (1, 64, 64). Geometry [INFERRED; the original
renderer is not published, so images match dSprites in kind, not pixel for pixel]:
- The sprite centre is the pixel corner ``(16 + 31*posX, 16 + 31*posY)`` (column, row): positions
  step one pixel, so every image is a cached 32x32 tile pasted at an integer offset (exact).
- In sprite coordinates ``(u, v) = R(-theta) (dx, dy) / (10 * scale)`` (pixels, y up, theta
  counter-clockwise) a pixel centre is inside when
  square ``max(|u|, |v|) <= 1`` (side 20*scale px), ellipse ``u^2 + (v/0.5)^2 <= 1``,
  heart ``(a^2 + b^2 - 1)^3 - a^2 b^3 <= 0`` with ``a = 1.14 u, b = 1.14 v + 0.118`` (lobes up,
  centred in its bounding box).
All 720 tiles (shape x scale x orientation) are built once per process (~1 ms) and shared.

Variants (disentanglement_lib ``color_dsprites`` / ``noisy_dsprites`` / ``scream_dsprites``), 3 channels,
factors unchanged:
- color:  ``x = sprite * c`` with one colour ``c ~ U(0.5, 1)^3`` per image; black background.
- noisy:  ``x = min(sprite + e, 1)`` with ``e ~ U(0, 1)`` i.i.d. per pixel and channel.
- scream: background ``b = (crop + u) / 2``, crop a uniformly placed 64x64 window of the background
  image (offsets ``U{0..H-65}``, ``U{0..W-65}``), ``u ~ U(0, 1)^3`` per image; at sprite pixels
  ``x = 1 - b``. The background is the user's image file (``background=PATH``, e.g. ``scream.jpg``;
  PIL ``thumbnail((350, 274))`` then /255, as disentanglement_lib) or, when none is given, a
  deterministic procedural texture (:func:`procedural_scream_texture`; not the painting).
"""
from __future__ import annotations

import functools
import os

import numpy as np

from ._raster import paste_tiles, rotate_to_local, tile_offsets
from .ground_truth import GroundTruthData

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = 2 * np.pi * np.arange(40) / 40
POSITIONS = np.linspace(0.0, 1.0, 32)
CANVAS = 64
TILE = 32
HALF_EXTENT = 10.0  # pixels per unit of sprite coordinates at scale 1
NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if shape == "ellipse":
        return u ** 2 + (v / 0.5) ** 2 <= 1.0
    a, b = 1.14 * u, 1.14 * v + 0.118
    return (a ** 2 + b ** 2 - 1.0) ** 3 - a ** 2 * b ** 3 <= 0.0


@functools.lru_cache(maxsize=1)
def sprite_tiles() -> np.ndarray:
    """uint8 (3*6*40, 32, 32) binary tiles, tile id ``(shape*6 + scale)*40 + orientation``."""
    dx, dy = tile_offsets(TILE)
    u, v = rotate_to_local(dx, dy, ORIENTATIONS)  # (40, 32, 32) at unit scale
    tiles = np.empty((len(SHAPES), len(SCALES), len(ORIENTATIONS), TILE, TILE), dtype=np.uint8)
    for i, shape in enumerate(SHAPES):
        for j, s in enumerate(SCALES):
            tiles[i, j] = _inside(shape, u / (HALF_EXTENT * s), v / (HALF_EXTENT * s))
    tiles.flags.writeable = False
    return tiles.reshape(-1, TILE, TILE)


class DSprites(GroundTruthData):
    """Procedural binary dSprites (see the module docstring); deterministic, ``rng`` unused."""

    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    observation_shape = (1, CANVAS, CANVAS)

    def __init__(self):
        self._tiles = sprite_tiles()

    def _observe(self, factors: np.ndarray, draws=None) -> np.ndarray:
        shape, scale, orient, px, py = factors.T
        tiles = self._tiles[(shape * len(SCALES) + scale) * len(ORIENTATIONS) + orient]
        return paste_tiles(tiles, rows=py, cols=px, height=CANVAS, width=CANVAS)[:, None]


class DSpritesNpz(GroundTruthData):
    """The original dSprites file (or any file in its layout), same interface as :class:`DSprites`.

    Layout: ``imgs`` uint8 (N, 64, 64) in {0, 1}; ``latents_classes`` int (N, 6) with columns
    (color, shape, scale, orientation, posX, posY); ``latents_values`` float (N, 6). Images are stored
    in C order over the factor product, so ``imgs[factors_to_index(f)]`` is the image of ``f``.
    Factor sizes are read from ``latents_classes`` (max + 1), so a smaller file in the same layout
    loads too; the colour column must be constant (it is not a factor).
    """

    factor_names = FACTOR_NAMES
    observation_shape = (1, CANVAS, CANVAS)
    expected_layout = (f"the original dSprites file {NPZ_NAME} (np.savez with arrays imgs uint8 (N, 64, 64), "
                       "latents_classes (N, 6) and latents_values (N, 6); columns color, shape, scale, "
                       "orientation, posX, posY; rows in C order over the factors)")

    def __init__(self, path: str):
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, NPZ_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"DSpritesNpz: no file at {path!r}; expected {self.expected_layout}")
        with np.load(path) as npz:
            missing = {"imgs", "latents_classes", "latents_values"} - set(npz.files)
            if missing:
                raise ValueError(f"DSpritesNpz: {path!r} lacks arrays {sorted(missing)}; "
                                 f"expected {self.expected_layout}")
            imgs, classes = npz["imgs"], np.asarray(npz["latents_classes"], dtype=np.int64)
            self.latents_values = np.asarray(npz["latents_values"], dtype=np.float64)
        if imgs.ndim != 3 or imgs.shape[1:] != (CANVAS, CANVAS) or classes.shape != (len(imgs), 6):
            raise ValueError(f"DSpritesNpz: {path!r} has imgs {imgs.shape} and latents_classes {classes.shape}; "
                             f"expected {self.expected_layout}")
        if (classes[:, 0] != classes[0, 0]).any():
            raise ValueError(f"DSpritesNpz: {path!r} has more than one colour class; expected {self.expected_layout}")
        self.factor_sizes = tuple(int(m) + 1 for m in classes[:, 1:].max(0))
        in_order = len(imgs) == self.num_items and np.array_equal(classes[:, 1:],
                                                                  self.index_to_factors(np.arange(len(imgs))))
        if not in_order:
            raise ValueError(f"DSpritesNpz: rows of {path!r} are not the C-order product of factor sizes "
                             f"{self.factor_sizes}; expected {self.expected_layout}")
        self.imgs = imgs

    def _observe(self, factors: np.ndarray, draws=None) -> np.ndarray:
        return self.imgs[factors @ self._strides()][:, None].astype(np.float32)


@functools.lru_cache(maxsize=1)
def procedural_scream_texture() -> np.ndarray:
    """Deterministic float32 (274, 219, 3) texture in [0, 1] standing in for ``scream.jpg``
    (the painting's thumbnail size): swirling bands around a vortex, per channel
    ``0.5 + 0.35 sin(w_c r + 3 sin(2 phi + r/40) + p_c) + 0.15 sin(x/17 + c) sin(y/23 - c)``,
    with ``(r, phi)`` polar coordinates about pixel (120, 150). No randomness, no file."""
    y, x = np.mgrid[0:274, 0:219].astype(np.float64)
    r = np.hypot(x - 120.0, y - 150.0)
    phi = np.arctan2(y - 150.0, x - 120.0)
    chans = []
    for c, (w, p) in enumerate([(0.11, 0.0), (0.08, 2.0), (0.05, 4.0)]):
        chans.append(0.5 + 0.35 * np.sin(w * r + 3 * np.sin(2 * phi + r / 40) + p)
                     + 0.15 * np.sin(x / 17 + c) * np.sin(y / 23 - c))
    return np.clip(np.stack(chans, -1), 0.0, 1.0).astype(np.float32)


def load_background(path: str) -> np.ndarray:
    """float32 (H, W, 3) in [0, 1]: the image at ``path``, PIL ``thumbnail((350, 274))``, /255."""
    from PIL import Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"dsprites_scream: background image {path!r} not found "
                                "(expected an image file such as scream.jpg, or background=None for the "
                                "procedural texture)")
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((350, 274))
        bg = np.asarray(im, dtype=np.float32) / 255.0
    if bg.shape[0] < CANVAS + 1 or bg.shape[1] < CANVAS + 1:
        raise ValueError(f"dsprites_scream: background {path!r} is {bg.shape[:2]} after thumbnail; needs > 64x64")
    return bg


VARIANTS = ("color", "noisy", "scream")


class DSpritesVariant(GroundTruthData):
    """Color / Noisy / Scream dSprites over a binary ``base`` (procedural or npz); see module docstring.
    Observation shape (3, 64, 64); factors, sizes and the index bijection are the base's."""

    is_random = True
    observation_shape = (3, CANVAS, CANVAS)

    def __init__(self, variant: str, base: GroundTruthData | None = None, background: str | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"DSpritesVariant: variant={variant!r}, expected one of {VARIANTS}")
        if background is not None and variant != "scream":
            raise ValueError(f"DSpritesVariant: background is only used by variant='scream', got variant={variant!r}")
        self.variant = variant
        self.base = base if base is not None else DSprites()
        self.factor_names, self.factor_sizes = self.base.factor_names, self.base.factor_sizes
        if variant == "scream":
            self.background = load_background(background) if background else procedural_scream_texture()

    def _draw(self, n: int, rng: np.random.RandomState) -> dict:
        if self.variant == "color":
            return {"color": rng.uniform(0.5, 1.0, size=(n, 3)).astype(np.float32)}
        if self.variant == "noisy":
            return {"noise": rng.uniform(0.0, 1.0, size=(n, 3, CANVAS, CANVAS)).astype(np.float32)}
        h, w = self.background.shape[:2]
        return {"row": rng.randint(0, h - CANVAS, size=n), "col": rng.randint(0, w - CANVAS, size=n),
                "tint": rng.uniform(0.0, 1.0, size=(n, 3)).astype(np.float32)}

    def _observe(self, factors: np.ndarray, draws: dict) -> np.ndarray:
        sprite = self.base._observe(factors, None)  # (n, 1, 64, 64) in {0, 1}
        if self.variant == "color":
            return sprite * draws["color"][:, :, None, None]
        if self.variant == "noisy":
            return np.minimum(sprite + draws["noise"], 1.0)
        windows = np.lib.stride_tricks.sliding_window_view(self.background, (CANVAS, CANVAS), axis=(0, 1))
        crops = windows[draws["row"], draws["col"]]  # (n, 3, 64, 64)
        bg = (crops + draws["tint"][:, :, None, None]) / 2
        return np.where(sprite == 1, 1 - bg, bg).astype(np.float32)
