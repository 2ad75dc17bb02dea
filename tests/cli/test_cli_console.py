"""The console of a run, each thing once: ``--no-progress`` silences the progress helper in ``eval``,
``ifp`` and ``train``; the evaluation tables are not printed by the library besides the command's
summary; a single optimized term is not shown a second time as ``loss``. In-process, tiny sizes."""
import dataclasses
import json

from eoflow_fast import progress
from eoflow_fast.cli.main import main
from eoflow_fast.train import registry

FLOW_FLAGS = ["--steps", "2", "--batch-size", "32", "--blocks", "2", "--hidden", "16", "--eval-samples", "32",
              "--entropy-samples", "16", "--core-sizes", "1,4,15"]
IFP_FLAGS = ["--data", "dsprites", "--factors", "0", "--repeats", "2", "--steps", "3", "--mi-every", "1",
             "--batch-size", "4", "--mi-samples", "2", "--encoder", "lite"]


def _probe_toy(monkeypatch, seen: list):
    """The toy family with an evaluate that walks a progress bar and records whether it was enabled."""
    spec = registry.get("toy")

    def evaluate(run_dir, model, config, args, source=None):
        seen.append(progress.is_enabled())
        for _ in progress.bar(range(2), "probe", unit="item"):
            pass
        return {"probe": 1.0}

    probe = dataclasses.replace(spec, evaluate=evaluate)
    monkeypatch.setattr(registry, "get", lambda name: probe if name == "toy" else spec)


def test_eval_no_progress_silences_the_helper(tmp_path, capsys, monkeypatch):
    run = tmp_path / "toy"
    assert main(["train", "toy", "--steps", "2", "--run-dir", str(run), "--no-progress"]) == 0
    seen = []
    _probe_toy(monkeypatch, seen)
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    assert "probe: 2/2 item" in capsys.readouterr().err
    assert main(["eval", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert seen == [True, False] and "probe: " not in err, err
    assert progress.is_enabled()  # restored after the command


def test_train_no_progress_silences_the_helper_in_the_evaluation(tmp_path, capsys, monkeypatch):
    seen = []
    _probe_toy(monkeypatch, seen)
    assert main(["train", "toy", "--steps", "2", "--run-dir", str(tmp_path / "a"), "--no-progress"]) == 0
    assert "probe: " not in capsys.readouterr().err
    assert main(["train", "toy", "--steps", "2", "--run-dir", str(tmp_path / "b")]) == 0
    assert "probe: 2/2 item" in capsys.readouterr().err
    assert seen == [False, True]


def test_ifp_no_progress_silences_the_helper(tmp_path, capsys):
    assert main(["ifp", *IFP_FLAGS, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "ifp: factor x repeat: 2/2 run" in err and "annealing steps: 3/3 step" in err
    assert main(["ifp", *IFP_FLAGS, "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "factor x repeat" not in captured.err and "annealing steps" not in captured.err, captured.err
    assert json.loads((tmp_path / "b" / "ifp.json").read_text())["settings"]["no_progress"] is True


def _numbers(lines):
    """{row name: value text} of the summary table rows."""
    return {" ".join(line.split()[:-1]): line.split()[-1] for line in lines if line.startswith("  ")}


def test_flow_run_prints_its_evaluation_once(tmp_path, capsys):
    run = tmp_path / "flow"
    assert main(["train", "eoflow", "--data", "fa15", *FLOW_FLAGS, "--run-dir", str(run)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "EOFlow evaluation" not in out + captured.err  # the full table is a file, not a second print
    assert (run / "eval.txt").read_text().startswith("EOFlow evaluation (D = 15)")
    rows = _numbers(out.splitlines())
    assert "train objective" in rows and "train loss" not in rows, rows
    assert "eval/objective" in rows and "eval/loss" not in rows and not any("_" == k.split("/")[-1][0] for k in rows)
    assert out.count("psnr_C4") == 1 and "eval.txt" in out.splitlines()[-1] and "eval @" not in out
    eval_line = next(line for line in captured.err.splitlines() if "eval @ 2:" in line)
    assert "eval/objective=" in eval_line and "eval/loss=" not in eval_line and "_nll" not in eval_line
    record = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "eval"][-1]
    assert record["kind"] == "eval" and record["eval/loss"] == record["eval/objective"]  # the log keeps both
    capsys.readouterr()
    assert main(["eval", str(run), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "EOFlow evaluation" not in out and out.count("bits_per_dim ") == 1 and "eval.txt" in out


def test_toy_summary_keeps_the_sum_of_several_terms(tmp_path, capsys):
    assert main(["train", "toy", "--steps", "2", "--run-dir", str(tmp_path / "t"), "--no-progress"]) == 0
    rows = _numbers(capsys.readouterr().out.splitlines())
    assert {"train loss", "train recon", "train code_penalty", "eval/loss", "eval/recon"} <= set(rows), rows
    assert "eval/_code_std" not in rows


def test_metric_report_is_not_printed_by_the_library(tmp_path, capsys):
    from eoflow_fast.metrics.report import write_report

    write_report({"mig": {"mig": 0.25}}, tmp_path)
    assert capsys.readouterr().out == ""
    write_report({"mig": {"mig": 0.25}}, tmp_path, print_table=True)
    assert "mig.mig" in capsys.readouterr().out


def test_off_a_terminal_the_train_bar_is_a_few_plain_lines(tmp_path, capsys):
    """stderr is not a terminal here: at most 20 ``train: i/N steps`` lines, the last at N, no tqdm frames."""
    assert main(["train", "toy", "--steps", "200", "--log-every", "1", "--run-dir", str(tmp_path / "t")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("train: ")]
    assert 10 <= len(lines) <= 20 and lines[-1].startswith("train: 200/200 steps, loss="), lines
    assert "\r" not in err and "it/s" not in err
