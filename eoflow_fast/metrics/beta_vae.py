"""BetaVAE disentanglement metric (Higgins et al. 2017), as disentanglement_lib's ``beta_vae.py`` (sklearn).

Each point: factor k uniform; two batches of ``batch_size`` factor vectors with batch 2's k-th entries
copied from batch 1; feature = mean over the pairs of |z1 - z2| (d,), label = k. A
``LogisticRegression`` (sklearn defaults) is fit on ``num_train`` points; scores are its accuracy
on them and on ``num_eval`` fresh points.
Defaults (gin ``beta_vae_sklearn``): batch_size = 64, num_train = 10,000, num_eval = 5,000.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from ._common import check_finite, check_varying, sample_intervention_batches

BATCH_SIZE = 64
NUM_TRAIN = 10_000
NUM_EVAL = 5_000


def beta_vae_features(codes_first: np.ndarray, codes_second: np.ndarray) -> np.ndarray:
    """Features (n, d) = mean over the batch axis of |codes_first - codes_second|, both (n, B, d)."""
    if np.shape(codes_first) != np.shape(codes_second) or np.ndim(codes_first) != 3:
        raise ValueError(f"beta_vae_features: codes_first {np.shape(codes_first)} and codes_second "
                         f"{np.shape(codes_second)} must both have shape (n, batch, d)")
    return np.mean(np.abs(codes_first - codes_second), axis=1)


def beta_vae(train_features, train_labels, eval_features, eval_labels, random_state=0) -> dict:
    """BetaVAE score from features (n, d) with factor labels (n,) for training and (m, d), (m,) for evaluation.

    Returns {"train_accuracy", "eval_accuracy"}.
    """
    train_features, eval_features = np.asarray(train_features), np.asarray(eval_features)
    for name, feats, labels in (("train", train_features, train_labels), ("eval", eval_features, eval_labels)):
        if feats.ndim != 2 or np.shape(labels) != (feats.shape[0],):
            raise ValueError(f"beta_vae: {name}_features must be (n, d) and {name}_labels (n,), "
                             f"got {feats.shape} and {np.shape(labels)}")
        check_finite("beta_vae", f"{name}_features", feats)
    check_varying("beta_vae", "train_labels", np.asarray(train_labels).reshape(-1, 1))
    model = LogisticRegression(random_state=random_state)
    model.fit(train_features, train_labels)
    return {"train_accuracy": float(np.mean(model.predict(train_features) == train_labels)),
            "eval_accuracy": float(model.score(eval_features, eval_labels))}


def _paired_factors(ground_truth_data, batch_size):
    def make(k, rng):
        first = ground_truth_data.sample_factors(batch_size, rng)
        second = ground_truth_data.sample_factors(batch_size, rng)
        second[:, k] = first[:, k]
        return [first, second]
    return make


def compute_beta_vae(ground_truth_data, representation_fn, rng, batch_size: int = BATCH_SIZE,
                     num_train: int = NUM_TRAIN, num_eval: int = NUM_EVAL) -> dict:
    """Dataset-level BetaVAE score; draws from ``rng`` in disentanglement_lib's order."""
    make = _paired_factors(ground_truth_data, batch_size)
    train_labels, train_codes = sample_intervention_batches(ground_truth_data, representation_fn, num_train, rng,
                                                            batch_size, make, desc="beta_vae: train batches")
    eval_labels, eval_codes = sample_intervention_batches(ground_truth_data, representation_fn, num_eval, rng,
                                                          batch_size, make, desc="beta_vae: eval batches")
    return beta_vae(beta_vae_features(train_codes[:, 0], train_codes[:, 1]), train_labels,
                    beta_vae_features(eval_codes[:, 0], eval_codes[:, 1]), eval_labels, random_state=rng)
