"""``eoflow-fast train MODEL [engine flags] [family flags]``: train a registered model family.

``MODEL`` is a key of :data:`eoflow_fast.train.registry.FAMILY_MODULES`; only that family's module
is imported, and ``eoflow-fast train MODEL --help`` lists the engine flags and the family's own.
The resolved configuration (engine keys of :data:`eoflow_fast.train.engine.DEFAULTS`, the family's
flags under their argparse ``dest`` names, and ``"model": MODEL``) is written to
``RUN_DIR/config.json`` and is all ``eoflow-fast eval`` / ``--resume`` need to rebuild the model.

Precedence: engine/family defaults < ``--config FILE`` (YAML or JSON mapping of dest names, e.g.
``{"steps": 500, "batch_size": 128}``) < flags given on the command line.
``--resume RUN_DIR`` takes the run's saved config; flags given explicitly may change only the keys
of :data:`eoflow_fast.train.engine.RESUME_MUTABLE` (e.g. ``--steps`` to train longer).
Exit status: 0 done, 1 runtime failure (non-finite loss, unusable checkpoint), 2 usage error,
128 + signal number after SIGTERM/SIGINT (a checkpoint was written first).
Under ``torchrun --nproc-per-node N -m eoflow_fast.cli.main train ...`` the same command trains
data-parallel (``--batch-size`` stays the global batch).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from eoflow_fast import progress
from eoflow_fast.train import checkpoint, engine, registry
from eoflow_fast.train.argtypes import check_config_value, device, float_in, int_at_least, load_mapping
from eoflow_fast.train.checkpoint import CheckpointError

from .common import Parser, UsageError, add_cpu_threads, add_json, apply_cpu_threads, eval_headline, print_summary
from .common import check_run_folder, results_stdout, run_folder_error, suggest, written_since

_META = ("help", "config", "resume", "run_dir", "overwrite", "from_checkpoint", "branch", "json")  # not config keys
_nonneg_float = float_in(0.0)


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """The engine flags; defaults from :data:`engine.DEFAULTS` (see its table for meanings)."""
    d = engine.DEFAULTS
    g = parser.add_argument_group("engine")
    g.add_argument("--config", metavar="FILE", help="YAML/JSON file of config keys; flags override it")
    g.add_argument("--run-dir", metavar="DIR", help="run folder (default: runs/MODEL-YYYYmmdd-HHMMSS)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    g.add_argument("--from-checkpoint", metavar="FILE", default=None,
                   help="with --resume: continue from this checkpoint of RUN_DIR instead of the latest "
                        "(newer ones move to RUN_DIR/superseded-STEP/)")
    g.add_argument("--branch", metavar="KEY=VALUE", action="append", default=None,
                   help="with --resume: change " + ", ".join(sorted(engine.BRANCH_MUTABLE)) + " (and the family's "
                        "branch keys, e.g. DEFT's betas) on purpose (repeatable), e.g. after a NaN stop; recorded in "
                        "config.json and metrics.jsonl")
    g.add_argument("--overwrite", action="store_true",
                   help="let a fresh run write into a non-empty folder (files the engine does not write stay)")
    g.add_argument("--steps", type=int_at_least(1), default=d["steps"], help="optimizer steps in total")
    g.add_argument("--batch-size", type=int_at_least(1), default=d["batch_size"],
                   help="global batch size (split over DDP processes)")
    g.add_argument("--lr", type=float_in(0.0, low_open=True), default=d["lr"], help="peak learning rate")
    g.add_argument("--optimizer", choices=engine.CHOICES["optimizer"], default=d["optimizer"],
                   help="optimizer (adamw: decoupled weight decay)")
    g.add_argument("--weight-decay", type=_nonneg_float, default=d["weight_decay"], help="weight decay")
    g.add_argument("--lr-schedule", choices=engine.CHOICES["lr_schedule"], default=d["lr_schedule"],
                   help="learning rate after warm-up: constant, or cosine decay to 0 at --steps")
    g.add_argument("--warmup-steps", type=int_at_least(0), default=d["warmup_steps"],
                   help="linear learning-rate warm-up from lr/warmup_steps to lr over this many steps")
    g.add_argument("--ckpt-every", type=int_at_least(0), default=d["ckpt_every"],
                   help="checkpoint period in steps (0: at the end and on signals only)")
    g.add_argument("--keep", type=int_at_least(1), default=d["keep"], help="checkpoints to keep")
    g.add_argument("--eval-every", type=int_at_least(0), default=d["eval_every"],
                   help="evaluation period (0: at the end only)")
    g.add_argument("--plot-every", type=int_at_least(0), default=d["plot_every"], help="plot period (0: never)")
    g.add_argument("--log-every", type=int_at_least(1), default=d["log_every"],
                   help="progress / NaN-check / host-sync period")
    g.add_argument("--seed", type=int_at_least(0), default=d["seed"],
                   help="seed of python, numpy and torch (data order, initial weights, noise)")
    g.add_argument("--device", type=device, default=d["device"], help="auto | cpu | cuda | cuda:N")
    g.add_argument("--amp", choices=engine.CHOICES["amp"], default=d["amp"],
                   help="bf16 autocast (auto: on for CUDA)")
    g.add_argument("--grad-clip", type=_nonneg_float, default=d["grad_clip"],
                   help="max global gradient L2 norm (0: off)")
    g.add_argument("--num-workers", type=int_at_least(0), default=d["num_workers"], help="DataLoader workers")
    g.add_argument("--deterministic", action="store_true", default=d["deterministic"],
                   help="deterministic algorithms (slower on GPU)")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=d["progress"],
                   help="no progress bar, and no progress lines from the evaluation (eoflow_fast.progress)")
    add_cpu_threads(g)
    add_json(g)


def family_parser(name: str) -> tuple[argparse.ArgumentParser, registry.ModelSpec]:
    """The full parser of ``eoflow-fast train NAME``: engine flags plus the family's flags."""
    spec = registry.get(name)
    parser = Parser(prog=f"eoflow-fast train {name}", description=spec.help)
    add_engine_args(parser)
    spec.add_args(parser)
    return parser, spec


def _read_config_file(parser: argparse.ArgumentParser, path: str) -> dict:
    """The config file's keys, each checked by its flag's type (``argtypes.check_config_value``)."""
    try:
        values = load_mapping(path, Path(path).read_text())
    except OSError as exc:
        parser.error(f"argument --config: cannot read {path}: {exc.strerror}")
    except ValueError as exc:
        parser.error(f"argument --config: {exc}")
    if not isinstance(values, dict):
        parser.error(f"argument --config: {path} must hold a mapping of config keys, got {type(values).__name__}")
    actions = {a.dest: a for a in parser._actions if a.dest not in _META}
    checked = {}
    for key, value in values.items():
        if key == "model":
            checked[key] = value
            continue
        if key not in actions:
            parser.error(f"argument --config: {path} has unknown key {key!r}{suggest(key, actions)}")
        try:
            checked[key] = check_config_value(actions[key], value)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument --config: {path}: key {key!r}: {exc}")
    return checked


def parse_family_args(name: str, argv: list[str]):
    """``(parser, config values, explicitly given dests, parsed namespace, spec)`` for ``train NAME argv``."""
    try:
        parser, spec = family_parser(name)
    except Exception as exc:  # the family module is missing or broken
        Parser(prog="eoflow-fast train").error(
            f"model family {name!r} is not available ({registry.FAMILY_MODULES[name]}): {type(exc).__name__}: {exc}")
    pre, _ = parser.parse_known_args(argv)  # --help and flag errors surface here
    file_values = {}
    if pre.config:
        file_values = _read_config_file(parser, pre.config)
        if file_values.get("model", name) != name:
            parser.error(f"argument --config: {pre.config} is for model {file_values['model']!r}, not {name!r}")
        parser.set_defaults(**{k: v for k, v in file_values.items() if k != "model"})
    args = parser.parse_args(argv)
    # explicit: the flags on the command line and the keys of --config; not the family's own defaults
    # (parser.set_defaults, e.g. eoflow's batch_size 256), which argparse adds to every namespace
    saved, saved_defaults = {a: a.default for a in parser._actions}, dict(parser._defaults)
    for a in parser._actions:
        a.default = argparse.SUPPRESS
    parser._defaults.clear()
    try:
        explicit = (set(vars(parser.parse_args(argv))) | set(file_values)) - set(_META) - {"model"}
    finally:
        for a, default in saved.items():
            a.default = default
        parser._defaults.update(saved_defaults)
    values = {k: v for k, v in vars(args).items() if k not in _META}
    return parser, values, explicit, args, spec


def _parse_branch(parser, items: list[str], family_keys=frozenset()) -> dict:
    """``["lr=1e-4", "grad_clip=5", "betas=70,30,12,8"]`` -> {"lr": 1e-4, "grad_clip": 5.0, "betas":
    [70.0, 30.0, 12.0, 8.0]}: engine keys typed like the engine defaults, the family's
    ``branch_keys`` checked as their flags would be (several values comma-separated)."""
    allowed = sorted(engine.BRANCH_MUTABLE | family_keys)
    actions = {a.dest: a for a in parser._actions}
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in allowed:
            parser.error(f"argument --branch: expected KEY=VALUE with KEY one of {allowed}, got {item!r}"
                         + (suggest(key, allowed) if sep else ""))
        if key in family_keys:
            action = actions[key]
            many = action.nargs in ("*", "+") or isinstance(action.nargs, int)
            try:
                out[key] = check_config_value(action, [t.strip() for t in text.split(",")] if many else text)
            except argparse.ArgumentTypeError as exc:
                parser.error(f"argument --branch: {key}: {exc}")
            continue
        if key == "amp":
            if text not in engine.CHOICES["amp"]:
                parser.error(f"argument --branch: amp must be one of {list(engine.CHOICES['amp'])}, got {text!r}")
            out[key] = text
            continue
        try:
            out[key] = float(text)
        except ValueError:
            parser.error(f"argument --branch: {key} takes a number, got {text!r}")
    return out


def run(args) -> int:
    name = args.model
    parser, values, explicit, meta, spec = parse_family_args(name, args.family_args)
    if (meta.from_checkpoint or meta.branch) and not meta.resume:
        parser.error("arguments --from-checkpoint/--branch: they continue a run; add --resume RUN_DIR")
    if meta.overwrite and meta.resume:  # before: ignored, the run went on as a resume
        parser.error("argument --overwrite: it lets a fresh run write into a non-empty folder; --resume continues "
                     "RUN_DIR and overwrites nothing. Drop one of them")
    branch = _parse_branch(parser, meta.branch or [], spec.branch_keys)
    if meta.resume:
        try:
            run_dir = check_run_folder(meta.resume, "--resume")
        except UsageError as exc:
            parser.error(str(exc))
        try:
            config = engine.read_config(run_dir)
        except CheckpointError as exc:  # not JSON, or damaged
            run_folder_error("eoflow-fast train", run_dir, exc)
        if config.get("model") != name:
            parser.error(f"argument --resume: {run_dir} is a {config.get('model')!r} run, not {name!r}")
        if meta.run_dir and Path(meta.run_dir).resolve() != run_dir.resolve():
            parser.error("argument --run-dir: with --resume the run folder is RUN_DIR; omit --run-dir")
        frozen = sorted(k for k in explicit if k not in engine.RESUME_MUTABLE and k not in branch
                        and values[k] != config.get(k))
        if frozen:
            parser.error(
                "argument --resume: " + ", ".join(f"--{k.replace('_', '-')} ({config.get(k)!r} -> {values[k]!r})"
                                                  for k in frozen)
                + f" cannot change on resume; only {sorted(engine.RESUME_MUTABLE - {'run_dir'})} can")
        config.update({k: values[k] for k in explicit if k in engine.RESUME_MUTABLE})
        config.update({k: v for k, v in branch.items() if k in spec.branch_keys})  # the model is built with them
    else:
        run_dir = Path(meta.run_dir or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}")
        config = {"model": name, **values}

    with results_stdout(meta) as stdout:
        apply_cpu_threads(config.get("cpu_threads", values["cpu_threads"]))
        engine.seed_everything(config["seed"])
        started = time.time()
        try:
            model, train_dataset, eval_dataset = build_model(spec, config)
        except UsageError as exc:
            if not meta.resume or branch:  # the settings came from this command line
                raise
            # the settings came from the run's config.json: not an argument error (exit 1, naming the file)
            run_folder_error("eoflow-fast train", run_dir, exc.__cause__ or exc)
        evaluate = plot = None
        if spec.evaluate is not None:
            eval_parser = Parser()
            if spec.add_eval_args is not None:
                spec.add_eval_args(eval_parser)
            eval_args = eval_parser.parse_args([])

            def evaluate(model, step):
                return spec.evaluate(run_dir, model, config, eval_args, source=checkpoint.source(model, step))
        if spec.plot is not None:
            def plot(model, step):
                spec.plot(run_dir, model, config, step)

        try:
            with progress.enabled(bool(config["progress"])):
                summary = engine.train(model, train_dataset, config, run_dir, eval_dataset=eval_dataset,
                                       evaluate=evaluate, plot=plot, resume=bool(meta.resume), overwrite=meta.overwrite,
                                       from_checkpoint=meta.from_checkpoint, branch=branch,
                                       branch_keys=spec.branch_keys)
        except engine.TrainingInterrupted as exc:
            print(f"eoflow-fast train: {exc}", file=sys.stderr)
            return 128 + exc.signum
        except (engine.NonFiniteLossError, CheckpointError) as exc:
            print(f"eoflow-fast train: error: {exc}", file=sys.stderr)
            return 1
        except ValueError as exc:
            raise UsageError(exc) from exc
        if int(os.environ.get("RANK", 0)) == 0:
            print_train_summary(meta, name, summary, run_dir, started, stdout)
        return 0


def build_model(spec: registry.ModelSpec, config: dict):
    """``spec.build(config)``; a dataset spec or family setting it refuses (ValueError, a missing
    path) is a :class:`UsageError`. The family may fill resolved values into ``config``."""
    try:
        return spec.build(config)
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        raise UsageError(exc) from exc


def print_train_summary(args, name: str, summary: dict, run_dir: Path, started: float, stream=None) -> None:
    """The end of ``train``: steps and speed, the last loss terms and the headline evaluation
    scores, the files written; ``--json`` prints the engine's whole summary instead."""
    from eoflow_fast.train.logging import shown_values

    terms = shown_values(summary.get("terms") or {}, diagnostics=False)
    scores = {**{f"train {k}": v for k, v in terms.items()}, **eval_headline(summary.get("eval") or {})}
    title = (f"train {name}: {summary['step']} steps in {summary['seconds']:.1f} s "
             f"({summary['steps_per_second']:.3g} steps/s)")
    print_summary(args, title, summary, scores, written_since(run_dir, started), folder=run_dir, stream=stream)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model family", description="Train a registered model family.",
        epilog="Run 'eoflow-fast train MODEL --help' for the engine and MODEL flags.")
    parser.add_argument("model", metavar="MODEL", choices=sorted(registry.FAMILY_MODULES),
                        help=f"model family: {', '.join(sorted(registry.FAMILY_MODULES))}")
    parser.add_argument("family_args", nargs=argparse.REMAINDER, metavar="...",
                        help="engine and family flags (see 'eoflow-fast train MODEL --help')")
    parser.set_defaults(func=run)
