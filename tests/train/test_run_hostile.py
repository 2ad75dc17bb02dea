"""Run folders tampered with in ways issue 13 did not probe: a checkpoint that is a link to another
file, a checkpoint renamed or copied over another step's name, and a JSONL log whose last line a
crash cut short. Each is refused by name, or (the logs) handled without losing the next record."""
import json

import pytest

from _train_models import build, toy_config
from eoflow_fast.cli.main import main
from eoflow_fast.train import checkpoint, engine, run_folder, toy
from eoflow_fast.train.logging import append_record


def _train(run_dir, resume=False, **kw):
    cfg = toy_config(**kw)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    return engine.train(model, data, cfg, run_dir, resume=resume)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An 8-step toy run with checkpoints at 4 and 8."""
    run_dir = tmp_path_factory.mktemp("finished")
    _train(run_dir, steps=8, ckpt_every=4)
    return run_dir


def _copy(src, dst, skip=()):
    dst.mkdir()
    for p in src.iterdir():
        if p.is_file() and p.name not in skip:
            (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_a_linked_checkpoint_is_refused(finished, tmp_path):
    """Before: the latest ckpt-*.pt was followed through a link to another folder's file and its
    weights were evaluated and resumed as this run's."""
    elsewhere = _copy(finished, tmp_path / "elsewhere")
    run_dir = _copy(finished, tmp_path / "run", skip=("ckpt-00000008.pt",))
    (run_dir / "ckpt-00000008.pt").symlink_to(elsewhere / "ckpt-00000008.pt")
    for call in (lambda: engine.open_run(run_dir), lambda: _train(run_dir, resume=True, steps=12, ckpt_every=4),
                 lambda: checkpoint.latest_path(run_dir)):
        with pytest.raises(checkpoint.CheckpointError, match=r"ckpt-00000008.pt is a symbolic link to .*elsewhere"):
            call()
    with pytest.raises(ValueError, match="already holds a run"):
        run_folder.check_fresh(run_dir, overwrite=False)
    assert engine.open_run(run_dir, run_dir / "ckpt-00000004.pt").step == 4  # an explicit file still opens


@pytest.mark.parametrize("resume", [False, True])
def test_a_checkpoint_under_another_steps_name_is_refused(finished, tmp_path, resume):
    """Before: ckpt-00000008.pt holding step 4 opened as 'step 4 (ckpt-00000008.pt)', and a resume
    went on from step 4 and moved the file it had just loaded to superseded-00000004/."""
    run_dir = _copy(finished, tmp_path / "run")
    (run_dir / "ckpt-00000008.pt").write_bytes((finished / "ckpt-00000004.pt").read_bytes())
    with pytest.raises(checkpoint.CheckpointError, match="ckpt-00000008.pt is named for step 8 but holds step 4"):
        if resume:
            _train(run_dir, resume=True, steps=12, ckpt_every=4)
        else:
            engine.open_run(run_dir)
    assert (run_dir / "ckpt-00000008.pt").is_file()


def test_append_record_ends_a_line_cut_by_a_crash(tmp_path):
    path = tmp_path / "log.jsonl"
    append_record(path, {"a": 1})
    with open(path, "a") as f:
        f.write('{"b": 2, "c')  # killed mid-write
    append_record(path, {"d": 3}, sync=True)
    lines = path.read_text().splitlines()
    assert lines == ['{"a": 1}', '{"b": 2, "c', '{"d": 3}']


def test_eval_record_after_a_cut_eval_jsonl_line_is_kept(finished, tmp_path, capsys):
    """Before: eval.jsonl was appended with open('a'): the new record was glued to the cut line."""
    run_dir = _copy(finished, tmp_path / "run")
    (run_dir / "eval.jsonl").write_text('{"step": 8, "loss": 0.')
    assert main(["eval", str(run_dir), "--json", "--no-progress"]) == 0
    capsys.readouterr()
    last = json.loads((run_dir / "eval.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 8 and last["checkpoint"] == "ckpt-00000008.pt"


def test_a_metrics_jsonl_line_that_is_not_an_object_does_not_stop_a_resume(finished, tmp_path):
    run_dir = _copy(finished, tmp_path / "run")
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write("5\n[1, 2]\n")
    assert _train(run_dir, resume=True, steps=12, ckpt_every=4)["step"] == 12
    assert all(line.startswith("{") for line in (run_dir / "metrics.jsonl").read_text().splitlines())
