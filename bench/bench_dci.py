"""Benchmark: DCI wall time at disentanglement_lib's defaults on dSprites, serial vs parallel vs quick.

Workload: ``compute_dci`` on the procedural dSprites ground truth (5 factors, sizes 3, 6, 40, 32, 32),
num_train = 10,000, num_test = 5,000, batch_size = 16, metric seed 0, with a fixed random
representation (a Gaussian projection of the 64 x 64 image to 10 codes: no model needed). Variants:

* ``serial``: ``n_jobs=1``, the per-factor loop as before the parallel change (same classifiers);
* ``parallel``: ``n_jobs=-1`` (one thread per factor, up to the core count, most classes first); identical scores,
  checked here;
* ``quick``: ``quick=True`` (fewer boosting trees; its scores differ and say so).

Each variant runs once (minutes each at defaults); the load average before and after each is
recorded, because a shared machine changes the numbers.

    python bench/bench_dci.py [--num-train N] [--num-test M] [--variants serial,parallel,quick] [--out DIR]

Writes ``dci_cpu.json`` (env, flags, per-variant seconds, load and scores) to runs/bench, or to ``--out``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from eoflow_fast.data import get_ground_truth
from eoflow_fast.metrics.dci import compute_dci

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, write_result  # noqa: E402

VARIANTS = {"serial": {"n_jobs": 1}, "parallel": {"n_jobs": -1}, "quick": {"quick": True}}


def random_representation(seed: int = 0, num_codes: int = 10):
    """obs (n, 1, 64, 64) -> codes (n, num_codes) = flatten(obs) @ W, W ~ N(0, 1/4096) fixed."""
    weights = np.random.RandomState(seed).randn(64 * 64, num_codes).astype(np.float32) / 64.0
    return lambda obs: np.asarray(obs, dtype=np.float32).reshape(len(obs), -1) @ weights


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--num-train", type=int, default=10_000, help="DCI training points")
    parser.add_argument("--num-test", type=int, default=5_000, help="DCI test points")
    parser.add_argument("--variants", default="serial,parallel,quick", help=f"comma-separated from {list(VARIANTS)}")
    args = parse_args(parser, argv)
    data, representation = get_ground_truth("dsprites"), random_representation()
    rows = {}
    for name in args.variants.split(","):
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        scores = compute_dci(data, representation, np.random.RandomState(0), num_train=args.num_train,
                             num_test=args.num_test, **VARIANTS[name])
        seconds = time.perf_counter() - t0
        rows[name] = {"seconds": seconds, "load_before": load_before, "load_after": os.getloadavg()[0],
                      **{k: scores[k] for k in ("disentanglement", "completeness", "informativeness_train",
                                                "informativeness_test", "variant")}}
        print(f"{name:9s} {seconds:8.1f} s  load {load_before:.1f} -> {rows[name]['load_after']:.1f}  "
              f"D {scores['disentanglement']:.4f} C {scores['completeness']:.4f} "
              f"I_test {scores['informativeness_test']:.4f}", flush=True)
    if "serial" in rows and "parallel" in rows:
        same = all(rows["serial"][k] == rows["parallel"][k] for k in ("disentanglement", "completeness",
                                                                          "informativeness_test"))
        print(f"parallel == serial exactly: {same}")
    payload = {"cpu_count": os.cpu_count(), "results": rows}
    print(f"wrote {write_result('dci', 'cpu', payload)}")
    return payload


if __name__ == "__main__":
    main()
