"""CelebA reader, image folders and `data pack` on a small folder in the published CelebA layout."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from eoflow_fast.data import get_dataset, packed
from eoflow_fast.data.images import load_image

NAMES = [f"{i:06d}.jpg" for i in range(1, 10)]
PARTITION = [0, 0, 0, 0, 0, 1, 1, 2, 2]
CORRUPT = "000004.jpg"
ATTRS = ["Smiling", "Male", "Young"]


@pytest.fixture
def celeba_root(tmp_path):
    """9 aligned-size (178x218) JPEGs, one of them garbage, with partition and attribute lists."""
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:218, 0:178]
    for i, name in enumerate(NAMES):
        if name == CORRUPT:
            (root / "img_align_celeba" / name).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + rng.bytes(200))
            continue
        img = np.stack([(xx * (i + 1)) % 256, (yy * 3 + 40 * i) % 256, rng.randint(0, 256, (218, 178))], -1)
        Image.fromarray(img.astype(np.uint8)).save(root / "img_align_celeba" / name, quality=90)
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(NAMES, PARTITION)))
    attrs = rng.choice([-1, 1], size=(len(NAMES), len(ATTRS)))
    (root / "list_attr_celeba.txt").write_text(
        f"{len(NAMES)}\n{' '.join(ATTRS)}\n" + "".join(f"{n} {' '.join(f'{a:2d}' for a in row)}\n"
                                                      for n, row in zip(NAMES, attrs)))
    return root, (attrs > 0).astype(np.int64)


def reference(path, size, crop):
    """PIL reference of the transform: centre crop, Lanczos resize, CHW uint8."""
    with Image.open(path) as im:
        w, h = im.size
        left, top = (w - crop) // 2, (h - crop) // 2
        im = im.convert("RGB").crop((left, top, left + crop, top + crop)).resize((size, size), Image.LANCZOS)
        return np.asarray(im).transpose(2, 0, 1)


def test_celeba_reader_splits_transform_and_attributes(celeba_root):
    root, attrs = celeba_root
    train = get_dataset(f"celeba:{root}", split="train", size=64)
    valid = get_dataset(f"celeba:{root}", split="valid", size=128, crop=160, with_attributes=True)
    # the garbage file's header does not read: it is skipped by name when the dataset is built
    assert len(train) == 4 and len(valid) == 2 and len(get_dataset(f"celeba:{root}", "all")) == 8
    assert [s["name"] for s in train.skipped] == [CORRUPT] and CORRUPT not in train.names
    x = train[0]
    assert x.dtype == torch.float32 and x.shape == (3, 64, 64)
    ref = reference(root / "img_align_celeba" / NAMES[0], 64, 148).astype(np.float64)
    np.testing.assert_allclose(x.numpy(), ref / 255.0, atol=1e-6)
    xv, av = valid[1]
    assert xv.shape == (3, 128, 128) and valid.attribute_names == ATTRS
    np.testing.assert_array_equal(av.numpy(), attrs[6])
    np.testing.assert_allclose(xv.numpy(), reference(root / "img_align_celeba" / NAMES[6], 128, 160) / 255.0, atol=1e-6)
    deq = get_dataset(f"celeba:{root}", dequantize=True)[0].numpy()
    assert (deq >= ref / 256.0).all() and (deq < (ref + 1) / 256.0).all()
    with pytest.raises(OSError, match=f"unreadable image .*{CORRUPT}"):
        load_image(str(root / "img_align_celeba" / CORRUPT), 64, 148)


def test_missing_paths_say_which_layout_is_expected(tmp_path, data_cli):
    with pytest.raises(FileNotFoundError, match=r"img_align_celeba.*list_eval_partition\.txt"):
        get_dataset(f"celeba:{tmp_path}")
    with pytest.raises(FileNotFoundError, match=r"index\.json.*eoflow-fast data pack"):
        get_dataset(f"packed:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="image files"):
        get_dataset(f"folder:{tmp_path}")
    from eoflow_fast.cli.main import main

    assert main(["data", "pack", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2  # a user error: exit 2


def test_pack_skips_corrupt_files_by_name_and_matches_the_reader(celeba_root, tmp_path, capsys, data_cli):
    root, _ = celeba_root
    dst = tmp_path / "packed"
    assert data_cli("data", "pack", str(root), str(dst), "--size", "32", "--shard-size", "4", "--no-progress") == 0
    assert CORRUPT in capsys.readouterr().err
    index = json.loads((dst / "index.json").read_text())
    assert [s["name"] for s in index["skipped"]] == [CORRUPT]
    assert [s["count"] for s in index["shards"]] == [3, 4, 1]
    assert index["names"] == [n for n in NAMES if n != CORRUPT]
    ds = get_dataset(f"packed:{dst}", split="all")
    for i, name in enumerate(index["names"]):
        np.testing.assert_array_equal(ds.read_uint8([i])[0], load_image(str(root / "img_align_celeba" / name), 32, 148))
    assert ds[0].dtype == torch.float32 and ds[0].shape == (3, 32, 32)
    np.testing.assert_array_equal(ds[2].numpy(), ds.read_uint8([2])[0] / np.float32(255))
    assert get_dataset(f"packed:{dst}", split="train").names == ["000001.jpg", "000002.jpg", "000003.jpg", "000005.jpg"]
    assert len(get_dataset(f"packed:{dst}", split="test")) == 2
    with pytest.raises(ValueError, match="split='nope'"):
        get_dataset(f"packed:{dst}", split="nope")


def test_interrupted_pack_resumes_without_rewriting_finished_shards(celeba_root, tmp_path, monkeypatch):
    root, _ = celeba_root
    dst = tmp_path / "resumed"
    decode, calls = packed._decode, []

    def crash_on_sixth(job):
        calls.append(job)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return decode(job)

    monkeypatch.setattr(packed, "_decode", crash_on_sixth)
    with pytest.raises(KeyboardInterrupt):
        packed.pack_images(str(root), str(dst), size=16, shard_size=4, progress=False)
    assert sorted(os.listdir(dst)) == ["pack.json", "shard_00000.json", "shard_00000.npy"]
    with pytest.raises(FileNotFoundError, match="interrupted"):
        get_dataset(f"packed:{dst}")
    first = os.stat(dst / "shard_00000.npy")
    (dst / "shard_00001.npy.tmp").write_bytes(b"partial write from the crash")

    monkeypatch.setattr(packed, "_decode", decode)
    calls.clear()
    index = packed.pack_images(str(root), str(dst), size=16, shard_size=4, progress=False)
    again = os.stat(dst / "shard_00000.npy")
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    fresh = packed.pack_images(str(root), str(tmp_path / "fresh"), size=16, shard_size=4, progress=False)
    assert index == fresh
    for k in range(3):
        shard = f"shard_{k:05d}.npy"
        np.testing.assert_array_equal(np.load(dst / shard), np.load(tmp_path / "fresh" / shard))
    with pytest.raises(ValueError, match=r"different \['size'\]"):
        packed.pack_images(str(root), str(dst), size=24, shard_size=4, progress=False)


def test_packed_folder_splits_and_loads_with_workers_and_distributed_sampler(tmp_path, random_pngs):
    src = random_pngs(tmp_path / "imgs" / "nested", [f"im{i:02d}.png" for i in range(20)], (40, 30), seed=1)
    folder = get_dataset(f"folder:{tmp_path / 'imgs'}", split="all", size=16)
    assert len(folder) == 20 and folder[0].shape == (3, 16, 16)
    train = get_dataset(f"folder:{tmp_path / 'imgs'}", split="train", test_fraction=0.3)
    test = get_dataset(f"folder:{tmp_path / 'imgs'}", split="test", test_fraction=0.3)
    assert len(test) > 0 and len(train) > 0 and sorted(train.names + test.names) == folder.names
    (src / "zz_broken.png").write_bytes(b"\x89PNG garbage")  # alone in the last shard: an empty shard
    packed.pack_images(str(tmp_path / "imgs"), str(tmp_path / "p"), size=16, shard_size=10, workers=2, progress=False)
    ds = get_dataset(f"packed:{tmp_path / 'p'}", split="all")
    assert len(ds) == 20 and list(ds.counts) == [10, 10, 0] and ds.names == folder.names
    np.testing.assert_allclose(ds[4].numpy(), folder[4].numpy(), atol=1e-6)
    # default folder split (5% test) is the same whether read from files or from the pack
    # the split is by name: the pack (which skipped the broken file) and the folder agree, and the
    # extra file moved no other file between splits
    for split in ("train", "test"):
        from_pack = get_dataset(f"packed:{tmp_path / 'p'}", split=split).names
        from_files = get_dataset(f"folder:{tmp_path / 'imgs'}", split=split).names
        assert from_pack == [n for n in from_files if n != "nested/zz_broken.png"]
    assert get_dataset(f"folder:{tmp_path / 'imgs'}", split="test", test_fraction=0.3).names == test.names
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        loader = DataLoader(ds, batch_size=3, sampler=sampler, num_workers=2)
        got = torch.cat(list(loader))
        want = torch.stack([ds[i] for i in sampler])
        assert torch.equal(got, want)
        seen += list(sampler)
    assert sorted(seen) == list(range(20))


def test_cli_main_runs_data_pack_and_info(celeba_root, tmp_path, capsys):
    from eoflow_fast.cli.main import main

    root, _ = celeba_root
    assert main(["data", "pack", str(root), str(tmp_path / "pk"), "--size", "16", "--no-progress"]) == 0
    assert main(["data", "info", f"packed:{tmp_path / 'pk'}", "--split", "valid", "--json"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["items"] == 2 and info["item_shape"] == [3, 16, 16]
    with pytest.raises(SystemExit) as exc:
        main(["data", "pack", str(root), str(tmp_path / "pk"), "--size", "0"])
    assert exc.value.code == 2


def test_dequantised_values_stay_inside_their_bin_at_the_noise_maximum(monkeypatch):
    """The largest float32 below 1 as noise: (k + u) / 256 must stay below (k + 1) / 256 for every k
    (plain float32 U[0, 1) noise rounds k + u up to k + 1 for k >= 128), and likewise for digits' 17 levels."""
    import os

    from eoflow_fast.data import _random
    from eoflow_fast.data.images import to_float

    class TopNoise:
        def random(self, shape, dtype):
            return np.full(shape, np.nextafter(np.float32(1), np.float32(0)), dtype=dtype)

    monkeypatch.setattr(_random, "_NOISE", {(os.getpid(), torch.initial_seed()): TopNoise()})
    k = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    x = to_float(k, dequantize=True).numpy().astype(np.float64)
    assert (x < (k + 1.0) / 256).all() and (x >= k / 256.0).all()
    digits = get_dataset("digits", split="all", dequantize=True)
    levels = np.round(digits.values.numpy() * 16)
    y = torch.stack([digits[i] for i in range(50)]).numpy().astype(np.float64)
    assert (y < (levels[:50] + 1) / 17).all() and (y >= levels[:50] / 17 - 1e-7).all()
