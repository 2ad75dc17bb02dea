"""Vectorized rasterisation helpers shared by the procedural sprite datasets.

Sprites are rendered once into small binary tiles (pixel-centre point-in-shape tests), cached, and
pasted into the canvas at integer offsets: with sprite centres on the pixel grid a translation is
exact, so ``render(f) = paste(tile[shape, scale, orientation], offset(position))``.
"""
from __future__ import annotations

import numpy as np


def tile_offsets(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre offsets from the tile centre (a pixel corner), in (x right, y up) coordinates:
    ``dx[j] = j + 0.5 - size/2`` and ``dy[i] = size/2 - i - 0.5``; each (size, size)."""
    c = np.arange(size) + 0.5 - size / 2
    return np.meshgrid(c, -c, indexing="xy")


def rotate_to_local(dx: np.ndarray, dy: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse rotation ``R(-theta) (dx, dy)`` for a sprite turned counter-clockwise by ``theta``;
    theta (...,) broadcasts against (size, size) grids to (..., size, size)."""
    c = np.cos(theta)[..., None, None]
    s = np.sin(theta)[..., None, None]
    return c * dx + s * dy, -s * dx + c * dy


def paste_tiles(tiles: np.ndarray, rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> np.ndarray:
    """Canvas ``out (n, height, width)`` float32 of zeros with ``tiles[k] (t, t)`` written at
    ``out[k, rows[k]:rows[k]+t, cols[k]:cols[k]+t]``; one fancy-index assignment for the batch."""
    n, t = tiles.shape[0], tiles.shape[1]
    out = np.zeros((n, height, width), dtype=np.float32)
    window = (np.arange(t)[:, None] * width + np.arange(t)[None, :]).astype(np.int64)
    base = np.arange(n, dtype=np.int64) * (height * width) + rows.astype(np.int64) * width + cols
    out.reshape(-1)[base[:, None, None] + window] = tiles
    return out
