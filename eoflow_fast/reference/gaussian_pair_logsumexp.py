"""Pairwise Gaussian log-sum-exp, materializing PyTorch reference (the truth in tests).

For samples ``z`` (B', D) and diagonal Gaussians ``N(mu_m, diag(exp(logvar_m)))`` (B, D):

    log N_nmd   = -0.5 * (log(2 pi) + logvar_md + (z_nd - mu_md)^2 * exp(-logvar_md))
    log_joint[n]      = logsumexp_m( w_nm + sum_d log N_nmd )          shape (B',)
    log_marginal[n, d] = logsumexp_m( w_nm + log N_nmd )               shape (B', D)

``w`` is an optional (B', B) log-weight matrix (0 when omitted); ``exclude_self`` sets w_nn = -inf
(leave-one-out, needs B' == B). A pair with w_nm = -inf is dropped: it is left out of both sums
even where its density is NaN (so -inf + NaN does not poison the row). Each dimension's marginal
is its own log-sum-exp, so a density of -inf or NaN in dimension d reaches only log_marginal[:, d]
and log_joint. This version builds the (B', B, D) tensor, as the beta-TCVAE and
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
    if weights is None and not exclude_self:  # nothing is dropped
        return torch.logsumexp(log_density.sum(dim=2), dim=1), torch.logsumexp(log_density, dim=1)
    w = torch.zeros(z.shape[0], mu.shape[0], dtype=z.dtype, device=z.device) if weights is None else weights
    keep = w != float("-inf")
    if exclude_self:
        keep = keep & ~torch.eye(z.shape[0], mu.shape[0], dtype=torch.bool, device=z.device)
    log_joint = torch.logsumexp(torch.where(keep, w + log_density.sum(dim=2), float("-inf")), dim=1)
    log_marginal = torch.logsumexp(torch.where(keep[:, :, None], w[:, :, None] + log_density, float("-inf")), dim=1)
    return log_joint, log_marginal
