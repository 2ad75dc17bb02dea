"""Argument checks and ground-truth sampling shared by the metric modules.

Conventions (all metrics): ``codes`` is a float array (N, d), one row per observation, one column
per latent; ``factors`` is an integer array (N, F) of ground-truth factor values. Numpy arrays and
torch tensors are both accepted where a docstring says so; results are python floats and numpy
arrays.

Codes must be finite and within float32's range (|x| <= 3.4e38): sklearn's classifiers fit in
float32 (DCI's cast turns larger values into inf; liblinear loops without end on ~1e90, SAP) and
the variances of the numpy metrics overflow. A metric that divides by a factor's entropy or fits
a classifier to it refuses a constant factor column (``check_varying``): its score is undefined.
Every refusal is a ValueError naming the metric, the argument and the first bad entry.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np
import torch

from eoflow_fast import progress

RepresentationFn = Callable[[np.ndarray], np.ndarray]


def to_numpy(x) -> np.ndarray:
    """Numpy view of an array or (detached, host) tensor; bfloat16 (which numpy lacks) becomes float32, exactly."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(x)


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_number(metric: str, name: str, value, low: float = -math.inf, high: float = math.inf,
                 low_open: bool = False, integer: bool = False):
    """A metric parameter: a finite real number (an int when ``integer``) in [low, high] (``(low, high]``
    with ``low_open``), returned as a Python number; a bool, NaN or string is refused naming it
    (NaN compares False with everything, so a NaN threshold silently flagged nothing)."""
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ValueError(f"{metric}: {name} must be {'an integer' if integer else 'a finite number'} in {span}, "
                         f"got {value!r}")
    return int(value) if integer else float(value)


def check_finite(metric: str, name: str, values) -> None:
    """Every entry of ``values`` (numpy array or tensor, any device) is finite and |x| <= FLOAT32_MAX;
    otherwise a ValueError naming the argument, the count and the first bad index."""
    if isinstance(values, torch.Tensor):
        t = values.detach() if values.is_floating_point() else values.detach().double()
        bad = ~torch.isfinite(t) | (t.abs() > FLOAT32_MAX)
        if not bool(bad.any()):
            return
        first = tuple(int(i) for i in torch.nonzero(bad)[0])
        value, count = t[first].item(), int(bad.sum())
    else:
        arr = np.asarray(values)
        if not np.issubdtype(arr.dtype, np.number) or arr.size == 0:
            return
        with np.errstate(invalid="ignore", over="ignore"):
            bad = ~np.isfinite(arr) | (np.abs(arr.astype(np.float64)) > FLOAT32_MAX)
        if not bad.any():
            return
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        value, count = arr[first].item(), int(bad.sum())
    what = "NaN or infinite" if not np.isfinite(value) else f"beyond float32's range (|x| > {FLOAT32_MAX:.3g})"
    raise ValueError(f"{metric}: {name} holds {count} value(s) {what}, the first {value!r} at index "
                     f"{first[0] if len(first) == 1 else first}; every value must be finite and within float32's range")


def check_codes(metric: str, name: str, codes) -> np.ndarray:
    """Numeric numpy array (N, d) with N >= 2 and finite float32-range values, or an error naming the argument."""
    arr = to_numpy(codes)
    if arr.ndim != 2:
        raise ValueError(f"{metric}: {name} must have shape (N, d), got shape {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{metric}: {name} needs N >= 2 rows and d >= 1 columns, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{metric}: {name} must be numeric, got dtype {arr.dtype}")
    check_finite(metric, name, arr)
    return arr


def check_code_shape(metric: str, name: str, codes) -> tuple[int, int]:
    """(N, d) of a code array or tensor (kept on its device; values finite and within float32's
    range), or a ValueError naming the argument."""
    shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else np.shape(codes)
    if len(shape) != 2 or shape[0] < 2 or shape[1] < 1:
        raise ValueError(f"{metric}: {name} must have shape (N, d) with N >= 2, d >= 1, got shape {shape}")
    check_finite(metric, name, codes)
    return shape


def check_varying(metric: str, name: str, factors: np.ndarray) -> None:
    """Each column of ``factors`` (N, F) takes at least two values: a constant factor has zero
    entropy, so a score normalised by it (MIG, NMI) or a classifier fit to it (DCI, SAP,
    explicitness, BetaVAE) is undefined."""
    constant = [j for j in range(factors.shape[1]) if np.all(factors[:, j] == factors[0, j])]
    if constant:
        value = factors[0, constant[0]].item()
        raise ValueError(f"{metric}: {name} column(s) {constant} hold a single value ({value!r} "
                         f"in every row): a constant factor has zero entropy and its score is undefined; "
                         f"draw more points, or leave such columns out")


def check_factors(metric: str, name: str, factors, num_rows: int, codes_name: str = "codes",
                  integer: bool = True, varying: bool = False) -> np.ndarray:
    """Numpy array (N, F) with the same N as the codes, or an error naming the argument; integer
    (int64) unless ``integer=False`` (continuous factors, returned as float64); with ``varying``
    no column may be constant (``check_varying``)."""
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
        arr = arr.astype(np.float64)
    elif not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise TypeError(f"{metric}: {name} must hold integer factor values, got dtype {arr.dtype}")
        if arr.size and np.abs(arr).max() >= 2.0 ** 63:  # the cast to int64 would wrap them into one value
            raise ValueError(f"{metric}: {name} holds integer values up to {np.abs(arr).max():.3g}, beyond int64; "
                             f"relabel the factor values")
        arr = arr.astype(np.int64)
    if varying:
        check_varying(metric, name, arr)
    return arr


def check_train_test(metric: str, codes_train: np.ndarray, factors_train: np.ndarray, codes_test: np.ndarray,
                     factors_test: np.ndarray) -> None:
    """Test arrays with the train arrays' latents (d) and factors (F): a classifier fit on d latents
    cannot score other latents, and factor j of the test set must be factor j of the training set
    (with fewer test columns the extra training factors were scored against nothing; with more,
    the extra test factors were silently left out)."""
    if codes_test.shape[1] != codes_train.shape[1]:
        raise ValueError(f"{metric}: codes_test has {codes_test.shape[1]} latents, codes_train has {codes_train.shape[1]}")
    if factors_test.shape[1] != factors_train.shape[1]:
        raise ValueError(f"{metric}: factors_test has {factors_test.shape[1]} factors, factors_train has "
                         f"{factors_train.shape[1]}")


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
