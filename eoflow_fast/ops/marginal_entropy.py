"""Per-dimension entropy of a batch of codes over the fused pairwise Gaussian log-sum-exp.

``marginal_entropy(z, *, method="kde", bandwidth=None, backend="auto")`` -> (D,) entropies in
nats of the columns of z (B, D). ``"gaussian"``: 0.5 log(2 pi e var_d); ``"kde"``: leave-one-out
Gaussian-kernel resubstitution estimate, bandwidth by Silverman's rule per dimension unless given
(a float or a (D,) tensor). The formulas are in ``eoflow_fast/reference/marginal_entropy.py``;
``backend`` selects the implementation of ``gaussian_pair_logsumexp`` used by ``"kde"``.
Differentiable in z (and in a tensor bandwidth).
"""
from __future__ import annotations

import functools

import torch

from ..reference import marginal_entropy as ref
from ._checks import check_choice, check_float, check_ndim, check_positive_float
from ._dispatch import BACKENDS
from .gaussian_pair_logsumexp import gaussian_pair_logsumexp

OP = "marginal_entropy"


def _check_bandwidth(z: torch.Tensor, bandwidth) -> None:
    """A finite positive number, or a floating-point tensor of shape () or (D,) on z's device with
    finite positive entries."""
    if not isinstance(bandwidth, torch.Tensor):
        check_positive_float(OP, "bandwidth", bandwidth)
        return
    check_float(OP, "bandwidth", bandwidth)
    if bandwidth.device != z.device:
        raise ValueError(f"{OP}: bandwidth is on {bandwidth.device}, z is on {z.device}")
    if bandwidth.dim() > 1 or (bandwidth.dim() == 1 and bandwidth.shape[0] != z.shape[1]):
        raise ValueError(f"{OP}: bandwidth must be a float or a ({z.shape[1]},) tensor, "
                         f"got shape {tuple(bandwidth.shape)}")
    if not bool(((bandwidth > 0) & torch.isfinite(bandwidth)).all()):
        raise ValueError(f"{OP}: bandwidth must be finite and > 0 everywhere, got {bandwidth.detach().cpu()}")


def marginal_entropy(z: torch.Tensor, *, method: str = "kde", bandwidth: float | torch.Tensor | None = None,
                     backend: str = "auto") -> torch.Tensor:
    """(D,) marginal entropies of z (B, D); see the module docstring."""
    check_float(OP, "z", z)
    check_ndim(OP, "z", z, 2)
    check_choice(OP, "method", method, ref.METHODS)
    check_choice(OP, "backend", backend, BACKENDS)
    if z.shape[0] < 2:
        raise ValueError(f"{OP}: needs at least 2 rows in z, got shape {tuple(z.shape)}")
    if bandwidth is not None:
        _check_bandwidth(z, bandwidth)
    pair = functools.partial(gaussian_pair_logsumexp, backend=backend)
    return ref.marginal_entropy(z, method=method, bandwidth=bandwidth, pair_logsumexp=pair)
