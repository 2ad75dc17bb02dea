"""Minibatch MI / total-correlation / dimension-wise-KL decomposition (beta-TCVAE) over the
fused pairwise Gaussian log-sum-exp.

``tc_decomposition(z, mu, logvar, dataset_size, *, estimator="mws", backend="auto")``
    -> ``(mi, tc, dwkl)``, scalars (batch means), for z, mu, logvar of shape (B, D) with z_n
    sampled from q(z|x_n) = N(mu_n, diag(exp(logvar_n))). Estimators ``"mws"`` (minibatch
    weighted sampling), ``"mss"`` (minibatch stratified sampling, needs B >= 2) and ``"plain"``
    (disentanglement_lib's minibatch TC, constants dropped); the formulas and the MSS weight
    matrix are in ``eoflow_fast/reference/tc_decomposition.py``. ``backend`` selects the
    implementation of ``gaussian_pair_logsumexp`` (the only B x B part); differentiable in z, mu
    and logvar.
"""
from __future__ import annotations

import functools

import torch

from ..reference import tc_decomposition as ref
from ._checks import check_choice, check_ndim, check_positive_int, check_same
from .gaussian_pair_logsumexp import gaussian_pair_logsumexp

OP = "tc_decomposition"


def tc_decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int, *,
                     estimator: str = "mws", backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mi, tc, dwkl)`` batch means; see the module docstring."""
    check_same(OP, {"z": z, "mu": mu, "logvar": logvar})
    check_ndim(OP, "z", z, 2)
    check_choice(OP, "estimator", estimator, ref.ESTIMATORS)
    batch_size = z.shape[0]
    check_positive_int(OP, "dataset_size", dataset_size)
    if dataset_size < batch_size:
        raise ValueError(f"{OP}: dataset_size ({dataset_size}) must be >= the batch size B ({batch_size})")
    min_rows = 2 if estimator == "mss" else 1
    if batch_size < min_rows:
        raise ValueError(f"{OP}: estimator {estimator!r} needs at least {min_rows} row{'s' * (min_rows > 1)} in z "
                         f"(the terms are batch means), got shape {tuple(z.shape)}")
    pair = functools.partial(gaussian_pair_logsumexp, backend=backend)
    return ref.tc_decomposition(z, mu, logvar, int(dataset_size), estimator=estimator, pair_logsumexp=pair)
