"""``eoflow-fast ifp --data dsprites ...``: DEFT's annealing test and information freezing points.

Per factor (default; [PAPER] §5.3): for each factor, ``--repeats`` times, enumerate every value of
that factor with the others fixed at a random draw, train a fresh beta-VAE while beta anneals from
``--beta-high`` to ``--beta-low`` over ``--steps`` steps, and record the IFP (first beta with
I(x; z) > ``--threshold`` nats). ``--unsupervised`` ([PAPER] §5.5) runs one test on
``--num-points`` observations of the whole dataset instead.

``--schedule settle`` holds the staircase's ``--levels`` log-spaced betas, each until I(x; z) has
settled: the plateau ends once the mean of I over the second half of the last ``--settle-window``
steps exceeds that over the first half by at most ``--settle-tol`` nats, or after ``--steps /
--levels`` steps (the cap; ``--steps`` is then the most the test may take). Each plateau's steps
and whether it settled or hit the cap (not settled) are written to ``ifp.json`` ("plateaus") and
summarised on the console, so the IFP is read from settled plateaus instead of from how fast beta
moves. A collapsed plateau settles after one window: an escape from the collapsed state that has
not begun within ``--settle-window`` steps is not seen (on dSprites a 100-step window missed the
escape at beta 151 in one of two seeds, moving the IFP one plateau down; 200 steps, the default,
caught it in both: IFP 179 / 175).

Writes to ``--out``: ``ifp.json`` (settings, IFPs per factor, and every run's beta / KL / I(x; z)
curves), ``ifp_histograms.png``, and ``annealing_<factor>.png`` (the first repeat's curve) or
``annealing.png``; per factor also ``ifp_tests.jsonl`` (each test as it finishes: an interrupted
run continues where it stopped, and more ``--repeats`` reuse the tests already run). The console gets a summary (the IFPs per factor and the files written), or
``ifp.json``'s content with ``--json``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict

import numpy as np
import torch

from eoflow_fast.deft.annealing import COLLAPSE, SETTLE_TOL, SETTLE_WINDOW, THRESHOLD
from eoflow_fast.train.argtypes import device, float_in, int_at_least, out_folder
from eoflow_fast.train.logging import append_record

from .common import UsageError, add_cpu_threads, add_json, add_no_progress, apply_cpu_threads, print_summary
from .common import progress_from, results_stdout, written_since


def register(subparsers) -> None:
    p = subparsers.add_parser("ifp", help="annealing test: information freezing points per factor",
                              description=__doc__)
    p.add_argument("--data", default="dsprites", help="ground-truth dataset spec (dsprites, dsprites_color, ...)")
    p.add_argument("--out", type=out_folder, default="runs/ifp", help="output folder")
    p.add_argument("--factors", type=int_at_least(0), nargs="*", default=None, help="factor indices (default: all)")
    p.add_argument("--repeats", type=int_at_least(1), default=50, help="random base samples per factor")
    p.add_argument("--unsupervised", action="store_true", help="one test on the whole dataset")
    p.add_argument("--num-points", type=int_at_least(1), default=10_000, help="observations for --unsupervised")
    p.add_argument("--steps", type=int_at_least(2), default=8000, help="annealing steps per test")
    p.add_argument("--beta-high", type=float_in(0.0, low_open=True), default=200.0, help="beta at the start of annealing")
    p.add_argument("--beta-low", type=float_in(0.0, low_open=True), default=1.0, help="beta at the end of annealing")
    p.add_argument("--schedule", choices=["loglinear", "linear", "exp", "staircase", "settle"], default="loglinear",
                   help="how beta moves from --beta-high to --beta-low (staircase: log-spaced plateaus of "
                        "--steps / --levels steps; settle: the same plateaus, each until I(x; z) settles)")
    p.add_argument("--levels", type=int_at_least(2), default=20,
                   help="staircase, settle: beta plateaus (IFP read at plateau ends)")
    p.add_argument("--settle-window", type=int_at_least(2), default=SETTLE_WINDOW,
                   help="settle: steps over which I(x; z) must stop rising (also a plateau's fewest steps; "
                        "a multiple of --mi-every)")
    p.add_argument("--settle-tol", type=float_in(0.0), default=SETTLE_TOL,
                   help="settle: largest rise of I(x; z) (nats, second half of the window against the first) that counts as settled")
    p.add_argument("--stop-after-freeze", action="store_true",
                   help="end each test at the first plateau end (or measurement) above --threshold")
    p.add_argument("--latent-dim", type=int_at_least(1), default=1, help="latent dimensions of each beta-VAE")
    p.add_argument("--encoder", choices=["standard", "lite"], default="standard", help="encoder architecture (DEFT Table 1)")
    p.add_argument("--lr", type=float_in(0.0, low_open=True), default=5e-4, help="Adam learning rate")
    p.add_argument("--batch-size", type=int_at_least(1), default=64, help="batch size")
    p.add_argument("--mi-every", type=int_at_least(1), default=10, help="steps between exact I(x; z) estimates")
    p.add_argument("--mi-samples", type=int_at_least(1), default=8, help="z draws per observation in the I(x; z) estimate")
    p.add_argument("--threshold", type=float_in(COLLAPSE, low_open=True), default=THRESHOLD,
                   help=f"IFP: first beta with I(x; z) above this (nats), after it fell to {COLLAPSE:g} or below")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the base samples and the models")
    p.add_argument("--device", type=device, default="auto", help="auto | cpu | cuda | cuda:N")
    add_cpu_threads(p)
    add_no_progress(p)
    add_json(p)
    p.set_defaults(func=run)


PARTIAL = "ifp_tests.jsonl"
# flags that do not change a test's result: a rerun with other values of these reuses finished tests
_NOT_RESULT = {"out", "json", "no_progress", "cpu_threads", "func", "repeats", "factors"}
# flags added after ifp_tests.jsonl files were first written: a header without them ran at these values
_LATER_FLAGS = {"settle_window": SETTLE_WINDOW, "settle_tol": SETTLE_TOL, "stop_after_freeze": False}


class PartialTests:
    """Every finished per-factor test of ``--out``, one JSON line each after a settings line, in
    ``OUT/ifp_tests.jsonl``, written as each test ends: a crash or Ctrl-C loses at most the test in
    progress, and the same command run again continues; a rerun with more ``--repeats`` or other
    ``--factors`` reuses the tests it shares (each test has its own seed, so the results are those
    of one uninterrupted run). A file written with other settings is refused, not overwritten."""

    def __init__(self, path: str, settings: dict):
        self.path = path
        self.settings = {k: v for k, v in settings.items() if k not in _NOT_RESULT}

    def load(self) -> dict:
        from eoflow_fast.deft.annealing import AnnealingResult

        if not os.path.exists(self.path):
            with open(self.path, "w") as f:
                f.write(json.dumps({"settings": self.settings}) + "\n")
            return {}
        with open(self.path) as f:
            lines = f.read().splitlines()
        try:
            head = {**_LATER_FLAGS, **json.loads(lines[0])["settings"]}
        except (IndexError, KeyError, ValueError):
            head = None
        if head != self.settings:
            diff = sorted(k for k in set(head or {}) | set(self.settings) if (head or {}).get(k) != self.settings.get(k))
            raise UsageError(f"argument --out: {self.path} holds the tests of another setting "
                             f"({', '.join(diff) or 'unreadable header'}); remove it or give another --out")
        done = {}
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by the crash: that test runs again
                continue
            done[(record["factor"], record["repeat"])] = AnnealingResult(**record["result"])
        if done:
            print(f"ifp: {len(done)} finished test(s) in {self.path}; continuing", file=sys.stderr)
        return done

    def add(self, factor: int, repeat: int, result) -> None:
        append_record(self.path, {"factor": factor, "repeat": repeat, "result": asdict(result)}, sync=True)


def run(args) -> int:
    with progress_from(args):
        return _run(args)


def _run(args) -> int:
    from eoflow_fast.data import get_ground_truth
    from eoflow_fast.deft import annealing as AN
    from eoflow_fast.vae.architectures import build_encoder_decoder
    from eoflow_fast.vae.objectives import VAE

    apply_cpu_threads(args.cpu_threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        ground_truth = get_ground_truth(args.data)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"argument --data: {exc}") from exc
    if args.factors and (len(set(args.factors)) != len(args.factors)
                         or not all(0 <= f < ground_truth.num_factors for f in args.factors)):
        raise UsageError(f"argument --factors: expected distinct indices in [0, {ground_truth.num_factors}) for "
                         f"{args.data} ({', '.join(ground_truth.factor_names)}), got {args.factors}")
    if args.beta_high < args.beta_low:
        raise UsageError(f"argument --beta-high: expected >= --beta-low={args.beta_low:g} (beta anneals down), "
                         f"got {args.beta_high:g}")
    if args.schedule == "staircase" and args.levels > args.steps:
        raise UsageError(f"argument --levels: expected at most --steps={args.steps} plateaus, got {args.levels}")
    torch.manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)

    def make_model():
        encoder, decoder = build_encoder_decoder(ground_truth.observation_shape, args.latent_dim, args.encoder)
        return VAE(encoder, decoder, reconstruction="bernoulli")

    test_kw = dict(beta_high=args.beta_high, beta_low=args.beta_low, schedule=args.schedule, lr=args.lr,
                   batch_size=args.batch_size, mi_every=args.mi_every, mi_samples=args.mi_samples,
                   threshold=args.threshold, levels=args.levels, settle_window=args.settle_window,
                   settle_tol=args.settle_tol, stop_after_freeze=args.stop_after_freeze)
    if args.schedule == AN.SETTLE and not (2 * args.mi_every <= args.settle_window <= args.steps // args.levels
                                           and args.settle_window % args.mi_every == 0):
        raise UsageError(f"argument --settle-window: expected a multiple of --mi-every={args.mi_every} from "
                         f"{2 * args.mi_every} to the plateau cap --steps / --levels = {args.steps // args.levels}, "
                         f"got {args.settle_window}")
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    with results_stdout(args) as stdout:
        if args.unsupervised:
            _, observations = ground_truth.sample(args.num_points, rng)
            data = torch.as_tensor(observations, dtype=torch.float32, device=device)
            result = AN.annealing_test(make_model().to(device), data, args.steps, **test_kw)
            AN.plot_annealing(result, os.path.join(args.out, "annealing.png"), args.threshold)
            payload = {"settings": settings, "ifp": result.ifp, "run": asdict(result)}
            title = f"ifp --unsupervised on {args.num_points} {args.data} observations, {args.steps} steps ({args.schedule})"
            scores = {"IFP (beta)": result.ifp if result.ifp is not None else "never froze"}
            if result.plateaus:
                capped = [p for p in result.plateaus if not p["settled"]]
                scores["plateaus"] = (f"{len(result.plateaus)} run, {len(result.betas)} steps, "
                                      f"{len(capped)} hit the cap of {args.steps // args.levels} steps (not settled)"
                                      + (": beta " + ", ".join(f"{p['beta']:.3g}" for p in capped) if capped else ""))
        else:
            partial = PartialTests(os.path.join(args.out, PARTIAL), settings)
            runs = AN.factor_annealing_runs(ground_truth, make_model, args.steps, args.repeats, rng,
                                            args.factors, device, done=partial.load(), on_result=partial.add,
                                            **test_kw)
            ifps = {name: [r.ifp for r in results] for name, results in runs.items()}
            scores = {}
            for name, results in runs.items():
                AN.plot_annealing(results[0], os.path.join(args.out, f"annealing_{name}.png"), args.threshold)
                finite = [v for v in ifps[name] if v is not None]
                scores[f"{name}: IFP"] = (f"median {np.median(finite):.3g}, range [{min(finite):.3g}, {max(finite):.3g}] "
                                          f"({len(finite)}/{len(results)} froze)" if finite
                                          else f"never froze (0/{len(results)})")
            AN.plot_ifp_histograms(ifps, os.path.join(args.out, "ifp_histograms.png"))
            payload = {"settings": settings, "ifp": ifps,
                       "runs": {name: [asdict(r) for r in results] for name, results in runs.items()}}
            title = (f"ifp {args.data}: {len(runs)} factor(s) x {args.repeats} repeat(s), {args.steps} annealing steps "
                     f"each ({args.schedule}, beta {args.beta_high:g} -> {args.beta_low:g})")
        tmp = os.path.join(args.out, "ifp.json.tmp")
        with open(tmp, "w") as f:
            json.dump(payload, f)
        os.replace(tmp, os.path.join(args.out, "ifp.json"))
        print_summary(args, title, payload, scores, written_since(args.out, started), folder=args.out, stream=stdout)
    return 0
