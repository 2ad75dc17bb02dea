"""Engine features: hooks and auxiliary optimizers across resume, clipping, schedules, bf16, workers."""
import math

import torch
from torch import nn

from _train_models import build, toy_config
from eoflow_fast.train import engine, toy
from eoflow_fast.train.distributed import EpochBatchSampler
from eoflow_fast.train.logging import read_metrics


class WithAuxiliary(toy.ToyAutoencoder):
    """A critic trained by its own optimizer in ``auxiliary_step``; a step counter in extra_state;
    ``on_step_start`` halves the main learning rate from step 12 (a DEFT-like stage switch)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.critic = nn.Linear(kw["dim"], 1)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=1e-2)
        self.seen = 0

    def param_groups(self, lr):
        return [{"params": list(self.encoder.parameters()) + list(self.decoder.parameters()), "lr": lr,
                 "name": "autoencoder"}]

    def on_step_start(self, step, optimizer):
        optimizer.param_groups[0]["lr"] = 3e-3 if step < 12 else 1.5e-3

    def auxiliary_step(self, batch, step):
        x = batch[0]
        self.critic_opt.zero_grad()
        critic_loss = (self.critic(x).squeeze(1) - x.sum(1)).pow(2).mean()
        critic_loss.backward()
        self.critic_opt.step()
        self.seen += len(x)
        return {"critic": critic_loss.item(), "seen": self.seen}

    def auxiliary_optimizers(self):
        return {"critic": self.critic_opt}

    def extra_state(self):
        return {"seen": self.seen}

    def load_extra_state(self, state):
        self.seen = state["seen"]


def _records(run_dir):
    return {r["step"]: {k: v for k, v in r.items() if k != "time"} for r in read_metrics(run_dir, "train")}


def test_hooks_auxiliary_optimizer_and_extra_state_resume_exactly(tmp_path):
    cfg = toy_config(steps=24, ckpt_every=8)
    model, data, _ = build(WithAuxiliary, cfg)
    engine.train(model, data, cfg, tmp_path / "full")
    model, data, _ = build(WithAuxiliary, cfg)
    engine.train(model, data, {**cfg, "steps": 16}, tmp_path / "split")
    model, data, _ = build(WithAuxiliary, cfg)
    engine.train(model, data, cfg, tmp_path / "split", resume=True)
    full, split = _records(tmp_path / "full"), _records(tmp_path / "split")
    assert split == full
    assert full[24]["seen"] == 24 * 32 and model.seen == 24 * 32
    assert full[12]["lr/autoencoder"] == 3e-3 and full[13]["lr/autoencoder"] == 1.5e-3


def test_grad_norm_is_the_pre_clipping_norm_and_updates_are_clipped(tmp_path):
    cfg = toy_config(steps=1, grad_clip=0.01, noise=0.0, optimizer="sgd", lr=1.0)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    initial = [p.detach().clone() for p in model.parameters()]
    reference, _, _ = build(toy.ToyAutoencoder, cfg)
    idx = EpochBatchSampler(len(data), 32, seed=0).epoch_order(0)[0]
    terms = reference.loss_terms((data.x[idx], data.z[idx]), 0)
    (terms["recon"] + terms["code_penalty"]).backward()
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in reference.parameters()))
    engine.train(model, data, cfg, tmp_path)
    (rec,) = read_metrics(tmp_path, "train")
    assert math.isclose(rec["grad_norm"], norm.item(), rel_tol=1e-5)
    step = torch.sqrt(sum((p.detach() - q).pow(2).sum() for p, q in zip(model.parameters(), initial)))
    assert math.isclose(step.item(), 0.01, rel_tol=1e-4)  # SGD lr 1: |update| = clipped |g| = 0.01


def test_warmup_cosine_schedule(tmp_path):
    cfg = toy_config(steps=20, lr_schedule="cosine", warmup_steps=5, lr=1e-2)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, cfg, tmp_path)
    logged = {r["step"]: r["lr/all"] for r in read_metrics(tmp_path, "train")}
    for s in range(20):  # the update of step s+1 used factor(s)
        f = min(1.0, (s + 1) / 5) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0, s - 5) / 15)))
        assert math.isclose(logged[s + 1], 1e-2 * f, rel_tol=1e-9, abs_tol=1e-15), s


def test_bf16_autocast_on_cpu_when_asked(tmp_path):
    cfg = toy_config(steps=6, amp="bf16", hidden=64)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, cfg, tmp_path / "bf16")
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, {**cfg, "amp": "off"}, tmp_path / "fp32")
    a = [r["recon"] for r in read_metrics(tmp_path / "bf16", "train")]
    b = [r["recon"] for r in read_metrics(tmp_path / "fp32", "train")]
    assert a != b and all(abs(x - y) < 0.05 * abs(y) for x, y in zip(a, b))  # bf16 rounding, same run


def test_worker_processes_give_the_same_batches(tmp_path):
    cfg = toy_config(steps=12, noise=0.0)
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, {**cfg, "num_workers": 2}, tmp_path / "workers")
    model, data, _ = build(toy.ToyAutoencoder, cfg)
    engine.train(model, data, cfg, tmp_path / "inline")
    assert _records(tmp_path / "workers") == _records(tmp_path / "inline")
