"""Per-dimension (marginal) entropy of a batch of codes z (B, D), in nats, shape (D,).

- ``"gaussian"``: H_d = 0.5 * log(2 pi e var_d), var_d the unbiased sample variance of column d.
- ``"kde"``: leave-one-out Gaussian-kernel resubstitution estimate
      H_d = -(1/B) sum_n log( 1/(B-1) sum_{m != n} N(z_nd; z_md, h_d^2) )
          = -(1/B) sum_n ( log_marginal[n, d] - log(B - 1) ),
  log_marginal from ``gaussian_pair_logsumexp(z, z, 2 log h, exclude_self=True)``.
  Bandwidth h: a float or a (D,) tensor; by default Silverman's rule of thumb per dimension,
  h_d = (4 / (3 B))^(1/5) * std_d (unbiased std). The default h depends on z and gradients flow
  through it as well (the estimate is differentiable in z along every path).

A constant column (variance 0, so a default bandwidth of 0) has entropy -inf by both methods, the
limit of either estimate as the column collapses (the kde gave NaN, 0/0), with a zero gradient, so
it poisons neither the other columns nor an optimizer step; a given bandwidth keeps its finite kde.

The math is written once here; ``pair_logsumexp`` selects the pairwise implementation (the
materializing reference by default, the fused op from ``eoflow_fast.ops``).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .gaussian_pair_logsumexp import gaussian_pair_logsumexp

METHODS = ("kde", "gaussian")


def silverman_bandwidth(z: torch.Tensor) -> torch.Tensor:
    """(D,) Silverman's rule of thumb for a Gaussian kernel: (4 / (3 B))^(1/5) * std(z, dim=0)."""
    return (4.0 / (3.0 * z.shape[0])) ** 0.2 * z.std(dim=0)


def marginal_entropy(
    z: torch.Tensor,
    *,
    method: str = "kde",
    bandwidth: float | torch.Tensor | None = None,
    pair_logsumexp: Callable = gaussian_pair_logsumexp,
) -> torch.Tensor:
    """Returns (D,) entropies of the columns of z (B, D); see the module doc."""
    # a constant column (every entry equal: its computed variance may be 1e-32, not 0) has the value -inf;
    # a stand-in variance / bandwidth of 1 keeps its gradient 0
    constant = (z == z[:1]).all(dim=0)
    if method == "kde" and bandwidth is not None:  # a given bandwidth: the kde of a constant column is finite
        constant = torch.zeros_like(constant)
    if method == "gaussian":
        entropy = 0.5 * torch.log(2.0 * math.pi * math.e * torch.where(constant, 1.0, z.var(dim=0)))
    else:
        h = (torch.where(constant, 1.0, silverman_bandwidth(z)) if bandwidth is None
             else torch.as_tensor(bandwidth, dtype=z.dtype, device=z.device))
        logvar = (2.0 * torch.log(h)).expand_as(z).contiguous()
        _, log_marginal = pair_logsumexp(z, z, logvar, exclude_self=True)
        entropy = -(log_marginal - math.log(z.shape[0] - 1)).mean(dim=0)
    return torch.where(constant, -math.inf, entropy)
