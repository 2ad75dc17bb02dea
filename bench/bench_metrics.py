"""Benchmark: the discrete MI matrix (d latents x F factors x N points), batched vs per-pair scikit-learn.

Workload of disentanglement_lib's MIG at its defaults: N = 10,000 points, d = 10 latents, F = 5
factors with dSprites' sizes (3, 6, 40, 32, 32), 20 equal-width bins. Variants, side by side:

* ``sklearn loop``: disentanglement_lib's code path: ``np.histogram`` + ``np.digitize`` per latent,
  then d*F calls of ``sklearn.metrics.mutual_info_score`` (+ F calls for the factor entropies);
* ``batched (cpu)``: ``eoflow_fast.metrics.mutual_info_matrix``: one ``searchsorted`` discretisation,
  one ``bincount`` over all d*F joint histograms;
* ``batched (cuda)``: the same on CUDA tensors, when a GPU is present.

Also the label-only part (discretised codes given) for both. The batched CPU functions run their ops on one
torch thread (``discrete_mi.single_thread_on_cpu``); the process's thread count is recorded. Target: batched >= 10x the loop.

    python bench/bench_metrics.py [--quick]
    pytest bench/bench_metrics.py --benchmark-only
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, print_table, time_fn, write_result  # noqa: E402

from eoflow_fast.metrics import discrete_entropy, discrete_mi_matrix, histogram_discretize, mutual_info_matrix  # noqa: E402

N, D, FACTOR_SIZES, NUM_BINS = 10_000, 10, (3, 6, 40, 32, 32), 20


def workload(seed: int = 0):
    """Float32 codes (N, D) that depend on the factors, and integer factors (N, F)."""
    rs = np.random.RandomState(seed)
    factors = np.stack([rs.randint(s, size=N) for s in FACTOR_SIZES], axis=1)
    codes = (factors @ rs.randn(len(FACTOR_SIZES), D) + rs.randn(N, D)).astype(np.float32)
    return codes, factors


def sklearn_loop(codes: np.ndarray, factors: np.ndarray):
    """disentanglement_lib: per-latent histogram discretisation, then per-pair mutual_info_score."""
    labels = np.zeros_like(codes.T)
    for i in range(codes.shape[1]):
        labels[i] = np.digitize(codes[:, i], np.histogram(codes[:, i], NUM_BINS)[1][:-1])
    mi = np.array([[mutual_info_score(factors[:, j], labels[i]) for j in range(factors.shape[1])]
                   for i in range(codes.shape[1])])
    entropy = np.array([mutual_info_score(factors[:, j], factors[:, j]) for j in range(factors.shape[1])])
    return mi, entropy


def sklearn_pairs(labels: np.ndarray, factors: np.ndarray):
    return np.array([[mutual_info_score(factors[:, j], labels[:, i]) for j in range(factors.shape[1])]
                     for i in range(labels.shape[1])])


def variants():
    codes, factors = workload()
    labels = histogram_discretize(codes).numpy()
    out = {
        "sklearn loop": ("full", lambda: sklearn_loop(codes, factors)),
        "batched (cpu)": ("full", lambda: mutual_info_matrix(codes, factors)),
        "sklearn pairs, labels given": ("labels", lambda: sklearn_pairs(labels, factors)),
        "batched (cpu), labels given": ("labels", lambda: (discrete_mi_matrix(labels, factors),
                                                           discrete_entropy(factors))),
    }
    if torch.cuda.is_available():
        codes_gpu, factors_gpu = torch.from_numpy(codes).cuda(), torch.from_numpy(factors).cuda()
        labels_gpu = torch.from_numpy(labels).cuda()
        out["batched (cuda)"] = ("full", lambda: mutual_info_matrix(codes_gpu, factors_gpu))
        out["batched (cuda), labels given"] = ("labels", lambda: (discrete_mi_matrix(labels_gpu, factors_gpu),
                                                                  discrete_entropy(factors_gpu)))
    return out, codes, factors


def run(quick: bool = False) -> dict:
    reps = 3 if quick else 15
    fns, codes, factors = variants()
    want, _ = sklearn_loop(codes, factors)
    got, _ = mutual_info_matrix(codes, factors)
    max_abs_diff = float(np.abs(got - want).max())
    rows = []
    default_threads = torch.get_num_threads()
    for name, (part, fn) in fns.items():
        device = "cuda" if "cuda" in name else "cpu"
        rows.append({"variant": name, "part": part, "torch_threads": default_threads,
                     **time_fn(fn, device, warmup=1, reps=reps)})
    base = {r["part"]: r["median_ms"] for r in rows if r["variant"].startswith("sklearn")}
    for r in rows:
        r["speedup_vs_sklearn"] = base[r["part"]] / r["median_ms"]
    print_table(rows, ["variant", "part", "torch_threads", "median_ms", "min_ms", "speedup_vs_sklearn"])
    ratio = next(r["speedup_vs_sklearn"] for r in rows if r["variant"] == "batched (cpu)")
    print(f"discrete MI matrix N={N} d={D} F={len(FACTOR_SIZES)}: batched cpu {ratio:.1f}x the sklearn loop "
          f"(target >= 10x); max |MI difference| = {max_abs_diff:.2e}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = write_result("metrics", device, {
        "workload": {"N": N, "d": D, "factor_sizes": FACTOR_SIZES, "num_bins": NUM_BINS},
        "rows": rows, "batched_cpu_over_sklearn": ratio, "max_abs_mi_difference": max_abs_diff,
        "note": "shared machine; numbers vary with load"})
    print(f"wrote {path}")
    return {"rows": rows, "ratio": ratio}


@pytest.mark.parametrize("variant", ["sklearn loop", "batched (cpu)"])
def test_discrete_mi_matrix(benchmark, variant):
    benchmark(variants()[0][variant][1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    return run(parse_args(p, argv).quick)


if __name__ == "__main__":
    main()
