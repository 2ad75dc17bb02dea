"""Training loop: exact resume, NaN guard, SIGTERM, checkpoint errors, sampler, summaries."""
import os
import random
import signal

import numpy as np

import pytest
import torch

from _train_models import NanAtStep, RandomnessModel, build, toy_config
from eoflow_fast.train import checkpoint, engine, toy
from eoflow_fast.train.distributed import EpochBatchSampler
from eoflow_fast.train.logging import read_metrics


def _losses(run_dir):
    return {r["step"]: (r["loss"], r["recon"], r["code_penalty"]) for r in read_metrics(run_dir, "train")}


def test_resume_reproduces_uninterrupted_losses_bitwise(tmp_path):
    cfg = toy_config(steps=30, ckpt_every=10)
    model, data, _ = build(RandomnessModel, cfg)
    engine.train(model, data, cfg, tmp_path / "full")
    full_params = {k: v.clone() for k, v in model.state_dict().items()}

    # Stop at 20 (mid-epoch: 8 batches per epoch), then resume in a fresh model to 30.
    model, data, _ = build(RandomnessModel, cfg)
    engine.train(model, data, {**cfg, "steps": 20}, tmp_path / "split")
    torch.manual_seed(1234)  # scramble every generator: the resume must restore them
    random.seed(99)
    np.random.seed(99)
    model, data, _ = build(RandomnessModel, {**cfg, "seed": 5})
    summary = engine.train(model, data, cfg, tmp_path / "split", resume=True)

    assert summary["start_step"] == 20 and summary["step"] == 30
    full, split = _losses(tmp_path / "full"), _losses(tmp_path / "split")
    assert sorted(split) == list(range(1, 31))  # one record per step, no duplicates
    assert split == full  # bitwise: float equality of every logged loss
    for k, v in model.state_dict().items():
        assert torch.equal(v, full_params[k]), k


def test_deterministic_mode_is_scoped_to_the_run(tmp_path):
    assert not torch.are_deterministic_algorithms_enabled()
    cfg = toy_config(steps=2, deterministic=True)
    model, data, _ = build(RandomnessModel, cfg)
    seen = []
    loss_terms = model.loss_terms
    model.loss_terms = lambda batch, step: (seen.append(torch.are_deterministic_algorithms_enabled()),
                                            loss_terms(batch, step))[1]
    engine.train(model, data, cfg, tmp_path / "run")
    assert seen and all(seen)
    assert not torch.are_deterministic_algorithms_enabled()


def test_resume_refuses_a_changed_config(tmp_path):
    cfg = toy_config(steps=10)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, cfg, tmp_path)
    with pytest.raises(ValueError, match=r"lr: 0\.003 -> 0\.1"):
        engine.train(model, data, {**cfg, "lr": 0.1, "steps": 20}, tmp_path, resume=True)


def test_fresh_run_refuses_an_existing_run_folder(tmp_path):
    cfg = toy_config(steps=10)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, cfg, tmp_path)
    with pytest.raises(ValueError, match="already holds a run"):
        engine.train(model, data, cfg, tmp_path)


def test_nan_guard_names_term_and_step_and_keeps_last_good_checkpoint(tmp_path):
    cfg = toy_config(steps=40, ckpt_every=5, log_every=4, keep=3)
    model, data, _ = build(NanAtStep, cfg, nan_step=12)
    with pytest.raises(engine.NonFiniteLossError) as info:
        engine.train(model, data, cfg, tmp_path)
    err = info.value
    assert (err.step, err.term) == (13, "bad")
    assert "step 13" in str(err) and "'bad'" in str(err) and "ckpt-00000010.pt" in str(err)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [5, 10]
    good = checkpoint.load(checkpoint.checkpoint_path(tmp_path, 10))
    assert all(torch.isfinite(v).all() for v in good["model"].values())
    events = [r for r in read_metrics(tmp_path, "event") if r["event"] == "non_finite"]
    assert events == [{"kind": "event", "step": 13, "event": "non_finite", "term": "bad"}]


def test_nan_in_gradient_norm_is_caught_with_clipping(tmp_path):
    class InfGrad(toy.ToyAutoencoder):
        def loss_terms(self, batch, step):
            terms = super().loss_terms(batch, step)
            if step == 2:  # finite loss, infinite gradient: d/dw (w * 0) scaled by inf
                w = next(self.parameters())
                terms["recon"] = terms["recon"] + (w.sum() * float("inf")) * 0.0
            return terms

    cfg = toy_config(steps=10, grad_clip=1.0)
    model, data, _ = build(InfGrad, cfg)
    with pytest.raises(engine.NonFiniteLossError) as info:
        engine.train(model, data, cfg, tmp_path)
    assert info.value.step == 3 and info.value.term in ("recon", "grad_norm")


def test_sigterm_saves_checkpoint_then_resume_matches(tmp_path):
    class SelfTerminating(toy.ToyAutoencoder):
        def on_step_start(self, step, optimizer):
            if step == 7:
                os.kill(os.getpid(), signal.SIGTERM)

    cfg = toy_config(steps=16, ckpt_every=100)
    model, data, _ = build(SelfTerminating, cfg)
    with pytest.raises(engine.TrainingInterrupted) as info:
        engine.train(model, data, cfg, tmp_path / "run")
    assert info.value.step == 8 and info.value.signum == signal.SIGTERM
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path / "run")] == [8]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored

    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, cfg, tmp_path / "run", resume=True)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, cfg, tmp_path / "ref")
    assert _losses(tmp_path / "run") == _losses(tmp_path / "ref")


def test_corrupt_truncated_foreign_and_future_checkpoints_are_refused(tmp_path):
    cfg = toy_config(steps=10, ckpt_every=10)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, cfg, tmp_path)
    good = checkpoint.checkpoint_path(tmp_path, 10)
    resume = dict(cfg, steps=20)

    bad = checkpoint.checkpoint_path(tmp_path, 20)
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # truncated
    with pytest.raises(checkpoint.CheckpointError, match="corrupt or truncated"):
        engine.train(model, data, resume, tmp_path, resume=True)
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(checkpoint.CheckpointError, match="corrupt or truncated"):
        engine.train(model, data, resume, tmp_path, resume=True)
    torch.save({"state_dict": model.state_dict()}, bad)
    with pytest.raises(checkpoint.CheckpointError, match="not an eoflow_fast checkpoint.*state_dict"):
        engine.train(model, data, resume, tmp_path, resume=True)
    payload = checkpoint.load(good)
    torch.save({**payload, "version": checkpoint.VERSION + 1}, bad)
    with pytest.raises(checkpoint.CheckpointError, match=f"format version {checkpoint.VERSION + 1}"):
        engine.train(model, data, resume, tmp_path, resume=True)
    bad.unlink()
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        engine.train(model, data, resume, tmp_path / "empty", resume=True)


def test_checkpoint_save_keeps_last_k_and_clears_stale_temp_files(tmp_path):
    (tmp_path / "ckpt-00000001.pt.tmp").write_bytes(b"partial write of a killed run")
    for step in range(1, 6):
        checkpoint.save(tmp_path, step, {"x": torch.tensor([float(step)])}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000004.pt", "ckpt-00000005.pt"]
    assert checkpoint.load_latest(tmp_path)["x"].item() == 5.0


def test_sampler_batches_do_not_depend_on_world_size_and_resume_mid_epoch():
    n, batch = 103, 12
    single = EpochBatchSampler(n, batch, seed=3)
    ranks = [EpochBatchSampler(n, batch, 3, r, seed=3) for r in range(3)]
    for epoch in (0, 1):
        for s in [single, *ranks]:
            s.set_epoch(epoch)
        full = list(single)
        assert len(full) == n // batch and all(len(b) == batch for b in full)
        assert len(set(i for b in full for i in b)) == (n // batch) * batch  # no repeats in an epoch
        parts = [list(s) for s in ranks]
        assert [sum((p[k] for p in parts), []) for k in range(len(full))] == full
    single.set_position(1, 5)
    assert list(single) == full[5:]
    single.set_epoch(2)
    assert list(single) != full  # a new permutation per epoch


def test_eval_and_plot_do_not_change_the_training_stream(tmp_path):
    calls = []

    def evaluate(model, step):
        torch.rand(100)  # consumes randomness, which must not leak into training
        calls.append(("eval", step))
        return {"probe": float(step), "per_factor": np.array([step, 0.5], dtype=np.float32),
                "nan_score": np.float64("nan")}

    def plot(model, step):
        torch.rand(100)
        calls.append(("plot", step))

    cfg = toy_config(steps=12, eval_every=4, plot_every=6)
    model, data, eval_data = build(toy.ToyAutoencoder, cfg)
    summary = engine.train(model, data, cfg, tmp_path / "a", eval_dataset=eval_data, evaluate=evaluate, plot=plot)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, cfg, tmp_path / "b")
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert calls == [("eval", 4), ("plot", 6), ("eval", 8), ("eval", 12), ("plot", 12)]
    evals = read_metrics(tmp_path / "a", "eval")
    assert [e["step"] for e in evals] == [4, 8, 12] and evals[-1]["probe"] == 12.0
    assert evals[-1]["per_factor"] == [12.0, 0.5] and evals[-1]["nan_score"] == "nan"  # numpy -> JSON
    # eval/loss is the batch-weighted mean of the optimized terms over the eval set
    with torch.no_grad():
        model_terms = engine.evaluate_loss(engine.load_run(tmp_path / "a")[0], eval_data, 1000,
                                           torch.device("cpu"))
    assert summary["eval"]["eval/loss"] == pytest.approx(model_terms["loss"], rel=1e-6)
