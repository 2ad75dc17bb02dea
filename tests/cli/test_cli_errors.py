"""User errors in every subcommand: ONE line on stderr naming what was wrong (with the nearest valid
name where there is one), exit status 2, no usage dump, no traceback; ``--debug`` shows the traceback."""
import json
import subprocess
import sys

import pytest

from eoflow_fast.cli.main import main


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def vae_run(tmp_path):
    """A folder whose config.json names the vae family (eval parses its flags before loading weights)."""
    folder = tmp_path / "vae-run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model": "vae", "data": "dsprites"}))
    return folder


CASES = [
    (["evall"], "invalid choice: 'evall'", "did you mean 'eval'?"),
    (["train", "vaee"], "invalid choice: 'vaee'", "did you mean 'vae'?"),
    (["train", "toy", "--stepz", "3"], "unrecognized arguments: --stepz 3", "did you mean '--steps'?"),
    (["train", "toy", "--optimizer", "adan"], "argument --optimizer: invalid choice: 'adan'", "did you mean 'adam'?"),
    (["train", "eoflow", "--data", "digitz", "--steps", "1", "--run-dir", "RUN"], "unknown dataset spec 'digitz'",
     "did you mean 'digits'?"),
    (["train", "vae", "--data", "dsprite", "--steps", "1", "--run-dir", "RUN"], "unknown dataset spec 'dsprite'",
     "did you mean 'dsprites'?"),
    (["train", "eoflow", "--data", "folder:/nonexistent", "--steps", "1", "--run-dir", "RUN"],
     "no directory at '/nonexistent'", ""),
    (["train", "vae", "--model", "factorva"], "invalid choice: 'factorva'", "did you mean 'factorvae'?"),
    (["train", "toy", "--device", "meta", "--run-dir", "RUN"], "argument --device: expected 'auto', 'cpu'", ""),
    (["train", "toy", "--resume", "MISSING"], "argument --resume:", "does not exist"),
    (["eval", "MISSING"], "argument RUN_DIR: MISSING does not exist", ""),
    (["eval", "VAE", "--metrics", "mgi"], "unknown metric 'mgi'", "did you mean 'mig'?"),
    (["eval", "VAE", "--metrix", "mig"], "unrecognized arguments: --metrix mig", "did you mean '--metrics'?"),
    (["compress", "MISSING", "--core", "4"], "argument RUN_DIR:", "does not exist"),
    (["denoise", "MISSING", "--core", "4"], "argument RUN_DIR:", "does not exist"),
    (["traverse", "MISSING"], "argument RUN_DIR:", "does not exist"),
    (["traverse", "MISSING", "--dimz", "2"], "unrecognized arguments: --dimz 2", "did you mean '--dims'?"),
    (["ifp", "--data", "dsprite", "--out", "RUN"], "unknown dataset spec 'dsprite'", "did you mean 'dsprites'?"),
    (["bench", "affine_copling"], "unknown benchmark", "did you mean 'affine_coupling'?"),
    (["data", "inf", "mnist"], "invalid choice: 'inf'", "did you mean 'info'?"),
    # every subcommand: a misspelled flag, and a bad dataset / model / missing path where it takes one
    (["train", "toy", "--latnet", "3"], "unrecognized arguments: --latnet 3", "did you mean '--latent'?"),
    (["train", "eoflow", "--blockz", "2"], "unrecognized arguments: --blockz 2", "did you mean '--blocks'?"),
    (["train", "vae", "--latent-dimm", "3"], "unrecognized arguments: --latent-dimm 3", "did you mean '--latent-dim'?"),
    (["train", "deft", "--data", "dsprites_scram", "--steps", "1", "--run-dir", "RUN"],
     "unknown dataset spec 'dsprites_scram'", "did you mean 'dsprites_scream'?"),
    (["train", "deft", "--preset", "dsprite"], "invalid choice: 'dsprite'", "did you mean 'dsprites'?"),
    (["train", "deft", "--stage-stepz", "3"], "unrecognized arguments: --stage-stepz 3", "did you mean '--stage-steps'?"),
    (["train", "eoflow", "--data", "csv:/nonexistent.csv", "--steps", "1", "--run-dir", "RUN"], "/nonexistent.csv", ""),
    (["train", "toy", "--config", "MISSING"], "argument --config: cannot read", ""),
    (["eval", "VAE", "--checkpont", "x.pt"], "unrecognized arguments: --checkpont x.pt", "did you mean '--checkpoint'?"),
    (["compress", "MISSING", "--core", "4", "--gird"], "unrecognized arguments: --gird", "did you mean '--grid'?"),
    (["compress", "MISSING"], "the following arguments are required: --core", ""),
    (["denoise", "MISSING", "--core", "4", "--sigam", "0.1"], "unrecognized arguments: --sigam 0.1",
     "did you mean '--sigma'?"),
    (["denoise", "MISSING", "--core", "autoo"], "argument --core: expected 'auto' or an integer >= 1", ""),
    (["ifp", "--repeets", "2"], "unrecognized arguments: --repeets 2", "did you mean '--repeats'?"),
    (["ifp", "--schedule", "stairs"], "argument --schedule: invalid choice: 'stairs'", "did you mean 'staircase'?"),
    (["bench", "--quik"], "unrecognized arguments: --quik", "did you mean '--quick'?"),
    (["data", "info", "digitz"], "unknown dataset spec 'digitz'", "did you mean 'digits'?"),
    (["data", "info", "mnist", "--splt", "test"], "unrecognized arguments: --splt test", "did you mean '--split'?"),
    (["data", "info", "packed:MISSING"], "MISSING", ""),
    (["data", "verify", "MISSING"], "MISSING", ""),
    (["data", "pack", "MISSING", "RUN"], "MISSING", ""),
]


@pytest.mark.parametrize("argv, message, hint", CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_user_error_is_one_line_exit_2(argv, message, hint, tmp_path, vae_run, capsys):
    run_dir = tmp_path / "new-run"
    message = message.replace("MISSING", str(tmp_path / "nope"))
    argv = [a.replace("MISSING", str(tmp_path / "nope")).replace("RUN", str(run_dir)).replace("VAE", str(vae_run))
            for a in argv]
    status, out, err = _run(argv, capsys)
    assert status == 2, (status, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0] and hint in lines[0], lines[0]
    assert "Traceback" not in err and "usage:" not in err + out
    assert not run_dir.exists(), "a refused run must not leave a folder"


def test_debug_shows_the_traceback(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown dataset spec 'digitz'"):
        main(["--debug", "train", "eoflow", "--data", "digitz", "--run-dir", str(tmp_path / "r")])


def test_subprocess_misspelled_dataset(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "eoflow_fast.cli.main", "train", "vae", "--data", "digitz",
                           "--run-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "unknown dataset spec 'digitz'; did you mean 'digits'?" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [["bench", "--list"], ["ifp", "--data", "triangle", "--repeats", "1", "--steps", "4"]])
@pytest.mark.parametrize("under", ["", "sub"])
def test_out_folder_that_is_a_file_is_refused_at_parse_time(command, under, tmp_path, capsys):
    """ifp ran every test and then died in os.makedirs with a FileExistsError / NotADirectoryError
    traceback; bench ran the benchmarks and failed writing the result."""
    blocker = tmp_path / "results.json"
    blocker.write_text("{}")
    out = blocker / under if under else blocker
    status, _, err = _run([*command, "--out", str(out)], capsys)
    assert status == 2 and "Traceback" not in err
    what = "is a file" if not under else f"lies under the file {str(blocker)!r}"
    assert f"argument --out: expected a folder, got {str(out)!r}, which {what}" in err
    assert blocker.read_text() == "{}"
