"""DEFT settings of the paper's Table 2 ([PAPER] arXiv 2102.03986; gamma is always 0.1).

Each preset gives the data spec (``None``: the user passes ``--data``), image channels, G groups,
K latents per group, epochs per stage and the per-stage betas. Steps per stage are
``epochs_per_stage * ceil(len(dataset) / batch_size)`` (dSprites at batch 256: 7 * 2880 = 20,160).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DeftPreset:
    data: str | None
    channels: int
    groups: int
    latents_per_group: int
    epochs_per_stage: float
    betas: tuple[float, ...]
    note: str = ""

    def stage_steps(self, dataset_len: int, batch_size: int) -> int:
        return max(1, int(round(self.epochs_per_stage * math.ceil(dataset_len / batch_size))))


PRESETS = {
    "dsprites": DeftPreset("dsprites", 1, 4, 3, 7, (70, 30, 12, 4)),
    "color": DeftPreset("dsprites_color", 3, 4, 3, 7, (160, 105, 30, 4)),
    "scream": DeftPreset("dsprites_scream", 3, 2, 5, 10, (140, 1)),
    "smallnorb": DeftPreset(None, 1, 2, 5, 100, (50, 1),
                            "epoch length is ambiguous (vae_deft.md §B.2): 4,860 or 48,600 images"),
    "chairs": DeftPreset(None, 1, 3, 3, 20, (36, 16, 1), "unlabelled 3D-chairs-style data (§5.5), e.g. folder:PATH"),
}

PAPER_OPTIMIZER = {"lr": 5e-4, "batch_size": 256, "gamma": 0.1}


def get_preset(name: str) -> DeftPreset:
    if name not in PRESETS:
        raise ValueError(f"preset={name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
