"""The "vae" model family: ``eoflow-fast train vae --model beta|betatcvae|factorvae|dipvae1|dipvae2|
annealed|cascade|bfvae|vanilla --data SPEC ...``.

Per-model defaults of the shared flags (used when the flag is not given, after a Table 3 preset):
    --beta   beta 4, betatcvae 6, cascade 10 (beta_max), bfvae 2 (also the bfVAE ablations' beta)
    bfvae beta 2 [INFERRED]: with a learned decoder variance a latent keeps a factor whose block
    of n features has communalities h_j iff beta < sum_j h_j (~n), and stays off a single feature's
    own noise iff beta > 1; beta 2 sits inside (1, 5) for FA15's blocks of 5, where beta 4 kept
    the factors only unstably (one dimension at 0.3 nats, one spurious at 0.04; repro_bfvae_fa).
--recon  bernoulli for images, gaussian_learned (learned per-feature variance) for tabular data.
    --gamma  factorvae / bfvae 10 (TC weight), annealed 1000 (capacity weight)
Evaluation: disentanglement metrics through ``eoflow_fast.metrics.evaluate`` on the data's ground
truth (default mig, nmi, informative), or, for data without one, the per-dimension KL and the
dimensions flagged informative (KL_k > ``--kl-threshold``, vae_deft.md §A.4 [INFERRED]).
Plots: reconstructions, latent traversals, per-dimension KL over training.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from eoflow_fast.train.argtypes import float_in, int_at_least, set_default
from eoflow_fast.train.registry import ModelSpec, register

from .architectures import build_encoder_decoder
from .objectives import MODELS, batch_x, make_objective
from .presets import TABLE3, table3

_pos_int, _nonneg_float, _pos_float = int_at_least(1), float_in(0.0), float_in(0.0, low_open=True)
BETA_DEFAULT = {"beta": 4.0, "betatcvae": 6.0, "cascade": 10.0, "bfvae": 2.0}
GAMMA_DEFAULT = {"factorvae": 10.0, "bfvae": 10.0, "annealed": 1000.0}
ABLATIONS = {"vanilla": "vanilla", "beta": "beta", "factor": "factorvae", "bfvae": "bfvae"}
# the weights an objective fixes rather than reads: written into config.json as what the run used
FIXED = {"vanilla": {"beta": 1.0, "gamma": 0.0}, "beta": {"gamma": 0.0}, "factorvae": {"beta": 1.0}}
# the objectives that read --beta / --gamma (cascade: --beta is beta_max; annealed: --gamma is the
# capacity weight)
READS = {"beta": {"beta", "betatcvae", "bfvae", "cascade"}, "gamma": {"factorvae", "bfvae", "annealed"}}


def add_args(parser) -> None:
    g = parser.add_argument_group("vae")
    g.add_argument("--model", dest="objective", choices=sorted(MODELS), default="beta",
                   help="objective (config key 'objective': the engine's 'model' key names the family)")
    g.add_argument("--data", default="dsprites", help="dataset spec for eoflow_fast.data.get_dataset")
    g.add_argument("--latent-dim", type=_pos_int, default=None,
                   help="latent dimensions d (default 10; FA tables with q factors: max(10, 2q), so q latents "
                        "can stay off and the informative-dimension FDR can fail)")
    g.add_argument("--encoder", choices=["standard", "lite", "mlp"], default="standard",
                   help="images: standard or lite (DEFT Table 1); tabular: mlp")
    g.add_argument("--recon", choices=["bernoulli", "l2", "gaussian", "gaussian_learned"], default=None,
                   help="reconstruction loss (default: bernoulli for images, gaussian_learned for tabular)")
    g.add_argument("--preset", choices=sorted(TABLE3), default=None,
                   help="DEFT Table 3 baseline setting for --model on this dataset (default: none)")
    g.add_argument("--ablation", choices=sorted(ABLATIONS), default=None,
                   help="bfVAE ablation: vanilla (beta 1, gamma 0), beta (gamma 0), factor (beta 1), bfvae")
    g.add_argument("--beta", type=_nonneg_float, default=None, help="KL weight (beta-TCVAE: TC weight; cascade: beta_max); default per model: beta 4, betatcvae 6, cascade 10, bfvae 2, or the --preset value")
    g.add_argument("--gamma", type=_nonneg_float, default=None, help="FactorVAE/bfVAE TC weight; AnnealedVAE capacity weight (default per model: factorvae/bfvae 10, annealed 1000)")
    g.add_argument("--tc-estimator", choices=["mws", "mss"], default="mws",
                   help="beta-TCVAE total-correlation estimator: minibatch weighted / stratified sampling")
    g.add_argument("--capacity", type=_nonneg_float, default=25.0, help="AnnealedVAE C_max (nats)")
    g.add_argument("--capacity-steps", type=_pos_int, default=100_000, help="AnnealedVAE iteration_threshold")
    g.add_argument("--cascade-stage-steps", type=_pos_int, default=6000, help="CascadeVAE steps per stage")
    g.add_argument("--lambda-od", type=_nonneg_float, default=10.0, help="DIP-VAE off-diagonal weight")
    g.add_argument("--lambda-d", type=_nonneg_float, default=None, help="DIP-VAE diagonal weight (default 10 l_od for I, l_od for II)")
    g.add_argument("--disc-lr", type=_nonneg_float, default=1e-4, help="FactorVAE discriminator Adam lr")
    g.add_argument("--disc-width", type=_pos_int, default=1000, help="discriminator hidden width (disentanglement_lib: 1000)")
    g.add_argument("--disc-depth", type=_pos_int, default=6, help="discriminator hidden layers (disentanglement_lib: 6)")
    g.add_argument("--kl-log-every", type=_pos_int, default=100, help="steps between per-dimension KL records")


def resolve_hparams(config: dict, dataset_size: int) -> tuple[str, dict]:
    """(model name, keyword arguments of its class) from the family flags in ``config``."""
    model = config.get("objective", "beta")
    hp: dict = {}
    if config.get("ablation"):
        if model != "bfvae":
            raise ValueError(f"--ablation applies to --model bfvae, got --model {model}")
        model = ABLATIONS[config["ablation"]]
    if config.get("preset"):
        hp.update(table3(config["preset"], model))
    beta, gamma = config.get("beta"), config.get("gamma")
    for flag, value in (("beta", beta), ("gamma", gamma)):
        # a weight the objective does not read would be dropped silently: refuse it, unless it is
        # the value the objective fixes (config.json of an earlier run records those)
        if value is not None and model not in READS[flag] and value != FIXED.get(model, {}).get(flag):
            used = (f"--ablation {config['ablation']}" if config.get("ablation") else f"--model {model}")
            fixed = FIXED.get(model, {}).get(flag)
            raise ValueError(f"--{flag} {value:g} has no effect with {used}"
                             + (f" ({flag} is fixed at {fixed:g})" if fixed is not None else
                                f" (it reads {', '.join('--' + f for f in READS if model in READS[f]) or 'neither --beta nor --gamma'})"))
    defaults = "bfvae" if config.get("ablation") else model  # ablations share bfVAE's beta, gamma
    if model in ("beta", "betatcvae", "bfvae"):
        hp["beta"] = beta if beta is not None else hp.get("beta", BETA_DEFAULT[defaults])
    if model == "cascade":
        hp["beta_max"] = beta if beta is not None else hp.get("beta_max", BETA_DEFAULT[model])
        hp["stage_steps"] = config.get("cascade_stage_steps", 6000)
    if model in ("factorvae", "bfvae", "annealed"):
        hp["gamma"] = gamma if gamma is not None else GAMMA_DEFAULT.get(defaults, GAMMA_DEFAULT[model])
    if model in ("factorvae", "bfvae"):
        hp["disc_lr"] = config.get("disc_lr", 1e-4)
        hp["disc_width"], hp["disc_depth"] = config.get("disc_width", 1000), config.get("disc_depth", 6)
    if model == "betatcvae":
        hp["dataset_size"], hp["estimator"] = dataset_size, config.get("tc_estimator", "mws")
    if model == "annealed":
        hp.setdefault("capacity", config.get("capacity", 25.0))
        hp["iteration_threshold"] = config.get("capacity_steps", 100_000)
    if model in ("dipvae1", "dipvae2"):
        hp["lambda_od"], hp["lambda_d"] = config.get("lambda_od", 10.0), config.get("lambda_d")
    return model, hp


_HP_FLAGS = {"beta": "beta", "beta_max": "beta", "gamma": "gamma", "stage_steps": "cascade_stage_steps",
             "disc_lr": "disc_lr", "disc_width": "disc_width", "disc_depth": "disc_depth",
             "estimator": "tc_estimator", "capacity": "capacity", "iteration_threshold": "capacity_steps",
             "lambda_od": "lambda_od", "lambda_d": "lambda_d"}


def resolved_flags(model: str, hp: dict) -> dict:
    """The flag values (config keys) the run uses, from ``resolve_hparams``: written back into the
    config so ``config.json`` holds ``"beta": 4.0``, not ``null``, after a default or a preset, and
    the weights an objective fixes (vanilla: beta 1, gamma 0; beta: gamma 0; factorvae: beta 1).
    DIP-VAE's lambda_d default (10 lambda_od for I, lambda_od for II) is resolved here too."""
    out = {**FIXED.get(model, {}), **{flag: hp[key] for key, flag in _HP_FLAGS.items() if key in hp}}
    if model in ("dipvae1", "dipvae2") and out.get("lambda_d") is None:
        out["lambda_d"] = (10.0 if model == "dipvae1" else 1.0) * out["lambda_od"]
    return out


def default_latent_dim(spec: str) -> int:
    """10, the baselines' d (DEFT Table 3); for an FA table with q planted factors max(10, 2q)
    [INFERRED]: at d = q the FDR is vacuous and, measured on FA100 (q = 10), latents crowd and a
    factor is lost (reproduce/bfvae_fa.py)."""
    from eoflow_fast.data.factor_analysis import FA_CONFIGS

    return max(10, 2 * FA_CONFIGS[spec][1]) if spec in FA_CONFIGS else 10


def observation_shape(dataset) -> tuple[int, ...]:
    return tuple(batch_x(dataset[0]).shape)


def default_reconstruction(shape: tuple[int, ...]) -> str:
    return "bernoulli" if len(shape) == 3 else "gaussian_learned"


def build(config: dict):
    from eoflow_fast.data import get_dataset

    dataset = get_dataset(config["data"], split="train")
    shape = observation_shape(dataset)
    encoder_kind = config.get("encoder", "standard")
    if len(shape) == 1 and encoder_kind == "mlp":
        encoder_kind = "standard"
    latent_dim = config.get("latent_dim") or default_latent_dim(config["data"])
    encoder, decoder = build_encoder_decoder(shape, latent_dim, encoder_kind)
    name, hp = resolve_hparams(config, len(dataset))
    config.update(resolved_flags(name, hp), recon=config.get("recon") or default_reconstruction(shape),
                  latent_dim=latent_dim)
    model = make_objective(name, encoder, decoder, reconstruction=config.get("recon") or default_reconstruction(shape),
                           kl_log_every=config.get("kl_log_every", 100), **hp)
    return model, dataset, None


# ---- evaluation ------------------------------------------------------------------------------
def _encode_fn(model, batch_size: int = 256):
    """observations ndarray (n, *shape) -> (mu, logvar) ndarrays (n, d), in chunks on the model's device."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def fn(observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.as_tensor(np.asarray(observations), dtype=torch.float32)
        parts = [model.encode(c.to(device)) for c in x.split(batch_size)]
        return tuple(torch.cat([p[i] for p in parts]).float().cpu().numpy() for i in (0, 1))

    return fn


def representation_fn(model):
    """observations ndarray (n, *shape) -> mean codes ndarray (n, d) (the encoder's mu)."""
    encode = _encode_fn(model)
    return lambda observations: encode(observations)[0]


def decode_fn(model):
    """codes ndarray (n, d) -> mean of p(x|z) flattened to (n, features)."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def fn(codes: np.ndarray) -> np.ndarray:
        z = torch.as_tensor(np.asarray(codes), dtype=torch.float32, device=device)
        return model.mean_output(z).reshape(z.shape[0], -1).float().cpu().numpy()

    return fn


EVAL_METRICS = "mig,nmi,informative"


def add_eval_args(parser) -> None:
    from eoflow_fast import metrics

    metrics.add_eval_args(parser)
    set_default(parser, "metrics", EVAL_METRICS,
                f"comma-separated metrics on the data's ground truth, from {', '.join(metrics.METRICS)}; "
                f"'default' = {','.join(metrics.DEFAULT_METRICS)} (default: {EVAL_METRICS})")
    parser.add_argument("--num-points", type=_pos_int, default=10_000,
                        help="data without ground truth: observations for the per-dimension KL")
    parser.add_argument("--kl-threshold", type=_nonneg_float, default=0.1, help="informative if KL_k > this (nats)")


def evaluate(run_dir, model, config, args, source=None) -> dict:
    """Ground-truth image data (dsprites*, triangle): ``metrics.evaluate`` (default mig, nmi,
    informative) with the mean codes, the encoder (for "informative") and the decoder (for
    "fvh_lt"). Other data: {"informative": per-dimension KL over ``--num-points`` observations,
    the dimensions above ``--kl-threshold`` and, for FA tables, the count-rule false discovery rate
    against the planted number of factors}. ``RUN_DIR/metrics.json`` records ``source`` (the
    checkpoint) with the results (``metrics.report.write_report``)."""
    from eoflow_fast import metrics
    from eoflow_fast.data import get_dataset, get_ground_truth
    from eoflow_fast.data.registry import FA_CONFIGS, GROUND_TRUTH_SPECS

    model.eval()
    spec = config["data"]
    if spec in GROUND_TRUTH_SPECS:
        kw = metrics.eval_kwargs(args)
        return metrics.evaluate(kw.pop("names"), get_ground_truth(spec), representation_fn(model), kw.pop("rng"),
                                out_dir=run_dir, source=source, encoder_fn=_encode_fn(model), decode_fn=decode_fn(model), **kw)
    dataset = get_dataset(spec, split="train")
    n = min(args.num_points, len(dataset))
    observations = torch.stack([batch_x(dataset[i]) for i in range(n)]).numpy()
    kl = metrics.per_dimension_kl(*_encode_fn(model)(observations))
    flagged = metrics.informative_dimensions(kl, args.kl_threshold)
    result = {"kl_per_dim": kl.tolist(), "informative_dims": np.nonzero(flagged)[0].tolist(),
              "num_informative": int(flagged.sum())}
    if spec in FA_CONFIGS:
        result.update(metrics.false_discovery_rate(flagged, num_factors=get_ground_truth(spec).num_factors))
    return {"informative": result}


# ---- plots -----------------------------------------------------------------------------------
def _grid(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows*cols, c, h, w) -> (rows*h, cols*w, c) image grid."""
    n, c, h, w = images.shape
    return images.reshape(rows, cols, c, h, w).transpose(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)


def _show(ax, grid: np.ndarray) -> None:
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
    ax.axis("off")


@torch.no_grad()
def plot(run_dir, model, config, step) -> None:
    """Writes reconstructions, latent traversals and per-dimension KL over training to
    ``run_dir/plots/*_{step}.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eoflow_fast.data import get_dataset

    out_dir = os.path.join(run_dir, "plots")
    os.makedirs(out_dir, exist_ok=True)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dataset = get_dataset(config["data"], split="train")
    picks = np.unique(np.linspace(0, len(dataset) - 1, 8).astype(np.int64))  # spread over the data set
    x = torch.stack([batch_x(dataset[int(i)]) for i in picks]).to(device)
    mu, _ = model.encode(x)
    recon = model.mean_output(mu)
    values = torch.linspace(-2.5, 2.5, 9, device=device)
    d = mu.shape[1]
    traversal = mu[:1].repeat(d * len(values), 1)
    traversal[torch.arange(d * len(values)), torch.arange(d).repeat_interleave(len(values))] = values.repeat(d)
    decoded = model.mean_output(traversal)
    if x.dim() == 4:
        pair = torch.cat([x, recon]).clamp(0, 1).cpu().numpy()
        fig, ax = plt.subplots(figsize=(8, 2.2))
        _show(ax, _grid(pair, 2, x.shape[0]))
        ax.set_title(f"data (top) / reconstruction (bottom), step {step}")
        fig.savefig(os.path.join(out_dir, f"reconstructions_{step}.png"), dpi=100)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(6, 0.7 * d))
        _show(ax, _grid(decoded.clamp(0, 1).cpu().numpy(), d, len(values)))
        ax.set_title("latent traversals (row k: z_k from -2.5 to 2.5)")
        fig.savefig(os.path.join(out_dir, f"traversals_{step}.png"), dpi=100)
        plt.close(fig)
    else:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        axes[0].plot(x.cpu().numpy().T, "o", ms=3)
        axes[0].plot(recon.cpu().numpy().T, "-", lw=0.8)
        axes[0].set_title("features: data (dots) / reconstruction (lines)")
        variance = decoded.reshape(d, len(values), -1).var(1).cpu().numpy()
        im = axes[1].imshow(variance, aspect="auto", cmap="viridis")
        axes[1].set_xlabel("feature")
        axes[1].set_ylabel("latent dim")
        axes[1].set_title("feature variance along each latent traversal")
        fig.colorbar(im, ax=axes[1])
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, f"traversals_{step}.png"), dpi=100)
        plt.close(fig)
    if model.kl_history:
        steps = [s for s, _ in model.kl_history]
        kl = np.asarray([v for _, v in model.kl_history])
        fig, ax = plt.subplots(figsize=(6, 4))
        for k in range(kl.shape[1]):
            ax.plot(steps, kl[:, k], label=f"z{k}")
        ax.set_xlabel("step")
        ax.set_ylabel("KL_k (nats)")
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, f"kl_per_dim_{step}.png"), dpi=100)
        plt.close(fig)
    model.train(was_training)


SPEC = register(ModelSpec(name="vae", help="disentangling VAEs (beta, beta-TC, Factor, DIP, Annealed, Cascade, bfVAE)",
                          add_args=add_args, build=build, evaluate=evaluate, plot=plot, add_eval_args=add_eval_args))
