"""The ``toy`` model family: a small MLP autoencoder on generated linear-Gaussian data.

The smallest end-to-end example of the engine contract (``eoflow-fast train toy --steps 20``) and
the model the engine's tests train.

Data: ``z ~ N(0, I_k)``, ``x = z A + sigma_x * eps`` with a fixed ``A`` of shape ``(k, d)`` drawn
once from ``data_seed`` (entries ``N(0, 1/k)``) and ``eps ~ N(0, I_d)``; items are ``(x, z)``
(``x`` float32 ``(d,)``, ``z`` float32 ``(k,)``, the ground-truth factors).

Model: encoder ``e(x) = W2 tanh(W1 x + b1) + b2`` to ``k`` codes, decoder ``g(c)`` of the same
form back to ``d``. Training corrupts the input with Gaussian noise of std ``noise`` (drawn from
torch's global generator, so resume must restore it to reproduce the losses). Loss terms::

    recon         = mean_{b,j} (g(e(x_b + noise * n_b))_j - x_{b,j})^2
    code_penalty  = code_penalty * mean_{b,i} e(x_b)_i^2
    _code_std     = mean_i std_b e(x)_i                                  (diagnostic, not optimized)
"""
from __future__ import annotations

import torch
from torch import nn

from eoflow_fast.data import split_arg

from . import registry
from .argtypes import float_in, int_at_least

TOY_DEFAULTS = {
    "dim": 8,
    "latent": 2,
    "hidden": 32,
    "n_train": 1024,
    "n_eval": 256,
    "data_noise": 0.05,
    "noise": 0.1,
    "code_penalty": 1e-3,
    "data_seed": 0,
}


class ToyData(torch.utils.data.Dataset):
    """``n`` items ``(x, z)`` of the linear-Gaussian model above; ``split`` picks disjoint draws."""

    def __init__(self, n: int, dim: int, latent: int, data_noise: float, data_seed: int, split: str):
        g = torch.Generator().manual_seed(data_seed)
        mixing = torch.randn(latent, dim, generator=g) / latent ** 0.5
        g.manual_seed(data_seed * 2 + (0 if split == "train" else 1) + 1)
        self.z = torch.randn(n, latent, generator=g)
        self.x = self.z @ mixing + data_noise * torch.randn(n, dim, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.z[i]


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))


class ToyAutoencoder(nn.Module):
    """MLP autoencoder ``d -> hidden -> k -> hidden -> d`` with the loss terms of the module doc."""

    def __init__(self, dim: int, latent: int, hidden: int, noise: float, code_penalty: float):
        super().__init__()
        self.encoder = _mlp(dim, hidden, latent)
        self.decoder = _mlp(latent, hidden, dim)
        self.noise = noise
        self.code_penalty = code_penalty

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def loss_terms(self, batch, step: int) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        noisy = x + self.noise * torch.randn_like(x) if self.training and self.noise > 0 else x
        codes = self.encoder(noisy)
        recon = self.decoder(codes)
        return {
            "recon": (recon - x).pow(2).mean(),
            "code_penalty": self.code_penalty * codes.pow(2).mean(),
            "_code_std": codes.detach().std(dim=0).mean(),
        }


def build(config: dict):
    """``(ToyAutoencoder, train ToyData, eval ToyData)`` from ``config`` over :data:`TOY_DEFAULTS`."""
    c = {**TOY_DEFAULTS, **config}
    data = {k: c[k] for k in ("dim", "latent", "data_noise", "data_seed")}
    model = ToyAutoencoder(c["dim"], c["latent"], c["hidden"], c["noise"], c["code_penalty"])
    return model, ToyData(c["n_train"], split="train", **data), ToyData(c["n_eval"], split="eval", **data)


def add_args(parser) -> None:
    g = parser.add_argument_group("toy model")
    g.add_argument("--dim", type=int_at_least(1), default=TOY_DEFAULTS["dim"], help="observation dimension d")
    g.add_argument("--latent", type=int_at_least(1), default=TOY_DEFAULTS["latent"], help="code / factor dimension k")
    g.add_argument("--hidden", type=int_at_least(1), default=TOY_DEFAULTS["hidden"], help="MLP hidden width")
    g.add_argument("--n-train", type=int_at_least(1), default=TOY_DEFAULTS["n_train"], help="training items")
    g.add_argument("--n-eval", type=int_at_least(1), default=TOY_DEFAULTS["n_eval"], help="evaluation items")
    g.add_argument("--data-noise", type=float_in(0.0), default=TOY_DEFAULTS["data_noise"], help="sigma_x of the data")
    g.add_argument("--noise", type=float_in(0.0), default=TOY_DEFAULTS["noise"], help="input corruption std in training")
    g.add_argument("--code-penalty", type=float_in(0.0), default=TOY_DEFAULTS["code_penalty"], help="weight of mean code^2")
    g.add_argument("--data-seed", type=int_at_least(0), default=TOY_DEFAULTS["data_seed"], help="seed of the generated data")


def add_eval_args(parser) -> None:
    parser.add_argument("--split", type=split_arg, choices=("test", "train"), default="test",
                        help="data split to evaluate on ('eval' is a deprecated alias of 'test')")


@torch.no_grad()
def evaluate(run_dir, model: ToyAutoencoder, config: dict, args, source=None) -> dict:
    """(Writes no file, so ``source`` is not recorded.) Reconstruction MSE and the R^2 of a least-squares map from codes to the true factors z:
    ``r2 = 1 - |z - [c, 1] beta|^2 / |z - mean z|^2`` (beta fitted on the evaluated split)."""
    _, train_data, eval_data = build(config)
    data = train_data if getattr(args, "split", "test") == "train" else eval_data
    device = next(model.parameters()).device
    x, z = data.x.to(device), data.z.to(device)
    codes = model.encode(x)
    design = torch.cat([codes, torch.ones_like(codes[:, :1])], dim=1).double()
    beta = torch.linalg.lstsq(design, z.double()).solution
    residual = (z.double() - design @ beta).pow(2).sum()
    total = (z.double() - z.double().mean(0)).pow(2).sum()
    return {"recon_mse": float((model.decoder(codes) - x).pow(2).mean()),
            "factor_r2": float(1 - residual / total)}


def plot(run_dir, model: ToyAutoencoder, config: dict, step: int) -> None:
    """Scatter of the first two codes of the eval split, coloured by the first true factor:
    ``RUN_DIR/plots/codes-<step>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pathlib import Path

    _, _, eval_data = build(config)
    codes = model.encode(eval_data.x.to(next(model.parameters()).device)).cpu()
    out = Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 4))
    points = ax.scatter(codes[:, 0], codes[:, min(1, codes.shape[1] - 1)], c=eval_data.z[:, 0], s=4, cmap="viridis")
    fig.colorbar(points, ax=ax, label="true factor z_0")
    ax.set_xlabel("code 0")
    ax.set_ylabel("code 1")
    ax.set_title(f"toy codes, step {step}")
    fig.savefig(out / f"codes-{step:08d}.png", dpi=80)
    plt.close(fig)


registry.register(registry.ModelSpec(
    name="toy",
    help="small MLP autoencoder on generated linear-Gaussian data (the engine's smallest example)",
    add_args=add_args,
    build=build,
    evaluate=evaluate,
    plot=plot,
    add_eval_args=add_eval_args,
))
