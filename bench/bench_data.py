"""Benchmark: data throughput on the CPU (images/s, one process).

1. dSprites rendering at batch 256: ``sample(256, rng)`` (factor sampling + render), the torch view's
   batched fetch ``__getitems__`` (what a DataLoader calls) for binary dSprites and each variant.
   Target: >= 20,000 images/s for binary dSprites.
2. Packed shards vs decoding JPEGs per step, batch 64 of random items at 64x64: ``ImageFiles``
   (open + decode + centre crop 148 + Lanczos resize, per item, as reading CelebA directly) against
   ``PackedImages`` (memory-mapped uint8 shards). The JPEGs are synthetic 178x218 CelebA-sized
   images written to a temporary directory (smooth colour fields plus noise, quality 90), packed
   once with ``pack_images``. Target: packed >= 5x.

    python bench/bench_data.py [--quick]
    pytest bench/bench_data.py --benchmark-only
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, print_table, time_fn, write_result  # noqa: E402

from eoflow_fast.data import get_ground_truth  # noqa: E402
from eoflow_fast.data.images import ImageFiles  # noqa: E402
from eoflow_fast.data.packed import PackedImages, pack_images  # noqa: E402

DSPRITES_BATCH = 256
IMAGE_BATCH = 64


def write_jpegs(root: Path, n: int) -> list[str]:
    """``n`` synthetic 178x218 JPEGs under ``root``; returns their names."""
    from PIL import Image

    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:218, 0:178] / 218.0
    names = []
    for i in range(n):
        a = rng.uniform(0, 2 * np.pi, size=(3, 3))
        img = np.stack([0.5 + 0.4 * np.sin(4 * xx * a[c, 0] + 3 * yy * a[c, 1] + a[c, 2]) for c in range(3)], -1)
        img = np.clip(img * 255 + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        names.append(f"{i:06d}.jpg")
        Image.fromarray(img).save(root / names[-1], quality=90)
    return names


def dsprites_fetchers():
    rng = np.random.RandomState(0)
    fetchers = {}
    for spec in ("dsprites", "dsprites_color", "dsprites_noisy", "dsprites_scream"):
        data = get_ground_truth(spec)
        view = data.torch_dataset()
        if spec == "dsprites":
            fetchers["dsprites sample()"] = lambda data=data: data.sample(DSPRITES_BATCH, rng)
        fetchers[f"{spec} __getitems__"] = (
            lambda view=view: view.__getitems__(rng.randint(0, len(view), size=DSPRITES_BATCH)))
    return fetchers


def image_fetchers(tmp: Path, n_images: int):
    src = tmp / "jpegs"
    src.mkdir()
    names = write_jpegs(src, n_images)
    pack_images(str(src), str(tmp / "packed"), size=64, crop=148, shard_size=256, progress=False)
    jpeg = ImageFiles(str(src), names, size=64, crop=148)
    packed = PackedImages(str(tmp / "packed"), split="all")
    rng = np.random.RandomState(1)
    return {
        "jpeg decode per step": lambda: [jpeg[i] for i in rng.randint(0, n_images, size=IMAGE_BATCH)],
        "packed shards": lambda: packed.__getitems__(rng.randint(0, n_images, size=IMAGE_BATCH)),
    }


def measure(fetchers: dict, batch: int, reps: int) -> list[dict]:
    rows = []
    for name, fn in fetchers.items():
        t = time_fn(fn, "cpu", warmup=2, reps=reps)
        rows.append({"variant": name, "batch": batch, **t, "images_per_s": batch / (t["median_ms"] * 1e-3)})
    return rows


def run(quick: bool = False) -> dict:
    reps = 5 if quick else 20
    rows = measure(dsprites_fetchers(), DSPRITES_BATCH, reps)
    with tempfile.TemporaryDirectory() as tmp:
        image_rows = measure(image_fetchers(Path(tmp), 256 if quick else 1024), IMAGE_BATCH, reps)
    ratio = image_rows[1]["images_per_s"] / image_rows[0]["images_per_s"]
    rows += image_rows
    print_table(rows, ["variant", "batch", "median_ms", "images_per_s"])
    dsprites_rate = rows[0]["images_per_s"]
    print(f"dSprites (binary, sample(256)): {dsprites_rate:.0f} images/s (target >= 20000)")
    print(f"packed vs JPEG decode: {ratio:.1f}x (target >= 5x)")
    path = write_result("data", "cpu", {"rows": rows, "packed_over_jpeg": ratio, "dsprites_images_per_s": dsprites_rate,
                                        "note": "shared 2-core machine; numbers vary with load"})
    print(f"wrote {path}")
    return {"rows": rows, "packed_over_jpeg": ratio}


@pytest.mark.parametrize("variant", ["dsprites sample()", "dsprites __getitems__"])
def test_dsprites_batch256(benchmark, variant):
    benchmark(dsprites_fetchers()[variant])


@pytest.mark.parametrize("variant", ["jpeg decode per step", "packed shards"])
def test_images_batch64(benchmark, tmp_path, variant):
    benchmark(image_fetchers(tmp_path, 128)[variant])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions, fewer images")
    p.add_argument("--device", default="cpu", help="accepted for `eoflow-fast bench`; data loading is measured on the CPU")
    return run(parse_args(p, argv).quick)


if __name__ == "__main__":
    main()
