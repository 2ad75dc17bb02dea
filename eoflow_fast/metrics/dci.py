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
"""
from __future__ import annotations

import numpy as np
import scipy.stats
from sklearn.ensemble import GradientBoostingClassifier

from ._common import check_codes, check_factors, sample_codes_factors

NUM_TRAIN = 10_000
NUM_TEST = 5_000
BATCH_SIZE = 16


def importance_matrix_gbt(codes_train, factors_train, codes_test, factors_test, random_state=0):
    """Importance matrix R (d, F) and mean train / test accuracy of one GBT classifier per factor."""
    num_codes, num_factors = codes_train.shape[1], factors_train.shape[1]
    importance = np.zeros((num_codes, num_factors), dtype=np.float64)
    train_acc, test_acc = [], []
    for j in range(num_factors):
        model = GradientBoostingClassifier(random_state=random_state)
        model.fit(codes_train, factors_train[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        train_acc.append(np.mean(model.predict(codes_train) == factors_train[:, j]))
        test_acc.append(np.mean(model.predict(codes_test) == factors_test[:, j]))
    return importance, float(np.mean(train_acc)), float(np.mean(test_acc))


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


def dci(codes_train, factors_train, codes_test, factors_test, random_state=0) -> dict:
    """DCI scores from train codes (N, d) / factors (N, F) and test codes (M, d) / factors (M, F).

    Returns {"disentanglement", "completeness", "informativeness_train", "informativeness_test",
    "importance_matrix" (d, F)}.
    """
    codes_train = check_codes("dci", "codes_train", codes_train)
    factors_train = check_factors("dci", "factors_train", factors_train, codes_train.shape[0], "codes_train")
    codes_test = check_codes("dci", "codes_test", codes_test)
    factors_test = check_factors("dci", "factors_test", factors_test, codes_test.shape[0], "codes_test")
    if codes_test.shape[1] != codes_train.shape[1]:
        raise ValueError(f"dci: codes_test has {codes_test.shape[1]} latents, codes_train has {codes_train.shape[1]}")
    importance, train_acc, test_acc = importance_matrix_gbt(codes_train, factors_train, codes_test, factors_test,
                                                            random_state)
    return {"disentanglement": disentanglement(importance), "completeness": completeness(importance),
            "informativeness_train": train_acc, "informativeness_test": test_acc,
            "importance_matrix": importance}


def compute_dci(ground_truth_data, representation_fn, rng, num_train: int = NUM_TRAIN,
                num_test: int = NUM_TEST, batch_size: int = BATCH_SIZE) -> dict:
    """Dataset-level DCI: train then test points drawn from ``rng`` as disentanglement_lib does."""
    codes_train, factors_train = sample_codes_factors(ground_truth_data, representation_fn, num_train, rng, batch_size)
    codes_test, factors_test = sample_codes_factors(ground_truth_data, representation_fn, num_test, rng, batch_size)
    return dci(codes_train, factors_train, codes_test, factors_test, random_state=rng.randint(2**31 - 1))
