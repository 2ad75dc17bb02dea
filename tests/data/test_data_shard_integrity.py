"""Packed-shard integrity: every kind of damaged shard is named on open (cheap checks), by `data verify`
(full checksums), and re-packed by a resumed `data pack`; old indexes without shard records are refused."""
import hashlib
import io
import json
import os
import shutil

import numpy as np
import pytest

from eoflow_fast.data import _shards, get_dataset, packed
from eoflow_fast.data._progress import Progress
from eoflow_fast.data._shards import ShardError

SIZE, SHARD = 16, 4
HEAD = 512  # head digest length in these tests, so that a byte past it exists in a 3 KiB shard


@pytest.fixture
def pack(tmp_path, monkeypatch, random_pngs):
    """(source folder, pack dir): 12 random images in 3 full shards of 4, and a fresh pack as reference."""
    monkeypatch.setattr(_shards, "HEAD_BYTES", HEAD)
    src = random_pngs(tmp_path / "src", [f"im{i:02d}.png" for i in range(12)], (20, 24))
    dst = tmp_path / "pk"
    packed.pack_images(str(src), str(dst), size=SIZE, shard_size=SHARD, progress=False)
    shutil.copytree(dst, tmp_path / "fresh")
    return src, dst


def _resave(path, array):
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, array)


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _swap(a, b):
    tmp = a.with_suffix(".swap")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)


# damage applied to shard_00001.npy, the message the cheap check on open gives (None: open passes)
DAMAGE = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-100]), r"bytes, expected \d+ \(truncated\)"),
    "zero_byte": (lambda p: p.write_bytes(b""), r"0 bytes, expected \d+ \(zero-byte file\)"),
    "appended": (lambda p: p.write_bytes(p.read_bytes() + b"\0" * 7), r"\(too long\)"),
    "missing": (lambda p: p.unlink(), "file missing"),
    "wrong_dtype": (lambda p: _resave(p, np.load(p).view(np.int8)), "dtype int8, expected uint8"),
    "wrong_shape": (lambda p: _resave(p, np.load(p).reshape(SHARD, 3, SIZE // 2, SIZE * 2)),
                    r"shape \[4, 3, 8, 32\], expected \[4, 3, 16, 16\]"),
    "swapped": (lambda p: _swap(p, p.with_name("shard_00002.npy")), "differ from the ones packed"),
    "flipped_in_head": (lambda p: _flip(p, 200), "differ from the ones packed"),
    "flipped_past_head": (lambda p: _flip(p, HEAD + 100), None),
    "not_npy": (lambda p: p.write_bytes(b"x" * p.stat().st_size), "not an npy array file"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_shard_is_named_on_open_by_verify_and_repacked_on_resume(pack, kind, capsys, data_cli):
    src, dst = pack
    damage, on_open = DAMAGE[kind]
    damage(dst / "shard_00001.npy")
    if on_open is None:  # the cheap check reads only the head: loading works, verify finds it
        assert len(get_dataset(f"packed:{dst}", split="all")) == 12
    else:
        with pytest.raises(ShardError, match=rf"shard_0000[12]\.npy: .*{on_open}.*data verify"):
            get_dataset(f"packed:{dst}", split="all")
    assert data_cli("data", "verify", str(dst), "--no-progress") == 1
    err = capsys.readouterr().err
    bad = {"shard_00001.npy", "shard_00002.npy"} if kind == "swapped" else {"shard_00001.npy"}
    assert all(name in err for name in bad) and "shard_00000.npy" not in err
    assert {f for f, _ in packed.verify_pack(str(dst), progress=False)} == bad

    kept = os.stat(dst / "shard_00000.npy")
    assert data_cli("data", "pack", str(src), str(dst), "--size", str(SIZE), "--shard-size", str(SHARD),
                   "--no-progress") == 0
    err = capsys.readouterr().err
    assert all(f"{name}: " in err and "re-packing it" in err for name in bad)
    again = os.stat(dst / "shard_00000.npy")  # the intact shard was verified and kept, not rewritten
    assert (again.st_ino, again.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)
    assert packed.verify_pack(str(dst), progress=False) == []
    for k in range(3):
        shard = f"shard_{k:05d}.npy"
        np.testing.assert_array_equal(np.load(dst / shard), np.load(dst.parent / "fresh" / shard))
    assert json.loads((dst / "index.json").read_text()) == json.loads((dst.parent / "fresh" / "index.json").read_text())


def test_index_records_each_shard_and_verify_passes_an_intact_pack(pack, capsys, data_cli):
    _, dst = pack
    index = json.loads((dst / "index.json").read_text())
    for k, record in enumerate(index["shards"]):
        path = dst / f"shard_{k:05d}.npy"
        assert record["file"] == path.name and record["bytes"] == path.stat().st_size
        assert record["dtype"] == "uint8" and record["shape"] == [SHARD, 3, SIZE, SIZE] and record["count"] == SHARD
        assert record["blake2b"] == hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
        assert record["head"] == hashlib.blake2b(path.read_bytes()[:HEAD], digest_size=16).hexdigest()
    assert data_cli("data", "verify", str(dst), "--no-progress") == 0
    assert "every shard matches" in capsys.readouterr().out


def test_damaged_manifest_of_a_kept_shard_is_repacked(pack, capsys):
    src, dst = pack
    (dst / "index.json").unlink()  # an interrupted pack: manifests decide what is kept
    (dst / "shard_00000.json").write_text("{not json")
    manifest = json.loads((dst / "shard_00002.json").read_text())
    del manifest["shard"]
    (dst / "shard_00002.json").write_text(json.dumps(manifest))
    packed.pack_images(str(src), str(dst), size=SIZE, shard_size=SHARD, progress=False)
    err = capsys.readouterr().err
    assert "manifest shard_00000.json is unreadable" in err
    assert "shard_00002.npy: its manifest has no integrity record" in err
    assert packed.verify_pack(str(dst), progress=False) == []


def test_old_format_pack_is_refused_with_a_repack_hint_and_repacked_in_place(pack, capsys, data_cli):
    src, dst = pack
    index = json.loads((dst / "index.json").read_text())
    old = dict(index, format="eoflow_fast.packed/1",
               shards=[{"file": r["file"], "count": r["count"]} for r in index["shards"]])
    (dst / "index.json").write_text(json.dumps(old))
    settings = json.loads((dst / "pack.json").read_text())
    (dst / "pack.json").write_text(json.dumps(dict(settings, format="eoflow_fast.packed/1")))
    for k in range(3):
        manifest = json.loads((dst / f"shard_{k:05d}.json").read_text())
        del manifest["shard"]
        (dst / f"shard_{k:05d}.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"old format 'eoflow_fast.packed/1'.*no shard sizes or checksums.*re-pack"):
        get_dataset(f"packed:{dst}")
    assert data_cli("data", "verify", str(dst), "--no-progress") == 1
    assert "old format" in capsys.readouterr().err
    assert packed.pack_images(str(src), str(dst), size=SIZE, shard_size=SHARD, progress=False) == \
        json.loads((dst.parent / "fresh" / "index.json").read_text())
    assert len(get_dataset(f"packed:{dst}", split="all")) == 12


def _edit_index(**changes):
    def edit(index):
        for key, change in changes.items():
            if key == "record0":
                change(index["shards"][0])
            else:
                change(index, key)
        return json.dumps(index)
    return edit


INDEX_DAMAGE = {
    "not_json": (lambda index: "{not json", "is not JSON"),
    "not_a_mapping": (lambda index: "[1, 2]", "format None, expected"),
    "unknown_format": (_edit_index(format=lambda i, k: i.update({k: "something/9"})), "format 'something/9'"),
    "no_names": (_edit_index(names=lambda i, k: i.pop(k)), r"lacks or mistypes \['names'\]"),
    "names_short": (_edit_index(names=lambda i, k: i[k].pop()), "records 12 images in its shards but 11 names"),
    "record_path_escapes": (_edit_index(record0=lambda r: r.update(file="../../outside.npy")),
                            "names file '../../outside.npy', expected shard_NNNNN.npy"),
    "record_without_checksum": (_edit_index(record0=lambda r: r.pop("blake2b")), r"mistypes \['blake2b'\]"),
    "record_count_changed": (_edit_index(record0=lambda r: r.update(count=3)), "recorded shape .* and count 3"),
}


@pytest.mark.parametrize("kind", sorted(INDEX_DAMAGE))
def test_damaged_index_is_refused_with_what_is_wrong(pack, kind):
    _, dst = pack
    edit, match = INDEX_DAMAGE[kind]
    (dst / "index.json").write_text(edit(json.loads((dst / "index.json").read_text())))
    with pytest.raises(ValueError, match=match):
        get_dataset(f"packed:{dst}")


def test_progress_is_a_line_per_n_items_off_a_terminal_and_tqdm_on_one():
    out = io.StringIO()
    bar = Progress(5, "data pack", "images", every=2, stream=out)
    for _ in range(5):
        bar.update(1)
    bar.close()
    assert out.getvalue().splitlines() == ["data pack: 2/5 images (40%)", "data pack: 4/5 images (80%)",
                                           "data pack: 5/5 images (100%)"]

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    bar = Progress(5, "data pack", "images", every=2, stream=tty)
    bar.update(5)
    bar.close()
    assert bar._bar is not None and "5/5" in tty.getvalue() and "data pack: 2/5" not in tty.getvalue()
    quiet = io.StringIO()
    bar = Progress(5, "x", "images", enabled=False, stream=quiet)
    bar.update(5)
    bar.write("skipped a.png")
    bar.close()
    assert quiet.getvalue() == "skipped a.png\n"  # messages are shown even without progress


def test_pack_prints_progress_lines_when_stderr_is_not_a_terminal(pack, capsys):
    src, _ = pack
    packed.pack_images(str(src), str(src.parent / "again"), size=SIZE, shard_size=SHARD, progress_every=5)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("data pack: ")]
    assert lines == ["data pack: 5/12 images (42%)", "data pack: 10/12 images (83%)", "data pack: 12/12 images (100%)"]
