"""eval flags out of range and metric refusals are one error line, never a traceback (before:
--num-train 1, --metric-seed -1 or 2**32, or a draw with a constant factor raised tracebacks)."""
import pytest

from eoflow_fast.cli.main import main

FLOW_FLAGS = ["--steps", "1", "--batch-size", "32", "--blocks", "1", "--hidden", "8", "--eval-samples", "16",
              "--entropy-samples", "8", "--core-sizes", "2", "--no-progress"]


@pytest.fixture(scope="module")
def fa_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("fa") / "run"
    assert main(["train", "eoflow", "--data", "fa15", *FLOW_FLAGS, "--run-dir", str(run)]) == 0
    return run


@pytest.mark.parametrize("flags, code, message", [
    (["--num-train", "1"], 2, "argument --num-train: expected an integer >= 2, got 1"),
    (["--num-test", "0"], 2, "argument --num-test: expected an integer >= 2, got 0"),
    (["--metric-seed", "-1"], 2, "argument --metric-seed: expected an integer >= 0, got -1"),
    (["--metric-seed", str(2**32), "--num-train", "50"], 1, "evaluate: rng seed must be in [0, 2**32), got 4294967296"),
])
def test_eval_metric_flags_fail_in_one_line(fa_run, capsys, flags, code, message):
    capsys.readouterr()
    try:
        status = main(["eval", str(fa_run), "--metrics", "mig", "--no-plots", "--no-progress", *flags])
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err
    assert status == code and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
