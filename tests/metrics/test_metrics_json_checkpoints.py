"""metrics.json never mixes checkpoints. Before: ``write_report`` merged every result into one flat
{metric: scores} mapping, so an eval of checkpoint A (mig) and then of checkpoint B (nmi), or after
training went on, left A's mig beside B's nmi with nothing saying they came from different weights."""
import json

from eoflow_fast.metrics.report import OLDER_FILE, write_report

A = {"step": 10, "checkpoint": "ckpt-00000010.pt", "weights": "a" * 64}
B = {"step": 20, "checkpoint": "ckpt-00000020.pt", "weights": "b" * 64}


def _saved(folder):
    return json.loads((folder / "metrics.json").read_text())


def test_results_of_other_weights_are_kept_apart_under_their_checkpoint(tmp_path):
    write_report({"mig": {"mig": 0.1}}, tmp_path, source=A)
    write_report({"nmi": {"nmi1_sum": 2.0}}, tmp_path, source=B)
    saved = _saved(tmp_path)
    assert saved["label"] == "step 20, weights bbbbbbbbbbbb" and saved["checkpoint"] == B
    assert saved["metrics"] == {"nmi": {"nmi1_sum": 2.0}}  # not A's mig beside B's nmi
    assert list(saved["earlier"]) == ["step 10, weights aaaaaaaaaaaa"]
    assert saved["earlier"]["step 10, weights aaaaaaaaaaaa"]["checkpoint"] == A
    assert saved["earlier"]["step 10, weights aaaaaaaaaaaa"]["metrics"] == {"mig": {"mig": 0.1}}
    # back to A: its block is current again and takes the new metric; B's goes to earlier
    write_report({"nmi": {"nmi1_sum": 1.5}}, tmp_path, source=A)
    saved = _saved(tmp_path)
    assert saved["checkpoint"] == A and saved["metrics"] == {"mig": {"mig": 0.1}, "nmi": {"nmi1_sum": 1.5}}
    assert saved["earlier"]["step 20, weights bbbbbbbbbbbb"]["metrics"] == {"nmi": {"nmi1_sum": 2.0}}


def test_same_step_other_weights_is_another_checkpoint(tmp_path):
    """A branch re-trains from an older step: same step number, other weights, never merged."""
    write_report({"mig": {"mig": 0.1}}, tmp_path, source=A)
    write_report({"dci": {"disentanglement": 0.4}}, tmp_path, source={**A, "weights": "c" * 64})
    saved = _saved(tmp_path)
    assert saved["metrics"] == {"dci": {"disentanglement": 0.4}}
    assert saved["earlier"]["step 10, weights aaaaaaaaaaaa"]["metrics"] == {"mig": {"mig": 0.1}}


def test_an_older_flat_file_is_kept_as_of_unknown_checkpoint(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"mig": {"mig": 0.7}}))
    write_report({"nmi": {"nmi1_sum": 1.0}}, tmp_path, source=A)
    saved = _saved(tmp_path)
    assert saved["metrics"] == {"nmi": {"nmi1_sum": 1.0}}
    assert saved["earlier"] == {OLDER_FILE: {"checkpoint": None, "written": None, "metrics": {"mig": {"mig": 0.7}}}}


def test_without_a_source_nothing_is_merged(tmp_path):
    """Unknown weights cannot be matched: each write is a block of its own, none labelled with A."""
    write_report({"mig": {"mig": 0.1}}, tmp_path, source=A)
    write_report({"mig": {"mig": 0.2}}, tmp_path)
    write_report({"nmi": {"nmi1_sum": 3.0}}, tmp_path)
    saved = _saved(tmp_path)
    assert saved["checkpoint"] is None and saved["metrics"] == {"nmi": {"nmi1_sum": 3.0}}
    assert saved["label"].startswith("unknown checkpoint (written ")
    blocks = list(saved["earlier"].values())
    assert [b["metrics"] for b in blocks] == [{"mig": {"mig": 0.2}}, {"mig": {"mig": 0.1}}]
