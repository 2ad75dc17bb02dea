"""DBSR-LS: dirty block-sparse regression of data features on latents (vae_deft.md §A.6).

[INFERRED] The bfVAE paper's definition is not public; this is the project's definition, after the
dirty multi-task model of Jalali et al. (NIPS 2010). With standardised latents Z (n, d) and
standardised features X (n, p), the coefficients Theta = B + S (d, p) solve

    min_{B, S}  1/(2n) ||X - Z (B + S)||_F^2 + lambda_b sum_k ||B_k.||_inf + lambda_s sum_kj |S_kj|

B is row-(block-)sparse (a latent used by many features), S elementwise sparse (feature-specific
links). Solver: FISTA on (B, S) jointly with step 1/L, L = 2 lambda_max(Z^T Z / n); the smooth
gradient is G Theta - C with G = Z^T Z / n, C = Z^T X / n, so an iteration costs O(d^2 p).
Proximal maps: soft-thresholding for the l1 term; for a row v of B,
prox_{t ||.||_inf}(v) = v - Proj_{l1 ball of radius t}(v) (Moreau), the projection by sorting
(Duchi et al. 2008). Defaults: lambda_s = 0.1 max_kj |C_kj| and lambda_b = 0.1 max_k ||C_k.||_1,
i.e. 0.1 of the smallest penalties that zero S and B respectively.
"""
from __future__ import annotations

import numpy as np

from ._common import check_codes, check_number, represent

ALPHA = 0.1
MAX_ITER = 5000
TOL = 1e-8
NUM_POINTS = 10_000


def project_l1_ball(rows: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
    """Euclidean projection of each row of (m, p) onto {w : ||w||_1 <= radius}."""
    radius = np.broadcast_to(np.asarray(radius, dtype=np.float64), (rows.shape[0],))
    magnitude = np.abs(rows)
    inside = magnitude.sum(axis=1) <= radius
    u = -np.sort(-magnitude, axis=1)
    cumulative = np.cumsum(u, axis=1)
    j = np.arange(1, rows.shape[1] + 1)
    positive = u - (cumulative - radius[:, None]) / j > 0
    rho = rows.shape[1] - np.argmax(positive[:, ::-1], axis=1)  # last index where positive, 1-based
    theta = (cumulative[np.arange(rows.shape[0]), rho - 1] - radius) / rho
    projected = np.sign(rows) * np.maximum(magnitude - theta[:, None], 0.0)
    return np.where(inside[:, None], rows, projected)


def prox_linf_rows(rows: np.ndarray, t: float) -> np.ndarray:
    """prox of t * ||row||_inf applied to each row: v - Proj_{l1 ball(t)}(v)."""
    return rows - project_l1_ball(rows, t)


def soft_threshold(x: np.ndarray, t: float) -> np.ndarray:
    """prox of t * ||x||_1: sign(x) max(|x| - t, 0)."""
    return np.sign(x) * np.maximum(np.abs(x) - t, 0.0)


def _standardize(a: np.ndarray) -> np.ndarray:
    sd = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def dbsr_ls(latents, features, lambda_block: float | None = None, lambda_sparse: float | None = None,
            alpha: float = ALPHA, max_iter: int = MAX_ITER, tol: float = TOL) -> dict:
    """Dirty regression of features (n, p) on latents (n, d), both standardised per column.

    Returns {"theta" (d, p) = B + S, "block" B, "sparse" S, "block_support" (d,) bool (rows of B
    not zero), "lambda_block", "lambda_sparse", "objective", "num_iter", "converged"}.
    Stops when the largest coefficient change is below ``tol`` (1 + max |Theta|).
    """
    alpha = check_number("dbsr_ls", "alpha", alpha, 0.0, low_open=True)
    tol = check_number("dbsr_ls", "tol", tol, 0.0, low_open=True)
    max_iter = check_number("dbsr_ls", "max_iter", max_iter, 1, integer=True)
    for name, value in (("lambda_block", lambda_block), ("lambda_sparse", lambda_sparse)):
        if value is not None:
            check_number("dbsr_ls", name, value, 0.0)
    z = _standardize(check_codes("dbsr_ls", "latents", latents).astype(np.float64))
    x = _standardize(check_codes("dbsr_ls", "features", features).astype(np.float64))
    if x.shape[0] != z.shape[0]:
        raise ValueError(f"dbsr_ls: features has {x.shape[0]} rows, latents has {z.shape[0]}")
    n = z.shape[0]
    gram, cross = z.T @ z / n, z.T @ x / n
    lambda_sparse = alpha * float(np.abs(cross).max()) if lambda_sparse is None else float(lambda_sparse)
    lambda_block = alpha * float(np.abs(cross).sum(axis=1).max()) if lambda_block is None else float(lambda_block)
    step = 1.0 / max(2.0 * float(np.linalg.eigvalsh(gram)[-1]), 1e-12)
    block = np.zeros_like(cross)
    sparse = np.zeros_like(cross)
    block_y, sparse_y, t = block, sparse, 1.0
    converged = False
    num_iter = 0
    for num_iter in range(1, max_iter + 1):
        grad = gram @ (block_y + sparse_y) - cross
        block_new = prox_linf_rows(block_y - step * grad, step * lambda_block)
        sparse_new = soft_threshold(sparse_y - step * grad, step * lambda_sparse)
        change = max(np.abs(block_new - block).max(), np.abs(sparse_new - sparse).max())
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        momentum = (t - 1.0) / t_new
        block_y = block_new + momentum * (block_new - block)
        sparse_y = sparse_new + momentum * (sparse_new - sparse)
        block, sparse, t = block_new, sparse_new, t_new
        if change < tol * (1.0 + np.abs(block + sparse).max()):
            converged = True
            break
    theta = block + sparse
    residual = x - z @ theta
    objective = (0.5 / n * float((residual ** 2).sum()) + lambda_block * float(np.abs(block).max(axis=1).sum())
                 + lambda_sparse * float(np.abs(sparse).sum()))
    return {"theta": theta, "block": block, "sparse": sparse, "block_support": np.abs(block).max(axis=1) > 0,
            "lambda_block": lambda_block, "lambda_sparse": lambda_sparse, "objective": objective,
            "num_iter": num_iter, "converged": converged}


def compute_dbsr_ls(ground_truth_data, representation_fn, rng, num_points: int = NUM_POINTS,
                    alpha: float = ALPHA) -> dict:
    """Dataset-level DBSR-LS: codes and flattened observations of ``num_points`` random draws."""
    observations = np.asarray(ground_truth_data.sample(num_points, rng)[1])
    codes = represent(representation_fn, observations)
    return dbsr_ls(codes, observations.reshape(num_points, -1), alpha=alpha)
