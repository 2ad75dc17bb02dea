"""Disentangling VAE objectives, each a small class over the same encoder/decoder.

Notation: x (B, ...) a batch, q(z|x) = N(mu, diag exp(logvar)) with mu, logvar (B, d),
z = mu + exp(logvar / 2) * eps, recon = mean_b -log p(x_b|z_b) (see ``likelihoods``),
KL_k = mean_b KL(q(z_k|x_b) || N(0, 1)) and KL = sum_k KL_k.

| class        | optimized loss                                                       |
|--------------|----------------------------------------------------------------------|
| VAE          | recon + KL                                                           |
| BetaVAE      | recon + beta KL                                                      |
| BetaTCVAE    | recon + KL + (beta - 1) TC      (TC by ``ops.tc_decomposition``)     |
| AnnealedVAE  | recon + gamma |KL - C_t|,  C_t = min(C, C t / T)                     |
| CascadeVAE   | recon + sum_k w_k KL_k,  w_k = beta_min if k <= stage else beta_max  |
| DIPVAE       | recon + KL + l_od sum_{i!=j} C_ij^2 + l_d sum_i (C_ii - 1)^2         |
| BfVAE        | recon + beta KL + gamma TC_D    (FactorVAE density-ratio TC)         |

FactorVAE is BfVAE with beta = 1. Each model implements the engine contract
(``eoflow_fast.train.contract``): ``loss_terms(batch, step)`` returns the optimized terms plus
"_"-prefixed diagnostics; per-dimension KL is recorded every ``kl_log_every`` steps in
``kl_history`` (kept in ``extra_state``) for the per-dimension-KL-over-training plot.
"""
from __future__ import annotations

import torch
from torch import nn

from eoflow_fast import ops
from eoflow_fast.train.distributed import all_reduce_grads_

from .architectures import Discriminator
from .likelihoods import MEAN, gaussian_kl_per_dim, get_reconstruction


def batch_x(batch) -> torch.Tensor:
    """The observation of a batch: ``batch[0]`` for (x, factors, ...) tuples, else the batch."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class VAE(nn.Module):
    """Vanilla VAE: loss = recon + KL."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, reconstruction: str = "bernoulli",
                 kl_log_every: int = 100):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.reconstruction = reconstruction
        self._recon = get_reconstruction(reconstruction, getattr(decoder, "output_dim", None))
        if isinstance(self._recon, nn.Module):
            self.likelihood = self._recon  # a submodule: its state checkpoints with the VAE
        self.kl_log_every = kl_log_every
        self.kl_history: list[tuple[int, list[float]]] = []

    # -- model ------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def mean_output(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z): sigmoid(logits) for images, the output itself for Gaussian data."""
        return MEAN[self.reconstruction](self.decode(z))

    def reconstruction_loss(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._recon(out, x)

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    def forward(self, x: torch.Tensor):
        """Returns (decoder output, mu, logvar, z); half-precision mu, logvar (bf16 autocast) are
        raised to float32, so z, the KL and the TC estimates are not computed in bf16."""
        mu, logvar = (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in self.encode(x))
        z = self.sample(mu, logvar)
        return self.decode(z), mu, logvar, z

    # -- objective --------------------------------------------------------------------------
    def regularizer(self, mu, logvar, z, kl_per_dim, step) -> dict[str, torch.Tensor]:
        return {"kl": kl_per_dim.sum()}

    def loss_terms(self, batch, step: int) -> dict[str, torch.Tensor]:
        x = batch_x(batch)
        out, mu, logvar, z = self(x)
        kl_per_dim = gaussian_kl_per_dim(mu, logvar)
        terms = {"recon": self.reconstruction_loss(out, x)}
        terms.update(self.regularizer(mu, logvar, z, kl_per_dim, step))
        terms["_kl"] = kl_per_dim.sum().detach()
        if self.kl_log_every and step % self.kl_log_every == 0:
            self.kl_history.append((int(step), kl_per_dim.detach().cpu().tolist()))
        return terms

    def extra_state(self) -> dict:
        return {"kl_history": list(self.kl_history)}

    def load_extra_state(self, state: dict) -> None:
        self.kl_history = [(int(s), list(v)) for s, v in state.get("kl_history", [])]


class BetaVAE(VAE):
    """beta-VAE (Higgins et al. 2017): loss = recon + beta KL."""

    def __init__(self, encoder, decoder, beta: float = 4.0, **kw):
        super().__init__(encoder, decoder, **kw)
        self.beta = float(beta)

    def regularizer(self, mu, logvar, z, kl_per_dim, step):
        return {"kl": self.beta * kl_per_dim.sum()}


class BetaTCVAE(VAE):
    """beta-TCVAE (Chen et al. 2018) in disentanglement_lib's form: loss = recon + KL + (beta - 1) TC.

    (mi, tc, dwkl) = ``ops.tc_decomposition(z, mu, logvar, dataset_size, estimator)``: the
    minibatch-weighted ("mws") or minibatch-stratified ("mss") estimates of the ELBO decomposition
    E KL = MI + TC + DWKL; mi and dwkl are logged as diagnostics.
    """

    def __init__(self, encoder, decoder, beta: float = 6.0, dataset_size: int = 737280,
                 estimator: str = "mws", tc_backend: str = "auto", **kw):
        super().__init__(encoder, decoder, **kw)
        if estimator not in ("mws", "mss"):
            raise ValueError(f"BetaTCVAE: estimator={estimator!r}; expected 'mws' or 'mss'")
        if dataset_size < 1:
            raise ValueError(f"BetaTCVAE: dataset_size must be >= 1, got {dataset_size}")
        self.beta, self.dataset_size, self.estimator = float(beta), int(dataset_size), estimator
        self.tc_backend = tc_backend

    def regularizer(self, mu, logvar, z, kl_per_dim, step):
        mi, tc, dwkl = ops.tc_decomposition(z, mu, logvar, self.dataset_size,
                                            estimator=self.estimator, backend=self.tc_backend)
        return {"kl": kl_per_dim.sum(), "tc": (self.beta - 1.0) * tc,
                "_tc": tc.detach(), "_mi": mi.detach(), "_dwkl": dwkl.detach()}


class AnnealedVAE(VAE):
    """AnnealedVAE (Burgess et al. 2018): loss = recon + gamma |KL - C_t|,
    C_t = min(C, C t / iteration_threshold) (disentanglement_lib: gamma = 1000, threshold = 100k)."""

    def __init__(self, encoder, decoder, capacity: float = 25.0, gamma: float = 1000.0,
                 iteration_threshold: int = 100_000, **kw):
        super().__init__(encoder, decoder, **kw)
        if iteration_threshold < 1:
            raise ValueError(f"AnnealedVAE: iteration_threshold must be >= 1, got {iteration_threshold}")
        self.capacity, self.gamma, self.iteration_threshold = float(capacity), float(gamma), int(iteration_threshold)

    def capacity_at(self, step: int) -> float:
        return min(self.capacity, self.capacity * step / self.iteration_threshold)

    def regularizer(self, mu, logvar, z, kl_per_dim, step):
        c = self.capacity_at(step)
        return {"kl": self.gamma * (kl_per_dim.sum() - c).abs(), "_capacity": kl_per_dim.new_tensor(c)}


class CascadeVAE(VAE):
    """CascadeVAE-C (Jeong & Song 2019, as in the DEFT authors' code): per-dimension KL weights
    w_k = beta_min for k <= stage, beta_max otherwise, stage = min(t // stage_steps, d - 1);
    loss = recon + sum_k w_k KL_k. Code defaults: beta_min 1, beta_max 10, stage_steps 6000."""

    def __init__(self, encoder, decoder, beta_max: float = 10.0, beta_min: float = 1.0,
                 stage_steps: int = 6000, **kw):
        super().__init__(encoder, decoder, **kw)
        if stage_steps < 1:
            raise ValueError(f"CascadeVAE: stage_steps must be >= 1, got {stage_steps}")
        self.beta_max, self.beta_min, self.stage_steps = float(beta_max), float(beta_min), int(stage_steps)

    def kl_weights(self, step: int, latent_dim: int) -> torch.Tensor:
        stage = min(step // self.stage_steps, latent_dim - 1)
        w = torch.full((latent_dim,), self.beta_max)
        w[: stage + 1] = self.beta_min
        return w

    def regularizer(self, mu, logvar, z, kl_per_dim, step):
        w = self.kl_weights(step, kl_per_dim.shape[0]).to(kl_per_dim)
        return {"kl": (w * kl_per_dim).sum()}


class DIPVAE(VAE):
    """DIP-VAE (Kumar et al. 2018): loss = recon + KL + l_od sum_{i!=j} C_ij^2 + l_d sum_i (C_ii - 1)^2.

    C = Cov_b[mu] (biased, over the batch) for DIP-VAE-I; C = Cov_b[mu] + diag(mean_b exp(logvar))
    (the covariance of the aggregate posterior) for DIP-VAE-II. Study defaults: l_d = 10 l_od (I),
    l_d = l_od (II).
    """

    def __init__(self, encoder, decoder, kind: str = "i", lambda_od: float = 10.0,
                 lambda_d: float | None = None, **kw):
        super().__init__(encoder, decoder, **kw)
        if kind not in ("i", "ii"):
            raise ValueError(f"DIPVAE: kind={kind!r}; expected 'i' or 'ii'")
        self.kind, self.lambda_od = kind, float(lambda_od)
        self.lambda_d = float(lambda_d) if lambda_d is not None else (10.0 if kind == "i" else 1.0) * self.lambda_od

    def covariance(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        centred = mu - mu.mean(0, keepdim=True)
        cov = centred.T @ centred / mu.shape[0]
        if self.kind == "ii":
            cov = cov + torch.diag(logvar.exp().mean(0))
        return cov

    def regularizer(self, mu, logvar, z, kl_per_dim, step):
        cov = self.covariance(mu, logvar)
        diag = torch.diagonal(cov)
        off = cov - torch.diag(diag)
        dip = self.lambda_od * off.pow(2).sum() + self.lambda_d * (diag - 1).pow(2).sum()
        return {"kl": kl_per_dim.sum(), "dip": dip}


def shuffle_dims(z: torch.Tensor) -> torch.Tensor:
    """Independently permute each column of z (B, d) across the batch: a sample of prod_k q(z_k)."""
    idx = torch.argsort(torch.rand(z.shape, device=z.device), dim=0)
    return torch.gather(z, 0, idx)


class BfVAE(VAE):
    """bfVAE [INFERRED objective, vae_deft.md §A.3]: loss = recon + beta KL + gamma TC_D with the
    FactorVAE density-ratio estimate TC_D = mean_b (D(z_b)_0 - D(z_b)_1) (logits of discriminator D).

    D (``Discriminator``) is trained in ``auxiliary_step`` with its own Adam (lr 1e-4, betas 0.5,
    0.9; disentanglement_lib; gradients averaged over DDP ranks) to minimise
    -(1/2 mean log p_0(z) + 1/2 mean log p_1(shuffle(z))), probabilities clipped to [1e-6, 1 - 1e-6],
    on the detached codes z of the step's VAE forward.
    Ablations: vanilla (beta 1, gamma 0), beta (beta > 1, gamma 0), factor (beta 1, gamma > 0).
    The verified paper text does not give the loss; this reading follows its ablation names.
    """

    def __init__(self, encoder, decoder, beta: float = 4.0, gamma: float = 10.0,
                 disc_lr: float = 1e-4, disc_betas=(0.5, 0.9), disc_width: int = 1000, disc_depth: int = 6, **kw):
        super().__init__(encoder, decoder, **kw)
        self.beta, self.gamma = float(beta), float(gamma)
        self.discriminator = Discriminator(encoder.latent_dim, disc_width, disc_depth)
        self.disc_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=disc_lr, betas=tuple(disc_betas))
        self._codes: tuple[int, torch.Tensor] | None = None

    def param_groups(self, lr: float) -> list[dict]:
        vae = [p for n, p in self.named_parameters() if not n.startswith("discriminator.")]
        return [{"params": vae, "lr": lr, "name": "vae"}]

    def tc_estimate(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.discriminator(z)
        return (logits[:, 0] - logits[:, 1]).mean()

    def regularizer(self, mu, logvar, z, kl_per_dim, step):
        self._codes = (int(step), z.detach())
        tc = self.tc_estimate(z)
        return {"kl": self.beta * kl_per_dim.sum(), "tc": self.gamma * tc, "_tc": tc.detach()}

    def discriminator_loss(self, z: torch.Tensor) -> torch.Tensor:
        p_real = torch.softmax(self.discriminator(z), 1).clamp(1e-6, 1 - 1e-6)
        p_shuf = torch.softmax(self.discriminator(shuffle_dims(z)), 1).clamp(1e-6, 1 - 1e-6)
        return -(0.5 * p_real[:, 0].log().mean() + 0.5 * p_shuf[:, 1].log().mean())

    def auxiliary_step(self, batch, step: int) -> dict[str, float]:
        if self._codes is not None and self._codes[0] == step:
            z = self._codes[1]
        else:
            with torch.no_grad():
                mu, logvar = self.encode(batch_x(batch))
                z = self.sample(mu, logvar)
        self.disc_optimizer.zero_grad(set_to_none=True)
        loss = self.discriminator_loss(z)
        loss.backward()
        all_reduce_grads_(self.discriminator.parameters())  # under DDP: one discriminator for all ranks
        self.disc_optimizer.step()
        self._codes = None
        return {"disc_loss": float(loss.detach())}

    def auxiliary_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"discriminator": self.disc_optimizer}


def FactorVAE(encoder, decoder, gamma: float = 10.0, **kw) -> BfVAE:
    """FactorVAE (Kim & Mnih 2018): BfVAE with beta = 1."""
    return BfVAE(encoder, decoder, beta=1.0, gamma=gamma, **kw)



MODELS = {
    "vanilla": VAE,
    "beta": BetaVAE,
    "betatcvae": BetaTCVAE,
    "factorvae": FactorVAE,
    "dipvae1": lambda enc, dec, **kw: DIPVAE(enc, dec, kind="i", **kw),
    "dipvae2": lambda enc, dec, **kw: DIPVAE(enc, dec, kind="ii", **kw),
    "annealed": AnnealedVAE,
    "cascade": CascadeVAE,
    "bfvae": BfVAE,
}


def make_objective(name: str, encoder: nn.Module, decoder: nn.Module, **hparams) -> VAE:
    """Build objective ``name`` (a key of ``MODELS``) over the given encoder/decoder."""
    if name not in MODELS:
        raise ValueError(f"model={name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](encoder, decoder, **hparams)
