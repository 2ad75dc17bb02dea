"""DEFT (Wu et al., arXiv 2102.03986): G lite encoders of K latents, trained stage by stage.

Stage j = min(t // stage_steps, G - 1) uses beta_j:  loss = recon + beta_j * sum_k KL_k.
Group i's encoder gives (mu_i, logvar_i) (B, K); groups i > j output mu = 0, logvar = 0 (the
decoder sees N(0, 1) noise there and their KL is 0; authors' code v2, ``FracEncoder``). The decoder
takes the concatenation (B, G K).

Backward scaling (gamma = 0.1 by default):
- ``gamma_mode="lr"`` (Algorithm 1 of the paper, [INFERRED] recommended reading in vae_deft.md
  §B.2): one optimizer parameter group per encoder plus one for the decoder; at each step
  ``on_step_start`` sets lr_i = lr for i == j and gamma * lr for i != j, decoder at lr.
- ``gamma_mode="grad"`` (authors' code v2): every group trains at lr and the gradients of
  (mu_i, logvar_i) for i < j are multiplied by gamma.
"""
from __future__ import annotations

import torch
from torch import nn

from eoflow_fast.vae.architectures import DeconvDecoder, lite_encoder
from eoflow_fast.vae.objectives import VAE


def scale_grad(t: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the incoming gradient by ``factor``."""
    return t.detach() + factor * (t - t.detach())


class DEFT(VAE):
    ddp_find_unused_parameters = True  # encoders after the active stage get no gradient

    def __init__(self, groups: int, latents_per_group: int, betas, stage_steps: int, channels: int = 1,
                 gamma: float = 0.1, gamma_mode: str = "lr", reconstruction: str = "bernoulli",
                 kl_log_every: int = 100):
        if groups < 1 or latents_per_group < 1:
            raise ValueError(f"DEFT: groups ({groups}) and latents_per_group ({latents_per_group}) must be >= 1")
        if len(betas) != groups:
            raise ValueError(f"DEFT: betas has {len(betas)} values, expected one per group (groups={groups})")
        if stage_steps < 1:
            raise ValueError(f"DEFT: stage_steps must be >= 1, got {stage_steps}")
        if gamma_mode not in ("lr", "grad"):
            raise ValueError(f"DEFT: gamma_mode={gamma_mode!r}; expected 'lr' or 'grad'")
        encoders = nn.ModuleList(lite_encoder(latents_per_group, channels) for _ in range(groups))
        super().__init__(encoders, DeconvDecoder(groups * latents_per_group, channels),
                         reconstruction=reconstruction, kl_log_every=kl_log_every)
        self.groups, self.latents_per_group = groups, latents_per_group
        self.betas = [float(b) for b in betas]
        self.stage_steps, self.gamma, self.gamma_mode = int(stage_steps), float(gamma), gamma_mode
        self.register_buffer("stage", torch.zeros((), dtype=torch.long))

    def stage_at(self, step: int) -> int:
        return min(step // self.stage_steps, self.groups - 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (B, G K), at the current ``stage`` buffer."""
        stage = int(self.stage)
        mus, logvars = [], []
        for i, enc in enumerate(self.encoder):
            if i > stage:
                zeros = x.new_zeros(x.shape[0], self.latents_per_group)
                mus.append(zeros)
                logvars.append(zeros)
                continue
            mu, logvar = enc(x)
            if self.gamma_mode == "grad" and i < stage:
                mu, logvar = scale_grad(mu, self.gamma), scale_grad(logvar, self.gamma)
            mus.append(mu)
            logvars.append(logvar)
        return torch.cat(mus, 1), torch.cat(logvars, 1)

    def param_groups(self, lr: float) -> list[dict]:
        """One group per encoder ("encoder0".."encoder{G-1}") and one "decoder" group; each keeps its
        base learning rate in ``base_lr`` for ``on_step_start``."""
        groups = [{"params": list(enc.parameters()), "lr": lr, "base_lr": lr, "name": f"encoder{i}"}
                  for i, enc in enumerate(self.encoder)]
        groups.append({"params": list(self.decoder.parameters()), "lr": lr, "base_lr": lr, "name": "decoder"})
        return groups

    def group_lrs(self, stage: int, lr: float) -> list[float]:
        """Learning rates of [encoder0, ..., encoder{G-1}, decoder] in ``stage``."""
        if self.gamma_mode == "grad":
            return [lr] * (self.groups + 1)
        return [lr if i == stage else self.gamma * lr for i in range(self.groups)] + [lr]

    def on_step_start(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        stage = self.stage_at(step)
        self.stage.fill_(stage)
        groups = optimizer.param_groups
        if len(groups) != self.groups + 1:
            raise ValueError(f"DEFT.on_step_start: optimizer has {len(groups)} parameter groups, expected "
                             f"{self.groups + 1} from DEFT.param_groups")
        lrs = self.group_lrs(stage, groups[-1].get("base_lr", groups[-1]["lr"]))
        for group, lr in zip(groups, lrs):
            group["lr"] = lr

    def loss_terms(self, batch, step: int) -> dict[str, torch.Tensor]:
        self.stage.fill_(self.stage_at(step))
        return super().loss_terms(batch, step)

    def regularizer(self, mu, logvar, z, kl_per_dim, step):
        stage = int(self.stage)
        return {"kl": self.betas[stage] * kl_per_dim.sum(), "_stage": kl_per_dim.new_tensor(float(stage))}
