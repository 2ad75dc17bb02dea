"""Pairwise Gaussian log-sum-exp, materializing PyTorch reference (the truth in tests).

For samples ``z`` (B', D) and diagonal Gaussians ``N(mu_m, diag(exp(logvar_m)))`` (B, D):

    log N_nmd   = -0.5 * (log(2 pi) + logvar_md + (z_nd - mu_md)^2 * exp(-logvar_md))
    log_joint[n]      = logsumexp_m( w_nm + sum_d log N_nmd )          shape (B',)
    log_marginal[n, d] = logsumexp_m( w_nm + log N_nmd )               shape (B', D)

``w`` is an optional (B', B) log-weight matrix (0 when omitted); ``exclude_self`` sets w_nn = -inf
(leave-one-out, needs B' == B). This version builds the (B', B, D) tensor, as the beta-TCVAE and
disentanglement_lib code do; autograd gives gradients for z, mu, logvar and weights.
"""
from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mu, exp(logvar)) = -0.5 (log 2pi + logvar + (x - mu)^2 exp(-logvar)); broadcasts."""
    return -0.5 * (LOG_2PI + logvar + (x - mu) ** 2 * torch.exp(-logvar))


def gaussian_pair_logsumexp(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    exclude_self: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Materializing reference: returns ``(log_joint (B',), log_marginal (B', D))`` (see module doc)."""
    log_density = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])  # (B', B, D)
    w = torch.zeros(z.shape[0], mu.shape[0], dtype=z.dtype, device=z.device) if weights is None else weights
    if exclude_self:
        eye = torch.eye(z.shape[0], mu.shape[0], dtype=torch.bool, device=z.device)
        w = w.masked_fill(eye, float("-inf"))
    log_joint = torch.logsumexp(w + log_density.sum(dim=2), dim=1)
    log_marginal = torch.logsumexp(w[:, :, None] + log_density, dim=1)
    return log_joint, log_marginal
