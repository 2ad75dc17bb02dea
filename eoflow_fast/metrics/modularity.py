"""Modularity and explicitness (Ridgeway & Mozer 2018), as disentanglement_lib's ``modularity_explicitness.py``.

Modularity, from the MI matrix m (d, F) of the 20-bin discretised codes against the factors:

    delta_i = (sum_j m_ij^2 - max_j m_ij^2) / (max_j m_ij^2 (F - 1)),   modularity = mean_i (1 - delta_i)

with rows whose max is 0 scored 0. Explicitness: codes are standardised with the training mean and
SD (ddof 0; test codes use the training statistics), one ``LogisticRegression()`` per factor, and
the score is the macro ROC-AUC of ``predict_proba`` against one-hot labels, averaged over factors,
separately on train and test.

Deviations only where disentanglement_lib would fail: a constant code column (SD 0) is divided by
1 instead of 0, and a class missing from the evaluated labels is left out of the macro average
(disentanglement_lib's ``MultiLabelBinarizer`` would give a column count mismatch).
Defaults (gin ``modularity_explicitness``): num_train = 10,000, num_test = 5,000, 20 bins.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ._common import check_codes, check_factors, check_train_test, sample_codes_factors
from .discrete_mi import mutual_info_matrix
from .discretize import NUM_BINS

NUM_TRAIN = 10_000
NUM_TEST = 5_000
BATCH_SIZE = 16


def modularity_from_mi(mi: np.ndarray) -> float:
    """Modularity score of an MI matrix (d, F) (see the module docstring)."""
    squared = np.square(mi)
    max_squared = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (squared.sum(axis=1) - max_squared) / (max_squared * (squared.shape[1] - 1.0))
    score = np.where(max_squared == 0.0, 0.0, 1.0 - delta)
    return float(np.mean(score))


def _roc_auc(labels: np.ndarray, proba: np.ndarray, classes: np.ndarray, what: str) -> float:
    one_hot = (labels[:, None] == classes[None, :]).astype(np.int64)
    keep = (one_hot.min(axis=0) == 0) & (one_hot.max(axis=0) == 1)
    if not keep.any():
        raise ValueError(f"modularity: {what} has no training class that is present in some rows and absent "
                         f"in others (values {np.unique(labels)[:8].tolist()}, training classes "
                         f"{classes[:8].tolist()}): its ROC-AUC is undefined; use more test points")
    return float(roc_auc_score(one_hot[:, keep], proba[:, keep]))


def explicitness_per_factor(codes_train, y_train, codes_test, y_test, factor: int = 0) -> tuple[float, float]:
    """(train, test) macro ROC-AUC of a ``LogisticRegression()`` on standardised codes for one factor."""
    clf = LogisticRegression().fit(codes_train, y_train)
    return (_roc_auc(y_train, clf.predict_proba(codes_train), clf.classes_, f"factors_train column {factor}"),
            _roc_auc(y_test, clf.predict_proba(codes_test), clf.classes_, f"factors_test column {factor}"))


def modularity_explicitness(codes_train, factors_train, codes_test, factors_test, num_bins: int = NUM_BINS) -> dict:
    """Modularity (from train codes) and explicitness (train and test) of codes (N, d) vs factors (N, F).

    Returns {"modularity_score", "explicitness_score_train", "explicitness_score_test", "mi_matrix" (d, F)}.
    """
    codes_train = check_codes("modularity", "codes_train", codes_train)
    factors_train = check_factors("modularity", "factors_train", factors_train, codes_train.shape[0], "codes_train",
                                  varying=True)
    codes_test = check_codes("modularity", "codes_test", codes_test)
    factors_test = check_factors("modularity", "factors_test", factors_test, codes_test.shape[0], "codes_test")
    check_train_test("modularity", codes_train, factors_train, codes_test, factors_test)
    mi, _ = mutual_info_matrix(codes_train, factors_train, num_bins)
    mean = codes_train.mean(axis=0)
    std = codes_train.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    train_norm, test_norm = (codes_train - mean) / std, (codes_test - mean) / std
    scores = np.array([explicitness_per_factor(train_norm, factors_train[:, j], test_norm, factors_test[:, j], j)
                       for j in range(factors_train.shape[1])])
    return {"modularity_score": modularity_from_mi(mi), "explicitness_score_train": float(scores[:, 0].mean()),
            "explicitness_score_test": float(scores[:, 1].mean()), "mi_matrix": mi}


def compute_modularity_explicitness(ground_truth_data, representation_fn, rng, num_train: int = NUM_TRAIN,
                                    num_test: int = NUM_TEST, batch_size: int = BATCH_SIZE,
                                    num_bins: int = NUM_BINS) -> dict:
    """Dataset-level modularity and explicitness: train then test points drawn as disentanglement_lib does."""
    codes_train, factors_train = sample_codes_factors(ground_truth_data, representation_fn, num_train, rng, batch_size)
    codes_test, factors_test = sample_codes_factors(ground_truth_data, representation_fn, num_test, rng, batch_size)
    return modularity_explicitness(codes_train, factors_train, codes_test, factors_test, num_bins)
