"""DEFT's failure rate over runs ([PAPER] arXiv 2102.03986 §5.3).

    failure_rate = 100 * #{runs r : MIG_r < threshold} / #runs        (percent; threshold 0.1)
"""
from __future__ import annotations

import numpy as np

from ._common import check_number

THRESHOLD = 0.1


def failure_rate(mig_scores, threshold: float = THRESHOLD) -> dict:
    """Percentage of runs whose MIG is below ``threshold``; mig_scores is a 1-D sequence (R,)."""
    scores = np.asarray(mig_scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"failure_rate: mig_scores must be a 1-D sequence of per-run MIG, got shape {scores.shape}")
    if scores.size == 0:
        raise ValueError("failure_rate: mig_scores is empty")
    if not np.all(np.isfinite(scores)):
        raise ValueError("failure_rate: mig_scores contains NaN or infinite values")
    failed = scores < check_number("failure_rate", "threshold", threshold)
    return {"failure_rate": float(100.0 * failed.mean()), "num_failed": int(failed.sum()), "num_runs": int(scores.size)}
