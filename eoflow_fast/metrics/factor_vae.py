"""FactorVAE disentanglement metric (Kim & Mnih 2018), as disentanglement_lib's ``factor_vae.py``.

1. Global variances v (d,) of the codes of ``num_variance_estimate`` random observations (ddof 1);
   active dims: sqrt(v) >= threshold (0.05). No active dim: every score is 0.
2. Each vote: factor k uniform; ``batch_size`` factor vectors with the k-th entry fixed to the first
   vector's; local variances u (d,) of their codes (ddof 1); vote[k, argmin_{active} u / v] += 1.
3. Classifier: for each latent column the majority factor (argmax over factors).
   accuracy = sum_l votes[cls(l), l] / sum votes, on the training votes and on fresh eval votes.

Quirks kept from disentanglement_lib for comparable numbers: the argmin is an index into the
*active subset* but is written into the full-width vote matrix, and ``num_active_dims`` reports
the number of all dims (``len(mask)``) whenever at least one is active.
Defaults (gin ``factor_vae_score``): batch_size = 64, num_train = 10,000, num_eval = 5,000,
num_variance_estimate = 10,000, prune_dims.threshold = 0.05.
"""
from __future__ import annotations

import numpy as np

from ._common import check_codes, check_finite, check_number, represent, sample_intervention_batches

BATCH_SIZE = 64
NUM_TRAIN = 10_000
NUM_EVAL = 5_000
NUM_VARIANCE_ESTIMATE = 10_000
THRESHOLD = 0.05


def factor_vae_votes(batch_codes: np.ndarray, factor_index: np.ndarray, global_variances: np.ndarray,
                     active_dims: np.ndarray, num_factors: int) -> np.ndarray:
    """Vote matrix (F, d) from fixed-factor batches of codes (n, B, d) and their factor indices (n,)."""
    local_variances = np.var(batch_codes, axis=1, ddof=1)
    argmin = np.argmin(local_variances[:, active_dims] / global_variances[active_dims], axis=1)
    votes = np.zeros((num_factors, global_variances.shape[0]), dtype=np.int64)
    np.add.at(votes, (factor_index, argmin), 1)
    return votes


def factor_vae(global_codes, train_batches, train_factor_index, eval_batches, eval_factor_index,
               num_factors: int, threshold: float = THRESHOLD) -> dict:
    """FactorVAE score from codes of random observations (M, d) and fixed-factor batches (n, B, d).

    Returns {"train_accuracy", "eval_accuracy", "num_active_dims"}.
    """
    global_codes = check_codes("factor_vae", "global_codes", global_codes)
    threshold = check_number("factor_vae", "threshold", threshold, 0.0)
    for name, batches, index in (("train_batches", train_batches, train_factor_index),
                                 ("eval_batches", eval_batches, eval_factor_index)):
        if np.ndim(batches) != 3 or np.shape(batches)[2] != global_codes.shape[1]:
            raise ValueError(f"factor_vae: {name} must have shape (n, batch, {global_codes.shape[1]}), "
                             f"got {np.shape(batches)}")
        if np.shape(index) != (np.shape(batches)[0],):
            raise ValueError(f"factor_vae: factor index of {name} must have shape ({np.shape(batches)[0]},)")
        index = np.asarray(index)
        if index.size and (not np.issubdtype(index.dtype, np.integer) or index.min() < 0 or index.max() >= num_factors):
            raise ValueError(f"factor_vae: factor index of {name} must hold integers in [0, num_factors = "
                             f"{num_factors}), got dtype {index.dtype}, range [{index.min()}, {index.max()}]")
        check_finite("factor_vae", name, batches)
    global_variances = np.var(global_codes, axis=0, ddof=1)
    active_dims = np.sqrt(global_variances) >= threshold
    if not active_dims.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train_votes = factor_vae_votes(np.asarray(train_batches), np.asarray(train_factor_index), global_variances,
                                   active_dims, num_factors)
    eval_votes = factor_vae_votes(np.asarray(eval_batches), np.asarray(eval_factor_index), global_variances,
                                  active_dims, num_factors)
    classifier = np.argmax(train_votes, axis=0)
    columns = np.arange(train_votes.shape[1])
    return {"train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
            "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
            "num_active_dims": int(len(active_dims))}


def _fixed_factor(ground_truth_data, batch_size):
    def make(k, rng):
        factors = ground_truth_data.sample_factors(batch_size, rng)
        factors[:, k] = factors[0, k]
        return [factors]
    return make


def compute_factor_vae(ground_truth_data, representation_fn, rng, batch_size: int = BATCH_SIZE,
                       num_train: int = NUM_TRAIN, num_eval: int = NUM_EVAL,
                       num_variance_estimate: int = NUM_VARIANCE_ESTIMATE, threshold: float = THRESHOLD) -> dict:
    """Dataset-level FactorVAE score; draws from ``rng`` in disentanglement_lib's order."""
    observations = ground_truth_data.sample(num_variance_estimate, rng)[1]
    global_codes = represent(representation_fn, np.asarray(observations))
    if not (np.sqrt(np.var(global_codes, axis=0, ddof=1)) >= threshold).any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    make = _fixed_factor(ground_truth_data, batch_size)
    train_index, train_codes = sample_intervention_batches(ground_truth_data, representation_fn, num_train, rng,
                                                           batch_size, make, desc="factor_vae: train batches")
    eval_index, eval_codes = sample_intervention_batches(ground_truth_data, representation_fn, num_eval, rng,
                                                         batch_size, make, desc="factor_vae: eval batches")
    return factor_vae(global_codes, train_codes[:, 0], train_index, eval_codes[:, 0], eval_index,
                      ground_truth_data.num_factors, threshold)
