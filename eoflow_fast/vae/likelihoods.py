"""Reconstruction losses -log p(x|z) and the diagonal-Gaussian KL to N(0, I).

Each reconstruction loss takes the decoder output ``out`` and the data ``x`` of the same shape
(B, ...), sums over every non-batch axis and averages over the batch (disentanglement_lib
``losses.py``):

    bernoulli: mean_b sum_i BCEWithLogits(out_bi, x_bi)      (x in [0, 1], out = logits)
    l2:        mean_b sum_i (x_bi - sigmoid(out_bi))^2       (images; out = logits)
    gaussian:  mean_b sum_i [ (x_bi - out_bi)^2 / 2 + log(2 pi) / 2 ]   (unit variance; out = mean)
    gaussian_learned: mean_b sum_i [ (x_bi - out_bi)^2 / (2 s_i) + log(2 pi s_i) / 2 ]
               (out = mean; s_i a learned per-feature variance, not a function of z, as tabular
               VAEs use, at its maximum-likelihood value; ``LearnedVarianceGaussian``)

Why a learned variance for tabular data: with a fixed unit variance the loss depends on the
features' scale, and a beta-weighted KL keeps a factor only if the variance it explains in its
features exceeds beta (on standardised FA15 blocks: ~3.5-3.8 < beta = 4, so nothing is encoded).
With a learned variance the loss is invariant to rescaling a feature, and (linear-Gaussian
analysis) encoding one more nat of a factor pays ``sum_i r_i`` nats of reconstruction, r_i the
fraction of feature i's residual variance that the factor still explains, so the KL kept is set by
the features' signal-to-noise ratio (several nats at low noise), not by their units.

``mean`` maps the decoder output to the mean of p(x|z): sigmoid for bernoulli/l2, identity for
gaussian.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

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


class LearnedVarianceGaussian(nn.Module):
    """-log N(x | out, diag s) summed over features, averaged over the batch, with the per-feature
    variance s_i at its maximum-likelihood value for the batch (the calibrated "optimal sigma" of
    sigma-VAE, Rybkin et al. 2021, here one per feature):

        s_i = max(mean_b (x_bi - out_bi)^2, min_var),   loss = sum_i 1/2 log(2 pi s_i) + 1/2 [mean_b r_bi^2 / s_i]

    which equals sum_i 1/2 log(2 pi e s_i) when no floor applies. Profiling s out replaces a free
    log-variance parameter: Adam moves such a parameter by about lr per step, so at lr 1e-3 a
    variance of 0.01 takes > 4,000 steps to reach, and the KL kept meanwhile is set by the stale
    variance. ``variance`` holds an exponential moving average of s (decay 0.99, a buffer saved with
    the model) for reporting; it does not enter the loss."""

    def __init__(self, num_features: int, min_var: float = 1e-6):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"LearnedVarianceGaussian: num_features={num_features}, expected >= 1")
        if not min_var > 0:
            raise ValueError(f"LearnedVarianceGaussian: min_var={min_var}, expected > 0")
        self.min_var = float(min_var)
        self.register_buffer("variance", torch.ones(num_features))

    def forward(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        _check(out, x, "gaussian_learned")
        if x.dim() != 2 or x.shape[1] != self.variance.shape[0]:
            raise ValueError(f"gaussian_learned: x has shape {tuple(x.shape)}, expected (B, {self.variance.shape[0]})")
        mse = (x - out).pow(2).mean(0)
        s = mse.clamp_min(self.min_var)
        if self.training:
            with torch.no_grad():
                self.variance.mul_(0.99).add_(0.01 * s.detach().to(self.variance.dtype))
        return (0.5 * torch.log(2 * math.pi * s) + 0.5 * mse / s).sum()


RECONSTRUCTION = {"bernoulli": bernoulli, "l2": l2, "gaussian": gaussian, "gaussian_learned": None}
MEAN = {"bernoulli": torch.sigmoid, "l2": torch.sigmoid, "gaussian": lambda out: out,
        "gaussian_learned": lambda out: out}


def get_reconstruction(name: str, num_features: int | None = None):
    """The loss callable ``(out, x) -> scalar`` of ``name``; "gaussian_learned" returns a new
    ``LearnedVarianceGaussian(num_features)`` (an ``nn.Module``)."""
    if name not in RECONSTRUCTION:
        raise ValueError(f"reconstruction={name!r}; expected one of {sorted(RECONSTRUCTION)}")
    if name == "gaussian_learned":
        if num_features is None:
            raise ValueError("reconstruction='gaussian_learned' needs num_features (the decoder's output_dim)")
        return LearnedVarianceGaussian(num_features)
    return RECONSTRUCTION[name]


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL_k = mean_b 1/2 (mu_bk^2 + exp(logvar_bk) - logvar_bk - 1), shape (D,); its sum over k is
    E_x KL(q(z|x) || N(0, I)), an upper bound on I(x; z)."""
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise ValueError(f"gaussian_kl_per_dim: mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must be equal (B, D)")
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).mean(0)
