"""End-of-run console output, resolved config.json, --cpu-threads and flow-run metrics, in-process
at tiny sizes."""
import json

import pytest
import torch

from eoflow_fast.cli.main import main
from eoflow_fast.vae.family import resolve_hparams, resolved_flags

FLOW_FLAGS = ["--steps", "3", "--batch-size", "32", "--blocks", "2", "--hidden", "16", "--eval-samples", "32",
              "--entropy-samples", "16", "--no-progress"]


def test_train_ends_with_a_short_summary_and_json_on_request(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "toy", "--steps", "4", "--run-dir", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].startswith("train toy: 4 steps in ") and "steps/s" in lines[0]
    assert any(line.split() == ["train", "recon", line.split()[-1]] for line in lines)
    assert any(line.split()[0] == "factor_r2" for line in lines[1:])
    assert lines[-1].startswith(f"files in {run}: ") and "config.json" in lines[-1] and "ckpt-00000004.pt" in lines[-1]
    assert len(lines) < 20 and "{" not in out
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["step"] == 4 and "factor_r2" in record
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"eval {run}: toy run at step 4 (ckpt-00000004.pt)") and "{" not in out


def test_progress_shows_a_single_term_once(tmp_path, capsys):
    """A family with one optimized term (EOFlow's "objective"): the bar does not show the same
    number twice, under "loss" and under the term's name; several terms keep their sum "loss"."""
    from eoflow_fast.train import logging as train_logging

    shown = []
    original = train_logging.RunLog.progress
    train_logging.RunLog.progress = lambda self, step, values: shown.append(dict(values))
    try:
        assert main(["train", "eoflow", "--data", "fa15", *FLOW_FLAGS, "--log-every", "1",
                     "--run-dir", str(tmp_path / "flow")]) == 0
        single = list(shown)
        shown.clear()
        assert main(["train", "toy", "--steps", "2", "--log-every", "1", "--run-dir", str(tmp_path / "toy")]) == 0
    finally:
        train_logging.RunLog.progress = original
    assert single and all("loss" not in s and "objective" in s for s in single), single
    assert shown and all({"loss", "recon", "code_penalty"} <= set(s) for s in shown), shown


def test_config_json_holds_resolved_values(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "vae", "--model", "factorvae", "--data", "wine", "--encoder", "mlp", "--latent-dim", "2",
                 "--steps", "1", "--batch-size", "16", "--no-progress", "--run-dir", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    config.pop("_checksum")  # written by the engine with every config.json
    assert config["gamma"] == 10.0 and config["recon"] == "gaussian_learned" and config["disc_width"] == 1000
    for preset in ("dsprites", "scream"):  # Table 3 presets resolve beta (no "beta": null)
        name, hp = resolve_hparams({"objective": "beta", "preset": preset}, 1000)
        flags = resolved_flags(name, hp)
        assert flags["beta"] is not None and flags["beta"] == hp["beta"]
    name, hp = resolve_hparams({"objective": "dipvae1", "lambda_od": 2.0}, 10)
    assert resolved_flags(name, hp)["lambda_d"] == 20.0


def test_cpu_threads_is_applied_before_the_work(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    assert main(["train", "toy", "--steps", "1", "--cpu-threads", "2", "--no-progress",
                 "--run-dir", str(tmp_path / "r")]) == 0
    assert calls[:1] == [2]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["cpu_threads"] == 2


def test_flow_run_on_ground_truth_data_gets_the_metrics(tmp_path, capsys):
    run = tmp_path / "fa"
    assert main(["train", "eoflow", "--data", "fa15", *FLOW_FLAGS, "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--metrics", "mig,flow", "--num-train", "200", "--no-plots", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert 0 <= record["metrics"]["mig"]["mig"] <= 1
    flow = record["metrics"]["flow"]
    # MTC = sum_i H_i - H (Hadamard: >= 0), from the same Jacobians
    assert flow["mtc"] == pytest.approx(sum(flow["explained_entropy"]) - flow["total_entropy"], rel=1e-4, abs=1e-4)
    assert flow["mtc"] >= -1e-4
    assert "bits_per_dim" in record  # the flow report is still there


def test_flow_metrics_need_ground_truth(tmp_path, capsys):
    run = tmp_path / "digits"
    assert main(["train", "eoflow", "--data", "digits", *FLOW_FLAGS, "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--metrics", "mig", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "argument --metrics: run data 'digits' has no ground-truth factors" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("family", ["eoflow", "toy"])
def test_eval_runs_with_the_family_defaults(tmp_path, capsys, family):
    """``eval RUN`` with no flags at all (a flow's default is "no metrics", not the string 'None')."""
    run = tmp_path / family
    flags = ["--data", "digits", *FLOW_FLAGS] if family == "eoflow" else ["--steps", "2", "--no-progress"]
    assert main(["train", family, *flags, "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    captured = capsys.readouterr()
    assert f"eval {run}: {family} run at step" in captured.out and "error" not in captured.err
