"""The beta-VAE optimum on linear-Gaussian data: the per-latent KL an ideal encoder would keep.

Data x ~ N(0, C) (p features; e.g. a factor-analysis table, ``C = L L^T + diag(psi)``). Any
Gaussian encoder, after whitening, is the channel ``y = B^T C^{-1/2} x + eps``, eps ~ N(0, I_d),
B (p, d); its aggregate posterior can be rescaled to N(0, I) (which minimises the KL for the
information it carries), so

    E_x KL(q(z|x) || N(0, I)) = I(x; z) = 1/2 log det(I + B^T B) = sum_k 1/2 log(1 + s_k^2),

s_k the singular values of B, one per latent in the diagonal-posterior basis (the only rotation
in which both the posterior and the aggregate covariances are diagonal when the s_k differ). The
best decoder then predicts ``E[x | z]`` and leaves the residual covariance

    R(B) = Cov(x | z) = C^{1/2} (I + B B^T)^{-1} C^{1/2}.

Per-sample objective, constants dropped:

    learned (per-feature variance at its maximum-likelihood value, ``--recon gaussian_learned``):
        F(B) = 1/2 sum_j log R_jj + beta/2 log det(I + B^T B)
    unit (fixed unit variance, ``--recon gaussian``):
        F(B) = 1/2 tr R + beta/2 log det(I + B^T B)

Closed forms (used by the tests):
- unit decoder: KL_k = 1/2 log(lambda_k / beta) for the eigenvalues lambda_k of C above beta, 0
  otherwise (the linear beta-VAE is probabilistic PCA with the noise variance replaced by beta).
- learned decoder, one block of n features with equal communality h (C = (1-h) I + h 1 1^T), one
  latent on the factor direction: each feature's squared correlation with E[f | x] is
  r = h / (1 - P) = h + (1 - h) / n, P = 1 / (1 + n h / (1 - h)) the factor's posterior variance
  given x, and

      KL = 1/2 log( r (n - beta) / (beta (1 - r)) )      if n r > beta, else 0.

  Derivation: with z carrying t = 1 - e^{-2 KL} of the variance of E[f|x], each feature's residual
  is 1 - r t; dF/dKL = beta - (1 - t) n r / (1 - r t) = 0 gives t = (n r - beta) / (r (n - beta)).
  A latent switches on iff beta < sum_j r_j (about the block's summed communality); one that would
  encode a single feature's own noise (r = 1 for one feature) stays off iff beta > 1.

This is an optimum over linear-Gaussian encoders and decoders; for Gaussian data it is the
yardstick a trained nonlinear VAE is compared with (reproduce/bfvae_fa.py reports both).
"""
from __future__ import annotations

import numpy as np
import torch

DECODERS = ("learned", "unit")


def _objective(b: torch.Tensor, c_half: torch.Tensor, beta: float, decoder: str) -> torch.Tensor:
    p, d = b.shape
    eye_p = torch.eye(p, dtype=b.dtype)
    residual = c_half @ torch.linalg.solve(eye_p + b @ b.T, c_half)
    rate = 0.5 * torch.logdet(torch.eye(d, dtype=b.dtype) + b.T @ b)
    recon = 0.5 * torch.log(torch.diagonal(residual)).sum() if decoder == "learned" else 0.5 * torch.trace(residual)
    return recon + beta * rate


def optimal_kl(cov: np.ndarray, beta: float, latent_dim: int, decoder: str = "learned", restarts: int = 3,
               seed: int = 0, max_iter: int = 500) -> dict:
    """The beta-VAE optimum over linear-Gaussian encoders/decoders for x ~ N(0, ``cov``).

    ``cov`` (p, p) SPD; ``latent_dim`` d >= 1; ``decoder`` "learned" | "unit" (module docstring).
    Minimises F(B) over B (p, d) with L-BFGS from ``restarts`` random starts (``seed``) and keeps
    the lowest. Returns ``{"kl": (d,) per-latent KL in nats, descending; "objective": F at the
    optimum; "residual_var": (p,) diag of Cov(x | z)}``.
    """
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"optimal_kl: cov has shape {cov.shape}, expected (p, p)")
    if decoder not in DECODERS:
        raise ValueError(f"optimal_kl: decoder={decoder!r}, expected one of {DECODERS}")
    if latent_dim < 1:
        raise ValueError(f"optimal_kl: latent_dim={latent_dim}, expected >= 1")
    if decoder == "learned" and beta <= 1.0:
        raise ValueError(f"optimal_kl: beta={beta}; with a learned decoder variance the optimum is unbounded for beta <= 1")
    evals, evecs = np.linalg.eigh(cov)
    if evals.min() <= 0:
        raise ValueError("optimal_kl: cov is not positive definite")
    c_half = torch.as_tensor(evecs @ np.diag(np.sqrt(evals)) @ evecs.T)
    gen = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(restarts):
        b = (2.0 * torch.randn(cov.shape[0], latent_dim, generator=gen, dtype=torch.float64)).requires_grad_()
        opt = torch.optim.LBFGS([b], max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-14,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = _objective(b, c_half, beta, decoder)
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            f = float(_objective(b, c_half, beta, decoder))
        if best is None or f < best[0]:
            best = (f, b.detach().clone())
    f, b = best
    s2 = torch.linalg.svdvals(b).pow(2).numpy()
    with torch.no_grad():
        residual = c_half @ torch.linalg.solve(torch.eye(cov.shape[0], dtype=b.dtype) + b @ b.T, c_half)
    return {"kl": np.sort(0.5 * np.log1p(s2))[::-1].copy(), "objective": f,
            "residual_var": torch.diagonal(residual).numpy().copy()}


def equal_block_kl(n: int, communality: float, beta: float) -> float:
    """Closed-form KL of the one latent on a block of ``n`` features with equal ``communality`` h
    under a learned decoder variance: 1/2 log(r (n - beta) / (beta (1 - r))), r = h + (1 - h) / n
    (each feature's squared correlation with E[f | x]); 0 when n r <= beta (module docstring)."""
    h = communality
    r = h + (1.0 - h) / n
    if n * r <= beta:
        return 0.0
    return 0.5 * float(np.log(r * (n - beta) / (beta * (1.0 - r))))
