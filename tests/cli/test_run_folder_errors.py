"""Every command that opens a run folder says what is actually wrong with it, in one line. Before:
compress/denoise/traverse labelled a run whose config.json held a value the family refuses
"argument RUN_DIR: ...", and a missing path, a file and an empty folder all read "is not a run
folder: config.json is missing"."""
import json
import shutil

import pytest

from eoflow_fast.cli.main import main
from eoflow_fast.train.run_folder import read_config, write_config

COMMANDS = {"compress": ["compress", "RUN", "--core", "2"], "denoise": ["denoise", "RUN", "--core", "2"],
            "traverse": ["traverse", "RUN"], "eval": ["eval", "RUN", "--no-plots", "--no-progress"],
            "resume": ["train", "eoflow", "--resume", "RUN", "--steps", "2", "--no-progress"]}


@pytest.fixture
def good_run(tiny_eoflow_run):
    return tiny_eoflow_run  # the cases copy it before changing anything


def _missing(run, target):
    return target / "nope"


def _file(run, target):
    target.write_text("x")
    return target


def _empty(run, target):
    target.mkdir()
    return target


def _no_config(run, target):
    shutil.copytree(run, target)
    (target / "config.json").unlink()
    return target


def _damaged_config(run, target):
    shutil.copytree(run, target)
    (target / "config.json").write_text("{bad")
    return target


def _refused_setting(run, target):
    shutil.copytree(run, target)
    write_config(target, {**read_config(run), "arch": "vit"})
    return target


def _no_checkpoint(run, target):
    shutil.copytree(run, target)
    for p in target.glob("ckpt-*.pt"):
        p.unlink()
    return target


def _truncated_checkpoint(run, target):
    shutil.copytree(run, target)
    (ckpt,) = target.glob("ckpt-*.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:500])
    return target


CASES = [  # (make, exit status, message; {run}: the path given)
    (_missing, 2, "error: argument {arg}: {run} does not exist"),
    (_file, 2, "error: argument {arg}: {run} is a file, not a run folder"),
    (_empty, 2, "error: argument {arg}: {run} is not a run folder: it has no config.json (it is empty)"),
    (_no_config, 2, "error: argument {arg}: {run} is not a run folder: it has no config.json (it holds ckpt-00000001.pt"),
    (_damaged_config, 1, "error: {run}/config.json is not valid JSON"),
    (_refused_setting, 1, "error: run {run}: the model cannot be rebuilt from {run}/config.json (ValueError: eoflow: "
                          "--arch must be one of ('mlp', 'glow', 'realnvp'), got 'vit')"),
    (_no_checkpoint, 1, "error: no checkpoint (ckpt-*.pt) in run folder {run}"),
    (_truncated_checkpoint, 1, "error: checkpoint {run}/ckpt-00000001.pt is corrupt or truncated"),
]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("make, code, message", CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_each_run_folder_problem_is_named(good_run, tmp_path, capsys, command, make, code, message):
    if command == "resume" and make is _no_checkpoint:
        pytest.skip("a resume of a run killed before its first checkpoint starts it again (engine contract)")
    run = make(good_run, tmp_path / "run")
    argv = [str(run) if a == "RUN" else a for a in COMMANDS[command]]
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if "Warning" not in line]
    expected = message.format(arg="--resume" if command == "resume" else "RUN_DIR", run=run)
    assert status == code and len(lines) == 1 and expected in lines[0], err
    if code == 1:
        assert "argument RUN_DIR" not in err and "argument --resume" not in err


def test_checkpoint_flag_naming_a_folder_says_so(good_run, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(good_run), "--core", "2", "--checkpoint", str(good_run)])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and f"checkpoint {good_run} is a folder, not a checkpoint file" in err, err


def test_an_unreadable_data_file_is_named_as_the_data(capsys):
    """Opening a run reads its data: a shard / CSV / image error is the data's, not config.json's."""
    from eoflow_fast.cli.common import run_folder_error
    from eoflow_fast.data._shards import ShardError

    with pytest.raises(SystemExit) as exc:
        run_folder_error("eoflow-fast eval", "RUN", ShardError("shard-00001.npy is truncated"))
    err = capsys.readouterr().err
    assert exc.value.code == 1
    assert "run RUN: its data cannot be read (ShardError: shard-00001.npy is truncated)" in err and "config" not in err


def test_a_checkpoint_without_the_models_extra_state_is_a_checkpoint_error(tmp_path, capsys):
    """A VAE keeps its KL history outside its parameters; a checkpoint without it (hand-made or
    altered) read as KeyError: 'extra' under "the model cannot be rebuilt from config.json"."""
    from eoflow_fast.train import checkpoint

    run = tmp_path / "vae"
    assert main(["train", "vae", "--model", "vanilla", "--data", "fa15", "--steps", "1", "--batch-size", "16",
                 "--no-progress", "--run-dir", str(run)]) == 0
    (path,) = run.glob("ckpt-*.pt")
    payload = checkpoint.load(path)
    del payload["extra"]
    checkpoint.write_atomic(path, checkpoint.encode(payload))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(run), "--no-progress"])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and f"checkpoint {path} has no 'extra' entry" in err, err
