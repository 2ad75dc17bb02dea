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


def test_metrics_json_keeps_each_checkpoints_results_apart(tmp_path, capsys):
    """Before: eval --metrics mig at step 1, training on to step 2, eval --metrics nmi left step 1's
    mig beside step 2's nmi in one flat metrics.json, read as one model's row."""
    import json

    run = tmp_path / "run"
    flags = ["--data", "fa15", *FLOW_FLAGS, "--ckpt-every", "1", "--keep", "5"]
    assert main(["train", "eoflow", *flags, "--run-dir", str(run)]) == 0
    eval_flags = ["--no-plots", "--no-progress", "--num-train", "200"]
    assert main(["eval", str(run), "--metrics", "mig", *eval_flags]) == 0
    assert main(["train", "eoflow", *[f if f != "1" else "2" for f in flags[:4]], *flags[4:], "--resume", str(run)]) == 0
    assert main(["eval", str(run), "--metrics", "nmi", *eval_flags]) == 0
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["checkpoint"]["step"] == 2 and saved["checkpoint"]["checkpoint"] == "ckpt-00000002.pt"
    assert set(saved["metrics"]) == {"nmi"}
    (earlier,) = saved["earlier"].values()
    assert earlier["checkpoint"]["step"] == 1 and set(earlier["metrics"]) == {"mig"}
    report = json.loads((run / "eval.json").read_text())
    assert report["checkpoint"] == saved["checkpoint"]
    assert (run / "eval.txt").read_text().startswith(f"EOFlow evaluation (D = 15), step 2 (ckpt-00000002.pt, weights "
                                                     f"{saved['checkpoint']['weights'][:12]})")
    # the older checkpoint again: its block is current, and it takes the new metric beside its mig
    assert main(["eval", str(run), "--checkpoint", str(run / "ckpt-00000001.pt"), "--metrics", "nmi", *eval_flags]) == 0
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["checkpoint"]["step"] == 1 and set(saved["metrics"]) == {"mig", "nmi"}
    (earlier,) = saved["earlier"].values()
    assert earlier["checkpoint"]["step"] == 2 and set(earlier["metrics"]) == {"nmi"}
