"""Every config key has a type and range check at parse time, for flags and ``--config`` files
(YAML and JSON) alike: exit 2 naming the key, no folder left behind (issue 13 item 18)."""
import argparse
import json

import pytest

from eoflow_fast.cli.main import main
from eoflow_fast.train import argtypes


def _refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("flag, value, message", [
    ("--hidden", "-1", "argument --hidden: expected an integer >= 1, got -1"),
    ("--hidden", "0", "argument --hidden: expected an integer >= 1, got 0"),
    ("--hidden", "2.5", "argument --hidden: expected an integer >= 1, got '2.5'"),
    ("--latent", "0", "argument --latent: expected an integer >= 1, got 0"),
    ("--lr", "inf", "argument --lr: expected a finite number in (0, inf), got inf"),
    ("--lr", "nan", "argument --lr: expected a finite number in (0, inf), got nan"),
    ("--lr", "0", "argument --lr: expected a finite number in (0, inf), got 0"),
    ("--grad-clip", "-1", "argument --grad-clip: expected a finite number in [0, inf), got -1"),
    ("--device", "meta", "argument --device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'meta'"),
    ("--noise", "-0.1", "argument --noise: expected a finite number in [0, inf), got -0.1"),
])
def test_flags_are_typed(flag, value, message, tmp_path, capsys):
    run = tmp_path / "run"
    assert message in _refused(["train", "toy", flag, value, "--run-dir", str(run)], capsys)
    assert not run.exists()


BAD_KEYS = [
    ({"steps": True}, "key 'steps': expected integer >= 1, got true"),
    ({"lr": True}, "key 'lr': expected number in (0, inf), got true"),
    ({"hidden": -5}, "key 'hidden': expected an integer >= 1, got -5"),
    ({"hidden": 2.5}, "key 'hidden': expected an integer >= 1, got '2.5'"),
    ({"hidden": 0}, "key 'hidden': expected an integer >= 1, got 0"),
    ({"latent": 0}, "key 'latent': expected an integer >= 1, got 0"),
    ({"lr": float("inf")}, "key 'lr': expected a finite number in (0, inf), got inf"),
    ({"lr": 0}, "key 'lr': expected a finite number in (0, inf), got 0"),
    ({"lr": "1e-3x"}, "key 'lr': expected a number, got '1e-3x'"),
    ({"device": "meta"}, "key 'device': expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'meta'"),
    ({"optimizer": "adan"}, "key 'optimizer': expected one of ['adam', 'adamw', 'sgd'], got 'adan'"),
    ({"progress": 1}, "key 'progress': expected true or false, got 1"),
    ({"steps": None}, "key 'steps': expected a value, got null"),
    ({"stepz": 3}, "unknown key 'stepz'; did you mean 'steps'?"),
]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@pytest.mark.parametrize("values, message", BAD_KEYS, ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_config_file_keys_are_typed(values, message, suffix, tmp_path, capsys):
    path = tmp_path / f"cfg{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(values))
    else:
        import yaml

        path.write_text(yaml.safe_dump(values))
    run = tmp_path / "run"
    assert message in _refused(["train", "toy", "--config", str(path), "--run-dir", str(run)], capsys)
    assert not run.exists()


@pytest.mark.parametrize("name, text", [("cfg.yaml", "steps: 5\nlr: 0.1\nsteps: 7\n"),
                                        ("cfg.json", '{"steps": 5, "lr": 0.1, "steps": 7}')])
def test_duplicate_keys_are_an_error(name, text, tmp_path, capsys):
    path = tmp_path / name
    path.write_text(text)
    assert "duplicate key 'steps'" in _refused(["train", "toy", "--config", str(path)], capsys)


def test_valid_config_values_are_parsed_like_flags(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text("steps: 3\nlr: 1.0e-2\nhidden: 8\ndevice: cpu\nprogress: false\n")
    run = tmp_path / "run"
    assert main(["train", "toy", "--config", str(path), "--run-dir", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["steps"], config["lr"], config["hidden"], config["progress"]) == (3, 0.01, 8, False)
    assert isinstance(config["steps"], int) and not isinstance(config["steps"], bool)


def test_check_config_value_lists_and_nulls():
    parser = argparse.ArgumentParser()
    betas = parser.add_argument("--betas", type=argtypes.float_in(0.0), nargs="+", default=None)
    sizes = parser.add_argument("--sizes", type=lambda t: [int(s) for s in t.split(",")], default=None)
    assert argtypes.check_config_value(betas, [1, 2.5]) == [1.0, 2.5]
    assert argtypes.check_config_value(betas, None) is None
    assert argtypes.check_config_value(sizes, [4, 16]) == [4, 16]
    with pytest.raises(argparse.ArgumentTypeError, match="expected a list"):
        argtypes.check_config_value(betas, 1.0)
    with pytest.raises(argparse.ArgumentTypeError, match="got true"):
        argtypes.check_config_value(betas, [True])
