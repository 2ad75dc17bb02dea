"""What ``train --resume RUN`` does with flags that differ from the run's config: the keys a resume
may change (engine.RESUME_MUTABLE) are accepted and recorded (config.json and the ``resume`` event of
metrics.jsonl), every other change is refused by name, and no flag is silently ignored. Before:
``--cpu-threads`` (documented as changeable) was refused by the engine after the CLI accepted it; a
new ``--steps`` reached the checkpoint but not config.json, so the next plain ``--resume`` said the run
was 'already past --steps 20'; ``--overwrite`` with ``--resume`` was silently ignored."""
import pytest

from eoflow_fast.cli.main import main
from eoflow_fast.train import checkpoint, engine
from eoflow_fast.train.logging import read_metrics


def _status(argv):
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "toy", "--steps", "4", "--run-dir", str(run), "--no-progress"]) == 0
    return run


def test_a_longer_run_is_recorded_and_resumes_again(run, capsys):
    capsys.readouterr()
    assert main(["train", "toy", "--resume", str(run), "--steps", "6", "--cpu-threads", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "resume at step 4: cpu_threads 1 -> 2, steps 4 -> 6; recorded in config.json" in err
    config = engine.read_config(run)
    assert config["steps"] == 6 and config["cpu_threads"] == 2
    (event,) = [r for r in read_metrics(run, "event") if r["event"] == "resume"]
    assert event["step"] == 4 and event["changes"] == {"cpu_threads": [1, 2], "steps": [4, 6]}
    # the config.json now holds the length trained to: a plain resume is at its end, not "already past" it
    assert main(["train", "toy", "--resume", str(run), "--steps", "8", "--no-progress"]) == 0
    assert checkpoint.latest_path(run).name == "ckpt-00000008.pt"
    assert engine.open_run(run).step == 8  # config.json and the checkpoint agree


def test_a_cosine_run_says_what_a_new_length_does(tmp_path, capsys):
    run = tmp_path / "cos"
    assert main(["train", "toy", "--steps", "4", "--lr-schedule", "cosine", "--run-dir", str(run),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "toy", "--resume", str(run), "--steps", "8", "--no-progress"]) == 0
    assert "the cosine schedule now decays to 0 at step 8 instead of 4" in capsys.readouterr().err


@pytest.mark.parametrize("flags, named", [
    (["--hidden", "64"], "--hidden (32 -> 64)"),
    (["--lr", "0.1"], "--lr (0.001 -> 0.1)"),
    (["--seed", "3"], "--seed (0 -> 3)"),
    (["--batch-size", "32"], "--batch-size (64 -> 32)"),
    (["--code-penalty", "0.5"], "--code-penalty (0.001 -> 0.5)"),
])
def test_a_change_of_what_the_losses_depend_on_is_refused(run, capsys, flags, named):
    capsys.readouterr()
    assert _status(["train", "toy", "--resume", str(run), "--steps", "6", *flags, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"argument --resume: {named} cannot change on resume" in err
    assert checkpoint.latest_path(run).name == "ckpt-00000004.pt" and engine.read_config(run)["steps"] == 4


def test_overwrite_with_resume_is_refused(run, capsys):
    capsys.readouterr()
    assert _status(["train", "toy", "--resume", str(run), "--steps", "6", "--overwrite", "--no-progress"]) == 2
    assert "argument --overwrite: it lets a fresh run write into a non-empty folder" in capsys.readouterr().err
    assert checkpoint.latest_path(run).name == "ckpt-00000004.pt"
