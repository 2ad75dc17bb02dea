"""Baseline settings of DEFT's Table 3 ([PAPER] arXiv 2102.03986), tuned there for the highest MIG.

``TABLE3[dataset][model]`` holds the objective's hyperparameters (keyword arguments of the classes
in ``objectives``). The paper's optimizer for all methods: Adam, lr 5e-4, batch 256 (§5.1); the
baselines use the standard encoder and the shared decoder.
"""
from __future__ import annotations

DATA = {"dsprites": "dsprites", "color": "dsprites_color", "scream": "dsprites_scream", "smallnorb": None}

TABLE3 = {
    "color": {"annealed": {"capacity": 10.0}, "betatcvae": {"beta": 10.0}, "beta": {"beta": 16.0},
              "cascade": {"beta_max": 10.0}},
    "dsprites": {"annealed": {"capacity": 5.0}, "betatcvae": {"beta": 10.0}, "beta": {"beta": 16.0},
                 "cascade": {"beta_max": 10.0}},
    "scream": {"annealed": {"capacity": 25.0}, "betatcvae": {"beta": 6.0}, "beta": {"beta": 6.0},
               "cascade": {"beta_max": 10.0}},
    "smallnorb": {"annealed": {"capacity": 5.0}, "betatcvae": {"beta": 1.0}, "beta": {"beta": 1.0},
                  "cascade": {"beta_max": 10.0}},
}

PAPER_OPTIMIZER = {"lr": 5e-4, "batch_size": 256}


def table3(dataset: str, model: str) -> dict:
    if dataset not in TABLE3:
        raise ValueError(f"preset={dataset!r}; Table 3 covers {sorted(TABLE3)}")
    if model not in TABLE3[dataset]:
        raise ValueError(f"preset={dataset!r}: Table 3 has no setting for model={model!r} "
                         f"(it covers {sorted(TABLE3[dataset])})")
    return dict(TABLE3[dataset][model])
