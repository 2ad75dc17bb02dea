"""The "deft" model family: ``eoflow-fast train deft --preset dsprites [--stage-steps N] ...``.

A preset (``presets.PRESETS``, the paper's Table 2) sets the data, channels, G, K and the betas;
steps per stage follow from the epochs per stage, the dataset length and the batch size unless
``--stage-steps`` is given. Evaluation and plots are the vae family's (metrics on the mean codes of
all G K latents; reconstructions, traversals, per-dimension KL over training).
"""
from __future__ import annotations

import sys

from eoflow_fast.train.argtypes import float_in, int_at_least
from eoflow_fast.train.registry import ModelSpec, register
from eoflow_fast.vae import family as vae_family

from .model import DEFT
from .presets import PRESETS, get_preset


def add_args(parser) -> None:
    g = parser.add_argument_group("deft")
    g.add_argument("--preset", choices=sorted(PRESETS), default="dsprites", help="DEFT Table 2 setting")
    g.add_argument("--data", default=None, help="dataset spec (None: the preset's)")
    g.add_argument("--groups", type=int_at_least(1), default=None, help="G (None: the preset's)")
    g.add_argument("--latents-per-group", type=int_at_least(1), default=None, help="K (None: the preset's)")
    g.add_argument("--betas", type=float_in(0.0), nargs="+", default=None, help="beta per stage (None: the preset's)")
    g.add_argument("--stage-steps", type=int_at_least(1), default=None,
                   help="steps per stage (None: the preset's epochs per stage * steps per epoch)")
    g.add_argument("--deft-gamma", type=float_in(0.0), default=0.1, help="backward scale of the inactive encoders")
    g.add_argument("--gamma-mode", choices=["lr", "grad"], default="lr",
                   help="lr: per-encoder learning rates (Algorithm 1); grad: gradient scaling (authors' code)")
    g.add_argument("--recon", choices=["bernoulli", "l2"], default="bernoulli", help="reconstruction loss")
    g.add_argument("--kl-log-every", type=int_at_least(1), default=100, help="steps between per-dimension KL records")


def preset_data(config: dict) -> str:
    """--data, else the preset's dataset spec."""
    preset = get_preset(config.get("preset", "dsprites"))
    data = config.get("data") or preset.data
    if data is None:
        raise ValueError(f"--preset {config.get('preset')} has no built-in data; pass --data ({preset.note})")
    return data


def resolve(config: dict, dataset_len: int | None = None) -> dict:
    """DEFT constructor arguments (and "data") from the preset and the overriding flags."""
    preset = get_preset(config.get("preset", "dsprites"))
    data = preset_data(config)
    groups = config.get("groups") or preset.groups
    betas = config.get("betas") or list(preset.betas)
    if len(betas) != groups:
        raise ValueError(f"--betas has {len(betas)} values, expected G = {groups}")
    stage_steps = config.get("stage_steps")
    if stage_steps is None:
        if dataset_len is None:
            raise ValueError("resolve: pass dataset_len or --stage-steps")
        stage_steps = preset.stage_steps(dataset_len, config.get("batch_size", 256))
    return {"data": data, "groups": groups, "latents_per_group": config.get("latents_per_group") or preset.latents_per_group,
            "betas": betas, "stage_steps": stage_steps, "channels": preset.channels,
            "gamma": config.get("deft_gamma", 0.1), "gamma_mode": config.get("gamma_mode", "lr"),
            "reconstruction": config.get("recon", "bernoulli"), "kl_log_every": config.get("kl_log_every", 100)}


def build(config: dict):
    from eoflow_fast.data import get_dataset

    config["data"] = preset_data(config)
    dataset = get_dataset(config["data"], split="train")
    kw = resolve(config, len(dataset))
    del kw["data"]
    config.update({k: kw[k] for k in ("groups", "latents_per_group", "betas", "stage_steps")})  # config.json: used values
    kw["channels"] = vae_family.observation_shape(dataset)[0]
    total = kw["groups"] * kw["stage_steps"]
    if config.get("steps", total) < total:
        print(f"deft: warning: --steps {config['steps']} ends in stage {config['steps'] // kw['stage_steps']} of "
              f"{kw['groups']}; all stages need --steps {total} ({kw['stage_steps']} per stage)", file=sys.stderr)
    return DEFT(**kw), dataset, None


SPEC = register(ModelSpec(name="deft", help="DEFT: multi-group encoders trained stage by stage (Table 2 presets)",
                          add_args=add_args, build=build, evaluate=vae_family.evaluate, plot=vae_family.plot,
                          add_eval_args=vae_family.add_eval_args,
                          # branch a run at a stage boundary with other later-stage betas or another gamma:
                          # --resume RUN --from-checkpoint ckpt-S.pt --branch betas=70,30,12,8
                          branch_keys=frozenset({"betas", "deft_gamma", "gamma_mode"})))
