"""Models for the engine tests (not collected by pytest)."""
import random

import numpy as np
import torch

from eoflow_fast.train import toy


def toy_config(**overrides):
    """A small toy run: 8 batches per epoch, so resumes land mid-epoch."""
    cfg = {"model": "toy", "steps": 30, "batch_size": 32, "lr": 3e-3, "ckpt_every": 10, "log_every": 4,
           "progress": False, "n_train": 256, "n_eval": 64, "hidden": 16}
    cfg.update(overrides)
    return cfg


class RandomnessModel(toy.ToyAutoencoder):
    """The toy autoencoder whose loss also draws from numpy's and python's global generators, so a
    resume reproduces its losses only if all three generator states are restored."""

    def loss_terms(self, batch, step):
        terms = super().loss_terms(batch, step)
        scale = 1.0 + 0.1 * float(np.random.rand()) + 0.1 * random.random()
        terms["recon"] = terms["recon"] * scale
        return terms


class NanAtStep(toy.ToyAutoencoder):
    """Adds a term ``bad`` that is 0 except NaN at ``loss_terms`` step ``nan_step``."""

    def __init__(self, nan_step, **kw):
        super().__init__(**kw)
        self.nan_step = nan_step

    def loss_terms(self, batch, step):
        terms = super().loss_terms(batch, step)
        bad = torch.tensor(float("nan") if step == self.nan_step else 0.0)
        terms["bad"] = bad * terms["recon"]
        return terms


class NanGradAtStep(toy.ToyAutoencoder):
    """A finite loss whose gradient is NaN from ``nan_step`` on (sqrt at 0 through a zero factor)."""

    def __init__(self, nan_step, **kw):
        super().__init__(**kw)
        self.nan_step = nan_step

    def loss_terms(self, batch, step):
        terms = super().loss_terms(batch, step)
        if step >= self.nan_step:
            w = next(self.parameters())
            terms["recon"] = terms["recon"] + 0.0 * torch.sqrt(w.sum() * 0.0)  # d/dw sqrt(0) = inf, 0 * inf = nan
        return terms


def build(model_cls, config, **kw):
    """Seeded toy data and a ``model_cls`` with the toy's architecture flags from ``config``."""
    torch.manual_seed(config.get("seed", 0))
    _, train_data, eval_data = toy.build(config)
    c = {**toy.TOY_DEFAULTS, **config}
    model = model_cls(dim=c["dim"], latent=c["latent"], hidden=c["hidden"], noise=c["noise"],
                      code_penalty=c["code_penalty"], **kw)
    return model, train_data, eval_data
