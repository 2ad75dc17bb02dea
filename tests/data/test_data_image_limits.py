"""Decompression bombs and PIL's pixel limit: a tiny file declaring a huge image is skipped by name by
`data pack` and by `folder:` loading, under a `max_pixels` limit the user can raise or lower."""
import json
import struct
import zlib

import pytest
from PIL import Image

from eoflow_fast.data import get_dataset, packed
from eoflow_fast.data.images import DEFAULT_MAX_PIXELS, UnreadableImage, load_image, probe_image

SIDE = 14000  # 196 Mpx: above 2x PIL's default limit, where PIL raises DecompressionBombError


def bomb_png(path, side=SIDE):
    """A valid 1-bit PNG of side x side black pixels: about 24 KB on disk, 196 Mpx when decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\0" * ((side // 8 + 1) * side), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


@pytest.fixture
def folder(tmp_path, random_pngs):
    """6 ordinary 40x30 images (1200 px) and one bomb, bomb.png."""
    root = random_pngs(tmp_path / "imgs", [f"im{i}.png" for i in range(6)], (30, 40))
    bomb_png(root / "bomb.png")
    assert (root / "bomb.png").stat().st_size < 30_000
    return root


def test_bomb_is_skipped_by_name_in_pack_and_folder(folder, tmp_path, capsys, data_cli):
    assert data_cli("data", "pack", str(folder), str(tmp_path / "pk"), "--size", "8", "--no-progress") == 0
    out, err = capsys.readouterr()
    assert "skipped bomb.png" in err and f"max_pixels={DEFAULT_MAX_PIXELS}" in err and "'bomb.png'" in out
    index = json.loads((tmp_path / "pk" / "index.json").read_text())
    assert [s["name"] for s in index["skipped"]] == ["bomb.png"] and len(index["names"]) == 6
    ds = get_dataset(f"folder:{folder}", split="all", size=8)
    assert len(ds) == 6 and "bomb.png" not in ds.names and [s["name"] for s in ds.skipped] == ["bomb.png"]
    assert "folder: skipped bomb.png" in capsys.readouterr().err
    with pytest.raises(UnreadableImage, match=r"bomb\.png.*max_pixels"):
        load_image(str(folder / "bomb.png"), 8)
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS  # PIL's global is left as it was


@pytest.mark.parametrize("max_pixels,kept", [(1199, 0), (1000, 0), (601, 0), (500, 0), (1200, 6), (None, 6)])
def test_limit_applies_between_one_and_two_times_and_above(folder, tmp_path, max_pixels, kept, capsys, data_cli):
    """1200 px images: above the limit by less than 2x (1199, 1000, 601: PIL alone only warns) or by more
    (500: PIL raises), both are skipped; at or under the limit, or with none, all are kept."""
    (folder / "bomb.png").unlink()
    ds = get_dataset(f"folder:{folder}", split="all", size=8, max_pixels=max_pixels)
    assert len(ds) == kept
    flag = "none" if max_pixels is None else str(max_pixels)
    assert data_cli("data", "pack", str(folder), str(tmp_path / f"pk{flag}"), "--size", "8", "--max-pixels", flag,
                   "--no-progress") == 0
    assert len(json.loads((tmp_path / f"pk{flag}" / "index.json").read_text())["names"]) == kept
    err = capsys.readouterr().err
    for name in ("folder: skipped im0.png", "data pack: skipped im0.png"):
        assert (f"{name}: unreadable image " in err) == (not kept)
    if not kept:
        assert f"im0.png: declares 1200 pixels; above max_pixels={max_pixels}" in err


def test_a_raised_limit_overrides_pils_own_and_restores_it(folder, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL alone would refuse the 1200 px images
    x = load_image(str(folder / "im0.png"), 8, max_pixels=None)
    assert x.shape == (3, 8, 8) and Image.MAX_IMAGE_PIXELS == 100
    probe_image(str(folder / "bomb.png"), max_pixels=SIDE * SIDE)  # the header is read, nothing decoded
    with pytest.raises(UnreadableImage, match="above max_pixels=1000"):
        load_image(str(folder / "im0.png"), 8, max_pixels=1000)
    assert Image.MAX_IMAGE_PIXELS == 100


@pytest.mark.parametrize("bad", ["0", "-5", "lots"])
def test_max_pixels_flag_rejects_non_positive_values(folder, tmp_path, bad, data_cli):
    with pytest.raises(SystemExit) as exc:
        data_cli("data", "pack", str(folder), str(tmp_path / "x"), "--max-pixels", bad)
    assert exc.value.code == 2
    with pytest.raises(ValueError, match="max_pixels"):
        packed.pack_images(str(folder), str(tmp_path / "y"), max_pixels=0)
