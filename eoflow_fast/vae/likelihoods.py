"""Reconstruction losses -log p(x|z) and the diagonal-Gaussian KL to N(0, I).

Each reconstruction loss takes the decoder output ``out`` and the data ``x`` of the same shape
(B, ...), sums over every non-batch axis and averages over the batch (disentanglement_lib
``losses.py``):

    bernoulli: mean_b sum_i BCEWithLogits(out_bi, x_bi)      (x in [0, 1], out = logits)
    l2:        mean_b sum_i (x_bi - sigmoid(out_bi))^2       (images; out = logits)
    gaussian:  mean_b sum_i [ (x_bi - out_bi)^2 / 2 + log(2 pi) / 2 ]   (unit variance; out = mean)

``mean`` maps the decoder output to the mean of p(x|z): sigmoid for bernoulli/l2, identity for
gaussian.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _per_sample_sum(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(1)


def _check(out: torch.Tensor, x: torch.Tensor, who: str) -> None:
    if out.shape != x.shape:
        raise ValueError(f"{who}: decoder output has shape {tuple(out.shape)}, x has shape {tuple(x.shape)}")


def bernoulli(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    _check(out, x, "bernoulli")
    return _per_sample_sum(F.binary_cross_entropy_with_logits(out, x, reduction="none")).mean()


def l2(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    _check(out, x, "l2")
    return _per_sample_sum((x - torch.sigmoid(out)) ** 2).mean()


def gaussian(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    _check(out, x, "gaussian")
    return _per_sample_sum(0.5 * (x - out) ** 2 + _HALF_LOG_2PI).mean()


RECONSTRUCTION = {"bernoulli": bernoulli, "l2": l2, "gaussian": gaussian}
MEAN = {"bernoulli": torch.sigmoid, "l2": torch.sigmoid, "gaussian": lambda out: out}


def get_reconstruction(name: str):
    if name not in RECONSTRUCTION:
        raise ValueError(f"reconstruction={name!r}; expected one of {sorted(RECONSTRUCTION)}")
    return RECONSTRUCTION[name]


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL_k = mean_b 1/2 (mu_bk^2 + exp(logvar_bk) - logvar_bk - 1), shape (D,); its sum over k is
    E_x KL(q(z|x) || N(0, I)), an upper bound on I(x; z)."""
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise ValueError(f"gaussian_kl_per_dim: mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must be equal (B, D)")
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).mean(0)
