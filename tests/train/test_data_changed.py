"""A run remembers the files it was trained on (data.data_fingerprint in config.json): resuming or
evaluating it after they changed on disk is refused by name (before: it went on silently with other
data). The CLI resumes a run trained with flags that differ from its family's own defaults."""
import numpy as np
import pytest
from PIL import Image

from eoflow_fast.cli.main import main
from eoflow_fast.data import get_dataset, packed
from eoflow_fast.data.registry import data_fingerprint
from eoflow_fast.train import checkpoint, engine

STEPS = ["--blocks", "1", "--hidden", "8", "--batch-size", "32", "--no-progress", "--eval-samples", "8",
         "--entropy-samples", "8", "--core-sizes", "2,4"]


def _csv(path, seed=0):
    rows = np.random.RandomState(seed).randn(120, 4)
    np.savetxt(path, rows, delimiter=",", header="a,b,c,d", comments="")
    return path


def test_a_run_on_changed_csv_data_is_refused_for_resume_and_eval(tmp_path, capsys):
    data, run = _csv(tmp_path / "d.csv"), tmp_path / "run"
    assert main(["train", "eoflow", "--data", f"csv:{data}", "--steps", "1", "--run-dir", str(run), *STEPS]) == 0
    assert engine.read_config(run)["data_fingerprint"] == data_fingerprint(f"csv:{data}")
    # before: refused, since the eoflow family's own default batch size (256) counted as given on the command line
    assert main(["train", "eoflow", "--resume", str(run), "--steps", "2", "--no-progress"]) == 0
    assert engine.open_run(run).step == 2
    _csv(data, seed=1)  # the same shape, other values
    with pytest.raises(checkpoint.CheckpointError, match=r"run .*: the training data changed on disk"):
        engine.open_run(run)
    assert main(["train", "eoflow", "--resume", str(run), "--steps", "3", "--no-progress"]) == 1
    assert "resume from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(run), "--core", "2"])
    assert exc.value.code == 1 and "the training data changed on disk" in capsys.readouterr().err
    assert checkpoint.latest_path(run).name == "ckpt-00000002.pt"  # nothing trained on the other data


def test_fingerprints_follow_the_files(tmp_path, random_pngs):
    src = random_pngs(tmp_path / "src", [f"im{i}.png" for i in range(6)], (8, 8))
    pack = tmp_path / "pk"
    packed.pack_images(str(src), str(pack), size=8, shard_size=4, progress=False)
    before = {spec: data_fingerprint(spec) for spec in (f"folder:{src}", f"packed:{pack}")}
    assert get_dataset(f"packed:{pack}", "all").fingerprint == before[f"packed:{pack}"]
    assert data_fingerprint("digits") is None and not hasattr(get_dataset("digits"), "fingerprint")
    Image.fromarray(np.zeros((9, 9, 3), dtype=np.uint8)).save(src / "im0.png")  # another image, same name
    packed.pack_images(str(src), str(tmp_path / "pk2"), size=8, shard_size=4, progress=False)
    assert data_fingerprint(f"folder:{src}") != before[f"folder:{src}"]
    assert data_fingerprint(f"packed:{tmp_path / 'pk2'}") != before[f"packed:{pack}"]


def _bmp_folder(folder, n=12, seed=0):
    """Uncompressed images: every file has the same size, whatever its pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    for i in range(n):
        Image.fromarray(rng.randint(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"im{i:02d}.bmp")
    return folder


VAE = ["--encoder", "lite", "--latent-dim", "2", "--steps", "1", "--batch-size", "8", "--eval-every", "0",
       "--no-progress"]


def test_an_image_changed_at_the_same_size_is_a_change(tmp_path, capsys):
    """Before: the folder fingerprint held names and sizes only, so new pixels in an uncompressed image
    (same size) went unseen and the run was evaluated on other data as on its own."""
    folder, run = _bmp_folder(tmp_path / "bmp"), tmp_path / "run"
    assert main(["train", "vae", "--data", f"folder:{folder}", *VAE, "--run-dir", str(run)]) == 0
    recorded = engine.read_config(run)["data_fingerprint"]
    assert recorded.startswith("files/2:") and engine.open_run(run).step == 1
    size = (folder / "im05.bmp").stat().st_size
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(folder / "im05.bmp")
    assert (folder / "im05.bmp").stat().st_size == size
    with pytest.raises(checkpoint.CheckpointError, match=r"the training data changed on disk"):
        engine.open_run(run)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(run), "--no-progress"])
    assert exc.value.code == 1 and "the training data changed on disk" in capsys.readouterr().err


def test_runs_recorded_before_contents_were_hashed_still_open(tmp_path):
    """A names-and-sizes fingerprint (recorded by runs before this) is compared in its own form, with a
    warning that contents are not covered; other names or sizes are still refused."""
    folder = _bmp_folder(tmp_path / "bmp")
    spec = f"folder:{folder}"
    dataset = get_dataset(spec)
    legacy = data_fingerprint(spec, contents=False)
    assert ":" not in legacy and dataset.fingerprint != legacy
    with pytest.warns(RuntimeWarning, match="recorded the image names and sizes only"):
        assert engine.check_data(legacy, dataset, "run R") == legacy
    (folder / "im00.bmp").unlink()
    with pytest.raises(checkpoint.CheckpointError, match="run R: the training data changed on disk"):
        engine.check_data(legacy, get_dataset(spec), "run R")


def test_a_run_without_a_fingerprint_says_its_data_cannot_be_checked(tmp_path):
    data = _csv(tmp_path / "d.csv")
    with pytest.warns(RuntimeWarning, match="run R: the run records no fingerprint of its data files"):
        assert engine.check_data(None, get_dataset(f"csv:{data}"), "run R") is None
