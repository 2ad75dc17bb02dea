"""Disentanglement, Completeness, Informativeness (Eastwood & Williams 2018), as disentanglement_lib's ``dci.py``.

Per factor j a ``GradientBoostingClassifier()`` (sklearn defaults: 100 trees, learning rate 0.1,
depth 3) is fit on the codes; the importance matrix R (d, F) has R[:, j] = |feature_importances_|.

    informativeness_{train,test} = mean_j accuracy of classifier j        (accuracy, despite the name)
    P_ij = R_ij / sum_j R_ij,   rho_i = sum_j R_ij / sum R
    disentanglement = sum_i rho_i (1 - H_F(P_i.))                          (entropy base F, +1e-11)
    P~_ij = R_ij / sum_i R_ij,  rho~_j = sum_i R_ij / sum R
    completeness    = sum_j rho~_j (1 - H_d(P~_.j))                        (entropy base d, +1e-11)

If R sums to 0 the weights rho, rho~ come from a matrix of ones (as disentanglement_lib).
Defaults (gin ``dci``): num_train = 10,000, num_test = 5,000, batch_size = 16.
disentanglement_lib leaves the classifier's ``random_state`` unset; here it is ``random_state``
(an int or RandomState; the dataset-level wrapper draws it from ``rng``) so scores are reproducible.

Speed: the F classifiers are independent, so with an int ``random_state`` they are fit in
parallel over ``n_jobs`` threads (-1 = min(F, cores), 1 = serial); each gets the same seed as in
the serial loop, so the scores are identical. Threads, not processes: sklearn's tree building runs
without the GIL, and a thread needs no process start, no re-import of this package (torch) and no
copy of the codes, which made the former process pool slower than the serial loop on a loaded
2-core machine. The largest factors (most classes: one tree per class and boosting stage) are
started first, so the longest fit does not come last. Native thread pools (BLAS / OpenMP) are held
at one thread during the fits (``threadpoolctl``), serial or parallel, so F fits never
oversubscribe the cores. A RandomState is consumed factor after factor and therefore forces the
serial loop. ``quick=True`` fits ``QUICK_ESTIMATORS`` trees per factor
instead of 100: faster, but the scores are not disentanglement_lib's; the result then carries
``variant`` = "quick" and ``deviation`` saying what differs (the default result has
``variant`` = "default").
"""
from __future__ import annotations

import os

import numpy as np
import scipy.stats
from sklearn.ensemble import GradientBoostingClassifier

from eoflow_fast import progress

from ._common import check_codes, check_factors, check_train_test, sample_codes_factors

NUM_TRAIN = 10_000
NUM_TEST = 5_000
BATCH_SIZE = 16
DEFAULT_ESTIMATORS = 100  # sklearn's and disentanglement_lib's GradientBoostingClassifier()
QUICK_ESTIMATORS = 20
QUICK_DEVIATION = (f"quick DCI: {QUICK_ESTIMATORS} boosting trees per factor instead of {DEFAULT_ESTIMATORS} "
                   "(disentanglement_lib); scores are not comparable with the default")


def _fit_factor(codes_train, labels_train, codes_test, labels_test, random_state, n_estimators):
    """One factor's classifier: (|feature_importances_| (d,), train accuracy, test accuracy)."""
    model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=random_state)
    model.fit(codes_train, labels_train)
    return (np.abs(model.feature_importances_), float(np.mean(model.predict(codes_train) == labels_train)),
            float(np.mean(model.predict(codes_test) == labels_test)))


def _workers(n_jobs: int, num_factors: int) -> int:
    """Threads for ``num_factors`` fits: ``n_jobs`` (-1: the core count), at most one per factor."""
    return max(1, min((os.cpu_count() or 1) if n_jobs == -1 else n_jobs, num_factors))


def importance_matrix_gbt(codes_train, factors_train, codes_test, factors_test, random_state=0, n_jobs=-1,
                          n_estimators=DEFAULT_ESTIMATORS):
    """Importance matrix R (d, F) and mean train / test accuracy of one GBT classifier per factor,
    fit over ``n_jobs`` threads when ``random_state`` is an int (serially otherwise)."""
    from threadpoolctl import threadpool_limits

    num_factors = factors_train.shape[1]
    # sklearn fits and predicts in float32 (its tree DTYPE): convert once, not in every fit and predict
    codes_train = np.ascontiguousarray(codes_train, dtype=np.float32)
    codes_test = np.ascontiguousarray(codes_test, dtype=np.float32)
    jobs = [(codes_train, factors_train[:, j], codes_test, factors_test[:, j], random_state, n_estimators)
            for j in range(num_factors)]
    workers = _workers(n_jobs, num_factors)
    if not isinstance(random_state, (int, np.integer)):
        workers = 1
    with threadpool_limits(limits=1):
        if workers == 1:
            fits = (_fit_factor(*job) for job in jobs)
            per_factor = list(progress.bar(fits, "dci: factor classifiers", total=num_factors, unit="factor"))
        else:
            from joblib import Parallel, delayed
            # most classes first (longest-processing-time order); results are put back in factor order
            order = sorted(range(num_factors), key=lambda j: -len(np.unique(factors_train[:, j])))
            fits = Parallel(n_jobs=workers, backend="threading", return_as="generator")(
                delayed(_fit_factor)(*jobs[j]) for j in order)
            done = dict(zip(order, progress.bar(fits, "dci: factor classifiers", total=num_factors, unit="factor")))
            per_factor = [done[j] for j in range(num_factors)]
    importance = np.stack([imp for imp, _, _ in per_factor], axis=1).astype(np.float64)
    return (importance, float(np.mean([acc for _, acc, _ in per_factor])),
            float(np.mean([acc for _, _, acc in per_factor])))


def _weighted_specificity(importance: np.ndarray) -> float:
    """sum_i rho_i (1 - H_F(P_i.)) over the rows i of a (rows, cols) importance matrix."""
    per_row = 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=importance.shape[1])
    weights = importance if importance.sum() != 0.0 else np.ones_like(importance)
    return float(np.sum(per_row * weights.sum(axis=1) / weights.sum()))


def disentanglement(importance: np.ndarray) -> float:
    """DCI disentanglement of an importance matrix (d, F)."""
    return _weighted_specificity(importance)


def completeness(importance: np.ndarray) -> float:
    """DCI completeness of an importance matrix (d, F)."""
    return _weighted_specificity(importance.T)


def dci(codes_train, factors_train, codes_test, factors_test, random_state=0, n_jobs: int = -1,
        quick: bool = False) -> dict:
    """DCI scores from train codes (N, d) / factors (N, F) and test codes (M, d) / factors (M, F).

    Returns {"disentanglement", "completeness", "informativeness_train", "informativeness_test",
    "importance_matrix" (d, F), "variant" ("default" | "quick")} and, when quick, "deviation".
    """
    codes_train = check_codes("dci", "codes_train", codes_train)
    factors_train = check_factors("dci", "factors_train", factors_train, codes_train.shape[0], "codes_train",
                                  varying=True)
    codes_test = check_codes("dci", "codes_test", codes_test)
    factors_test = check_factors("dci", "factors_test", factors_test, codes_test.shape[0], "codes_test")
    check_train_test("dci", codes_train, factors_train, codes_test, factors_test)
    if not (isinstance(n_jobs, (int, np.integer)) and (n_jobs >= 1 or n_jobs == -1)):
        raise ValueError(f"dci: n_jobs must be an int >= 1 or -1 (all cores), got {n_jobs!r}")
    importance, train_acc, test_acc = importance_matrix_gbt(
        codes_train, factors_train, codes_test, factors_test, random_state, n_jobs,
        QUICK_ESTIMATORS if quick else DEFAULT_ESTIMATORS)
    out = {"disentanglement": disentanglement(importance), "completeness": completeness(importance),
           "informativeness_train": train_acc, "informativeness_test": test_acc,
           "importance_matrix": importance, "variant": "quick" if quick else "default"}
    if quick:
        out["deviation"] = QUICK_DEVIATION
    return out


def compute_dci(ground_truth_data, representation_fn, rng, num_train: int = NUM_TRAIN,
                num_test: int = NUM_TEST, batch_size: int = BATCH_SIZE, n_jobs: int = -1, quick: bool = False) -> dict:
    """Dataset-level DCI: train then test points drawn from ``rng`` as disentanglement_lib does."""
    codes_train, factors_train = sample_codes_factors(ground_truth_data, representation_fn, num_train, rng, batch_size)
    codes_test, factors_test = sample_codes_factors(ground_truth_data, representation_fn, num_test, rng, batch_size)
    return dci(codes_train, factors_train, codes_test, factors_test, random_state=rng.randint(2**31 - 1),
               n_jobs=n_jobs, quick=quick)
