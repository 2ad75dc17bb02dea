"""``eoflow-fast eval RUN_DIR [--checkpoint FILE] [--device DEV] [family eval flags]``.

Reads ``RUN_DIR/config.json``, rebuilds the model through the registry, loads the latest checkpoint
(or ``--checkpoint``) and runs the family's ``evaluate(run_dir, model, config, args, source)``; a family
without one gets the mean loss terms over its evaluation split (its training split when it has
none). ``eoflow-fast eval RUN_DIR --help`` lists the family's evaluation flags. The result is
appended, with the checkpoint's step, to ``RUN_DIR/eval.jsonl``; the console gets a summary (the
headline scores and the files written), or the full result as JSON with ``--json``.
A result with NaN scores (a model whose outputs are not finite) is an error naming them; nothing is
recorded. Exit status: 0 done, 1 unusable run folder or checkpoint or NaN scores, 2 usage error (a
missing run folder too).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from eoflow_fast.train import checkpoint, engine, registry
from eoflow_fast.train.argtypes import device
from eoflow_fast.train.checkpoint import CheckpointError
from eoflow_fast.train.logging import append_record, jsonable

from .common import Parser, UsageError, add_cpu_threads, add_json, add_no_progress, apply_cpu_threads, eval_headline
from .common import check_run_folder, run_folder_error
from .common import headline, print_summary, progress_from, results_stdout
from .common import suggest, written_since


def check_metric_names(text: str) -> None:
    """Raise :class:`UsageError` naming an unknown metric in ``--metrics`` and the nearest known one."""
    from eoflow_fast.metrics import METRICS

    for name in (n.strip() for n in str(text).split(",")):
        if name and name != "default" and name not in METRICS:
            raise UsageError(f"argument --metrics: unknown metric {name!r}{suggest(name, METRICS)} "
                             f"(known: {', '.join(METRICS)}, or 'default')")


def run(args) -> int:
    run_dir = check_run_folder(args.run_dir)
    try:
        config = engine.read_config(run_dir)
        spec = registry.get(config.get("model", ""))
    except (KeyError, ImportError, json.JSONDecodeError, CheckpointError) as exc:
        run_folder_error("eoflow-fast eval", run_dir, exc)
    parser = eval_parser(args.run_dir, config, spec)
    eval_args = parser.parse_args(args.family_args)
    if getattr(eval_args, "metrics", None) is not None:  # None: the family's "no metrics" default (flow runs)
        check_metric_names(eval_args.metrics)
    with results_stdout(eval_args) as stdout, progress_from(eval_args):
        apply_cpu_threads(eval_args.cpu_threads)
        started = time.time()
        try:
            loaded = engine.open_run(run_dir, eval_args.checkpoint, eval_args.device)
        except (CheckpointError, ValueError, KeyError, OSError) as exc:
            run_folder_error("eoflow-fast eval", run_dir, exc)
        if spec.evaluate is not None:
            try:
                result = spec.evaluate(run_dir, loaded.model, loaded.config, eval_args,
                                       source=checkpoint.source(loaded.model, loaded.step, loaded.checkpoint))
            except UsageError:  # a flag the family refuses: exit 2 (main)
                raise
            except ValueError as exc:  # e.g. a metric refusing the points drawn (a constant factor in a small draw)
                print(f"eoflow-fast eval: error: {exc}", file=sys.stderr)
                return 1
        else:
            data = loaded.eval_dataset if loaded.eval_dataset is not None else loaded.train_dataset
            device = next(loaded.model.parameters()).device
            with torch.no_grad():
                result = engine.evaluate_loss(loaded.model, data, loaded.config["batch_size"], device,
                                              amp=False, step=loaded.step)
        undefined = [k for k, v in headline(result).items() if isinstance(v, float) and math.isnan(v)]
        if undefined:  # before: "loss  nan" in the summary and in eval.jsonl, read as a number
            print(f"eoflow-fast eval: error: the evaluation of {loaded.checkpoint.name} (step {loaded.step}) gave NaN "
                  f"for {len(undefined)} score(s) ({', '.join(undefined[:6])}): the model's outputs are not finite "
                  f"(diverged weights?); nothing was recorded", file=sys.stderr)
            return 1
        record = {"step": loaded.step, "checkpoint": loaded.checkpoint.name, **result}
        append_record(run_dir / "eval.jsonl", jsonable(record))
        title = f"eval {run_dir}: {config['model']} run at step {loaded.step} ({loaded.checkpoint.name})"
        print_summary(eval_args, title, record, eval_headline(result), written_since(run_dir, started), folder=run_dir,
                      stream=stdout)
        return 0


def eval_parser(run_dir: str, config: dict, spec: registry.ModelSpec) -> argparse.ArgumentParser:
    """The parser of ``eoflow-fast eval RUN_DIR``: --checkpoint, --device, --cpu-threads, --json,
    --no-progress and the family's evaluation flags."""
    parser = Parser(prog=f"eoflow-fast eval {run_dir}", description=f"Evaluate a {config['model']!r} run.")
    parser.add_argument("--checkpoint", metavar="FILE", help="checkpoint file (default: the latest in RUN_DIR)")
    parser.add_argument("--device", type=device, default="cpu", help="auto | cpu | cuda | cuda:N")
    add_cpu_threads(parser)
    add_json(parser)
    add_no_progress(parser)
    if spec.add_eval_args is not None:
        spec.add_eval_args(parser)
    return parser


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a trained run", description="Evaluate a run: rebuild its model from config.json, load a checkpoint, run the family's evaluation.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by 'eoflow-fast train'")
    parser.add_argument("family_args", nargs=argparse.REMAINDER, metavar="...",
                        help="--checkpoint, --device and the family's evaluation flags "
                             "(see 'eoflow-fast eval RUN_DIR --help')")
    parser.set_defaults(func=run)
