"""Probes of the run-folder robustness (issue 13, items 8-14) beyond test_run_integrity.py: config.json
flips in every byte class (the checksum key's own name included), NaN state only the save-time check
sees (a buffer, an optimizer moment), an infinite gradient under a finite loss from a custom backward,
non-tensor payloads, and symlinks planted under checkpoint / temp names."""
import io
import random
import warnings

import pytest
import torch

from _train_models import build, toy_config
from eoflow_fast.train import checkpoint, engine, toy


def run(run_dir, cls=toy.ToyAutoencoder, resume=False, **kw):
    """Train the toy config (with ``kw`` overrides) into ``run_dir``; returns the summary."""
    opts = {k: kw.pop(k) for k in ("overwrite", "from_checkpoint", "branch") if k in kw}
    cfg = toy_config(**kw)
    model, data, _ = build(cls, cfg)
    return engine.train(model, data, cfg, run_dir, resume=resume, **opts)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished")
    run(run_dir, steps=8, ckpt_every=4)
    return run_dir


def test_no_single_bit_flip_of_config_json_loads_silently(finished, tmp_path):
    raw = (finished / "config.json").read_bytes()
    rng = random.Random(8)
    silent = []
    for pos in sorted({rng.randrange(len(raw)) for _ in range(60)} | {raw.index(b"_checksum") + 3}):
        flipped = bytearray(raw)
        flipped[pos] ^= 1 << rng.randrange(8)
        (tmp_path / "config.json").write_bytes(bytes(flipped))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning is not a silent load
            try:
                engine.read_config(tmp_path)
                silent.append(pos)
            except (checkpoint.CheckpointError, RuntimeWarning):
                pass
    assert silent == []


class _ZeroWithInfGrad(torch.autograd.Function):
    """Forward 0, backward +Inf: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        return torch.zeros_like(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("inf"))


class InfGrad(toy.ToyAutoencoder):
    def loss_terms(self, batch, step):
        terms = super().loss_terms(batch, step)
        if step == 2:
            terms["recon"] = terms["recon"] + _ZeroWithInfGrad.apply(next(self.parameters()).sum())
        return terms


@pytest.mark.parametrize("grad_clip", [0.0, 1.0])
def test_infinite_gradient_under_finite_loss_is_caught(tmp_path, grad_clip):
    with pytest.raises(engine.NonFiniteLossError) as info:
        run(tmp_path, InfGrad, steps=10, grad_clip=grad_clip, ckpt_every=2, log_every=2)
    assert info.value.step == 3
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [2]
    state = checkpoint.load(checkpoint.checkpoint_path(tmp_path, 2))
    assert all(torch.isfinite(v).all() for v in state["model"].values())


class NanBuffer(toy.ToyAutoencoder):
    """Finite losses and gradients, but a buffer becomes NaN at step 3."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.register_buffer("stat", torch.zeros(2))

    def on_step_start(self, step, optimizer):
        if step == 3:
            self.stat.fill_(float("nan"))


class InfMoment(toy.ToyAutoencoder):
    """Finite losses, gradients and parameters; the optimizer's second moment becomes Inf at step 3."""

    def on_step_start(self, step, optimizer):
        if step == 3:
            next(iter(optimizer.state.values()))["exp_avg_sq"].fill_(float("inf"))


@pytest.mark.parametrize("cls, name", [(NanBuffer, "stat"), (InfMoment, "exp_avg_sq")])
def test_no_checkpoint_with_non_finite_state_is_written(tmp_path, cls, name):
    with pytest.raises(FloatingPointError, match=name):
        run(tmp_path, cls, steps=8, ckpt_every=4, log_every=4)
    assert checkpoint.list_checkpoints(tmp_path) == []


class Foreign:
    pass


def test_checkpoint_with_python_objects_is_refused_for_safety(finished, tmp_path):
    payload = checkpoint.load(checkpoint.checkpoint_path(finished, 8))
    path = tmp_path / "ckpt-00000008.pt"
    path.write_bytes(checkpoint.encode({**payload, "extra": Foreign()}))
    with pytest.raises(checkpoint.CheckpointError, match="safety") as info:
        checkpoint.load(path)
    assert str(path) in str(info.value) and "corrupt" not in str(info.value)


def test_symlink_named_like_a_checkpoint_is_never_written_through(tmp_path):
    target = tmp_path / "precious.bin"
    target.write_bytes(b"keep me")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "ckpt-00000002.pt").symlink_to(target)
    with pytest.raises(ValueError, match="ckpt-00000002.pt"):
        run(run_dir, steps=2)
    run(run_dir, steps=2, overwrite=True)
    assert target.read_bytes() == b"keep me"
    assert not (run_dir / "ckpt-00000002.pt").is_symlink()


def test_stale_temp_cleanup_leaves_a_planted_links_target_alone(tmp_path):
    target = tmp_path / "precious.bin"
    target.write_bytes(b"keep me")
    (tmp_path / ".ckpt-00000001.pt.abc.tmp").symlink_to(target)
    checkpoint.save(tmp_path, 1, {"x": torch.zeros(1)}, keep=1)
    assert target.read_bytes() == b"keep me"
    buf = io.BytesIO(checkpoint.checkpoint_path(tmp_path, 1).read_bytes())
    assert buf.read(len(checkpoint.MAGIC)) == checkpoint.MAGIC


def test_cli_damaged_config_is_one_error_line_for_resume_and_eval(finished, tmp_path, capsys):
    from eoflow_fast.cli.main import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("metrics.jsonl", "ckpt-00000008.pt"):
        (run_dir / name).write_bytes((finished / name).read_bytes())
    for text in ("{broken", "[1, 2]"):
        (run_dir / "config.json").write_text(text)
        for argv in (["train", "toy", "--resume", str(run_dir), "--steps", "12"], ["eval", str(run_dir)]):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
            err = capsys.readouterr().err
            assert code in (1, 2) and "config.json" in err and "Traceback" not in err, (argv, err)


def _train_losses(run_dir):
    from eoflow_fast.train.logging import read_metrics

    return {r["step"]: r["loss"] for r in read_metrics(run_dir, "train")}


def test_branch_without_changes_continues_bit_for_bit_and_then_resumes_plainly(tmp_path):
    ref, b = tmp_path / "ref", tmp_path / "b"
    run(ref, steps=12, ckpt_every=4)
    run(b, steps=12, ckpt_every=4)
    run(b, resume=True, steps=12, ckpt_every=4, from_checkpoint="ckpt-00000004.pt", branch={"lr": 3e-3})
    assert _train_losses(b) == _train_losses(ref)  # the same lr: nothing changes, bit for bit
    cfg = engine.read_config(b)
    # a plain resume of the branched run (with its recorded config) goes on
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    assert engine.train(model, data, dict(cfg, steps=16), b, resume=True)["step"] == 16


@pytest.mark.parametrize("schedule", [{"lr_schedule": "cosine"}, {"warmup_steps": 6}])
def test_branch_lr_under_a_schedule_is_the_new_base_times_the_schedule(tmp_path, schedule):
    from eoflow_fast.train.logging import read_metrics

    run(tmp_path, steps=12, ckpt_every=4, **schedule)
    old = {r["step"]: r["lr/all"] for r in read_metrics(tmp_path, "train")}
    run(tmp_path, resume=True, steps=12, ckpt_every=4, from_checkpoint="ckpt-00000004.pt",
        branch={"lr": 3e-4}, **schedule)
    new = {r["step"]: r["lr/all"] for r in read_metrics(tmp_path, "train")}
    assert all(new[s] == pytest.approx(old[s] / 10, rel=1e-12) for s in range(5, 13))


def test_resume_never_writes_through_a_link_planted_at_the_old_metrics_temp_name(tmp_path):
    target = tmp_path / "precious.bin"
    target.write_bytes(b"keep me")
    run_dir = tmp_path / "run"
    run(run_dir, steps=4, ckpt_every=4)
    (run_dir / "metrics.jsonl.tmp").symlink_to(target)
    run(run_dir, resume=True, steps=8, ckpt_every=4)
    assert target.read_bytes() == b"keep me"
