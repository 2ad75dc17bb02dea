"""Argument checks and ground-truth sampling shared by the metric modules.

Conventions (all metrics): ``codes`` is a float array (N, d), one row per observation, one column
per latent; ``factors`` is an integer array (N, F) of ground-truth factor values. Numpy arrays and
torch tensors are both accepted where a docstring says so; results are python floats and numpy
arrays.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from eoflow_fast import progress

RepresentationFn = Callable[[np.ndarray], np.ndarray]


def to_numpy(x) -> np.ndarray:
    """Numpy view of an array or (detached, host) tensor."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_codes(metric: str, name: str, codes) -> np.ndarray:
    """Float numpy array (N, d) with N >= 2, or a ValueError naming the argument."""
    arr = to_numpy(codes)
    if arr.ndim != 2:
        raise ValueError(f"{metric}: {name} must have shape (N, d), got shape {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{metric}: {name} needs N >= 2 rows and d >= 1 columns, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{metric}: {name} must be numeric, got dtype {arr.dtype}")
    return arr


def check_code_shape(metric: str, name: str, codes) -> tuple[int, int]:
    """(N, d) of a code array or tensor (kept on its device), or a ValueError naming the argument."""
    shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else np.shape(codes)
    if len(shape) != 2 or shape[0] < 2 or shape[1] < 1:
        raise ValueError(f"{metric}: {name} must have shape (N, d) with N >= 2, d >= 1, got shape {shape}")
    return shape


def check_factors(metric: str, name: str, factors, num_rows: int, codes_name: str = "codes",
                  integer: bool = True) -> np.ndarray:
    """Numpy array (N, F) with the same N as the codes, or an error naming the argument; integer
    (int64) unless ``integer=False`` (continuous factors, returned as float64)."""
    arr = to_numpy(factors)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{metric}: {name} must have shape (N, F), got shape {arr.shape}")
    if arr.shape[0] != num_rows:
        raise ValueError(f"{metric}: {name} has {arr.shape[0]} rows, {codes_name} has {num_rows}")
    if not integer:
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
            raise ValueError(f"{metric}: {name} must hold finite numbers, got dtype {arr.dtype}")
        return arr.astype(np.float64)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise TypeError(f"{metric}: {name} must hold integer factor values, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    return arr


def represent(representation_fn: RepresentationFn, observations: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``representation_fn`` applied in chunks of ``batch_size`` rows, concatenated to (n, d)."""
    parts = [np.asarray(representation_fn(observations[i:i + batch_size]))
             for i in range(0, len(observations), batch_size)]
    codes = np.concatenate(parts, axis=0)
    if codes.ndim != 2 or codes.shape[0] != len(observations):
        raise ValueError(f"representation_fn must return an array (n, d) for n observations; "
                         f"got shape {codes.shape} for n={len(observations)}")
    return codes


def sample_codes_factors(ground_truth_data, representation_fn: RepresentationFn, num_points: int,
                         rng: np.random.RandomState, batch_size: int = 16,
                         representation_batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """disentanglement_lib's ``generate_batch_factor_code`` with (N, d) / (N, F) layout.

    Draws ``ground_truth_data.sample(min(batch_size, left), rng)`` repeatedly, exactly as
    disentanglement_lib does (so the same data and seed give the same points), but calls
    ``representation_fn`` on ``representation_batch_size`` observations at a time.
    Returns codes (num_points, d) and factors (num_points, F).
    """
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    factor_parts, code_parts, pending, pending_n = [], [], [], 0
    done = 0
    while done < num_points:
        n = min(num_points - done, batch_size)
        factors, observations = ground_truth_data.sample(n, rng)
        factor_parts.append(np.asarray(factors))
        pending.append(np.asarray(observations))
        pending_n += n
        done += n
        if pending_n >= representation_batch_size or done == num_points:
            code_parts.append(represent(representation_fn, np.concatenate(pending, axis=0),
                                        representation_batch_size))
            pending, pending_n = [], 0
    return np.concatenate(code_parts, axis=0), np.concatenate(factor_parts, axis=0).astype(np.int64)


def sample_intervention_batches(ground_truth_data, representation_fn: RepresentationFn, num_points: int,
                                rng: np.random.RandomState, batch_size: int, make_factors,
                                chunk: int = 16, desc: str = "intervention batches") -> tuple[np.ndarray, np.ndarray]:
    """Codes of ``num_points`` intervention groups, drawn in disentanglement_lib's random order.

    For each point: ``k = rng.randint(num_factors)``, then ``make_factors(k, rng)`` returns a list of
    factor arrays (batch_size, F) (drawn with ``ground_truth_data.sample_factors``), and each is
    turned into observations with ``ground_truth_data.sample_observations_from_factors`` in order.
    ``representation_fn`` runs on ``chunk`` points at a time. Returns the factor indices k
    (num_points,) and, for each factor array of a point, codes (num_points, batch_size, d) as a
    stacked array (num_points, num_arrays, batch_size, d). Progress is reported as ``desc``.
    """
    indices = np.zeros(num_points, dtype=np.int64)
    groups, pending = [], []
    for p in progress.bar(range(num_points), desc, unit="batch"):
        indices[p] = rng.randint(ground_truth_data.num_factors)
        factor_arrays = make_factors(int(indices[p]), rng)
        pending.append([np.asarray(ground_truth_data.sample_observations_from_factors(f, rng)) for f in factor_arrays])
        if len(pending) == chunk or p == num_points - 1:
            num_arrays = len(pending[0])
            flat = np.concatenate([obs for point in pending for obs in point], axis=0)
            codes = represent(representation_fn, flat, max(batch_size * num_arrays, 256))
            groups.append(codes.reshape(len(pending), num_arrays, batch_size, -1))
            pending = []
    return indices, np.concatenate(groups, axis=0)
