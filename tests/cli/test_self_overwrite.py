"""Commands refuse to write over what they read, before touching anything. Before: ``data pack SRC
SRC`` wrote pack.json and shard_* files among the source images (over a source file of that name),
and ``compress --out RUN/ckpt-*.pt`` / ``traverse --out RUN/config.json`` overwrote the run."""
import pytest

from eoflow_fast.cli.main import main


def _images(folder, n=3):
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"img{i}.png")
    return folder


def _status(argv, capsys):
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize("dst, where", [("", "is SRC itself"), ("packed", "lies inside SRC"),
                                        ("./sub/../", "is SRC itself")])
def test_pack_into_its_own_source_is_refused_untouched(tmp_path, capsys, dst, where):
    src = _images(tmp_path / "src")
    (src / "sub").mkdir()
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    status, err = _status(["data", "pack", str(src), str(src / dst) if dst else str(src), "--size", "8"], capsys)
    assert status == 2 and where in err and "Choose a DST outside SRC" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before


def test_pack_through_a_link_to_the_source_is_refused(tmp_path, capsys):
    src = _images(tmp_path / "src")
    (tmp_path / "link").symlink_to(src)
    status, err = _status(["data", "pack", str(src), str(tmp_path / "link"), "--size", "8"], capsys)
    assert status == 2 and "is SRC itself" in err and not (src / "pack.json").exists()


def test_pack_beside_the_source_still_works(tmp_path, capsys):
    src = _images(tmp_path / "src")
    assert main(["data", "pack", str(src), str(tmp_path / "packed"), "--size", "8", "--no-progress"]) == 0
    assert (tmp_path / "packed" / "pack.json").is_file()


@pytest.fixture
def run(tiny_eoflow_run):
    return tiny_eoflow_run


@pytest.mark.parametrize("argv, target", [
    (["compress", "RUN", "--core", "2", "--out"], "ckpt-00000001.pt"),
    (["compress", "RUN", "--core", "2", "--out"], "metrics.jsonl"),
    (["traverse", "RUN", "--out"], "config.json"),
    (["traverse", "RUN", "--out"], "entropy.json"),
])
def test_out_over_a_run_file_is_refused(run, capsys, argv, target):
    before = (run / target).read_bytes()
    status, err = _status([a.replace("RUN", str(run)) for a in argv] + [str(run / target)], capsys)
    assert status == 2 and f"argument --out: {run / target} is a file of the run" in err, err
    assert (run / target).read_bytes() == before
