"""The contract between the training engine and any trainable model.

The engine knows a model only through these methods (an ``nn.Module`` that implements them):

``loss_terms(batch, step) -> dict[str, Tensor]``  (required)
    Named scalar tensors. The engine optimizes the sum of every term whose name does not start
    with ``"_"``; ``"_"``-prefixed entries are diagnostics, logged (detached) but not optimized.
    ``batch`` is exactly what the data loader yields, moved to the engine's device.

``param_groups(lr) -> list[dict]``  (optional; default: one group of all parameters at ``lr``)
    torch optimizer parameter groups for the main optimizer. Each group may carry a ``"name"``.

``on_step_start(step, optimizer)``  (optional)
    Called before each step's forward, e.g. DEFT switches stages and rewrites group learning rates.

``auxiliary_step(batch, step) -> dict[str, float]``  (optional)
    Called after the main optimizer step, e.g. FactorVAE's discriminator update. The model owns
    those optimizers and lists them in ``auxiliary_optimizers()`` so checkpoints include them.

``auxiliary_optimizers() -> dict[str, torch.optim.Optimizer]``  (optional; default: {})

``extra_state() / load_extra_state(state)``  (optional)
    Model-side state that is not in ``state_dict`` (running statistics, samplers' RNG). It is
    read back with ``torch.load(weights_only=True)``, so it must consist of tensors, numbers,
    strings, ``None`` and lists/tuples/dicts of them (convert numpy arrays to tensors).

``ddp_find_unused_parameters``  (optional attribute; default False)
    Set True when some parameters take no part in ``loss_terms`` (e.g. a discriminator trained
    only in ``auxiliary_step``); passed to ``DistributedDataParallel``.

Under DDP the engine runs ``loss_terms`` through ``DistributedDataParallel.forward``, so the main
gradients are averaged over processes; ``auxiliary_step`` runs outside it and must average its own
gradients (``eoflow_fast.train.distributed.all_reduce_grads_(params)``) to keep ranks equal.
Per-step values are logged as ``float(term)``; a term named ``"loss"`` is allowed only alone
(``"loss"`` is the logged name of the optimized sum).
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Trainable(Protocol):
    def loss_terms(self, batch: Any, step: int) -> dict[str, torch.Tensor]: ...


def optimized_loss(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of the terms the engine optimizes: ``sum_{k not starting with "_"} terms[k]`` (a scalar)."""
    total = None
    for k, v in terms.items():
        if not k.startswith("_"):
            total = v if total is None else total + v
    if total is None:
        raise ValueError(f"loss_terms returned no optimizable term (got keys {sorted(terms)})")
    if total.numel() != 1:
        raise ValueError(f"loss_terms must return scalar tensors; the optimized sum has shape {tuple(total.shape)}")
    return total.reshape(())


def param_groups(model: torch.nn.Module, lr: float) -> list[dict]:
    """``model.param_groups(lr)`` if defined, else one group ``"all"`` of the trainable parameters."""
    if hasattr(model, "param_groups"):
        return model.param_groups(lr)
    return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr, "name": "all"}]
