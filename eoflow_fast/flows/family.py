"""``eoflow-fast train eoflow``: the entropy-ordered flow family (registers ModelSpec "eoflow").

Defaults train the README's first command, ``eoflow-fast train eoflow --data digits``: scikit-learn's
8x8 digits (D = 64, no download) with an MLP-coupling flow (6 blocks, hidden 128, pre/post learnable
rotations), lambda = 1 (Maximum Manifold Likelihood), sigma = 0.05, batch 256 >= D so the stratified
estimator visits every dim every step, Adam lr 2e-3 with cosine decay, 1200 steps, then the evaluation report and plots in the run
folder (measured: 125 s wall on the shared 2-core CPU, 119 s of it training).

Large-scale recipe (CelebA 64x64x3, D = 12,288, one GPU) [INFERRED settings; the paper's are unknown]::

    eoflow-fast train eoflow --data celeba:/data/celeba --arch glow --levels 4 --steps-per-level 8 \\
        --hidden 256 --lam 1.0 --sigma 0.05 --batch-size 64 --lr 5e-4 --warmup-steps 500 \\
        --steps 100000 --grad-clip 10 --amp off --cpu-threads 0 \\
        --eval-samples 256 --entropy-samples 32 --entropy-batch 4 --entropy-chunk 64

With B = 64 < D the estimator samples 64 distinct dims per step and rescales by D/64 (spec §3.2);
``--amp off`` keeps the log-norms of the JVP columns in fp32. Exact explained entropy at the end
streams 12,288 columns per point, 4 points x 64 dims per JVP pass (32 points: 1,536 passes).
"""
from __future__ import annotations

import argparse
import math
import warnings

import torch

from ..train import registry
from ..train.argtypes import float_in, int_at_least, set_default
from .architectures import mlp_flow, multiscale_flow
from .eoflow import EOFlow

ARCHS = ("mlp", "glow", "realnvp")


_positive_int, _nonneg_int = int_at_least(1), int_at_least(0)


def _core_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 4,16,64, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"core sizes must be integers >= 1, got {text!r}")
    return sizes


def add_args(parser) -> None:
    g = parser.add_argument_group("eoflow")
    g.add_argument("--data", default="digits",
                   help="digits | dsprites | celeba:PATH | folder:PATH | packed:PATH (eoflow_fast.data spec)")
    g.add_argument("--arch", default="mlp", choices=ARCHS, help="mlp: coupling flow on flattened data; "
                   "glow/realnvp: multiscale conv flows")
    g.add_argument("--blocks", type=_positive_int, default=6, help="coupling blocks (mlp arch)")
    g.add_argument("--levels", type=_positive_int, default=2, help="scales (glow/realnvp)")
    g.add_argument("--steps-per-level", type=_positive_int, default=4, help="flow steps per scale (glow/realnvp)")
    g.add_argument("--hidden", type=_positive_int, default=128, help="subnet width (units or channels)")
    g.add_argument("--lam", type=float_in(0.0, 1.0), default=1.0, help="weight of the manifold NLL, in [0, 1] (1 = MML)")
    g.add_argument("--sigma", type=float_in(0.0), default=0.05, help="training noise std (manifold inflation)")
    g.add_argument("--clamp", type=float_in(0.0, low_open=True), default=2.0, help="soft clamp of the coupling scales")
    g.add_argument("--clamp-fn", default="atan", choices=("atan", "tanh", "none"), help="soft-clamp function")
    g.add_argument("--quant-bins", type=_nonneg_int, default=0,
                   help="data are multiples of 1/quant_bins (0: 16 for digits, 255 otherwise)")
    g.add_argument("--eval-samples", type=_positive_int, default=512, help="test items in the evaluation")
    g.add_argument("--entropy-samples", type=_positive_int, default=256, help="points for exact explained entropy")
    g.add_argument("--entropy-batch", type=_positive_int, default=256, help="points per exact-entropy JVP pass")
    g.add_argument("--entropy-chunk", type=_positive_int, default=64, help="dims per exact-entropy JVP pass "
                   "(a pass decodes entropy_batch * entropy_chunk tangent rows)")
    g.add_argument("--core-sizes", type=_core_sizes, default=None, help="C values for the report, e.g. 4,16,64")
    g.add_argument("--memory", default="stored", choices=("stored", "reversible", "boundaries"),
                   help="reversible: keep no block activations for the backward (each block's input is rebuilt "
                        "by its exact inverse and the block recomputed; units that invert worse than "
                        "1000 eps keep their input); boundaries: keep the block-boundary tensors (B*D per "
                        "block) instead of inverting; both slower, much less activation memory")
    g.add_argument("--condition", default="none", choices=("none", "label"),
                   help="label: class-conditional flow, every coupling subnet reads the one-hot class label "
                        "(datasets with labels: digits)")
    parser.set_defaults(steps=1200, batch_size=256, lr=2e-3, lr_schedule="cosine", warmup_steps=50,
                        grad_clip=10.0, ckpt_every=400)


def _check(config: dict) -> None:
    if not 0.0 <= config["lam"] <= 1.0:
        raise ValueError(f"eoflow: --lam must be in [0, 1], got {config['lam']}")
    if config["sigma"] < 0:
        raise ValueError(f"eoflow: --sigma must be >= 0, got {config['sigma']}")
    if config["arch"] not in ARCHS:
        raise ValueError(f"eoflow: --arch must be one of {ARCHS}, got {config['arch']!r}")


def build(config: dict):
    """(EOFlow, train dataset, test dataset) from the family flags (defaults filled in)."""
    defaults = vars(_defaults_parser().parse_args([]))
    config = {**defaults, **config}
    _check(config)
    labelled = config.get("condition", "none") == "label"
    train_set, test_set = (_dataset(config["data"], split, labelled) for split in ("train", "test"))
    if len(test_set) == 0:  # before training, not a traceback in its final evaluation
        raise ValueError(f"eoflow: {config['data']} has an empty 'test' split ({len(train_set)} training items; "
                         f"`eoflow-fast data info {config['data']}` shows the split rule): the evaluation of a flow "
                         f"(bits/dim, PSNR, denoising) needs held-out items; give more rows")
    item = train_set[0]
    x = item[0] if isinstance(item, (tuple, list)) else item
    shape = tuple(x.shape)
    n_classes = _n_classes(train_set) if labelled else 0
    with torch.random.fork_rng(devices=[]):  # weights are a function of the config alone
        torch.manual_seed(config.get("seed", 0))
        flow = _build_flow(config, shape, n_classes)
    bins = config["quant_bins"] or (16 if config["data"] == "digits" else 255)
    model = EOFlow(flow, shape, flat_input=config["arch"] == "mlp", lam=config["lam"], sigma=config["sigma"],
                   quant_bins=bins, memory=config.get("memory", "stored"))
    _check_core_sizes(config.get("core_sizes"), model.dim)  # before training, not in its final evaluation
    return model, train_set, test_set


def _check_core_sizes(sizes, dim: int) -> None:
    """``registry.UsageError`` naming --core-sizes when a size exceeds the data dimension D."""
    if sizes and max(sizes) > dim:
        raise registry.UsageError(f"argument --core-sizes: expected sizes <= D = {dim} (the data dimension), "
                                  f"got {','.join(map(str, sizes))}")


LABELLED_DATA = ("digits",)


def _dataset(spec: str, split: str, labelled: bool):
    from ..data import get_dataset

    if not labelled:
        return get_dataset(spec, split)
    if spec not in LABELLED_DATA:
        raise ValueError(f"eoflow: --condition label needs a dataset with class labels ({', '.join(LABELLED_DATA)}), "
                         f"got --data {spec}")
    return get_dataset(spec, split, with_labels=True)


def _n_classes(dataset) -> int:
    """Number of classes k = 1 + the largest integer label of the training set."""
    return 1 + max(int(dataset[i][1]) for i in range(len(dataset)))


# The mlp arch's two learnable D x D rotations (``Orthogonal``: a matrix exponential, O(D^3) time and
# several D x D buffers per step). Measured forward + backward of one rotation, batch 16, one CPU
# thread: 2.5 s at D = 768, 5.4 s at 1,024, 46 s at 2,048, 188 s at 3,072; D = 12,288 (64x64x3) grew
# past 20 GB before its first step.
MLP_WARN_DIM, MLP_MAX_DIM = 1024, 4096


def _check_mlp_dim(config: dict, shape: tuple) -> None:
    """Refuse the mlp arch above MLP_MAX_DIM flat dimensions and warn above MLP_WARN_DIM."""
    dim = math.prod(shape)
    hint = " (use --arch glow or realnvp for image data)" if len(shape) == 3 else ""
    if dim > MLP_MAX_DIM:
        raise ValueError(f"eoflow: --arch mlp flattens {config['data']} to {dim} dimensions; its two learnable "
                         f"{dim}x{dim} rotations cost O(D^3) time and several {dim}x{dim} buffers per step "
                         f"(at most {MLP_MAX_DIM} dimensions){hint}")
    if dim > MLP_WARN_DIM:
        warnings.warn(f"eoflow: --arch mlp on {dim} dimensions: each of its two {dim}x{dim} rotations takes "
                      f"seconds to minutes per step on a CPU (46 s at 2,048, one thread){hint}", RuntimeWarning,
                      stacklevel=3)


def _build_flow(config: dict, shape: tuple, n_classes: int = 0):
    if config["arch"] == "mlp":
        _check_mlp_dim(config, shape)
        return mlp_flow(math.prod(shape), config["blocks"], config["hidden"], config["clamp"], config["clamp_fn"],
                        seed=config.get("seed", 0), cond_channels=n_classes)
    if len(shape) != 3:
        raise ValueError(f"eoflow: --arch {config['arch']} needs image data (C, H, W); "
                         f"{config['data']} gives items of shape {shape} (use --arch mlp)")
    return multiscale_flow(shape, config["arch"], config["levels"], config["steps_per_level"], config["hidden"],
                           config["clamp"], config["clamp_fn"], seed=config.get("seed", 0), cond_channels=n_classes)


def _defaults_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    add_args(parser)
    return parser


def add_eval_args(parser) -> None:
    from .. import metrics

    parser.add_argument("--core-sizes", type=_core_sizes, default=None,
                        help="C values, e.g. 4,16,64 (default: the training config's, else powers of 2 up to D and D)")
    parser.add_argument("--eval-samples", type=_positive_int, default=None, help="test items (default: training config)")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots")
    metrics.add_eval_args(parser)
    set_default(parser, "metrics", None,
                f"comma-separated metrics on the run's ground truth (dsprites*, triangle, fa*), from "
                f"{', '.join(metrics.METRICS)}; 'default' = {','.join(metrics.DEFAULT_METRICS)}; codes are z in "
                f"explained-entropy order, 'flow' uses the decoder Jacobian (default: none, the flow report only)")


def evaluate(run_dir, model, config: dict, args=None, source=None) -> dict:
    """The report of ``eoflow_fast.flows.evaluation.evaluate_model``; returns flat numbers for logging.
    ``source`` (the checkpoint: step, file, weights digest) is recorded in ``eval.json``, ``eval.txt``
    and ``metrics.json``."""
    from .evaluation import evaluate_model

    if getattr(args, "metrics", None):
        _check_ground_truth(config)  # a user error costs no evaluation work

    def pick(name):
        value = getattr(args, name, None) if args is not None else None
        return value if value is not None else config.get(name)

    labelled = config.get("condition", "none") == "label"
    _check_core_sizes(pick("core_sizes"), model.dim)
    report = evaluate_model(
        model, _dataset(config["data"], "train", labelled), _dataset(config["data"], "test", labelled), run_dir,
        core_sizes=pick("core_sizes"), eval_samples=pick("eval_samples") or 512,
        entropy_samples=config.get("entropy_samples", 256), entropy_batch=config.get("entropy_batch", 256),
        entropy_chunk=config.get("entropy_chunk", 64), plots=not getattr(args, "no_plots", False), source=source)
    flat = {"bits_per_dim": report["bits_per_dim"], "bits_per_dim_noisy": report["bits_per_dim_noisy"],
            "mtc": report["mtc"]}
    flat.update({f"psnr_C{row['C']}": row["psnr_eoflow"] for row in report["compression"]})
    if getattr(args, "metrics", None):
        flat["metrics"] = ground_truth_metrics(run_dir, model, config, args, source)
    return flat


def _check_ground_truth(config: dict) -> None:
    """``registry.UsageError`` unless the run's data has ground-truth factors (for --metrics)."""
    from ..data.registry import FA_CONFIGS, GROUND_TRUTH_SPECS

    if config["data"] not in (*GROUND_TRUTH_SPECS, *FA_CONFIGS):
        raise registry.UsageError(f"argument --metrics: run data {config['data']!r} has no ground-truth factors "
                                  f"(metrics need one of {', '.join((*GROUND_TRUTH_SPECS, *FA_CONFIGS))})")


def ground_truth_metrics(run_dir, model: EOFlow, config: dict, args, source=None) -> dict:
    """``metrics.evaluate(--metrics)`` on the ground truth of ``config["data"]`` with the codes
    z[:, latent_order] (highest explained entropy first) and, for "flow", the decoder Jacobian
    dx/dz in the same order. Raises ``registry.UsageError`` for data without ground truth."""
    from .. import metrics
    from ..data import get_ground_truth

    _check_ground_truth(config)
    device = next(model.parameters()).device
    order = model.latent_order.to(device)
    inverse = torch.argsort(order)

    @torch.no_grad()
    def representation_fn(observations):
        x = torch.as_tensor(observations, dtype=torch.float32)
        codes = [model.encode(c.to(device))[0][:, order] for c in x.split(256)]
        return torch.cat(codes).cpu().numpy()

    @torch.no_grad()
    def jacobian_fn(codes, chunk: int = 64):
        z = torch.as_tensor(codes, dtype=torch.float32, device=device)[:, inverse]
        n, dim = z.shape
        columns = []
        for start in range(0, dim, chunk):
            dims = order[start:start + chunk]
            dz = torch.zeros(len(dims), n, dim, device=device)
            dz[torch.arange(len(dims)), :, dims] = 1.0
            jvp = model.decoder_jvp(z.repeat(len(dims), 1), dz.reshape(-1, dim))
            columns.append(jvp.reshape(len(dims), n, -1).permute(1, 2, 0))
        return torch.cat(columns, dim=2).cpu().numpy()

    kw = metrics.eval_kwargs(args)
    return metrics.evaluate(kw.pop("names"), get_ground_truth(config["data"]), representation_fn, kw.pop("rng"),
                            out_dir=run_dir, source=source, jacobian_fn=jacobian_fn, **kw)


SPEC = registry.register(registry.ModelSpec(
    name="eoflow", help="entropy-ordered normalizing flow (core/detail compression, denoising)",
    add_args=add_args, build=build, evaluate=evaluate, add_eval_args=add_eval_args))


def open_eoflow_run(run_dir, checkpoint=None, device: str = "cpu"):
    """``(model, config, test_set)`` of an eoflow run folder, with ``latent_order`` from
    ``RUN_DIR/entropy.json`` (written by the evaluation) when it was computed with the loaded
    weights, else from the running explained-entropy estimate kept during training (with a
    warning saying why). Raises ValueError for a non-eoflow run, CheckpointError for a damaged
    entropy.json."""
    from pathlib import Path

    from ..train import engine

    config = engine.read_config(run_dir)
    if config.get("model") != "eoflow":
        raise ValueError(f"{run_dir} is a {config.get('model')!r} run, not an 'eoflow' run")
    run = engine.open_run(run_dir, checkpoint, device)
    model = run.model
    entropy = recorded_entropy(Path(run_dir) / "entropy.json", model)
    model.set_order(model.running_entropy() if entropy is None else entropy)
    test_set = run.eval_dataset if run.eval_dataset is not None else run.train_dataset
    return model, config, test_set


def recorded_entropy(path, model: EOFlow) -> torch.Tensor | None:
    """The explained entropies (D,) saved in ``path`` (``RUN_DIR/entropy.json``) if they belong to
    ``model``'s weights (``EOFlow.weights_digest``); None when the file is missing, and None with a
    RuntimeWarning when it was computed for other weights (another checkpoint, a run trained on
    after its evaluation) or records none (older files). A file that is not such a record is a
    CheckpointError naming it."""
    import json
    import warnings

    from ..train.checkpoint import CheckpointError

    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        entropy = torch.tensor(record["entropy"], dtype=torch.float64)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:  # JSON and Unicode errors are ValueErrors
        raise CheckpointError(f"{path} is damaged ({type(exc).__name__}: {exc}); delete it or rerun "
                              f"'eoflow-fast eval {path.parent}' to rewrite it") from None
    if entropy.shape != (model.dim,) or not bool(torch.isfinite(entropy).all()):
        raise CheckpointError(f"{path} must hold {model.dim} finite explained entropies, got shape "
                              f"{tuple(entropy.shape)}; delete it or rerun 'eoflow-fast eval {path.parent}'")
    if record.get("weights") != model.weights_digest():
        why = "records no weights" if "weights" not in record else "was computed with other weights than the loaded ones"
        warnings.warn(f"{path} {why} (an older checkpoint, or training went on after 'eoflow-fast eval'): "
                      f"the core dims follow the training-time running estimate instead; rerun 'eoflow-fast eval "
                      f"{path.parent}' for the exact order", RuntimeWarning, stacklevel=2)
        return None
    return entropy
