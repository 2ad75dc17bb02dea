"""``eoflow-fast eval RUN_DIR [--checkpoint FILE] [--device DEV] [family eval flags]``.

Reads ``RUN_DIR/config.json``, rebuilds the model through the registry, loads the latest checkpoint
(or ``--checkpoint``) and runs the family's ``evaluate(run_dir, model, config, args)``; a family
without one gets the mean loss terms over its evaluation split (its training split when it has
none). ``eoflow-fast eval RUN_DIR --help`` lists the family's evaluation flags. The result is
printed as JSON and appended, with the checkpoint's step, to ``RUN_DIR/eval.jsonl``.
Exit status: 0 done, 1 unusable run folder or checkpoint, 2 usage error.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from eoflow_fast.train import engine, registry
from eoflow_fast.train.checkpoint import CheckpointError
from eoflow_fast.train.logging import jsonable


def run(args) -> int:
    run_dir = Path(args.run_dir)
    try:
        config = engine.read_config(run_dir)
        spec = registry.get(config.get("model", ""))
    except (FileNotFoundError, KeyError, ImportError, json.JSONDecodeError) as exc:
        print(f"eoflow-fast eval: error: {run_dir}: {exc}", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(prog=f"eoflow-fast eval {args.run_dir}",
                                     description=f"evaluate a {config['model']!r} run",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", metavar="FILE", help="checkpoint file (default: the latest in RUN_DIR)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    if spec.add_eval_args is not None:
        spec.add_eval_args(parser)
    eval_args = parser.parse_args(args.family_args)
    try:
        loaded = engine.open_run(run_dir, eval_args.checkpoint, eval_args.device)
    except (CheckpointError, ValueError) as exc:
        print(f"eoflow-fast eval: error: {exc}", file=sys.stderr)
        return 1
    if spec.evaluate is not None:
        result = spec.evaluate(run_dir, loaded.model, loaded.config, eval_args)
    else:
        data = loaded.eval_dataset if loaded.eval_dataset is not None else loaded.train_dataset
        device = next(loaded.model.parameters()).device
        with torch.no_grad():
            result = engine.evaluate_loss(loaded.model, data, loaded.config["batch_size"], device,
                                          amp=False, step=loaded.step)
    record = {"step": loaded.step, "checkpoint": loaded.checkpoint.name, **result}
    with open(run_dir / "eval.jsonl", "a") as f:
        f.write(json.dumps(jsonable(record)) + "\n")
    print(json.dumps(jsonable(record), indent=2))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a trained run", description="Evaluate a run: rebuild its model from config.json, load a checkpoint, run the family's evaluation.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by 'eoflow-fast train'")
    parser.add_argument("family_args", nargs=argparse.REMAINDER, metavar="...",
                        help="--checkpoint, --device and the family's evaluation flags "
                             "(see 'eoflow-fast eval RUN_DIR --help')")
    parser.set_defaults(func=run)
