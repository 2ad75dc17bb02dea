"""The training loop every eoflow_fast model runs through.

Programmatic use (what ``eoflow-fast train`` does after building the model)::

    from eoflow_fast.train.engine import train, load_run
    summary = train(model, dataset, {"steps": 2000, "batch_size": 128, "lr": 3e-4, "model": "eoflow",
                                     ...family keys...}, "runs/my_run",
                    eval_dataset=None, evaluate=None, plot=None)
    summary = train(model, dataset, config, "runs/my_run", resume=True)   # continue from the latest
    model, config = load_run("runs/my_run")                                # rebuild + load weights

``model`` follows :mod:`eoflow_fast.train.contract`; ``dataset`` is a map-style torch Dataset whose
items are a tensor or a tuple ``(x, ...)``. ``config`` is merged over :data:`DEFAULTS` (keys below);
extra keys (the family's own flags, ``"model"``: the registered family name) are kept and written
to ``RUN_DIR/config.json``, which is what :func:`load_run` and ``eoflow-fast eval`` rebuild from.
``evaluate(model, step) -> dict[str, float]`` and ``plot(model, step)`` are called on rank 0 every
``eval_every`` / ``plot_every`` steps and at the end (plots only with ``plot_every`` > 0), under ``torch.no_grad()``, in eval mode, with
the random number generators forked so that they never change the training stream. With an
``eval_dataset`` the engine also logs the mean loss terms over it (``eval/<term>``).

One step (``s`` = steps completed before it, 0 first)::

    model.on_step_start(s, optimizer)          # if defined
    terms = model.loss_terms(batch, s)         # under bf16 autocast when amp is on
    loss = sum(terms[k] for k not starting with "_")
    loss.backward(); clip_grad_norm_(grad_clip); optimizer.step(); scheduler.step()
    model.auxiliary_step(batch, s)             # if defined

Logging, non-finite checks and (in DDP) the stop-signal vote happen once per ``log_every`` steps
with a single host sync: per-step values are kept on the device until then, and every step still
gets its own ``metrics.jsonl`` record. A non-finite optimized term or gradient norm raises
:class:`NonFiniteLossError` naming the term and the step; checkpoints are written only after such a
check, so the last checkpoint on disk is always a finite one. SIGTERM/SIGINT finish the current
step, write a checkpoint and raise :class:`TrainingInterrupted` (a second SIGINT interrupts at
once). Checkpoints (every ``ckpt_every`` steps and at the end) hold the model, optimizer(s),
scheduler, model ``extra_state()``, every rank's RNG states (torch, CUDA, numpy, python) and the data
position, so on CPU a resumed run's losses equal the uninterrupted run's bit for bit.

Config keys (CLI flags of ``eoflow-fast train`` carry the same names with dashes):

==================  ==========  =================================================================
key                 default     meaning
==================  ==========  =================================================================
steps               1000        optimizer steps in total (a resumed run continues to this count)
batch_size          64          GLOBAL batch; split evenly over the DDP processes
lr                  1e-3        learning rate passed to ``model.param_groups(lr)``
optimizer           "adam"      "adam" | "adamw" | "sgd"
weight_decay        0.0         optimizer weight decay
lr_schedule         "constant"  "constant" | "cosine" (to 0 at ``steps``), after linear warm-up
warmup_steps        0           linear warm-up from lr/warmup_steps to lr
ckpt_every          500         checkpoint period in steps (0: only at the end / on a signal)
keep                3           checkpoints kept
eval_every          0           evaluation period (0: only at the end, when there is something
                                to evaluate)
plot_every          0           plot period (0: never; else also at the end); the loss curve
                                RUN_DIR/loss_curve.png (metrics.jsonl) is drawn at every end
log_every           10          host-sync / progress / NaN-check period
seed                0           seeds python, numpy, torch (rank r uses seed + r for its stream)
device              "auto"      "auto" (cuda:LOCAL_RANK if available, else cpu) | "cpu" | "cuda:1"
amp                 "auto"      "auto" (bf16 on CUDA, off on CPU) | "bf16" | "off"
grad_clip           0.0         max global L2 norm of the gradients (0: no clipping)
num_workers         0           DataLoader worker processes
deterministic       False       ``torch.use_deterministic_algorithms(True)``, cuDNN deterministic
progress            True        tqdm progress bar on rank 0
==================  ==========  =================================================================

With ``lr_schedule`` other than constant (or warm-up), the scheduler rewrites group learning rates
every step; models that set learning rates themselves in ``on_step_start`` (DEFT stages) should
keep the constant schedule. [INFERRED] choices: ``batch_size`` is global (so the same command gives
the same batches on 1 or N processes); the step count, not epochs, bounds a run.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import checkpoint, contract, distributed, registry, run_folder
from .logging import RunLog, plot_loss_curve, shown_values, truncate_after

DEFAULTS: dict = {
    "steps": 1000,
    "batch_size": 64,
    "lr": 1e-3,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "lr_schedule": "constant",
    "warmup_steps": 0,
    "ckpt_every": 500,
    "keep": 3,
    "eval_every": 0,
    "plot_every": 0,
    "log_every": 10,
    "seed": 0,
    "device": "auto",
    "amp": "auto",
    "grad_clip": 0.0,
    "num_workers": 0,
    "deterministic": False,
    "progress": True,
}
CHOICES = {
    "optimizer": ("adam", "adamw", "sgd"),
    "lr_schedule": ("constant", "cosine"),
    "amp": ("auto", "bf16", "off"),
}
# Keys a resumed run may change: they do not alter the computed losses (``steps`` moves the end of a
# cosine schedule, which the resume reports); ``cpu_threads`` is the CLI's (speed only). A resume
# records the new values in config.json and its ``resume`` event.
RESUME_MUTABLE = frozenset(
    {"steps", "ckpt_every", "keep", "eval_every", "plot_every", "log_every", "num_workers", "progress",
     "device", "run_dir", "cpu_threads"}
)
CONFIG_FILE = run_folder.CONFIG_FILE
# Keys a branch (resume from a chosen checkpoint with --branch KEY=VALUE) may change on purpose.
BRANCH_MUTABLE = frozenset({"lr", "grad_clip", "weight_decay", "amp"})


class NonFiniteLossError(FloatingPointError):
    """A loss term or the gradient norm became NaN/Inf; carries ``step``, ``term``, ``value``."""

    def __init__(self, step: int, term: str, value: float, last_checkpoint: Path | None):
        self.step, self.term, self.value, self.last_checkpoint = step, term, value, last_checkpoint
        kept = f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint was written yet"
        super().__init__(f"non-finite loss at step {step} (loss_terms(batch, step={step - 1})): "
                         f"term {term!r} = {value} ({kept})")


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint of ``step`` was written to ``checkpoint``."""

    def __init__(self, signum: int, step: int, checkpoint: Path):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(
            f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint {checkpoint} "
            f"(continue with --resume)"
        )


def resolve_config(config: dict) -> dict:
    """``DEFAULTS`` overlaid with ``config``; engine keys are type- and range-checked."""
    cfg = {**DEFAULTS, **config}
    for key, choices in CHOICES.items():
        if cfg[key] not in choices:
            raise ValueError(f"config {key}={cfg[key]!r}; expected one of {list(choices)}")
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)
    for key in ("steps", "batch_size", "keep", "log_every"):
        if not is_int(cfg[key]) or cfg[key] < 1:
            raise ValueError(f"config {key}={cfg[key]!r}; expected an integer >= 1")
    for key in ("ckpt_every", "eval_every", "plot_every", "warmup_steps", "num_workers", "seed"):
        if not is_int(cfg[key]) or cfg[key] < 0:
            raise ValueError(f"config {key}={cfg[key]!r}; expected an integer >= 0")
    for key, low_open in (("lr", True), ("weight_decay", False), ("grad_clip", False)):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (low_open and v == 0):
            raise ValueError(f"config {key}={v!r}; expected a finite number {'>' if low_open else '>='} 0")
    for key in ("deterministic", "progress"):
        if not isinstance(cfg[key], bool):
            raise ValueError(f"config {key}={cfg[key]!r}; expected true or false")
    try:
        json.dumps(cfg)
    except TypeError as exc:
        raise ValueError(f"config must be JSON-serialisable (it is saved as {CONFIG_FILE}): {exc}") from None
    return cfg


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(device: torch.device) -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss_next"]))


@contextlib.contextmanager
def _isolated_rng(device: torch.device):
    """Run a block (evaluation, plotting) without advancing the training random streams."""
    saved = _rng_state(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield
    _set_rng_state(saved, device)


@contextlib.contextmanager
def _determinism(deterministic: bool, device: torch.device):
    """``deterministic``: deterministic algorithms and cuDNN, no cuDNN autotuning; else cuDNN
    autotuning on CUDA. The process's previous settings come back when training returns or raises."""
    cudnn = torch.backends.cudnn
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             cudnn.deterministic, cudnn.benchmark)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        cudnn.deterministic, cudnn.benchmark = True, False
    elif device.type == "cuda":
        cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        cudnn.deterministic, cudnn.benchmark = saved[2], saved[3]


def _build_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    groups = contract.param_groups(model, cfg["lr"])
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    cls = torch.optim.Adam if cfg["optimizer"] == "adam" else torch.optim.AdamW
    return cls(groups, lr=cfg["lr"], weight_decay=cfg["weight_decay"])


def _build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict):
    """LambdaLR with factor min(1, (s+1)/warmup) * (cosine: (1 + cos(pi * progress)) / 2)."""
    warmup, total, cosine = cfg["warmup_steps"], cfg["steps"], cfg["lr_schedule"] == "cosine"
    if not cosine and warmup == 0:
        return None

    def factor(s: int) -> float:
        f = min(1.0, (s + 1) / warmup) if warmup else 1.0
        if cosine:
            progress = min(1.0, max(0, s - warmup) / max(1, total - warmup))
            f *= 0.5 * (1.0 + math.cos(math.pi * progress))
        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _LossTerms(torch.nn.Module):
    """``forward(batch, step) = model.loss_terms(batch, step)``: what DDP wraps (DDP syncs
    gradients only for computations run through its ``forward``)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch, step: int):
        return self.model.loss_terms(batch, step)


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


class _StopSignals:
    """SIGTERM/SIGINT set ``self.signum`` (the loop stops at the next step boundary); a second
    SIGINT raises KeyboardInterrupt at once. Handlers are installed only in the main thread."""

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, dataset, batch_size: int, device: torch.device,
                  amp: bool = False, step: int = 0) -> dict[str, float]:
    """Mean of each loss term (and of the optimized sum, ``"loss"``) over ``dataset``, batch-size
    weighted: ``mean_t = sum_b n_b * term_t(b) / sum_b n_b`` over sequential batches."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    sums: dict[str, float] = {}
    count = 0
    for batch in loader:
        batch = _to_device(batch, device)
        n = len(batch[0] if isinstance(batch, (tuple, list)) else batch)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            terms = model.loss_terms(batch, step)
        values = {**terms, "loss": contract.optimized_loss(terms)}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + n * float(v)
        count += n
    return {k: v / count for k, v in sums.items()}


def _next_boundary(step: int, every: dict, steps: int) -> int:
    """The first step after ``step`` at which some period in ``every`` is due (or ``steps``)."""
    return min([steps] + [(step // n + 1) * n for n in every.values() if n > 0])


@dataclass
class _StepRecord:
    step: int
    time: float
    names: tuple
    values: torch.Tensor  # (len(names),) float32 on the training device
    lrs: list
    aux: dict | None


def _resume_note(changes: dict, cfg: dict, step: int) -> str:
    """The console line of a resume that changed ``changes`` ({key: [old, new]}): which, and under a
    cosine schedule what a new ``steps`` does to the learning rate."""
    text = f"resume at step {step}: " + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items())
    if "steps" in changes and cfg["lr_schedule"] == "cosine":
        text += (f" (the cosine schedule now decays to 0 at step {changes['steps'][1]} instead of "
                 f"{changes['steps'][0]}: the learning rate from here on follows the new length)")
    return text + f"; recorded in {CONFIG_FILE}"


def _check_resume_config(saved: dict, cfg: dict, path, allowed=RESUME_MUTABLE) -> None:
    changed = {k: (saved.get(k), cfg.get(k)) for k in set(saved) | set(cfg)
               if k not in allowed and saved.get(k) != cfg.get(k)}
    if changed:
        desc = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in sorted(changed.items())))
        raise ValueError(
            f"resume: the config differs from the one checkpoint {path} was trained with ({desc}); "
            f"only {sorted(RESUME_MUTABLE)} may change on resume, and {sorted(BRANCH_MUTABLE)} on purpose with "
            f"--branch KEY=VALUE"
        )


def train(model: torch.nn.Module, dataset, config: dict, run_dir, eval_dataset=None, evaluate=None,
          plot=None, resume: bool = False, *, overwrite: bool = False, from_checkpoint=None,
          branch: dict | None = None, branch_keys=frozenset()) -> dict:
    """Train ``model`` on ``dataset``; returns a summary dict.

    Summary keys: ``status`` ("completed"), ``step`` (steps completed), ``start_step`` (0 or the
    resumed step), ``terms`` (last step's logged values), ``eval`` (last evaluation or None),
    ``checkpoint`` (final checkpoint path), ``run_dir``, ``seconds``, ``steps_per_second``.
    Raises :class:`NonFiniteLossError`, :class:`TrainingInterrupted`, ValueError (bad config, a
    fresh run in a non-empty folder without ``overwrite``, a resume whose config changed, a resume
    past ``steps``), :class:`checkpoint.CheckpointError` (unusable checkpoint or config.json).

    A resume (``resume=True``) continues from the newest checkpoint, or from ``from_checkpoint``
    (a file of the run folder). ``branch`` = {key: value} changes settings of
    :data:`BRANCH_MUTABLE` (lr, grad_clip, weight_decay, amp) on purpose: the way out after a
    non-finite stop, and of ``branch_keys`` (family settings the model was already built with, e.g.
    DEFT's later-stage betas). Checkpoints newer than the one resumed from move to ``superseded-<step>/``;
    the change is recorded in config.json (``branches``) and as a ``branch`` event in metrics.jsonl.
    A resume of a folder that has a config but no checkpoint yet (killed before the first one)
    starts again from step 0.
    """
    if not isinstance(model, contract.Trainable):
        raise TypeError(f"train: model {type(model).__name__} has no loss_terms(batch, step) method")
    cfg = resolve_config(config)
    run_dir = Path(run_dir)
    if cfg["deterministic"]:  # cuBLAS reads it when the CUDA context starts (in setup at the latest)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    env = distributed.setup(cfg["device"])
    try:
        with _determinism(cfg["deterministic"], env.device):
            return _Trainer(model, dataset, cfg, run_dir, env, eval_dataset, evaluate, plot,
                            overwrite, from_checkpoint, branch, branch_keys).run(resume)
    finally:
        distributed.teardown(env)


def _scalars(result: dict, limit: int = 8) -> dict:
    """The first ``limit`` numbers of an evaluation result, nested dicts as ``a.b`` (for the console
    line); its ``eval/`` loss terms by the progress bar's rule (no ``_`` diagnostics, no ``loss``
    that repeats a single optimized term)."""
    kept = shown_values(result, "eval/", diagnostics=False)
    out = {}
    for k, v in result.items():
        if k.startswith("eval/") and k not in kept:
            continue
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()
                        if isinstance(vv, (int, float)) and not isinstance(vv, bool)})
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = v
    return dict(list(out.items())[:limit])


class _Trainer:
    def __init__(self, model, dataset, cfg, run_dir, env, eval_dataset, evaluate, plot, overwrite=False,
                 from_checkpoint=None, branch=None, branch_keys=frozenset()):
        self.model, self.dataset, self.cfg, self.run_dir, self.env = model, dataset, cfg, run_dir, env
        self.eval_dataset, self.evaluate, self.plot = eval_dataset, evaluate, plot
        self.overwrite, self.from_checkpoint, self.branch = overwrite, from_checkpoint, dict(branch or {})
        self.branch_keys = BRANCH_MUTABLE | frozenset(branch_keys)
        # set while preparing, reported once the log is open
        self.restart_note: str | None = None
        self.resume_changes: dict = {}
        self.branch_record: dict | None = None
        self.superseded: Path | None = None
        self.device = env.device
        self.amp = cfg["amp"] == "bf16" or (cfg["amp"] == "auto" and self.device.type == "cuda")
        self.last_checkpoint: Path | None = None
        self.last_eval: dict | None = None
        self.last_terms: dict = {}

    # ----------------------------------------------------------------- set-up
    def _prepare(self, resume: bool) -> int:
        cfg, env, model = self.cfg, self.env, self.model
        model.to(self.device)
        self.optimizer = _build_optimizer(model, cfg)
        self.scheduler = _build_scheduler(self.optimizer, cfg)
        self.lr_names = [f"lr/{g.get('name', i)}" for i, g in enumerate(self.optimizer.param_groups)]
        self.aux_optimizers = model.auxiliary_optimizers() if hasattr(model, "auxiliary_optimizers") else {}
        self.sampler = distributed.EpochBatchSampler(
            len(self.dataset), cfg["batch_size"], env.world_size, env.rank, seed=cfg["seed"])
        self.loader_generator = torch.Generator()
        workers = cfg["num_workers"]
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=self.sampler, num_workers=workers,
            pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
            generator=self.loader_generator)
        if self.branch and not resume:
            raise ValueError("branch: a branch continues a run; pass resume=True (--resume RUN_DIR)")
        fresh_again = resume and not checkpoint.list_checkpoints(self.run_dir) and self.from_checkpoint is None \
            and (self.run_dir / CONFIG_FILE).is_file()
        if fresh_again:  # killed after the folder was made, before its first checkpoint
            self.restart_note = f"resume: {self.run_dir} has no checkpoint yet; starting it again from step 0"
        if not resume or fresh_again:
            if getattr(self.dataset, "fingerprint", None) is not None:  # files on disk (data.data_fingerprint)
                cfg["data_fingerprint"] = self.dataset.fingerprint
            if not fresh_again:
                run_folder.check_fresh(self.run_dir, self.overwrite)
            distributed.barrier(env)  # every rank checked before rank 0 writes into the folder
            if env.is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                truncate_after(self.run_dir, -1)
                run_folder.write_config(self.run_dir, self.cfg)
            seed_everything(cfg["seed"] + env.rank)
            return 0
        return self._restore()

    def _restore(self) -> int:
        if self.from_checkpoint is not None:
            path = Path(self.from_checkpoint)
            if not path.is_absolute() and not path.exists():
                path = self.run_dir / path
            if path.resolve().parent != self.run_dir.resolve():
                raise ValueError(f"resume: --from-checkpoint {path} is not a checkpoint of {self.run_dir}")
            ckpt = checkpoint.load(path)
        else:
            path = checkpoint.latest_path(self.run_dir)
            ckpt = checkpoint.load(path)
        checkpoint.check_payload(path, ckpt)
        if (self.run_dir / CONFIG_FILE).is_file():  # another run's checkpoint copied in: say so, not "the config differs"
            _check_checkpoint_belongs(read_config(self.run_dir), ckpt["config"], path, self.run_dir)
        unknown = sorted(set(self.branch) - self.branch_keys)
        if unknown:
            raise ValueError(f"branch: {', '.join(unknown)} cannot change in a branch; only {sorted(self.branch_keys)} can")
        saved = {k: v for k, v in ckpt["config"].items() if k != "branches"}
        recorded = check_data(saved.get("data_fingerprint"), self.dataset, f"resume from {path}")
        self.cfg = resolve_config({**self.cfg, **self.branch, "branches": ckpt["config"].get("branches", []),
                                   **({"data_fingerprint": recorded} if recorded is not None else {})})
        _check_resume_config(saved, {k: v for k, v in self.cfg.items() if k != "branches"}, path,
                             allowed=RESUME_MUTABLE | set(self.branch))
        self.resume_changes = {k: [saved.get(k), self.cfg.get(k)] for k in sorted(RESUME_MUTABLE - {"run_dir"})
                               if k not in self.branch and saved.get(k) != self.cfg.get(k)}
        data = ckpt["data"]
        if data["batches_per_epoch"] != self.sampler.batches_per_epoch:
            raise ValueError(
                f"resume: checkpoint {path} was written with {data['batches_per_epoch']} batches per "
                f"epoch, the data now gives {self.sampler.batches_per_epoch} (dataset size changed?)")
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(ckpt["scheduler"])
            for name, opt in self.aux_optimizers.items():
                opt.load_state_dict(ckpt["aux_optimizers"][name])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise checkpoint.CheckpointError(f"checkpoint {path} does not match this model: {exc}") from exc
        _load_extra_state(self.model, ckpt, path)
        rng = ckpt["rng"]
        if len(rng) == self.env.world_size:
            _set_rng_state(rng[self.env.rank], self.device)
        else:  # a different number of processes: exact continuation is impossible; stay seeded
            seed_everything(self.cfg["seed"] + self.env.rank + 1_000_003 * ckpt["step"])
        self.last_checkpoint = path
        step = ckpt["step"]
        if step > self.cfg["steps"]:
            raise ValueError(f"resume: the run is already past --steps {self.cfg['steps']} (checkpoint {path.name} "
                             f"is at step {step}); pass --steps > {step} to continue it")
        if self.branch:
            self._apply_branch(ckpt["config"], path, step)
        if self.env.is_main:
            truncate_after(self.run_dir, step)
            moved = run_folder.supersede_after(self.run_dir, step)
            self.superseded = moved
            if self.branch or moved is not None or self.resume_changes:  # config.json: the values in use
                run_folder.write_config(self.run_dir, self.cfg)
        return step

    def _apply_branch(self, saved: dict, path: Path, step: int) -> None:
        """Apply --branch changes to the restored optimizer (and schedule) and record them."""
        changes = {k: (saved.get(k), v) for k, v in self.branch.items()}
        if "lr" in self.branch:
            scale = self.branch["lr"] / saved["lr"]
            for g in self.optimizer.param_groups:
                g["lr"] *= scale
                if "initial_lr" in g:
                    g["initial_lr"] *= scale
            if self.scheduler is not None:
                self.scheduler.base_lrs = [lr * scale for lr in self.scheduler.base_lrs]
        if "weight_decay" in self.branch:
            for g in self.optimizer.param_groups:
                g["weight_decay"] = self.branch["weight_decay"]
        record = {"from": path.name, "step": step, "changes": {k: list(v) for k, v in changes.items()}}
        self.cfg["branches"] = [*self.cfg.get("branches", []), record]
        self.branch_record = record

    # ------------------------------------------------------------ checkpoints
    def _check_finite_state(self, step: int) -> None:
        """No checkpoint holds a non-finite model value (parameter or buffer, e.g. running statistics)
        or optimizer value of the main or an auxiliary optimizer (it would be no 'good' one).
        One host sync: the per-tensor finiteness flags are stacked and read together."""
        named = list(self.model.state_dict().items())
        optimizers = {"optimizer": self.optimizer, **{f"{k} optimizer": o for k, o in self.aux_optimizers.items()}}
        for label, opt in optimizers.items():
            for i, state in enumerate(opt.state.values()):
                named += [(f"{label} state {k} of parameter {i}", v) for k, v in state.items()]
        named = [(n, v) for n, v in named if torch.is_tensor(v) and v.is_floating_point() and v.numel()]
        finite = torch.stack([torch.isfinite(v).all() for _, v in named]).tolist() if named else []
        bad = [n for (n, _), ok in zip(named, finite) if not ok]
        if bad:
            self.log.write({"kind": "event", "step": step, "event": "non_finite_state", "names": bad[:8]})
            self.log.sync()
            raise NonFiniteLossError(step, f"state ({', '.join(bad[:3])})", float("nan"), self.last_checkpoint)

    def _save(self, step: int) -> Path:
        self._check_finite_state(step)
        epoch, batch = divmod(step, self.sampler.batches_per_epoch)
        rng = distributed.gather_objects(_rng_state(self.device), self.env)
        path = checkpoint.checkpoint_path(self.run_dir, step)
        if self.env.is_main:
            payload = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "aux_optimizers": {k: o.state_dict() for k, o in self.aux_optimizers.items()},
                "extra": self.model.extra_state() if hasattr(self.model, "extra_state") else None,
                "rng": rng,
                "data": {"epoch": epoch, "batch": batch,
                         "batches_per_epoch": self.sampler.batches_per_epoch,
                         "world_size": self.env.world_size},
                "config": self.cfg,
            }
            self.log.sync()
            path = checkpoint.save(self.run_dir, step, payload, self.cfg["keep"])
            self.log.write({"kind": "event", "step": step, "event": "checkpoint", "path": path.name})
        distributed.barrier(self.env)
        self.last_checkpoint = path
        return path

    # ---------------------------------------------------------------- logging
    def _record_names(self, terms: dict, clipped: bool) -> tuple:
        """Set ``self.names`` (the logged value names of a step) for a new set of term names."""
        if "loss" in terms and len(terms) > 1:
            raise ValueError(f"loss_terms returned a term named 'loss' besides others ({sorted(terms)}); "
                             f"'loss' is the engine's name for the optimized sum")
        self.names = ("loss", *(k for k in terms if k != "loss"), *(("grad_norm",) if clipped else ()))
        return tuple(terms)

    def _flush(self, buffer: list, stop_flag: int) -> bool:
        """Write the buffered step records; raise on a non-finite value; return the stop vote."""
        flat = torch.cat([r.values for r in buffer] + [torch.tensor([float(stop_flag)], device=self.device)])
        host = distributed.all_reduce_mean_(flat, self.env).tolist()
        offset = 0
        for rec in buffer:
            values = dict(zip(rec.names, host[offset:offset + len(rec.names)]))
            offset += len(rec.names)
            record = {"kind": "train", "step": rec.step, "time": round(rec.time, 4), **values}
            record.update(zip(self.lr_names, rec.lrs))
            if rec.aux:
                record.update(rec.aux)
            self.log.write(record)
            bad = [k for k in rec.names if not k.startswith("_") and not math.isfinite(values[k])]
            if bad:
                term = next((k for k in bad if k not in ("loss", "grad_norm")), bad[0])
                self.log.write({"kind": "event", "step": rec.step, "event": "non_finite", "term": term})
                self.log.sync()
                raise NonFiniteLossError(rec.step, term, values[term], self.last_checkpoint)
            self.last_terms = record
        buffer.clear()
        self.log.progress(self.last_terms.get("step", 0), shown_values(self.last_terms))
        return host[-1] > 0

    def _evaluate_and_plot(self, step: int, do_eval: bool, do_plot: bool) -> None:
        if self.env.is_main and (do_eval or do_plot):
            model = self.model
            model.eval()
            with _isolated_rng(self.device), torch.no_grad():
                if do_eval:
                    result = {}
                    if self.eval_dataset is not None:
                        per_rank = self.cfg["batch_size"] // self.env.world_size
                        losses = evaluate_loss(model, self.eval_dataset, per_rank, self.device, self.amp, step)
                        result.update({f"eval/{k}": v for k, v in losses.items()})
                    if self.evaluate is not None:
                        result.update(self.evaluate(model, step) or {})
                    self.last_eval = result
                    self.log.write({"kind": "eval", "step": step, "time": round(time.perf_counter() - self.t0, 4),
                                    **result})
                    self.log.message(f"eval @ {step}: " + (", ".join(
                        f"{k}={float(v):.4g}" for k, v in _scalars(result).items()) or "done (see metrics.jsonl)"))
                if do_plot:
                    self.plot(model, step)
            model.train()
        distributed.barrier(self.env)

    # ------------------------------------------------------------------- loop
    def run(self, resume: bool) -> dict:
        cfg, env, model = self.cfg, self.env, self.model
        start = self._prepare(resume)
        steps = cfg["steps"]
        self.log = RunLog(self.run_dir, env.is_main, steps, start, cfg["progress"])
        self.t0 = time.perf_counter()
        self.log.write({"kind": "event", "step": start, "event": "resume" if resume and start else "start",
                        "world_size": env.world_size, "device": str(self.device),
                        **({"changes": self.resume_changes} if self.resume_changes else {})})
        if self.resume_changes:
            self.log.message(_resume_note(self.resume_changes, self.cfg, start))
        if self.restart_note:
            self.log.message(self.restart_note)
        if self.branch_record:
            self.log.write({"kind": "event", "step": start, "event": "branch", **self.branch_record})
            self.log.message(f"branch from {self.branch_record['from']} at step {start}: {self.branch_record['changes']}")
        if self.superseded is not None:
            self.log.message(f"resume: checkpoints after step {start} moved to {self.superseded}")
        module = distributed.wrap(_LossTerms(model), env, getattr(model, "ddp_find_unused_parameters", False))
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        hook_start = getattr(model, "on_step_start", None)
        hook_aux = getattr(model, "auxiliary_step", None)
        clip = cfg["grad_clip"]
        autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if self.amp \
            else contextlib.nullcontext
        can_eval = self.eval_dataset is not None or self.evaluate is not None
        every = {k: cfg[k] for k in ("log_every", "ckpt_every", "eval_every", "plot_every")}
        buffer: list[_StepRecord] = []
        term_names: tuple = ()
        step = start
        next_boundary = _next_boundary(step, every, steps)
        model.train()
        try:
            with _StopSignals() as signals:
                while step < steps:
                    epoch, batch_index = divmod(step, self.sampler.batches_per_epoch)
                    self.sampler.set_position(epoch, batch_index)
                    self.loader_generator.manual_seed(cfg["seed"] * 1_000_003 + epoch)
                    for batch in self.loader:
                        batch = _to_device(batch, self.device)
                        if hook_start is not None:
                            hook_start(step, self.optimizer)
                        self.optimizer.zero_grad(set_to_none=True)
                        with autocast():
                            terms = module(batch, step)
                        loss = contract.optimized_loss(terms)
                        loss.backward()
                        parts = [loss.detach()] + [v.detach().reshape(()) for k, v in terms.items() if k != "loss"]
                        # the global gradient norm, clipped to grad_clip when > 0, is always logged, so a
                        # non-finite gradient under a finite loss stops the run before any checkpoint
                        parts.append(torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf))
                        self.optimizer.step()
                        lrs = [g["lr"] for g in self.optimizer.param_groups]  # the ones this update used
                        if self.scheduler is not None:
                            self.scheduler.step()
                        aux = hook_aux(batch, step) if hook_aux is not None else None
                        step += 1
                        if tuple(terms) != term_names:
                            term_names = self._record_names(terms, True)
                        buffer.append(_StepRecord(step, time.perf_counter() - self.t0, self.names,
                                                  torch.stack([p.float() for p in parts]),
                                                  lrs, aux))
                        stop = bool(signals.signum) and not env.distributed
                        if step < next_boundary and not stop:
                            continue
                        next_boundary = _next_boundary(step, every, steps)
                        last = step >= steps
                        due = {k: (n > 0 and step % n == 0) for k, n in every.items()}
                        stop = self._flush(buffer, signals.signum) or stop
                        self._evaluate_and_plot(
                            step, can_eval and (due["eval_every"] or (last and not stop)),
                            self.plot is not None and (due["plot_every"] or (last and not stop and every["plot_every"] > 0)))
                        if due["ckpt_every"] or last or stop:
                            self._save(step)
                        if stop:
                            signum = signals.signum or signal.SIGTERM  # another rank's signal
                            self.log.write({"kind": "event", "step": step, "event": "interrupt",
                                            "signal": signal.Signals(signum).name})
                            raise TrainingInterrupted(signum, step, self.last_checkpoint)
                        if last:
                            break
                self.log.write({"kind": "event", "step": step, "event": "end"})
        finally:
            self.log.close()
        if env.is_main:
            plot_loss_curve(self.run_dir)
        seconds = time.perf_counter() - self.t0
        return {
            "status": "completed", "step": step, "start_step": start, "run_dir": str(self.run_dir),
            "terms": {k: v for k, v in self.last_terms.items() if k not in ("kind", "step", "time")},
            "eval": self.last_eval, "checkpoint": str(self.last_checkpoint), "seconds": seconds,
            "steps_per_second": (step - start) / seconds if seconds > 0 else float("nan"),
        }


# ------------------------------------------------------------------ reloading
@dataclass
class Run:
    """A finished or in-progress run reloaded from its folder (see :func:`open_run`)."""

    model: torch.nn.Module
    config: dict
    train_dataset: object
    eval_dataset: object
    step: int
    checkpoint: Path


read_config = run_folder.read_config


def _load_extra_state(model, ckpt: dict, path) -> None:
    """``model.load_extra_state(ckpt["extra"])`` for models that keep state outside their parameters
    (a VAE's per-latent KL history); a missing or unfitting entry is a CheckpointError naming the
    file, not a KeyError from inside the model."""
    if not hasattr(model, "load_extra_state"):
        return
    if "extra" not in ckpt:
        raise checkpoint.CheckpointError(f"checkpoint {path} has no 'extra' entry (the model's state outside "
                                         f"its parameters): it was not written by this engine or was altered")
    try:
        model.load_extra_state(ckpt["extra"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise checkpoint.CheckpointError(f"checkpoint {path}: its 'extra' state does not fit this model "
                                         f"({type(exc).__name__}: {exc})") from exc


def _check_checkpoint_belongs(config: dict, saved: dict, path: Path, run_dir) -> None:
    """A checkpoint must have been trained with the run's config.json, up to the keys a resume or a
    branch may change (:data:`RESUME_MUTABLE`, :data:`BRANCH_MUTABLE`, and the keys a recorded branch
    changed): same-shaped weights of
    another run (another clamp, data, seed or objective) would load and evaluate silently wrong."""
    branched = {k for b in saved.get("branches", []) + config.get("branches", []) for k in b.get("changes", {})}
    ignored = RESUME_MUTABLE | BRANCH_MUTABLE | branched | {"branches"}
    changed = sorted(k for k in set(config) | set(saved) if k not in ignored and config.get(k) != saved.get(k))
    if "model" in changed:  # another family: its keys differ wholesale, the family is what to say
        raise checkpoint.CheckpointError(
            f"checkpoint {path} holds a {saved.get('model')!r} model, {Path(run_dir) / CONFIG_FILE} is a "
            f"{config.get('model')!r} run: it is another run's checkpoint and cannot be loaded into this one")
    if changed:
        desc = ", ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {config.get(k)!r} in config.json" for k in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise checkpoint.CheckpointError(
            f"checkpoint {path} was not trained with {Path(run_dir) / CONFIG_FILE} ({desc}{more}); it belongs to "
            f"another run, so its weights would be used under the wrong settings")


def check_data(recorded: str | None, dataset, what: str) -> str | None:
    """``recorded`` (a run's ``data_fingerprint``) after checking that ``dataset`` still has it
    (``data.registry.fingerprint_matches``); a CheckpointError when the files behind the data changed
    since training (the run would go on, or be evaluated, on other data than its weights were trained
    on). A run without one (trained before fingerprints) passes with a RuntimeWarning when its data
    are files that could have changed."""
    from eoflow_fast.data.registry import fingerprint_matches

    current = getattr(dataset, "fingerprint", None)
    if recorded is None:
        if current is not None:
            warnings.warn(f"{what}: the run records no fingerprint of its data files (it was trained before "
                          f"they were recorded), so a change of the files since training cannot be detected",
                          RuntimeWarning, stacklevel=2)
        return None
    if not fingerprint_matches(dataset, recorded):
        raise checkpoint.CheckpointError(
            f"{what}: the training data changed on disk since the run was trained (data fingerprint "
            f"{recorded[:16]}... in its config, {current[:16] + '...' if current else 'none'} now); its weights "
            f"would be trained on or evaluated against other data. Restore the data, or start a new run")
    return recorded


def open_run(run_dir, checkpoint_file=None, device: str = "cpu") -> Run:
    """Rebuild the model of ``run_dir`` through the registry (``config["model"]`` names the family)
    and load the weights of ``checkpoint_file`` (default: the latest checkpoint)."""
    config = read_config(run_dir)
    if "model" not in config:
        raise ValueError(f"{run_dir}/{CONFIG_FILE} has no 'model' key naming a registered family; "
                         f"it cannot be rebuilt (known families: {sorted(registry.FAMILY_MODULES)})")
    spec = registry.get(config["model"])
    seed_everything(config.get("seed", 0))
    model, train_dataset, eval_dataset = spec.build(config)
    check_data(config.get("data_fingerprint"), train_dataset, f"run {run_dir}")
    path = Path(checkpoint_file) if checkpoint_file else checkpoint.latest_path(run_dir)
    ckpt = checkpoint.load(path)
    checkpoint.check_payload(path, ckpt)
    _check_checkpoint_belongs(config, ckpt["config"], path, run_dir)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise checkpoint.CheckpointError(f"checkpoint {path} does not match the rebuilt model: {exc}") from exc
    _load_extra_state(model, ckpt, path)
    dev = distributed.resolve_device(device)
    model.to(dev).eval()
    return Run(model, config, train_dataset, eval_dataset, ckpt["step"], path)


def load_run(run_dir, checkpoint_file=None, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """``(model, config)`` of ``run_dir``: the model rebuilt from ``config.json`` with the weights of
    the latest checkpoint (or ``checkpoint_file``), in eval mode on ``device``."""
    run = open_run(run_dir, checkpoint_file, device)
    return run.model, run.config
