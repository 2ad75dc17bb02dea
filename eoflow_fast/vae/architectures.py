"""Encoders and decoders of DEFT's Table 1 (64 x 64 images) and MLPs for tabular data.

Every encoder maps x to ``(mu, logvar)``, each of shape (B, latent_dim), the parameters of the
diagonal Gaussian q(z|x) = N(mu, diag exp(logvar)). Every decoder maps z (B, latent_dim) to the
unnormalised output (logits for images, means for tabular data) of the shape of x.

All layers use ReLU ([PAPER] DEFT §5.1). ``Conv2d(k=4, s=2, p=1)`` halves the side: 64 -> 32 -> 16
-> 8 -> 4; ``ConvTranspose2d(k=4, s=2, p=1)`` doubles it back.

Lite encoder (one per DEFT group, K latents):   conv 8, 8, 16, 16 -> FC 64 -> FC 2K
Standard encoder (baselines):                   conv 32, 32, 64, 64 -> FC 256 -> FC 2*latent_dim
Decoder (shared by all methods):                FC 256 -> FC 4*4*64 -> upconv 64, 32, 32, c
"""
from __future__ import annotations

import torch
from torch import nn

IMAGE_SIDE = 64


def _check_image(x: torch.Tensor, channels: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1:] != (channels, IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(
            f"{who}: x has shape {tuple(x.shape)}, expected (B, {channels}, {IMAGE_SIDE}, {IMAGE_SIDE})"
        )


class ConvEncoder(nn.Module):
    """Four stride-2 4x4 convolutions, one hidden FC layer, then FC to 2*latent_dim.

    ``widths`` = (c1, c2, c3, c4, fc): (8, 8, 16, 16, 64) is the lite encoder and
    (32, 32, 64, 64, 256) the standard one. Returns (mu, logvar), each (B, latent_dim), split from
    the last layer's output as [mu | logvar].
    """

    def __init__(self, latent_dim: int, channels: int = 1, widths=(32, 32, 64, 64, 256)):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"ConvEncoder: latent_dim must be >= 1, got {latent_dim}")
        if channels not in (1, 3):
            raise ValueError(f"ConvEncoder: channels must be 1 or 3, got {channels}")
        c1, c2, c3, c4, fc = widths
        self.channels, self.latent_dim = channels, latent_dim
        self.features = nn.Sequential(
            nn.Conv2d(channels, c1, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(c2, c3, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(c3, c4, 4, 2, 1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c4 * 4 * 4, fc), nn.ReLU(),
        )
        self.head = nn.Linear(fc, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_image(x, self.channels, type(self).__name__)
        mu, logvar = self.head(self.features(x)).chunk(2, dim=1)
        return mu, logvar


def lite_encoder(latent_dim: int, channels: int = 1) -> ConvEncoder:
    """DEFT's lite group encoder (Table 1): conv 8, 8, 16, 16 -> FC 64 -> FC 2K."""
    return ConvEncoder(latent_dim, channels, widths=(8, 8, 16, 16, 64))


def standard_encoder(latent_dim: int = 10, channels: int = 1) -> ConvEncoder:
    """The baselines' standard encoder (Table 1): conv 32, 32, 64, 64 -> FC 256 -> FC 2*latent_dim."""
    return ConvEncoder(latent_dim, channels, widths=(32, 32, 64, 64, 256))


class DeconvDecoder(nn.Module):
    """Table 1 decoder: FC 256 -> FC 1024 -> (64, 4, 4) -> upconv 64, 32, 32, c -> logits (B, c, 64, 64)."""

    def __init__(self, latent_dim: int, channels: int = 1):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"DeconvDecoder: channels must be 1 or 3, got {channels}")
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.ReLU(),
            nn.Linear(256, 4 * 4 * 64), nn.ReLU(),
            nn.Unflatten(1, (64, 4, 4)),
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, channels, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"DeconvDecoder: z has shape {tuple(z.shape)}, expected (B, {self.latent_dim})")
        return self.net(z)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Tabular encoder p -> hidden... -> 2d, returning (mu, logvar) each (B, d).

    Default hidden sizes (256, 128) are the spec's [INFERRED] proposal (vae_deft.md §A.3);
    ``hidden=()`` gives a linear encoder.
    """

    def __init__(self, input_dim: int, latent_dim: int, hidden=(256, 128)):
        super().__init__()
        self.input_dim, self.latent_dim = input_dim, latent_dim
        self.net = _mlp([input_dim, *hidden, 2 * latent_dim])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"MLPEncoder: x has shape {tuple(x.shape)}, expected (B, {self.input_dim})")
        mu, logvar = self.net(x).chunk(2, dim=1)
        return mu, logvar


class MLPDecoder(nn.Module):
    """Tabular decoder d -> hidden... -> p (means of p(x|z)); default hidden (128, 256) [INFERRED]."""

    def __init__(self, latent_dim: int, output_dim: int, hidden=(128, 256)):
        super().__init__()
        self.latent_dim, self.output_dim = latent_dim, output_dim
        self.net = _mlp([latent_dim, *hidden, output_dim])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"MLPDecoder: z has shape {tuple(z.shape)}, expected (B, {self.latent_dim})")
        return self.net(z)


class Discriminator(nn.Module):
    """FactorVAE discriminator (disentanglement_lib ``fc_discriminator``): 6 x [FC 1000, leaky ReLU
    (slope 0.2)], then FC 2. Input z (B, d); output logits (B, 2), class 0 = "drawn from q(z)",
    class 1 = "dimension-shuffled"."""

    def __init__(self, latent_dim: int, width: int = 1000, depth: int = 6):
        super().__init__()
        layers: list[nn.Module] = []
        size = latent_dim
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.LeakyReLU(0.2)]
            size = width
        layers.append(nn.Linear(size, 2))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def build_encoder_decoder(observation_shape: tuple, latent_dim: int, encoder: str = "standard"):
    """Pick the networks for an observation shape: (c, 64, 64) images -> ``encoder`` in
    {"standard", "lite"} + DeconvDecoder; (p,) tabular -> MLPEncoder + MLPDecoder (``encoder`` must
    be "mlp" or "standard", which means the default for the data)."""
    shape = tuple(observation_shape)
    if len(shape) == 3:
        if shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise ValueError(f"build_encoder_decoder: observation_shape {shape}, images must be (c, 64, 64)")
        if encoder not in ("standard", "lite"):
            raise ValueError(f"build_encoder_decoder: encoder={encoder!r} for images; use 'standard' or 'lite'")
        make = standard_encoder if encoder == "standard" else lite_encoder
        return make(latent_dim, shape[0]), DeconvDecoder(latent_dim, shape[0])
    if len(shape) == 1:
        if encoder not in ("standard", "mlp"):
            raise ValueError(f"build_encoder_decoder: encoder={encoder!r} for tabular data; use 'mlp'")
        return MLPEncoder(shape[0], latent_dim), MLPDecoder(latent_dim, shape[0])
    raise ValueError(f"build_encoder_decoder: observation_shape {shape} is neither (c, 64, 64) nor (p,)")
