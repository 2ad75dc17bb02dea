"""Minibatch decomposition of the KL term into index-code MI, total correlation and
dimension-wise KL (Chen et al. 2018, beta-TCVAE, arXiv 1802.04942, section 3 and appendix C).

With z_n ~ q(z|x_n) for a batch of B data points out of a data set of N = ``dataset_size``:

    log q(z_n|x_n)       = sum_d log N(z_nd; mu_nd, exp(logvar_nd))
    log q(z_n)           ~= logsumexp_m( w_nm + sum_d log N(z_nd; mu_md, exp(logvar_md)) )   (log_joint)
    log q(z_nd)          ~= logsumexp_m( w_nm + log N(z_nd; mu_md, exp(logvar_md)) )         (log_marginal)
    log p(z_n)           = sum_d log N(z_nd; 0, 1)

    mi   = mean_n[ log q(z_n|x_n) - log q(z_n) ]              (index-code mutual information)
    tc   = mean_n[ log q(z_n) - sum_d log q(z_nd) ]           (total correlation)
    dwkl = mean_n[ sum_d log q(z_nd) - log p(z_n) ]           (dimension-wise KL to N(0, I))

so mi + tc + dwkl = mean_n[ log q(z_n|x_n) - log p(z_n) ] for every estimator. Estimators (log w):

- ``"mws"`` minibatch weighted sampling: w_nm = -log(B N) for all n, m.
- ``"mss"`` minibatch stratified sampling: w = log W with, for M = B - 1,
  W_nn = 1/N, W_{n,n+1} = W_{B-1,0} = (N - M)/(N M), all other entries 1/M (rows sum to 1).
  [INFERRED] The beta-TCVAE reference code (rtqichen/beta-tcvae, vae_quant.py,
  ``_log_importance_weight_matrix``) fills these entries with strided views that land on columns
  0 and 1 instead of the diagonals (reported in rtqichen/beta-tcvae pull request #1); this module
  uses the matrix the paper's appendix C.2 describes, which the code intended.
- ``"plain"`` disentanglement_lib's minibatch estimate (``total_correlation`` in
  ``methods/unsupervised/vae.py``; spec vae_deft.md B.5): w = 0, dataset-size constants dropped.
  Its ``tc`` is exactly disentanglement_lib's value,
  mean_j[ logsumexp_i sum_l log q(z_jl|x_i) - sum_l logsumexp_i log q(z_jl|x_i) ]
  = tc_mws - (D - 1) log(B N); its mi and dwkl carry the dropped constants
  (mi_mws - log(B N) and dwkl_mws + D log(B N)). ``dataset_size`` is only validated.

The estimators are compositions over ``gaussian_pair_logsumexp``; ``pair_logsumexp`` selects its
implementation (the materializing reference here; ``eoflow_fast.ops`` passes its fused op).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .gaussian_pair_logsumexp import gaussian_log_density, gaussian_pair_logsumexp

ESTIMATORS = ("mws", "mss", "plain")


def mss_log_weights(batch_size: int, dataset_size: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """(B, B) log of the minibatch-stratified-sampling weight matrix W (see module doc); B >= 2."""
    n, m = float(dataset_size), float(batch_size - 1)
    log_w = torch.full((batch_size, batch_size), -math.log(m), dtype=dtype, device=device)
    rows = torch.arange(batch_size, device=device)
    log_w[rows, (rows + 1) % batch_size] = math.log((n - m) / (n * m))
    log_w[rows, rows] = -math.log(n)
    return log_w


def tc_decomposition(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    dataset_size: int,
    *,
    estimator: str = "mws",
    pair_logsumexp: Callable = gaussian_pair_logsumexp,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns scalars ``(mi, tc, dwkl)`` (batch means) for z, mu, logvar of shape (B, D)."""
    batch_size = z.shape[0]
    weights = None
    if estimator == "mss":
        weights = mss_log_weights(batch_size, dataset_size, dtype=z.dtype, device=z.device)
    log_joint, log_marginal = pair_logsumexp(z, mu, logvar, weights=weights)
    log_qz, log_qz_marginals = log_joint, log_marginal.sum(dim=1)
    if estimator == "mws":
        log_bn = math.log(batch_size * dataset_size)
        log_qz = log_qz - log_bn
        log_qz_marginals = log_qz_marginals - z.shape[1] * log_bn
    log_qz_given_x = gaussian_log_density(z, mu, logvar).sum(dim=1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(dim=1)
    mi = (log_qz_given_x - log_qz).mean()
    tc = (log_qz - log_qz_marginals).mean()
    dwkl = (log_qz_marginals - log_pz).mean()
    return mi, tc, dwkl
