"""Greedy alignment of latent dimensions across runs (GAS, vae_deft.md §A.7) with a Hungarian check.

[INFERRED] The bfVAE paper's definition is not public; this is the project's definition.
For a reference run with codes R (N, d) and another run with codes C (N, d') on the same inputs:

    S_kl = |corr(R[:, k], C[:, l])|     (Pearson, (d, d'))
    greedy: repeatedly take the largest remaining S_kl, assign run dim l to reference dim k,
            record sign(corr_kl), delete row k and column l (min(d, d') pairs);
    Hungarian check: ``scipy.optimize.linear_sum_assignment`` maximising sum_k S_k,perm(k).

The result maps reference dim k to run dim ``permutation[k]`` with ``signs[k]`` in {-1, +1}, so
``C[:, permutation] * signs`` lines up with R; ``apply_alignment`` does the same to the rows of a
(d', p) association matrix (FVH-LT variances, DBSR-LS coefficients) before aggregating runs.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._common import check_codes


def greedy_match(similarity: np.ndarray, rows=None) -> list[tuple[int, int]]:
    """One-to-one (row, column) pairs chosen by repeatedly taking the largest remaining entry.

    ``rows`` restricts the rows that may be matched (default: all). Ties go to the lowest flat index.
    """
    sim = np.array(similarity, dtype=np.float64)
    allowed = np.zeros(sim.shape[0], dtype=bool)
    allowed[np.arange(sim.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)] = True
    sim[~allowed] = -np.inf
    pairs = []
    for _ in range(min(int(allowed.sum()), sim.shape[1])):
        r, c = np.unravel_index(np.argmax(sim), sim.shape)
        pairs.append((int(r), int(c)))
        sim[r, :] = -np.inf
        sim[:, c] = -np.inf
    return pairs


def correlation_matrix(reference_codes, codes) -> np.ndarray:
    """Pearson correlation (d, d') between the columns of reference (N, d) and codes (N, d'); 0 for constant columns."""
    reference_codes = check_codes("alignment", "reference_codes", reference_codes).astype(np.float64)
    codes = check_codes("alignment", "codes", codes).astype(np.float64)
    if codes.shape[0] != reference_codes.shape[0]:
        raise ValueError(f"alignment: codes has {codes.shape[0]} rows, reference_codes has {reference_codes.shape[0]}")
    x = reference_codes - reference_codes.mean(axis=0)
    y = codes - codes.mean(axis=0)
    norm = np.sqrt((x * x).sum(axis=0))[:, None] * np.sqrt((y * y).sum(axis=0))[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (x.T @ y) / norm
    return np.where(norm > 0, corr, 0.0)


def greedy_alignment(reference_codes, codes) -> dict:
    """Align the dims of ``codes`` (N, d') to ``reference_codes`` (N, d) (see the module docstring).

    Returns {"permutation" (m,), "signs" (m,), "similarity" (d, d'), "score": mean matched S,
    "hungarian_permutation" (m,), "hungarian_score", "agrees_with_hungarian": bool}, m = min(d, d');
    entry k of the arrays belongs to reference dim k (for d > d', the unmatched reference dims get
    permutation -1 and sign 0).
    """
    corr = correlation_matrix(reference_codes, codes)
    similarity = np.abs(corr)
    d = similarity.shape[0]
    permutation = -np.ones(d, dtype=np.int64)
    signs = np.zeros(d, dtype=np.int64)
    for k, l in greedy_match(similarity):
        permutation[k] = l
        signs[k] = 1 if corr[k, l] >= 0 else -1
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    hungarian = -np.ones(d, dtype=np.int64)
    hungarian[rows] = cols
    matched = permutation >= 0
    return {"permutation": permutation, "signs": signs, "similarity": similarity,
            "score": float(similarity[matched, permutation[matched]].mean()),
            "hungarian_permutation": hungarian,
            "hungarian_score": float(similarity[rows, cols].mean()),
            "agrees_with_hungarian": bool(np.array_equal(hungarian, permutation))}


def apply_alignment(matrix, permutation, signs=None) -> np.ndarray:
    """Rows of a run's (d', p) matrix reordered to the reference: out[k] = signs[k] * matrix[permutation[k]].

    Reference dims left unmatched (permutation -1) get a row of zeros.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    permutation = np.asarray(permutation)
    matched = permutation[permutation >= 0] if permutation.ndim == 1 else permutation
    if (permutation.ndim != 1 or not np.issubdtype(permutation.dtype, np.integer) or matrix.ndim < 1
            or len(np.unique(matched)) != len(matched) or (matched >= matrix.shape[0]).any()):
        rows = matrix.shape[0] if matrix.ndim else 0
        raise ValueError(f"apply_alignment: permutation must be 1-D, each entry a distinct row of matrix "
                         f"(0 .. {rows - 1}) or -1 (unmatched), got {permutation.tolist()}")
    signs = np.ones(len(permutation)) if signs is None else np.asarray(signs, dtype=np.float64)
    if signs.shape != permutation.shape:
        raise ValueError(f"apply_alignment: signs has shape {signs.shape}, permutation {permutation.shape}")
    out = np.zeros((len(permutation),) + matrix.shape[1:])
    matched = permutation >= 0
    out[matched] = matrix[permutation[matched]] * signs[matched].reshape((-1,) + (1,) * (matrix.ndim - 1))
    return out


def align_runs(codes_per_run, matrices_per_run=None, reference: int = 0, signed: bool = False) -> dict:
    """Align every run's dims to run ``reference`` and aggregate per-run (d, p) matrices.

    codes_per_run: list of R code arrays (N, d) on the same inputs; matrices_per_run: optional list
    of R matrices (d, p) (flipped by the signs when ``signed``, e.g. regression coefficients).
    Returns {"alignments": per-run ``greedy_alignment`` dicts, and with matrices "aligned" (R, d, p),
    "mean" (d, p), "std" (d, p)}.
    """
    if not codes_per_run:
        raise ValueError("align_runs: codes_per_run is empty")
    alignments = [greedy_alignment(codes_per_run[reference], c) for c in codes_per_run]
    out = {"alignments": alignments}
    if matrices_per_run is not None:
        if len(matrices_per_run) != len(codes_per_run):
            raise ValueError(f"align_runs: {len(matrices_per_run)} matrices for {len(codes_per_run)} runs")
        for r, (codes, matrix) in enumerate(zip(codes_per_run, matrices_per_run)):
            if np.ndim(matrix) < 1 or np.shape(matrix)[0] != np.shape(codes)[1]:
                raise ValueError(f"align_runs: matrix {r} has shape {np.shape(matrix)}, expected one row per latent "
                                 f"of run {r} ({np.shape(codes)[1]})")
        aligned = np.stack([apply_alignment(m, a["permutation"], a["signs"] if signed else None)
                            for m, a in zip(matrices_per_run, alignments)])
        out.update({"aligned": aligned, "mean": aligned.mean(axis=0), "std": aligned.std(axis=0)})
    return out
