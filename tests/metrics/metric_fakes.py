"""A tiny fake GroundTruthData (disentanglement_lib interface) so metric tests need no real dataset.

Factors are sampled uniformly on a grid; the observation is a known function of the factors:
x = [factors / (size - 1), tanh(scaled factors @ W)] (float32), so ``identity_representation``
(the first F columns) recovers the factors exactly; ``GridData`` draws no noise.
"""
import numpy as np


class GridData:
    def __init__(self, factor_sizes=(3, 5, 8), extra_dims=4, seed=0):
        self.factor_sizes = list(factor_sizes)
        self.num_factors = len(self.factor_sizes)
        self.factor_names = [f"f{j}" for j in range(self.num_factors)]
        self.mixing = np.random.RandomState(seed).randn(self.num_factors, extra_dims)
        self.observation_shape = (self.num_factors + extra_dims,)

    def sample_factors(self, num, random_state):
        return np.stack([random_state.randint(s, size=num) for s in self.factor_sizes], axis=1).astype(np.int64)

    def sample_observations_from_factors(self, factors, random_state):
        scaled = factors / (np.asarray(self.factor_sizes) - 1.0)
        return np.concatenate([scaled, np.tanh(scaled @ self.mixing)], axis=1).astype(np.float32)

    def sample(self, num, random_state):
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)


def identity_representation(observations):
    """Codes (n, 3) = the scaled factors of ``GridData()`` (its first 3 observation columns)."""
    return np.asarray(observations, dtype=np.float32)[:, :3].copy()


def entangled_codes(rs, n=2000, factor_sizes=(3, 5, 8, 4), d=6):
    """Integer factors (n, F) and float32 codes (n, d) mixing them linearly plus noise."""
    factors = np.stack([rs.randint(s, size=n) for s in factor_sizes], axis=1)
    mixing = rs.randn(len(factor_sizes), d)
    codes = (factors @ mixing + 0.5 * rs.randn(n, d)).astype(np.float32)
    return codes, factors
