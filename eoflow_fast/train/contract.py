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
    Picklable model-side state that is not in ``state_dict`` (running statistics, samplers' RNG).
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Trainable(Protocol):
    def loss_terms(self, batch: Any, step: int) -> dict[str, torch.Tensor]: ...


def optimized_loss(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of the terms the engine optimizes (names not starting with ``_``)."""
    total = None
    for k, v in terms.items():
        if not k.startswith("_"):
            total = v if total is None else total + v
    if total is None:
        raise ValueError(f"loss_terms returned no optimizable term (got keys {sorted(terms)})")
    if total.dim() != 0:
        raise ValueError(f"loss_terms must return scalar tensors; the optimized sum has shape {tuple(total.shape)}")
    return total


def param_groups(model: torch.nn.Module, lr: float) -> list[dict]:
    if hasattr(model, "param_groups"):
        return model.param_groups(lr)
    return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr, "name": "all"}]
