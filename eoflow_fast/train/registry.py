"""Registry of trainable model families, filled by the model packages and read by the CLI.

A family (``eoflow``, ``vae``, ``deft``, ...) registers a ``ModelSpec``:

``add_args(parser)``                 adds its flags to ``eoflow-fast train NAME``.
``build(config) -> (model, train_dataset, eval_dataset | None)``
                                     ``config`` is the resolved dict saved in the run folder.
``evaluate(run_dir, model, config, args, source) -> dict``   (optional) what ``eoflow-fast eval`` runs
                                     (and training, every ``--eval-every``); ``source``
                                     (``checkpoint.source``: step, checkpoint file, weights digest)
                                     is recorded in every file the evaluation writes.
``plot(run_dir, model, config, step)``               (optional) plots written during/after training.
``add_eval_args(parser)``            (optional) flags for ``eoflow-fast eval``.

Families register on import of their module; ``FAMILY_MODULES`` lists where to find them so the CLI
imports only the family asked for.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

FAMILY_MODULES = {
    "eoflow": "eoflow_fast.flows.family",
    "vae": "eoflow_fast.vae.family",
    "deft": "eoflow_fast.deft.family",
    "toy": "eoflow_fast.train.toy",
}


class UsageError(ValueError):
    """A user setting a family (or a command) refuses: the CLI prints it as one line, exit 2."""


@dataclass
class ModelSpec:
    name: str
    help: str
    add_args: Callable[[Any], None]
    build: Callable[[dict], tuple]
    evaluate: Callable[..., dict] | None = None
    plot: Callable[..., None] | None = None
    add_eval_args: Callable[[Any], None] | None = None
    # family config keys a branch (--resume RUN --branch KEY=VALUE) may change on purpose, on top
    # of the engine's BRANCH_MUTABLE; the model is rebuilt with the new values before the weights load
    branch_keys: frozenset = frozenset()


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        if name not in FAMILY_MODULES:
            raise KeyError(f"unknown model family {name!r}; known: {sorted(FAMILY_MODULES)}")
        importlib.import_module(FAMILY_MODULES[name])
    return _REGISTRY[name]
