"""Robustness of run folders: checksummed checkpoints and config, the NaN guard whatever grad_clip,
branching after a NaN stop, no dead ends, no overwrites, named errors, resumes past the end."""
import json
import os
import random

import pytest
import torch
from _train_models import NanGradAtStep, build, toy_config

from eoflow_fast.train import checkpoint, engine, run_folder, toy
from eoflow_fast.train.logging import read_metrics


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 20-step toy run with checkpoints at 10 and 20; returns (run_dir, config)."""
    run = tmp_path_factory.mktemp("run")
    cfg = toy_config(steps=20, ckpt_every=10)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, cfg, run)
    return run, cfg


def _copy_run(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_every_single_bit_flip_of_a_checkpoint_is_detected(finished):
    run, _ = finished
    good = checkpoint.checkpoint_path(run, 20).read_bytes()
    rng = random.Random(0)
    target = run.parent / "flips" / "ckpt-00000020.pt"
    target.parent.mkdir(exist_ok=True)
    checkpoint.checkpoint_path(target.parent, 10).write_bytes(checkpoint.checkpoint_path(run, 10).read_bytes())
    positions = [0, 5, 30, 100, len(good) - 1] + [rng.randrange(len(good)) for _ in range(35)]
    for pos in positions:
        damaged = bytearray(good)
        damaged[pos] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(damaged))
        with pytest.raises(checkpoint.CheckpointError, match=r"ckpt-00000020.pt .*(corrupt|header)"):
            checkpoint.load(target)
    for cut in (1, len(good) // 3, len(good) - 1):
        target.write_bytes(good[:cut])
        with pytest.raises(checkpoint.CheckpointError, match="ckpt-00000020.pt"):
            checkpoint.load(target)
    with pytest.raises(checkpoint.CheckpointError, match="--from-checkpoint"):  # names the intact older one
        checkpoint.load(target)


def test_config_json_is_checksummed(finished, tmp_path):
    run = _copy_run(finished[0], tmp_path / "run")
    path = run / "config.json"
    text = path.read_text()
    assert run_folder.read_config(run)["steps"] == 20
    path.write_text(text.replace('"steps": 20', '"steps": 21'))
    with pytest.raises(checkpoint.CheckpointError, match="config.json does not match the checksum"):
        run_folder.read_config(run)
    path.write_text("{not json")
    with pytest.raises(checkpoint.CheckpointError, match="config.json is not valid JSON"):
        run_folder.read_config(run)
    path.write_text("[1, 2]")
    with pytest.raises(checkpoint.CheckpointError, match="must hold a JSON object"):
        run_folder.read_config(run)


class NotATensor:
    """An object a weights_only load refuses."""


@pytest.mark.parametrize("grad_clip", [0.0, 1.0])
def test_nan_gradient_under_finite_loss_stops_before_any_bad_checkpoint(tmp_path, grad_clip):
    cfg = toy_config(steps=20, ckpt_every=2, log_every=1, grad_clip=grad_clip)
    model, data, _ = build(NanGradAtStep, cfg, nan_step=5)
    with pytest.raises(engine.NonFiniteLossError, match="grad_norm") as err:
        engine.train(model, data, cfg, tmp_path)
    assert err.value.step == 6
    for step, path in checkpoint.list_checkpoints(tmp_path):
        assert step <= 5
        state = checkpoint.load(path)
        assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_branch_after_a_nan_stop_changes_lr_and_is_recorded(tmp_path):
    cfg = toy_config(steps=12, ckpt_every=2, log_every=1)
    model, data, _ = build(NanGradAtStep, cfg, nan_step=7)
    with pytest.raises(engine.NonFiniteLossError):
        engine.train(model, data, cfg, tmp_path)
    with pytest.raises(ValueError, match="only"):
        engine.train(model, data, dict(cfg, lr=1e-4), tmp_path, resume=True)  # a silent change is refused
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    summary = engine.train(model, data, cfg, tmp_path, resume=True, from_checkpoint="ckpt-00000004.pt",
                           branch={"lr": 1e-4})
    assert summary["start_step"] == 4 and summary["step"] == 12
    saved = run_folder.read_config(tmp_path)
    assert saved["lr"] == 1e-4
    assert saved["branches"] == [{"from": "ckpt-00000004.pt", "step": 4, "changes": {"lr": [cfg["lr"], 1e-4]}}]
    events = [r for r in read_metrics(tmp_path) if r.get("event") == "branch"]
    assert events and events[0]["changes"] == {"lr": [cfg["lr"], 1e-4]}
    assert all(r["lr/all"] == pytest.approx(1e-4) for r in read_metrics(tmp_path)
               if r.get("kind") == "train" and r["step"] > 4 and "lr/all" in r)
    assert (tmp_path / "superseded-00000004" / "ckpt-00000006.pt").is_file()
    assert engine.open_run(tmp_path).step == 12  # a branched run still opens for evaluation
    with pytest.raises(ValueError, match="cannot change in a branch"):
        engine.train(model, data, cfg, tmp_path, resume=True, branch={"batch_size": 8})


@pytest.mark.parametrize("change", [{"seed": 1}, {"hidden": 16, "lr": 1e-3, "n_train": 128}])
def test_a_checkpoint_of_another_run_is_refused_by_open_run(finished, tmp_path, change):
    """Same-shaped weights of another run (another seed or data) copied into a run folder would load
    and evaluate silently; open_run names the differing keys instead (lr alone may differ: a branch)."""
    run = _copy_run(finished[0], tmp_path / "run")
    other = tmp_path / "other"
    cfg = toy_config(steps=20, ckpt_every=20, **change)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, cfg, other)
    (run / "ckpt-00000020.pt").write_bytes((other / "ckpt-00000020.pt").read_bytes())
    key = sorted(k for k in change if k not in engine.BRANCH_MUTABLE and change[k] != toy_config().get(k))[0]
    with pytest.raises(checkpoint.CheckpointError, match=f"was not trained with .*{key}: "):
        engine.open_run(run)
    assert engine.open_run(run, run / "ckpt-00000010.pt").step == 10  # its own checkpoint still opens


def test_a_folder_killed_before_its_first_checkpoint_resumes_from_zero(tmp_path, finished):
    cfg = toy_config(steps=10)
    run_folder.write_config(tmp_path, engine.resolve_config(cfg))
    (tmp_path / "metrics.jsonl").write_text('{"kind": "event", "step": 0, "event": "start"}\n')
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    summary = engine.train(model, data, cfg, tmp_path, resume=True)
    assert summary["start_step"] == 0 and summary["step"] == 10


def test_a_fresh_run_never_overwrites_files_it_did_not_write(tmp_path):
    cfg = toy_config(steps=4, ckpt_every=2)
    user_config = tmp_path / "config.json"
    user_config.write_text('{"my": "notes"}')
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    with pytest.raises(ValueError, match="(is not empty|already holds a run).*--overwrite"):
        engine.train(model, data, cfg, tmp_path)
    assert user_config.read_text() == '{"my": "notes"}'
    other = tmp_path / "elsewhere"
    other.mkdir()
    victim = other / "victim.txt"
    victim.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(victim, run / "ckpt-00000002.pt.tmp")
    os.symlink(victim, run / "ckpt-00000002.pt")
    engine.train(model, data, cfg, run, overwrite=True)
    assert victim.read_text() == "keep me"
    assert not (run / "ckpt-00000002.pt").is_symlink() or not (run / "ckpt-00000002.pt").exists()


def test_checkpoint_structure_errors_name_the_file(finished, tmp_path):
    good = checkpoint.load(checkpoint.checkpoint_path(finished[0], 20))
    path = tmp_path / "ckpt-00000020.pt"
    for key in ("rng", "data", "config", "model"):
        checkpoint.write_atomic(path, checkpoint.encode({k: v for k, v in good.items() if k != key}))
        with pytest.raises(checkpoint.CheckpointError, match=f"ckpt-00000020.pt has the format marker but no '{key}'"):
            checkpoint.check_payload(path, checkpoint.load(path))
    for value in ("20", 2.5, True):
        checkpoint.write_atomic(path, checkpoint.encode({**good, "step": value}))
        with pytest.raises(checkpoint.CheckpointError, match="'step' must be a int"):
            checkpoint.check_payload(path, checkpoint.load(path))
    checkpoint.write_atomic(path, checkpoint.encode({**good, "extra": NotATensor()}))
    with pytest.raises(checkpoint.CheckpointError, match="refused for safety"):
        checkpoint.load(path)


def test_resume_below_the_checkpoint_step_says_the_run_is_past_it(finished, tmp_path):
    run = _copy_run(finished[0], tmp_path / "run")
    cfg = dict(finished[1], steps=15)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    with pytest.raises(ValueError, match="already past --steps 15.*step 20"):
        engine.train(model, data, cfg, run, resume=True)


def test_config_values_of_the_wrong_type_are_refused():
    for key, value in (("steps", True), ("lr", True), ("lr", float("inf")), ("lr", 0.0), ("progress", "yes"),
                       ("grad_clip", float("nan"))):
        with pytest.raises(ValueError, match=f"config {key}="):
            engine.resolve_config(toy_config(**{key: value}))
    json.dumps(engine.resolve_config(toy_config()))
