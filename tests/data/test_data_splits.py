"""One split vocabulary: every dataset and `--split` flag speaks train / valid / test / all, the old
'eval' is an alias of 'test' with a deprecation message, and `data info` shows split sizes and rule."""
import argparse
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from eoflow_fast.data import SPLIT_NAMES, canonical_split, get_dataset, packed
from eoflow_fast.data._splits import name_rule, split_by_name


def test_vocabulary_and_aliases():
    assert SPLIT_NAMES == ("train", "valid", "test", "all")
    for name in SPLIT_NAMES:
        assert canonical_split(name) == name
    for old, new in [("eval", "test"), ("val", "valid"), ("validation", "valid")]:
        with pytest.warns(FutureWarning, match=f"split '{old}' is deprecated; use '{new}'"):
            assert canonical_split(old) == new


@pytest.mark.parametrize("spec", ["wine", "digits", "fa15", "dsprites"])
def test_eval_alias_gives_the_test_split_everywhere(spec):
    with pytest.warns(FutureWarning, match="'eval' is deprecated"):
        old = get_dataset(spec, split="eval")
    new = get_dataset(spec, split="test")
    assert len(old) == len(new)
    a, b = old[0], new[0]
    a, b = (a[0], b[0]) if isinstance(a, (tuple, list)) else (a, b)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_toy_eval_split_flag_speaks_the_vocabulary(capsys):
    from eoflow_fast.train import toy

    parser = argparse.ArgumentParser()
    toy.add_eval_args(parser)
    assert parser.parse_args([]).split == "test" and parser.parse_args(["--split", "train"]).split == "train"
    assert parser.parse_args(["--split", "eval"]).split == "test"
    assert "'eval' is deprecated; use 'test'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--split", "bogus"])


def test_data_info_shows_split_sizes_and_rule_for_a_folder_pack(tmp_path, capsys, data_cli, random_pngs):
    names = [f"im{i:02d}.png" for i in range(40)]
    src = random_pngs(tmp_path / "imgs", names, (12, 12))
    packed.pack_images(str(src), str(tmp_path / "pk"), size=8, progress=False)
    assert data_cli("data", "info", f"packed:{tmp_path / 'pk'}", "--split", "test", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    n_test = len(split_by_name(names, "test", 0.05))
    assert info["split_sizes"] == {"train": 40 - n_test, "test": n_test, "all": 40} and info["items"] == n_test
    assert info["split_rule"] == name_rule(0.05, 0) and "blake2b" in info["split_rule"] and "0.05" in info["split_rule"]
    for split, size in info["split_sizes"].items():
        assert len(get_dataset(f"packed:{tmp_path / 'pk'}", split=split)) == size
    assert data_cli("data", "info", "wine", "--split", "eval", "--json") == 0
    captured = capsys.readouterr()
    assert "'eval' is deprecated" in captured.err and json.loads(captured.out)["split"] == "test"
    assert "RandomState(seed=0)" in json.loads(captured.out)["split_rule"]


def test_data_info_shows_the_celeba_partition_of_a_celeba_pack(tmp_path, capsys, data_cli):
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 8)]
    for n in names:
        Image.fromarray(np.full((218, 178, 3), 90, np.uint8)).save(root / "img_align_celeba" / n)
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, [0, 0, 0, 1, 1, 2, 0])))
    packed.pack_images(str(root), str(tmp_path / "pk"), size=8, progress=False)
    assert data_cli("data", "info", f"packed:{tmp_path / 'pk'}", "--split", "valid", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["split_sizes"] == {"all": 7, "train": 4, "valid": 2, "test": 1} and info["items"] == 2
    assert "published CelebA partition" in info["split_rule"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"split='bogus', expected one of \('all', 'train', 'valid', 'test'\)"):
            get_dataset(f"packed:{tmp_path / 'pk'}", split="bogus")


def test_data_info_prints_a_summary_and_json_on_request(capsys, data_cli):
    assert data_cli("data", "info", "dsprites", "--split", "test", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert data_cli("data", "info", "dsprites", "--split", "test") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"dsprites (test split): {info['items']} items of shape 1x64x64, float32"
    sizes = ", ".join(f"{k} {v}" for k, v in info["split_sizes"].items())
    assert f"  split sizes  {sizes}" in lines and any(line.startswith("  split rule   ") for line in lines)
    assert "  factors      shape (3 values), scale (6 values), orientation (40 values), posX (32 values), posY (32 values)" in lines
