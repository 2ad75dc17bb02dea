"""An image whose header reads (so ``folder:`` keeps it when the dataset is built) but whose body is
cut short fails when training reads it: one line naming the file, exit status 1, in the main process
and through a DataLoader worker alike. Before: a Python traceback (the worker's inside it)."""
import pytest

from eoflow_fast.cli.main import main


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_truncated_image_met_in_training_is_one_line_naming_it(tmp_path, random_pngs, capsys, workers):
    folder = random_pngs(tmp_path / "imgs", [f"im{i:02d}.png" for i in range(12)], (8, 8))
    bad = folder / "im03.png"
    bad.write_bytes(bad.read_bytes()[:-40])  # the header reads, the pixel data does not
    capsys.readouterr()
    status = main(["train", "vae", "--data", f"folder:{folder}", "--encoder", "lite", "--latent-dim", "2",
                   "--steps", "4", "--batch-size", "11", "--eval-every", "0", "--no-progress",
                   "--num-workers", workers, "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1, err
    assert err[0].startswith(f"eoflow-fast train: error: unreadable image {bad}: image file is truncated; "
                             "remove or replace the file"), err
