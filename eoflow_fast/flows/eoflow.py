"""Entropy-ordered flow (EOFlow): objective, stochastic Jacobian estimator, explained entropy,
core/detail compression and denoising (spec: shared/specs/eoflow.md).

Notation (spec §1.1): encoder f: x -> z (the flow, forward direction), decoder g = f^{-1}, prior
N(0, I_D), decoder Jacobian J(z) with columns J_i = dg/dz_i. Constants (1/2)log(2 pi) are dropped
in the loss (as in the reference code) and added back for bits/dim.

Per sample (spec §1.2):  NLL = sum_i z_i^2/2 - log|det df/dx| = sum_i z_i^2/2 + log|det J|
                         NLL_i = z_i^2/2 + (1/2) log ||J_i||^2
Loss (spec §1.3, lambda_i = 0):  L = [(1-lam) sum_b NLL_b + lam sum_b sum_i NLL_{b,i}] / (B D)

Stochastic estimator of sum_b sum_i NLL_{b,i} (spec §3.2): each sample b gets one latent index k_b
(B >= D: a permutation of all D dims plus B-D uniform draws, shuffled over the batch; B < D: B
distinct dims), one forward-mode JVP through the decoder at the encoded point (z not detached; the
decoder's primal activations are the encoder's, reused through ``InvertibleModule.linearize``)
gives u_b = J(z_b) e_{k_b}, l_b = (1/2) log ||u_b||^2, M_k = #{b: k_b = k}, m_b = B / M_{k_b}, and

    estimate = (D/|M|) [ sum_b sum_{i in M} z_{b,i}^2/2 + sum_b m_b l_b ],   M = set of sampled dims,

unbiased for the exact sum (|M| = D when B >= D). [INFERRED] dims are drawn uniformly (the
count-reweighting DimensionSampler of B-EOFlow changes only variance when B >= D).

Explained entropy (spec §2.1): H_i = h(N(0,1)) + E_z[log ||J_i(z)||], h(N(0,1)) = (1 + log 2 pi)/2,
expectation over encoded noise-augmented data z = f(x + sigma eps) (B-EOFlow's choice). During
training a running estimate is kept for the sampled dims (exponential moving average with
``entropy_momentum`` [INFERRED], first visit sets it); ``explained_entropy`` computes it exactly by
streaming one-hot tangents in chunks of dims and keeping only column norms. Core dims are
``latent_order[:C]`` with latent_order = argsort(H, descending) (spec §2.2, post-hoc sorting).
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from eoflow_fast import progress
from eoflow_fast.digest import state_digest

from .base import InvertibleModule
from .conditioning import cond_channels, conditioned

GAUSS_ENTROPY = 0.5 * (1.0 + math.log(2 * math.pi))
MEMORY_MODES = ("stored", "reversible", "boundaries")


def noise_entropy_floor(sigma: float) -> float:
    """h(N(0, sigma^2)) = 0.5 log(2 pi e sigma^2): the entropy that i.i.d. input noise of std sigma
    puts in every direction; a dimension whose explained entropy lies below it carries no signal."""
    if not sigma > 0:
        raise ValueError(f"noise_entropy_floor: sigma must be > 0, got {sigma}")
    return 0.5 * math.log(2 * math.pi * math.e * sigma ** 2)


def core_above_floor(entropy: torch.Tensor, sigma: float) -> int:
    """Core size C = #{i : H_i > 0.5 log(2 pi e sigma^2)} for per-dimension entropies H (D,), at least 1."""
    return max(1, int((entropy.double() > noise_entropy_floor(sigma)).sum()))


def sample_dims(B: int, D: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Stratified one-dim-per-sample assignment k (B,) (spec §3.2 step 2)."""
    if B >= D:
        k = torch.cat([torch.randperm(D, generator=generator), torch.randint(0, D, (B - D,), generator=generator)])
        k = k[torch.randperm(B, generator=generator)]
    else:
        k = torch.randperm(D, generator=generator)[:B]
    return k.to(device)


def stochastic_manifold_nll(z: torch.Tensor, log_norm: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Unbiased estimate of sum_b sum_i NLL_{b,i} from one column per sample (module docstring).

    z (B, D) latents, log_norm (B,) = l_b = (1/2) log ||J(z_b) e_{k_b}||^2, k (B,) sampled dims.
    """
    B, D = z.shape
    counts = torch.bincount(k, minlength=D)
    sampled = counts > 0
    n_sampled = int(sampled.sum())
    weights = B / counts[k].to(z.dtype)  # m_b
    quad = 0.5 * (z[:, sampled] ** 2).sum()
    return (D / n_sampled) * (quad + (weights * log_norm).sum())


class EOFlow(nn.Module):
    """Entropy-ordered flow around an invertible ``flow`` mapping inputs to flat z (B, D).

    ``input_shape``: one data item's shape, e.g. (1, 8, 8); ``flat_input``: the flow takes (B, D)
    (MLP flows) instead of (B, *input_shape) (multiscale flows). ``lam``: weight of the manifold
    NLL (lam = 1 is Maximum Manifold Likelihood, spec §1.4); ``sigma``: training noise (spec §1.6);
    ``quant_bins``: data are multiples of 1/quant_bins in [0, 1] (256 for 8-bit images, 16 for
    sklearn digits); uniform dequantisation noise (u - 1/2)/quant_bins is added when ``dequantize``.
    ``memory``: how a training step keeps what its backward needs (``flows.reversible``): "stored"
    (autograd keeps every block's activations), "reversible" (block inputs rebuilt by the exact
    inverse, near-constant memory; ``reversible_tol`` / ``reversible_check_every`` (None: every
    ``flows.reversible.CHECK_EVERY`` steps) set the per-unit round-trip fallback,
    ``reversible_state.stats`` has the last step's drift) or "boundaries"
    (block boundaries kept, no inversion).
    """

    def __init__(self, flow: InvertibleModule, input_shape, *, flat_input: bool, lam: float = 1.0,
                 sigma: float = 0.05, quant_bins: int = 256, dequantize: bool = True,
                 entropy_momentum: float = 0.9, memory: str = "stored", reversible_tol: float | None = None,
                 reversible_check_every: int | None = None):
        super().__init__()
        if memory not in MEMORY_MODES:
            raise ValueError(f"EOFlow: memory must be one of {MEMORY_MODES}, got {memory!r}")
        self.memory = memory
        self.reversible_state = None
        if memory == "reversible":
            from .reversible import ReversibleState
            self.reversible_state = ReversibleState(reversible_tol, *(() if reversible_check_every is None
                                                                     else (reversible_check_every,)))
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"EOFlow: lam must be in [0, 1], got {lam}")
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"EOFlow: sigma must be a finite number >= 0, got {sigma}")
        if isinstance(quant_bins, bool) or not isinstance(quant_bins, numbers.Integral) or quant_bins < 1:
            raise ValueError(f"EOFlow: quant_bins must be an integer >= 1, got {quant_bins!r}")
        if not 0.0 <= entropy_momentum < 1.0:
            raise ValueError(f"EOFlow: entropy_momentum must be in [0, 1), got {entropy_momentum}")
        self.flow = flow
        self.input_shape = tuple(input_shape)
        self.dim = math.prod(self.input_shape)
        self.flat_input, self.lam, self.sigma = flat_input, lam, sigma
        self.quant_bins, self.dequantize, self.entropy_momentum = quant_bins, dequantize, entropy_momentum
        self.register_buffer("entropy_running", torch.zeros(self.dim))
        self.register_buffer("entropy_visits", torch.zeros(self.dim, dtype=torch.long))
        self.register_buffer("latent_order", torch.arange(self.dim))
        self.order_entropy: torch.Tensor | None = None  # the entropies behind latent_order (set_order)

    @classmethod
    def from_module(cls, model: nn.Module, input_shape, *, flat_input: bool | None = None,
                    condition: list | None = None, **kwargs) -> "EOFlow":
        """EOFlow around any invertible model: a FrEIA ``SequenceINN``/``GraphINN``, a normflows
        ``NormalizingFlow`` (or list of flows), or this project's flows (``compat.foreign.ForeignFlow``).

        ``input_shape``: one item's shape; ``flat_input`` (default: ``len(input_shape) == 1``) whether the
        model takes (B, D) instead of (B, *input_shape); ``condition``: FrEIA conditions passed to every
        call; ``kwargs`` go to ``EOFlow`` (lam, sigma, quant_bins, ...). Blocks of ``eoflow_fast.compat``
        use the fused JVP with activation reuse; any other block's decoder JVP runs through
        ``torch.func.jvp`` (one notice per block type).
        """
        from ..compat.foreign import ForeignFlow
        flow = model if isinstance(model, InvertibleModule) else ForeignFlow(model, condition)
        input_shape = tuple(input_shape)
        return cls(flow, input_shape, flat_input=len(input_shape) == 1 if flat_input is None else flat_input,
                   **kwargs)

    # ---------------------------------------------------------------- flow passes
    def _to_flow(self, x):
        """x (B, *input_shape) or flat (B, D), as the flow takes it; any other shape is a ValueError."""
        if x.dim() < 1 or tuple(x.shape[1:]) not in (self.input_shape, (self.dim,)):
            flat = f" or (B, {self.dim})" if len(self.input_shape) > 1 else ""
            raise ValueError(f"EOFlow: x must have shape (B, {', '.join(map(str, self.input_shape))}){flat}, "
                             f"got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1) if self.flat_input else x.reshape(x.shape[0], *self.input_shape)

    def encode(self, x: torch.Tensor):
        """x (B, *input_shape) -> (z (B, D), log|det df/dx| (B,))."""
        z, log_det = self.flow(self._to_flow(x))
        return z.reshape(x.shape[0], -1), log_det

    def encode_linearized(self, x: torch.Tensor):
        """(z (B, D), log|det df/dx| (B,), decoder_jvp_at_z) with decoder_jvp_at_z(dz (m*B, D)) =
        J(z) dz flattened to (m*B, D), row j*B + b at z_b, reusing the encoder's activations (spec §6.2)."""
        z, log_det, inverse_jvp = self.flow.linearize(self._to_flow(x))
        z_flat = z.reshape(x.shape[0], -1)

        def decoder_jvp_at_z(dz):
            return inverse_jvp(dz.reshape(dz.shape[0], *z.shape[1:])).reshape(dz.shape[0], -1)
        return z_flat, log_det, decoder_jvp_at_z

    def decode_full(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D) -> x (B, *input_shape) = g(z)."""
        x, _ = self.flow(z, rev=True)
        return x.reshape(z.shape[0], *self.input_shape)

    def decoder_jvp(self, z: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
        """J(z) dz, flattened to (B, D)."""
        _, _, dx = self.flow.jvp(z, dz, rev=True)
        return dx.reshape(z.shape[0], -1)

    def augment(self, x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        """x + (u - 1/2)/quant_bins (if dequantize) + sigma * eps (torch's global RNG, which the engine
        checkpoints and forks around evaluation)."""
        sigma = self.sigma if sigma is None else sigma
        out = x
        if self.dequantize:
            out = out + (torch.rand_like(x) - 0.5) / self.quant_bins
        if sigma > 0:
            out = out + sigma * torch.randn_like(x)
        return out

    # ---------------------------------------------------------------- conditions
    @property
    def cond_channels(self) -> int:
        """Width k of the condition the flow's couplings take (0: unconditional)."""
        return cond_channels(self.flow)

    def condition_tensor(self, c: torch.Tensor) -> torch.Tensor:
        """Integer class labels (B,) -> one-hot (B, k); a float (B, k) condition passes through."""
        k = self.cond_channels
        if not c.is_floating_point():
            if c.dim() != 1 or (c.numel() and (int(c.min()) < 0 or int(c.max()) >= k)):
                raise ValueError(f"EOFlow: integer labels must have shape (B,) with values in [0, {k}), got "
                                 f"shape {tuple(c.shape)}" + (f", range [{int(c.min())}, {int(c.max())}]"
                                                              if c.numel() else ""))
            return torch.nn.functional.one_hot(c, k).to(self.entropy_running.dtype)
        if c.dim() != 2 or c.shape[1] != k:
            raise ValueError(f"EOFlow: condition must have shape (B, {k}), got {tuple(c.shape)}")
        return c

    def conditioned(self, c: torch.Tensor | None):
        """Context for calls on a class-conditional EOFlow: ``with model.conditioned(labels): model.compress(x, C)``."""
        return conditioned(self.flow, None if c is None else self.condition_tensor(c))

    def _rows_conditioned(self, c: torch.Tensor | None, start: int, size: int):
        """``conditioned`` on rows [start, start + size) of the per-sample condition c (None: no condition)."""
        return self.conditioned(None if c is None else c[start:start + size])

    def condition_on_items(self, items: list) -> None:
        """For a class-conditional flow, condition every later call on the labels of ``items`` (dataset
        items ``(x, label)``; one item's label broadcasts over any number of rows)."""
        if self.cond_channels:
            from .conditioning import set_condition
            labels = torch.as_tensor([int(it[1]) for it in items], device=self.entropy_running.device)
            set_condition(self.flow, self.condition_tensor(labels))

    # ---------------------------------------------------------------- training
    def loss_terms(self, batch, step: int) -> dict[str, torch.Tensor]:
        """Engine contract: ``objective`` = L above (optimized), diagnostics ``_nll_per_dim`` =
        mean NLL_b / D and ``_mtc_per_dim`` = (estimate - sum_b NLL_b) / (B D); updates the running H.
        A conditional flow takes its condition from the batch: ``(x, labels)`` or ``(x, c)``."""
        if self.cond_channels:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError("EOFlow: the flow is conditional; batches must be (x, condition)")
            with self.conditioned(batch[1].to(batch[0].device)):
                return self._loss_terms(batch[0])
        return self._loss_terms(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def _loss_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        B, D = x.shape[0], self.dim
        x_aug = self.augment(x)
        if self.memory != "stored":
            from .reversible import encode_with_tangent
            k = None if self.lam == 0.0 else sample_dims(B, D, device=x.device)
            tangent = None if k is None else self._one_hot_rows(k, x_aug)
            z, log_det, u = encode_with_tangent(self.flow, self._to_flow(x_aug), tangent, self.memory,
                                                self.reversible_state)
        else:
            z, log_det, decoder_jvp = self.encode_linearized(x_aug)
        nll = 0.5 * (z ** 2).sum(1) - log_det  # (B,)
        terms = {"_nll_per_dim": nll.mean().detach() / D}
        if self.lam == 0.0:
            terms["objective"] = nll.sum() / (B * D)
            return terms
        if self.memory == "stored":
            k = sample_dims(B, D, device=z.device)
            u = decoder_jvp(self._one_hot_rows(k, z))
        log_norm = 0.5 * torch.log((u ** 2).sum(1))  # l_b
        manifold = stochastic_manifold_nll(z, log_norm, k)
        terms["objective"] = ((1 - self.lam) * nll.sum() + self.lam * manifold) / (B * D)
        terms["_mtc_per_dim"] = (manifold - nll.sum()).detach() / (B * D)
        self._update_running_entropy(log_norm.detach(), k)
        return terms

    def _one_hot_rows(self, k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(B, D) tangents e_{k_b}, one per sample, in like's dtype and device."""
        tangent = like.new_zeros(k.shape[0], self.dim)
        tangent[torch.arange(k.shape[0], device=like.device), k] = 1.0
        return tangent

    @torch.no_grad()
    def _update_running_entropy(self, log_norm: torch.Tensor, k: torch.Tensor) -> None:
        D = self.dim
        counts = torch.bincount(k, minlength=D)
        sums = torch.zeros(D, dtype=log_norm.dtype, device=log_norm.device).index_add_(0, k, log_norm)
        seen = counts > 0
        new = GAUSS_ENTROPY + sums[seen] / counts[seen]
        old = self.entropy_running[seen]
        first = self.entropy_visits[seen] == 0
        m = self.entropy_momentum
        self.entropy_running[seen] = torch.where(first, new.to(old), m * old + (1 - m) * new.to(old))
        self.entropy_visits[seen] += 1

    # ---------------------------------------------------------------- explained entropy
    @torch.no_grad()
    def explained_entropy(self, x: torch.Tensor, batch_size: int = 256, chunk: int = 64,
                          sigma: float | None = None, c: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Exact H_i over the samples x (N, *input_shape), each encoded once after augmentation.

        For every batch of points (encoded once, activations kept) and every chunk of ``chunk`` dims,
        builds the (chunk*n, D) one-hot tangents, propagates them through the decoder tangent pass
        and keeps only the column norms, so memory is O(batch_size * chunk * D); progress is one item
        per (batch, chunk) pass (``eoflow_fast.progress``). Returns ``entropy``
        H (D,), ``total_entropy`` H = D h + E log|det J|, ``mtc`` = sum_i H_i - H, ``order`` =
        argsort(H, descending). ``c``: the condition of each sample (N,) or (N, k), conditional flows only.
        """
        _check_items("EOFlow.explained_entropy", x)
        D = self.dim
        sum_log_norm = torch.zeros(D, dtype=torch.float64)
        sum_log_det = 0.0
        n = 0
        passes = [(start, c0) for start in range(0, x.shape[0], batch_size) for c0 in range(0, D, chunk)]
        for start, c0 in progress.bar(passes, "explained entropy", unit="pass"):
            if c0 == 0:  # a new batch of points: encode it once, keep the activations
                xb = x[start:start + batch_size]
                with self._rows_conditioned(c, start, batch_size):
                    z, log_det, decoder_jvp = self.encode_linearized(self.augment(xb, sigma))
                sum_log_det += float(log_det.double().sum())
                n += xb.shape[0]
            dims = torch.arange(c0, min(c0 + chunk, D), device=z.device)
            tangent = z.new_zeros(len(dims) * z.shape[0], D)  # row j*n + b: e_{dims[j]} at z_b
            tangent[torch.arange(tangent.shape[0], device=z.device), dims.repeat_interleave(z.shape[0])] = 1.0
            u = decoder_jvp(tangent)
            log_norm = 0.5 * torch.log((u.double() ** 2).sum(1)).view(len(dims), z.shape[0])
            sum_log_norm[c0:c0 + len(dims)] += log_norm.sum(1).cpu()
        entropy = GAUSS_ENTROPY + sum_log_norm / n
        total = D * GAUSS_ENTROPY - sum_log_det / n  # log|det J| = -log|det df/dx|
        return {"entropy": entropy, "total_entropy": torch.tensor(total, dtype=torch.float64),
                "mtc": entropy.sum() - total, "order": torch.argsort(entropy, descending=True)}

    def set_order(self, entropy: torch.Tensor) -> None:
        """latent_order <- argsort(entropy, descending); core dims are latent_order[:C]. The entropies
        are kept (``order_entropy``, not saved in checkpoints) for ``core_above_noise``."""
        if entropy.shape != (self.dim,):
            raise ValueError(f"EOFlow.set_order: entropy must have shape ({self.dim},), got {tuple(entropy.shape)}")
        if bool(torch.isnan(entropy).any()):
            raise ValueError(f"EOFlow.set_order: entropy holds NaN at dims "
                             f"{torch.nonzero(torch.isnan(entropy)).flatten()[:8].tolist()}; no order follows from it")
        self.latent_order.copy_(torch.argsort(entropy, descending=True).to(self.latent_order))
        self.order_entropy = entropy.detach().cpu().double()

    def weights_digest(self) -> str:
        """SHA-256 of the flow's parameters and buffers (names, dtypes, shapes, bytes): names the weights
        that a derived file (``entropy.json``) was computed with, whatever checkpoint file held them."""
        return state_digest(self.flow.state_dict())

    def running_entropy(self) -> torch.Tensor:
        """The training-time estimate of H (D,), float64 on the CPU, with -inf for the dims training
        never sampled: they have no estimate (their buffer entry is 0, which would rank them above
        every sampled dim of negative entropy and count them as core)."""
        return torch.where(self.entropy_visits.cpu() > 0, self.entropy_running.detach().cpu().double(), -math.inf)

    def core_above_noise(self, sigma: float) -> int:
        """``core_above_floor`` of the entropies behind ``latent_order`` (``set_order``; the running
        training estimate when it was never called): the dims that input noise sigma does not drown."""
        entropy = self.running_entropy() if self.order_entropy is None else self.order_entropy
        return core_above_floor(entropy, sigma)

    # ---------------------------------------------------------------- core / detail
    def _check_core(self, C: int) -> None:
        if isinstance(C, bool) or not isinstance(C, numbers.Integral) or not 1 <= C <= self.dim:
            raise ValueError(f"EOFlow: core size C must be an integer in [1, {self.dim}], got {C!r}")

    def encode_core(self, x: torch.Tensor, C: int) -> torch.Tensor:
        """The C highest-entropy latents, (B, C), in order of decreasing H_i."""
        self._check_core(C)
        z, _ = self.encode(x)
        return z[:, self.latent_order[:C]]

    def decode(self, z_core: torch.Tensor, detail: str = "zero", generator: torch.Generator | None = None):
        """Place z_core (B, C) at latent_order[:C], fill the detail with 0 (prior mode, spec §5.4)
        or N(0, 1) samples (``detail="sample"``: detail resampling), decode to (B, *input_shape)."""
        if detail not in ("zero", "sample"):
            raise ValueError(f"EOFlow.decode: detail must be 'zero' or 'sample', got {detail!r}")
        B, C = z_core.shape
        self._check_core(C)
        if detail == "zero":
            z = z_core.new_zeros(B, self.dim)
        else:
            z = torch.randn(B, self.dim, generator=generator).to(z_core)
        z[:, self.latent_order[:C]] = z_core
        return self.decode_full(z)

    def compress(self, x: torch.Tensor, C: int) -> torch.Tensor:
        """g([z_core, 0]): reconstruction from the top-C dims (compression ratio D/C)."""
        return self.decode(self.encode_core(x, C))

    def denoise(self, x_noisy: torch.Tensor, C: int) -> torch.Tensor:
        """Encode, keep the top C dims, zero the detail, decode (spec §5.3)."""
        return self.compress(x_noisy, C)

    # ---------------------------------------------------------------- metrics
    @torch.no_grad()
    def bits_per_dim(self, x: torch.Tensor, sigma: float = 0.0, batch_size: int = 512,
                     c: torch.Tensor | None = None) -> float:
        """(NLL/D + log quant_bins) / ln 2 with NLL = -log p(x + (u - 1/2)/quant_bins + sigma eps)
        including the (D/2) log(2 pi) constant (spec §5.3); ``c`` as in ``explained_entropy``. A
        non-finite NLL of any item is a :class:`NonFiniteOutputError` naming the count."""
        _check_items("EOFlow.bits_per_dim", x)
        nll = []
        for start in range(0, x.shape[0], batch_size):
            with self._rows_conditioned(c, start, batch_size):
                z, log_det = self.encode(self.augment(x[start:start + batch_size], sigma))
            nll.append(0.5 * (z.double() ** 2).sum(1) - log_det.double() + 0.5 * self.dim * math.log(2 * math.pi))
        nll = torch.cat(nll)
        _check_items("EOFlow.bits_per_dim", nll, "the NLL", NonFiniteOutputError)
        return (float(nll.sum()) / (x.shape[0] * self.dim) + math.log(self.quant_bins)) / math.log(2)


class NonFiniteOutputError(ValueError):
    """A model output that a reported mean is taken over holds NaN or infinite values (a diverged
    model, or damaged weights): the mean would be a bare NaN read as a number, so none is reported."""


def _check_items(what: str, x: torch.Tensor, name: str = "x", error: type = ValueError) -> None:
    """``x`` (items first) holds at least one item and only finite values (a mean over items is
    reported); else ``error`` naming ``name``, the count of bad items and the first."""
    if x.shape[0] == 0:
        raise ValueError(f"{what}: {name} has no items; the result is a mean over items")
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        cause = ("; the model's output is not finite (diverged weights, or a damaged checkpoint), so no mean "
                 "is reported" if error is NonFiniteOutputError else "; the result would be NaN")
        raise error(f"{what}: {name} holds NaN or infinite values in {int(bad.sum())} of {x.shape[0]} item(s), the "
                    f"first at index {int(torch.nonzero(bad)[0])}{cause}")


def mean_psnr(x_hat: torch.Tensor, x: torch.Tensor, what: str = "PSNR") -> float:
    """Mean over items of :func:`psnr` (dB, +inf when every item is exact); a reconstruction
    ``x_hat`` with NaN/inf in any item is a :class:`NonFiniteOutputError` naming the count, never
    a NaN (or -inf) mean."""
    _check_items(what, x_hat, "the reconstruction", NonFiniteOutputError)
    return float(psnr(x_hat, x).mean())


def psnr(x_hat: torch.Tensor, x: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Per-item PSNR in dB, 10 log10(peak^2 / mean((x_hat - x)^2)) over non-batch dims, shape (B,);
    +inf for an exact reconstruction (no cap: tables print it as "exact", JSON as "inf"). The error
    is summed in float64, so a finite float32 reconstruction far off (|error| > 1.8e19) is not inf."""
    mse = ((x_hat.double() - x.double()) ** 2).reshape(x.shape[0], -1).mean(1)
    return 10 * torch.log10(peak ** 2 / mse)
