"""FA15 / FA24 / FA100: block-sparse factor-analysis tables with known loadings.

Generator [INFERRED, spec vae_deft.md A.9; the bfVAE paper's generator is unknown]:

    f ~ N(0, I_q),   e ~ N(0, I_p),   x = L f + sqrt(psi) * e          (x: (p,), L: (p, q))

(``factors="uniform"``: f_k ~ U(-sqrt 3, sqrt 3) instead, unit variance, same loadings and noise.
Gaussian factors are identified only up to a rotation among factors of equal strength: the KL,
the reconstruction and a TC penalty are all unchanged by rotating independent unit Gaussians, so a
VAE's latents may mix them; uniform factors make the rotation visible to the TC term.)

- Blocks: feature ``j`` loads on factor ``k(j) = j // (p / q)`` only (contiguous equal blocks).
- Raw loadings ``lambda_j = s_j * U(0.5, 1)``, random sign ``s_j``; isotropic raw noise variance
  ``psi0 = mean_j(lambda_j^2) * (1 - h) / h`` for a target mean communality ``h`` (0.99 by default:
  noise std about 10% of a feature's std).
- Features are standardised with their population std ``sigma_j = sqrt(lambda_j^2 + psi0)``:
  ``L[j, k(j)] = lambda_j / sigma_j``, ``psi_j = psi0 / sigma_j^2``, so ``Var x_j = 1`` exactly and
  ``Corr(x) = L L^T + diag(psi)``; feature communalities ``L[j, k]^2`` differ across features.
- Factor counts q [INFERRED]: FA15 -> 3 (blocks of 5), FA24 -> 4 (blocks of 6), FA100 -> 10.

Why h = 0.99 (was 0.7): a block of n features with communalities h_j carries at most
``I(x; f_k) = 1/2 log(1 + sum_j h_j / (1 - h_j))`` nats about its factor, an upper bound (at the
optimum) on the KL of the latent that encodes it. At h = 0.7 on FA15 (n = 5) that is 1.27 nats for
any model, far below the seed's KL ~ 8 for informative dimensions; h = 0.99 allows 3.1 nats, and
the beta-VAE optimum at beta 2 with a learned decoder variance keeps 2.6 (vae.linear_gaussian), and
a trained bfVAE ~2.4 (bench/results/repro_bfvae_fa_cpu.json). Pass ``communality`` for noisier
tables.

Everything is a function of ``seed``: the loadings use ``RandomState(seed)``, split tables use
``RandomState([seed, 1])`` (train, ``n_train`` rows) and ``RandomState([seed, 2])`` (test). The
ground-truth map for evaluation: ``loadings`` (p, q), ``support`` (p, q) bool, ``feature_to_factor``
(p,). Factors are continuous, so this is not a ``GroundTruthData`` (no factor_sizes).
"""
from __future__ import annotations

import numpy as np

from .tabular import TabularDataset

FA_CONFIGS = {"fa15": (15, 3), "fa24": (24, 4), "fa100": (100, 10)}


class FactorAnalysisData:
    """Block-sparse factor-analysis model with ``num_features`` (p) and ``num_factors`` (q)."""

    def __init__(self, num_features: int, num_factors: int, seed: int = 0, communality: float = 0.99,
                 n_train: int = 10_000, n_test: int = 2_000, factors: str = "gaussian"):
        if num_factors < 1 or num_features % num_factors:
            raise ValueError(f"FactorAnalysisData: num_factors={num_factors} must divide num_features={num_features}")
        if not 0.0 < communality < 1.0:
            raise ValueError(f"FactorAnalysisData: communality={communality}, expected a value in (0, 1)")
        if factors not in ("gaussian", "uniform"):
            raise ValueError(f"FactorAnalysisData: factors={factors!r}, expected 'gaussian' or 'uniform'")
        p, q = num_features, num_factors
        self.seed, self.n_train, self.n_test, self.factors = seed, n_train, n_test, factors
        rng = np.random.RandomState(seed)
        raw = rng.uniform(0.5, 1.0, size=p) * rng.choice([-1.0, 1.0], size=p)
        psi0 = np.mean(raw ** 2) * (1 - communality) / communality
        sigma = np.sqrt(raw ** 2 + psi0)
        self.feature_to_factor = np.arange(p) // (p // q)
        self.loadings = np.zeros((p, q))
        self.loadings[np.arange(p), self.feature_to_factor] = raw / sigma
        self.noise_var = psi0 / sigma ** 2
        self.support = self.loadings != 0
        self.factor_names = tuple(f"f{k}" for k in range(q))
        self.feature_names = tuple(f"x{j}" for j in range(p))
        self.observation_shape = (p,)

    @property
    def num_factors(self) -> int:
        return self.loadings.shape[1]

    @property
    def num_features(self) -> int:
        return self.loadings.shape[0]

    @property
    def correlation(self) -> np.ndarray:
        """Population covariance (= correlation) of x: ``L L^T + diag(psi)``, (p, p)."""
        return self.loadings @ self.loadings.T + np.diag(self.noise_var)

    def sample(self, num: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
        """``(factors float64 (num, q), observations float32 (num, p))``."""
        if self.factors == "gaussian":
            f = rng.standard_normal((num, self.num_factors))
        else:
            f = rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), (num, self.num_factors))
        e = rng.standard_normal((num, self.num_features))
        return f, (f @ self.loadings.T + np.sqrt(self.noise_var) * e).astype(np.float32)

    def table(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """The fixed ``split`` table ("train": n_train rows, "test": n_test rows) as (factors, x)."""
        sizes = {"train": (self.n_train, 1), "test": (self.n_test, 2)}
        if split not in sizes:
            raise ValueError(f"FactorAnalysisData: split={split!r}, expected one of {tuple(sizes)}")
        n, stream = sizes[split]
        return self.sample(n, np.random.RandomState([self.seed, stream]))

    def torch_dataset(self, split: str = "train", with_factors: bool = False) -> TabularDataset:
        """Items ``x`` (p,) float32, or ``(x, f)`` with ``f`` (q,) float32 when ``with_factors``."""
        f, x = self.table(split)
        ds = TabularDataset(x, self.feature_names, factors=f.astype(np.float32), with_factors=with_factors)
        ds.split_rule = (f"independent draws of the same model: 'train' {self.n_train} rows from numpy "
                         f"RandomState([{self.seed}, 1]), 'test' {self.n_test} rows from RandomState([{self.seed}, 2])")
        return ds


def factor_analysis(name: str, **kw) -> FactorAnalysisData:
    """``"fa15" | "fa24" | "fa100"`` -> FactorAnalysisData with that (p, q); ``kw`` as the class."""
    if name not in FA_CONFIGS:
        raise ValueError(f"factor_analysis: name={name!r}, expected one of {tuple(FA_CONFIGS)}")
    p, q = FA_CONFIGS[name]
    return FactorAnalysisData(p, q, **kw)
