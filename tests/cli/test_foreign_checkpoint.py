"""A checkpoint of another family or another architecture copied into a run folder is refused by
every command and by the Python API, naming both sides, and nothing is loaded. Before: a toy
checkpoint in an eoflow run was reported as 'was not trained with config.json (arch: None in the
checkpoint, 'mlp' in config.json, ... and 29 more)', the family lost among the keys, and ``--resume``
said 'the config differs ...; only [...] may change on resume' as if the user had changed a flag."""
import shutil

import pytest

from eoflow_fast.cli.main import main
from eoflow_fast.train import checkpoint, engine

FLOW = ["--steps", "1", "--batch-size", "32", "--blocks", "1", "--hidden", "8", "--eval-samples", "16",
        "--entropy-samples", "8", "--core-sizes", "2", "--no-progress", "--data", "fa15"]
COMMANDS = {"eval": ["eval", "RUN", "--no-progress"], "compress": ["compress", "RUN", "--core", "2"],
            "denoise": ["denoise", "RUN", "--core", "2"], "traverse": ["traverse", "RUN"],
            "resume": ["train", "eoflow", "--resume", "RUN", "--steps", "2", "--no-progress"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("foreign")
    assert main(["train", "eoflow", *FLOW, "--run-dir", str(root / "flow")]) == 0
    assert main(["train", "eoflow", *FLOW, "--hidden", "16", "--run-dir", str(root / "wide")]) == 0
    assert main(["train", "toy", "--steps", "1", "--run-dir", str(root / "toy"), "--no-progress"]) == 0
    return root


def _planted(runs, tmp_path, donor):
    run = tmp_path / "run"
    shutil.copytree(runs / "flow", run)
    shutil.copy(runs / donor / "ckpt-00000001.pt", run / "ckpt-00000001.pt")
    return run


EXPECTED = {
    "toy": "checkpoint {ckpt}/ckpt-00000001.pt holds a 'toy' model, {run}/config.json is a 'eoflow' run",
    "wide": "checkpoint {ckpt}/ckpt-00000001.pt was not trained with {run}/config.json (hidden: 16 in the "
            "checkpoint, 8 in config.json)",
}


def _pattern(donor, run, ckpt):
    return EXPECTED[donor].format(run=run, ckpt=ckpt).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("donor", sorted(EXPECTED))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_names_both_sides(runs, tmp_path, capsys, donor, command):
    run = _planted(runs, tmp_path, donor)
    before = (run / "ckpt-00000001.pt").read_bytes()
    capsys.readouterr()
    try:
        status = main([str(run) if a == "RUN" else a for a in COMMANDS[command]])
    except SystemExit as exc:
        status = exc.code
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "Warning" not in line]
    assert status == 1 and len(err) == 1 and EXPECTED[donor].format(run=run, ckpt=run) in err[0], err
    assert [p.name for _, p in checkpoint.list_checkpoints(run)] == ["ckpt-00000001.pt"]
    assert (run / "ckpt-00000001.pt").read_bytes() == before  # nothing trained on, nothing rewritten


@pytest.mark.parametrize("donor", sorted(EXPECTED))
def test_the_python_api_names_both_sides(runs, tmp_path, donor):
    from eoflow_fast.flows.family import open_eoflow_run

    run = _planted(runs, tmp_path, donor)
    for load in (engine.load_run, engine.open_run, open_eoflow_run):
        with pytest.raises(checkpoint.CheckpointError, match=_pattern(donor, run, run)):
            load(run)
    with pytest.raises(checkpoint.CheckpointError, match=_pattern(donor, runs / "flow", runs / donor)):
        engine.open_run(runs / "flow", runs / donor / "ckpt-00000001.pt")  # --checkpoint of another run
