"""Correlated-triangle toy of DEFT §5.4 ("correlative but separable").

Factors ``(posX, posY, orientation)``, sizes (32, 32, 32). posX, posY are independent and uniform
on {0..31}; the orientation is a function of them: it points at the canvas centre,

    theta = atan2(posY - 16, posX - 16)  (image frame: x right, y down)   [PAPER §5.4]
    orientation = floor((theta mod 2*pi) / (2*pi/32))                    (32 angle bins)

and the triangle's apex points along ``alpha = (orientation + 0.5) * 2*pi/32 + pi``, i.e. from the
sprite towards the centre. The paper's exact pointing is used (the authors' later code adds angle
jitter in ``sample_factors``; not here). The dataset (torch view) holds the 1024 positions; any
factor triple, pointing or not, can be rendered (``sample_observations_from_factors``).

Image [INFERRED sizes after the authors' code: an 11x11 triangle on a 64x64 canvas]: 64x64
binary, sprite centre at the pixel corner ``(16 + posX, 16 + posY)``; in sprite coordinates
``(u, v)`` (pixels, apex along +u) a pixel centre is inside when ``u >= -5`` and
``|v| <= 0.3 (5 - u)`` (apex (5, 0), base corners (-5, +-3)).
"""
from __future__ import annotations

import functools

import numpy as np

from ._raster import paste_tiles, rotate_to_local, tile_offsets
from .ground_truth import GroundTruthData

BINS = 32
TILE = 16
CANVAS = 64


def orientation_bin(pos_x: np.ndarray, pos_y: np.ndarray) -> np.ndarray:
    """Bin of ``atan2(posY - 16, posX - 16) mod 2*pi`` among 32 equal bins; int64."""
    theta = np.mod(np.arctan2(np.asarray(pos_y) - 16.0, np.asarray(pos_x) - 16.0), 2 * np.pi)
    return (np.floor(theta / (2 * np.pi / BINS)).astype(np.int64)) % BINS


def apex_angle(orientation: np.ndarray) -> np.ndarray:
    """Apex direction in the image frame (x right, y down): ``(orientation + 0.5) * 2*pi/32 + pi``."""
    return (np.asarray(orientation) + 0.5) * 2 * np.pi / BINS + np.pi


@functools.lru_cache(maxsize=1)
def triangle_tiles() -> np.ndarray:
    """uint8 (32, 16, 16) tiles, one per orientation bin."""
    dx, dy = tile_offsets(TILE)  # y up: an image-frame angle alpha is -alpha here
    u, v = rotate_to_local(dx, dy, -apex_angle(np.arange(BINS)))
    tiles = ((u >= -5.0) & (np.abs(v) <= 0.3 * (5.0 - u))).astype(np.uint8)
    tiles.flags.writeable = False
    return tiles


class CorrelatedTriangle(GroundTruthData):
    factor_names = ("posX", "posY", "orientation")
    factor_sizes = (32, 32, BINS)
    observation_shape = (1, CANVAS, CANVAS)

    def __init__(self):
        self._tiles = triangle_tiles()

    @property
    def num_items(self) -> int:
        return 32 * 32

    def item_factors(self, items) -> np.ndarray:
        """Item ``i`` -> ``(i // 32, i % 32, orientation_bin)``."""
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        px, py = items // 32, items % 32
        return np.stack([px, py, orientation_bin(px, py)], axis=1)

    def sample_factors(self, num: int, rng: np.random.RandomState) -> np.ndarray:
        """posX, posY uniform on {0..31}; orientation determined by them (pointing at the centre)."""
        return self.item_factors(rng.randint(0, 32 * 32, size=num))

    def _observe(self, factors: np.ndarray, draws=None) -> np.ndarray:
        px, py, orient = factors.T
        return paste_tiles(self._tiles[orient], rows=py + 8, cols=px + 8, height=CANVAS, width=CANVAS)[:, None]
