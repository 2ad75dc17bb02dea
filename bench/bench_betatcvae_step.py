"""Benchmark: one beta-TCVAE training step (forward, backward, Adam) with the fused TC estimate
against the same model with the eager materializing estimate.

Model: DEFT Table 1 standard encoder + shared decoder, 64 x 64 x 1 Bernoulli images, 10 latents,
beta = 6, MSS estimator, dataset_size = 737,280 (dSprites). Variants side by side in one run:
``eager`` (``tc_backend="torch"``: the reference builds the (B, B, D) tensor), the fused kernel
(``cpp`` on CPU, ``triton`` on CUDA), and ``no_tc`` (a beta-VAE over the same networks: the floor
the TC term adds to). Batches 256 and 2048. Reports the median step time, the peak extra memory of
one step and the ratios to ``eager``; JSON to ``<--out>/betatcvae_step_<device>.json``.

    python bench/bench_betatcvae_step.py [--device cpu|cuda] [--batches 256,2048] [--quick]
    pytest bench/bench_betatcvae_step.py --benchmark-only
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, peak_memory, print_table, time_fn, write_result  # noqa: E402

from eoflow_fast.vae.architectures import DeconvDecoder, standard_encoder  # noqa: E402
from eoflow_fast.vae.objectives import BetaTCVAE, BetaVAE  # noqa: E402
from eoflow_fast.train.contract import optimized_loss  # noqa: E402

DATASET_SIZE = 737_280
LATENT_DIM = 10


def make_model(variant: str, device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    nets = standard_encoder(LATENT_DIM, 1), DeconvDecoder(LATENT_DIM, 1)
    if variant == "no_tc":
        model = BetaVAE(*nets, beta=6.0)
    else:
        model = BetaTCVAE(*nets, beta=6.0, dataset_size=DATASET_SIZE, estimator="mss",
                          tc_backend="torch" if variant == "eager" else variant)
    return model.to(device)


def training_step(model: torch.nn.Module, x: torch.Tensor):
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        optimized_loss(model.loss_terms(x, 0)).backward()
        opt.step()
    return step


def images(batch: int, device: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(batch, 1, 64, 64, generator=g) > 0.8).float().to(device)


def variants(device: str) -> list[str]:
    return ["eager", "cpp" if device == "cpu" else "triton", "no_tc"]


def run(device: str, batches=(256, 2048), quick: bool = False) -> dict:
    """Variants are timed round-robin (one step of each per repetition), so load drift on a shared
    machine hits them alike; median and min over the repetitions."""
    reps, warmup = (1, 1) if quick else (5 if device == "cpu" else 20, 2)
    rows = []
    for batch in batches:
        x = images(batch, device)
        steps = {v: training_step(make_model(v, device), x) for v in variants(device)}
        times: dict[str, list[float]] = {v: [] for v in steps}
        status = {v: "ok" for v in steps}
        for rep in range(warmup + reps):
            for v, step in steps.items():
                if status[v] != "ok":
                    continue
                try:
                    t = time_fn(step, device, warmup=0, reps=1)["median_ms"]
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    status[v] = "out of memory"
                    continue
                if rep >= warmup:
                    times[v].append(t)
        for v, step in steps.items():
            row = {"B": batch, "variant": v, "status": status[v]}
            if status[v] == "ok":
                row.update(median_ms=statistics.median(times[v]), min_ms=min(times[v]), reps=reps,
                           peak_mib=peak_memory(step, device) / 2**20)
            rows.append(row)
    for r in rows:
        eager = next((q for q in rows if q["B"] == r["B"] and q["variant"] == "eager" and "median_ms" in q), None)
        if eager and "median_ms" in r:
            r["speedup_vs_eager"] = eager["median_ms"] / r["median_ms"]
            r["memory_vs_eager"] = r["peak_mib"] / eager["peak_mib"]
    print_table(rows, ["B", "variant", "median_ms", "min_ms", "speedup_vs_eager", "peak_mib", "memory_vs_eager", "status"])
    path = write_result("betatcvae_step", device, {
        "model": "standard encoder + deconv decoder, 64x64x1, d=10, beta 6, MSS", "dataset_size": DATASET_SIZE,
        "reps": reps, "warmup": warmup, "threads": torch.get_num_threads(), "rows": rows})
    print(f"wrote {path}")
    return {"rows": rows}


@pytest.mark.parametrize("variant", ["eager", "fused"])
def test_betatcvae_step(benchmark, variant):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = variant if variant == "eager" else variants(device)[1]
    benchmark(training_step(make_model(name, device), images(256, device)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], default=[256, 2048])
    p.add_argument("--quick", action="store_true", help="one warm-up and one timed repetition")
    a = parse_args(p, argv)
    return run(a.device, a.batches, a.quick)


if __name__ == "__main__":
    main()
