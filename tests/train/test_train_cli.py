"""``eoflow-fast``: end-to-end train/eval, --help everywhere, exit status 2 on bad flags."""
import json
import subprocess

import pytest

from eoflow_fast.cli import main as cli_main
from eoflow_fast.cli.main import COMMANDS, main
from eoflow_fast.train import checkpoint
from eoflow_fast.train.logging import read_metrics


def _exit_code(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def test_train_toy_end_to_end_then_eval(tmp_path, python, subprocess_env, capsys):
    proc = subprocess.run([python, "-m", "eoflow_fast.cli.main", "train", "toy", "--steps", "20", "--no-progress",
                           "--json"],
                          cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("toy-")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "toy" and config["steps"] == 20 and config["hidden"] == 32
    assert [s for s, _ in checkpoint.list_checkpoints(run_dir)] == [20]
    train = read_metrics(run_dir, "train")
    assert [r["step"] for r in train] == list(range(1, 21))
    assert all(abs(r["loss"] - r["recon"] - r["code_penalty"]) < 1e-6 for r in train)
    assert json.loads(proc.stdout)["step"] == 20

    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 20 and result["checkpoint"] == "ckpt-00000020.pt"
    assert 0.0 < result["recon_mse"] < 2.0 and -1.0 < result["factor_r2"] <= 1.0
    assert json.loads((run_dir / "eval.jsonl").read_text().splitlines()[-1]) == result


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_subcommand(command, capsys):
    assert _exit_code([command, "--help"]) == 0
    assert f"usage: eoflow-fast {command}" in capsys.readouterr().out


def test_help_of_family_and_run_lists_their_flags(tmp_path, capsys):
    assert _exit_code(["train", "toy", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--steps", "--resume", "--grad-clip", "--amp", "--hidden", "--code-penalty"):
        assert flag in out
    assert main(["train", "toy", "--steps", "2", "--run-dir", str(tmp_path), "--no-progress"]) == 0
    capsys.readouterr()
    assert _exit_code(["eval", str(tmp_path), "--help"]) == 0
    assert "--split" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "toy", "--steps", "0"], "argument --steps: expected an integer >= 1, got 0"),
    (["train", "toy", "--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
    (["train", "toy", "--stepz", "3"], "unrecognized arguments: --stepz"),
    (["train", "toy", "--amp", "fp8"], "argument --amp: invalid choice: 'fp8'"),
    (["train", "nosuchmodel"], "argument MODEL: invalid choice: 'nosuchmodel'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train", "toy", "--config", "/nonexistent/c.yaml"], "argument --config: cannot read"),
])
def test_bad_flags_exit_2_with_a_message_naming_them(argv, message, capsys):
    assert _exit_code(argv) == 2
    assert message in capsys.readouterr().err


def test_config_file_under_flags_and_resume_rules(tmp_path, capsys):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("steps: 7\nlr: 0.01\nhidden: 8\n")
    run = tmp_path / "run"
    assert main(["train", "toy", "--config", str(cfg_file), "--steps", "4", "--run-dir", str(run), "--no-progress"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["steps"], config["lr"], config["hidden"]) == (4, 0.01, 8)

    capsys.readouterr()
    assert _exit_code(["train", "toy", "--resume", str(run), "--lr", "0.5"]) == 2
    assert "--lr (0.01 -> 0.5) cannot change on resume" in capsys.readouterr().err
    assert main(["train", "toy", "--resume", str(run), "--steps", "6", "--no-progress"]) == 0
    assert [r["step"] for r in read_metrics(run, "train")] == [1, 2, 3, 4, 5, 6]

    bad = tmp_path / "bad.json"
    bad.write_text('{"stepz": 3}')
    assert _exit_code(["train", "toy", "--config", str(bad)]) == 2
    assert "unknown key 'stepz'" in capsys.readouterr().err
    assert main(["train", "toy", "--run-dir", str(run), "--no-progress"]) == 2  # fresh run into a used folder
    assert "already holds a run" in capsys.readouterr().err


def test_missing_subcommand_module_gives_a_clear_message(monkeypatch, capsys):
    monkeypatch.setattr(cli_main, "COMMANDS", ["train", "notyetwritten"])
    assert _exit_code(["notyetwritten"]) == 2
    assert "module eoflow_fast.cli.notyetwritten is not present" in capsys.readouterr().err
    assert _exit_code(["--help"]) == 0
    assert "notyetwritten" in capsys.readouterr().out
