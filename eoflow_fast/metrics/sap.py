"""Separated Attribute Predictability (Kumar et al. 2018), as disentanglement_lib's ``sap_score.py``.

Score matrix S (d, F):
  * discrete factors (default): S_ij = test accuracy of ``LinearSVC(C=0.01, class_weight="balanced")``
    fit on the single feature code_i to predict factor j;
  * continuous factors: S_ij = cov(code_i, y_j)^2 / (var(code_i) var(y_j)) (ddof 1), 0 if var(code_i) <= 1e-12.

    SAP = mean_j ( S_(1),j - S_(2),j )   (top two over latents)

disentanglement_lib names the score ``SAP_score``; here it is ``sap``.
Defaults (gin ``sap_score``): num_train = 10,000, num_test = 5,000, continuous_factors = False.
``random_state`` is passed to LinearSVC (disentanglement_lib leaves it unset).
"""
from __future__ import annotations

import numpy as np
from sklearn.svm import LinearSVC

from ._common import check_codes, check_factors, check_train_test, sample_codes_factors

NUM_TRAIN = 10_000
NUM_TEST = 5_000
BATCH_SIZE = 16
SVC_C = 0.01


def sap_score_matrix(codes_train, factors_train, codes_test=None, factors_test=None,
                     continuous_factors: bool = False, random_state=0) -> np.ndarray:
    """The (d, F) score matrix S of the module docstring (test data needed only for discrete factors)."""
    num_codes, num_factors = codes_train.shape[1], factors_train.shape[1]
    if continuous_factors:
        x = codes_train - codes_train.mean(axis=0)
        y = factors_train - factors_train.mean(axis=0)
        n = x.shape[0]
        cov = x.T @ y / (n - 1)
        var_x = (x * x).sum(axis=0) / (n - 1)
        var_y = (y * y).sum(axis=0) / (n - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = cov ** 2 / (var_x[:, None] * var_y[None, :])
        return np.where(var_x[:, None] > 1e-12, score, 0.0)
    score = np.zeros((num_codes, num_factors))
    for i in range(num_codes):
        for j in range(num_factors):
            classifier = LinearSVC(C=SVC_C, class_weight="balanced", random_state=random_state)
            classifier.fit(codes_train[:, i:i + 1], factors_train[:, j])
            score[i, j] = np.mean(classifier.predict(codes_test[:, i:i + 1]) == factors_test[:, j])
    return score


def sap(codes_train, factors_train, codes_test=None, factors_test=None, continuous_factors: bool = False,
        random_state=0) -> dict:
    """SAP of train codes (N, d) / factors (N, F) and (discrete factors) test codes (M, d) / factors (M, F).

    Returns {"sap": float, "sap_per_factor": (F,), "score_matrix": (d, F)}.
    """
    codes_train = check_codes("sap", "codes_train", codes_train)
    factors_train = check_factors("sap", "factors_train", factors_train, codes_train.shape[0], "codes_train",
                                  integer=not continuous_factors, varying=True)
    if codes_train.shape[1] < 2:
        raise ValueError(f"sap: needs at least 2 latents, got codes_train of shape {codes_train.shape}")
    if not continuous_factors:
        if codes_test is None or factors_test is None:
            raise ValueError("sap: codes_test and factors_test are required for discrete factors")
        codes_test = check_codes("sap", "codes_test", codes_test)
        factors_test = check_factors("sap", "factors_test", factors_test, codes_test.shape[0], "codes_test")
        check_train_test("sap", codes_train, factors_train, codes_test, factors_test)
    score = sap_score_matrix(codes_train, factors_train, codes_test, factors_test, continuous_factors, random_state)
    top = np.sort(score, axis=0)
    per_factor = top[-1] - top[-2]
    return {"sap": float(np.mean(per_factor)), "sap_per_factor": per_factor, "score_matrix": score}


def compute_sap(ground_truth_data, representation_fn, rng, num_train: int = NUM_TRAIN, num_test: int = NUM_TEST,
                batch_size: int = BATCH_SIZE, continuous_factors: bool = False) -> dict:
    """Dataset-level SAP: train then test points drawn from ``rng`` as disentanglement_lib does."""
    codes_train, factors_train = sample_codes_factors(ground_truth_data, representation_fn, num_train, rng, batch_size)
    codes_test, factors_test = sample_codes_factors(ground_truth_data, representation_fn, num_test, rng, batch_size)
    return sap(codes_train, factors_train, codes_test, factors_test, continuous_factors,
               random_state=rng.randint(2**31 - 1))
