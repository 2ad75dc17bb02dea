"""Flow metrics from decoder Jacobians: explained entropy, manifold TC and MPMI (metrics.md §10, eoflow.md §2).

Notation: decoder g = f^-1, Jacobian J(z) = dg/dz (D_out, D) with columns J_i, G = J^T J.
Inputs are torch tensors (any device) or numpy arrays; a batch of Jacobians is (N, D_out, D).

    explained entropy  H_i = 1/2 (1 + log 2 pi) + E[ log ||J_i|| ]                    (D,)
    total entropy      H   = D/2 (1 + log 2 pi) + E[ 1/2 logdet G ]  (= E log|det J| for square J)
    MTC  (manifold total correlation) = E[ 1/2 (sum_i log G_ii - logdet G) ] = sum_i H_i - H >= 0
    MTC per dimension = MTC / D                                                      [INFERRED]
    MPMI_ij = 1/2 E[ log G_ii + log G_jj - log det G_[ij],[ij] ] = -1/2 E[ log(1 - rho_ij^2) ],
              rho_ij = cos angle(J_i, J_j)   (diagonal set to 0)
    cross-model MPMI_ij = -1/2 E[ log(1 - cos^2 angle(J^A_i, J^B_j)) ]   (same inputs, two models)

Inputs must be finite (a ValueError names the argument otherwise). A Jacobian column that is zero
(the decoder ignores latent i at that point) has H_i = -inf there (log 0, the exact value), adds 0 to
the MTC and has cosine 0, so MPMI 0, with every other column (``unsupervised.log_det_gap``).
The MTC and the 2x2 MPMI gap are ``unsupervised.log_det_gap`` (one routine for all log-det gaps);
MPMI uses the closed form on the normalised Gram matrix, one (D, D) matrix per sample.
Streaming: ``column_sq_norms`` accumulates ||J_i||^2 from column chunks (one JVP per latent
block), enough for H_i; ``gram_matrix`` accumulates G from row chunks (one VJP per output block),
enough for MTC and MPMI without holding J. For large D evaluate MPMI on the top dims by H_i.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch

from ._common import check_finite
from .unsupervised import log_det_gap

GAUSSIAN_ENTROPY = 0.5 * (1.0 + math.log(2.0 * math.pi))
MPMI_TOP = 50
NUM_POINTS = 1000


def _tensor(name: str, x, ndim: int) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != ndim:
        raise ValueError(f"flow metrics: {name} must have {ndim} dims, got shape {tuple(t.shape)}")
    check_finite("flow metrics", name, t)
    return t.to(torch.float64) if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16) else t


def _chunks(name: str, jacobian) -> Iterable[torch.Tensor]:
    if isinstance(jacobian, (torch.Tensor, np.ndarray)):
        return [_tensor(name, jacobian, 3)]
    return (_tensor(name, c, 3) for c in jacobian)


def column_sq_norms(jacobian) -> torch.Tensor:
    """||J_i||^2 (N, D) from a Jacobian (N, D_out, D) or an iterable of column chunks (N, D_out, c_m)."""
    return torch.cat([(c * c).sum(dim=1) for c in _chunks("jacobian", jacobian)], dim=1)


def gram_matrix(jacobian) -> torch.Tensor:
    """G = J^T J (N, D, D) from a Jacobian (N, D_out, D) or an iterable of row chunks (N, r_m, D)."""
    gram = None
    for c in _chunks("jacobian", jacobian):
        part = c.transpose(1, 2) @ c
        gram = part if gram is None else gram + part
    if gram is None:
        raise ValueError("gram_matrix: jacobian has no chunks")
    return gram


def explained_entropy(jacobian=None, *, sq_norms=None) -> torch.Tensor:
    """H_i (D,) = 1/2 (1 + log 2 pi) + E_n[ 1/2 log ||J_i||^2 ], from J or precomputed ||J_i||^2 (N, D)."""
    if (jacobian is None) == (sq_norms is None):
        raise ValueError("explained_entropy: give exactly one of jacobian and sq_norms")
    sq = column_sq_norms(jacobian) if jacobian is not None else _tensor("sq_norms", sq_norms, 2)
    return GAUSSIAN_ENTROPY + 0.5 * torch.log(sq).mean(dim=0)


def manifold_total_correlation(jacobian=None, *, gram=None) -> dict:
    """MTC from J (N, D_out, D) or G (N, D, D): {"mtc", "mtc_per_dim", "mtc_per_sample" (N,),
    "explained_entropy" (D,), "total_entropy"}."""
    if (jacobian is None) == (gram is None):
        raise ValueError("manifold_total_correlation: give exactly one of jacobian and gram")
    g = gram_matrix(jacobian) if jacobian is not None else _tensor("gram", gram, 3)
    per_sample = log_det_gap(g)
    dim = g.shape[-1]
    h_i = GAUSSIAN_ENTROPY + 0.5 * torch.log(torch.diagonal(g, dim1=-2, dim2=-1)).mean(dim=0)
    total = dim * GAUSSIAN_ENTROPY + 0.5 * torch.linalg.slogdet(g)[1].mean()
    mtc = float(per_sample.mean())
    return {"mtc": mtc, "mtc_per_dim": mtc / dim, "mtc_per_sample": per_sample.cpu().numpy(),
            "explained_entropy": h_i.cpu().numpy(), "total_entropy": float(total)}


def _inverse_norm(norm: torch.Tensor) -> torch.Tensor:
    """1 / norm, and 0 for a zero column: its cosine with any column is 0."""
    return torch.where(norm > 0, 1.0 / torch.where(norm > 0, norm, 1.0), 0.0)


def _mpmi_from_cosines(cos: torch.Tensor) -> torch.Tensor:
    rho_sq = (cos * cos).clamp(max=1.0 - torch.finfo(cos.dtype).eps)
    return -0.5 * torch.log1p(-rho_sq).mean(dim=0)


def mpmi(jacobian=None, *, gram=None) -> torch.Tensor:
    """MPMI matrix (D, D) = -1/2 E[log(1 - rho_ij^2)] from J (N, D_out, D) or G (N, D, D); zero diagonal."""
    if (jacobian is None) == (gram is None):
        raise ValueError("mpmi: give exactly one of jacobian and gram")
    g = gram_matrix(jacobian) if jacobian is not None else _tensor("gram", gram, 3)
    inv_norm = _inverse_norm(torch.diagonal(g, dim1=-2, dim2=-1).sqrt())
    out = _mpmi_from_cosines(g * inv_norm[:, :, None] * inv_norm[:, None, :])
    return out.fill_diagonal_(0.0)


def cross_mpmi(jacobian_a, jacobian_b) -> torch.Tensor:
    """Cross-model MPMI (D_a, D_b) from two models' Jacobians (N, D_out, D_a), (N, D_out, D_b) at the same inputs."""
    a = _tensor("jacobian_a", jacobian_a, 3)
    b = _tensor("jacobian_b", jacobian_b, 3)
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"cross_mpmi: jacobian_a has shape {tuple(a.shape)}, jacobian_b {tuple(b.shape)}; "
                         "the first two dims (N, D_out) must agree")
    a = a * _inverse_norm(a.norm(dim=1, keepdim=True))
    b = b * _inverse_norm(b.norm(dim=1, keepdim=True))
    return _mpmi_from_cosines(a.transpose(1, 2) @ b)


def flow_metrics(jacobian, mpmi_top: int = MPMI_TOP) -> dict:
    """H_i, MTC and the MPMI matrix over the ``mpmi_top`` dims of largest H_i, from J (N, D_out, D).

    Returns {"explained_entropy" (D,), "entropy_order" (D,) (dims by decreasing H_i), "mtc",
    "mtc_per_dim", "total_entropy", "mpmi_dims" (k,), "mpmi" (k, k)}.
    """
    j = _tensor("jacobian", jacobian, 3)
    mtc = manifold_total_correlation(j)
    order = np.argsort(-mtc["explained_entropy"], kind="stable")
    top = order[:mpmi_top]
    matrix = mpmi(j[:, :, torch.as_tensor(top, device=j.device)])
    return {"explained_entropy": mtc["explained_entropy"], "entropy_order": order, "mtc": mtc["mtc"],
            "mtc_per_dim": mtc["mtc_per_dim"], "total_entropy": mtc["total_entropy"],
            "mpmi_dims": top, "mpmi": matrix.cpu().numpy()}


def compute_flow(ground_truth_data, representation_fn, rng, jacobian_fn, num_points: int = NUM_POINTS,
                 sample: str = "prior", mpmi_top: int = MPMI_TOP, batch_size: int = 64) -> dict:
    """Dataset-level flow metrics: ``jacobian_fn(z (n, D) float32 array) -> (n, D_out, D)`` decoder Jacobians.

    sample="prior": z ~ N(0, I) drawn from ``rng`` (MEM's choice, the default [INFERRED]);
    sample="data": z = representation_fn of ``num_points`` observations (B-EOFlow's choice).
    """
    if sample not in ("prior", "data"):
        raise ValueError(f"compute_flow: sample must be 'prior' or 'data', got {sample!r}")
    observations = np.asarray(ground_truth_data.sample(num_points if sample == "data" else 1, rng)[1])
    codes = np.asarray(representation_fn(observations), dtype=np.float32)
    if sample == "prior":
        codes = rng.standard_normal((num_points, codes.shape[1])).astype(np.float32)
    jacobian = torch.cat([_tensor("jacobian_fn output", jacobian_fn(codes[i:i + batch_size]), 3)
                          for i in range(0, num_points, batch_size)])
    return flow_metrics(jacobian, mpmi_top)
