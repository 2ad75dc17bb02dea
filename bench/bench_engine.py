"""Benchmark: per-step overhead of the training engine against a bare PyTorch loop.

Both train the same MLP regression model (``loss_terms`` = mean squared error + a small weight
penalty, batch ``B``) with Adam on the same in-memory dataset through a ``DataLoader``; the bare
loop is ``for batch in loader: zero_grad; loss_terms; sum; backward; step``. The engine adds its
batch sampler, hooks, per-step records (one host sync per ``log_every`` steps), the tqdm bar, the
NaN check and the JSONL writes (checkpoints only at the end, outside the timed window).

Time per step: bare loop, wall time of ``steps - warmup`` steps after ``warmup`` steps; engine,
the difference of the ``time`` fields of ``metrics.jsonl`` records ``warmup`` and ``steps`` over
their count. The two run alternately ``repeats`` times, each going first in half of the pairs (a shared
machine drifts); reported:
``overhead = median(engine) / median(bare) - 1`` (target < 5% at a ~10 ms step) and, less
sensitive to other jobs' bursts, ``overhead_of_minima = min(engine) / min(bare) - 1``.

    python bench/bench_engine.py [--quick] [--device cpu|cuda]
    pytest bench/bench_engine.py --benchmark-only
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_args, write_result  # noqa: E402

from eoflow_fast.train import engine  # noqa: E402


class Regressor(nn.Module):
    """``d -> hidden -> hidden -> d`` ReLU MLP; terms: ``mse`` and ``1e-6 * sum w^2`` (``l2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, dim))

    def loss_terms(self, batch, step):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return {"mse": (self.net(x) - x.flip(-1)).pow(2).mean(),
                "l2": 1e-6 * sum(p.pow(2).sum() for p in self.net[0].parameters())}


class Rows(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def bare_loop(model, dataset, batch_size, steps, warmup, device) -> float:
    """ms per step of the plain loop, timed over steps warmup..steps."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    step, t_start = 0, None
    while step < steps:
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            terms = model.loss_terms(batch, step)
            sum(terms.values()).backward()
            opt.step()
            step += 1
            if step == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t_start = time.perf_counter()
            if step == steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t_start) * 1e3 / (steps - warmup)


def engine_loop(model, dataset, batch_size, steps, warmup, device, run_dir) -> float:
    """ms per step of ``engine.train``, from the ``time`` of its metrics records."""
    cfg = {"steps": steps, "batch_size": batch_size, "lr": 1e-4, "ckpt_every": 0, "log_every": 10,
           "device": str(device), "amp": "off", "progress": True}
    engine.train(model, dataset, cfg, run_dir)
    times = {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "train":
            times[rec["step"]] = rec["time"]
    return (times[steps] - times[warmup]) * 1e3 / (steps - warmup)


def measure(device: torch.device, dim: int, hidden: int, batch_size: int, steps: int, warmup: int,
            repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    dataset = Rows(torch.randn(batch_size * 16, dim, generator=gen))
    bare, eng = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            runs = [lambda: bare.append(bare_loop(Regressor(dim, hidden).to(device), dataset, batch_size,
                                                  steps, warmup, device)),
                    lambda: eng.append(engine_loop(Regressor(dim, hidden), dataset, batch_size, steps, warmup,
                                                   device, Path(tmp) / f"run{r}"))]
            for run in runs if r % 2 == 0 else runs[::-1]:  # alternate which goes first
                torch.manual_seed(r)
                run()
    bare_ms, engine_ms = statistics.median(bare), statistics.median(eng)
    return {"dim": dim, "hidden": hidden, "batch_size": batch_size, "steps": steps, "warmup": warmup,
            "repeats": repeats, "bare_ms": bare, "engine_ms": eng, "bare_median_ms": bare_ms,
            "engine_median_ms": engine_ms, "overhead": engine_ms / bare_ms - 1,
            "overhead_of_minima": min(eng) / min(bare) - 1}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats (a smoke run)")
    p.add_argument("--hidden", type=int, default=400, help="MLP width (sets the step time)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    args = parse_args(p, argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    steps, warmup, repeats = (40, 10, 2) if args.quick else (110, 10, 15)
    result = measure(device, 256, args.hidden, 128, steps, warmup, repeats)
    path = write_result("engine_overhead", args.device, {
        "note": "shared machine: other jobs run concurrently; medians of alternating repeats",
        **result})
    print(f"bare loop {result['bare_median_ms']:.2f} ms/step, engine {result['engine_median_ms']:.2f} ms/step, "
          f"overhead {100 * result['overhead']:+.1f}% (of minima {100 * result['overhead_of_minima']:+.1f}%)  ->  {path}")
    return result


def test_engine_step(benchmark, tmp_path):
    """pytest-benchmark: one short engine run of the model above (CPU)."""
    gen = torch.Generator().manual_seed(0)
    dataset = Rows(torch.randn(128 * 4, 256, generator=gen))
    runs = iter(range(10**6))
    benchmark.pedantic(lambda: engine_loop(Regressor(256, 400), dataset, 128, 20, 10, torch.device("cpu"),
                                           tmp_path / f"r{next(runs)}"), rounds=3)


if __name__ == "__main__":
    main()
