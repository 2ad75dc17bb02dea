"""The linear-Gaussian beta-VAE optimum (eoflow_fast.vae.linear_gaussian) against closed forms and
against a linear VAE trained with the project's own loss pieces."""
import numpy as np
import pytest
import torch

from eoflow_fast.data.factor_analysis import factor_analysis
from eoflow_fast.vae.likelihoods import LearnedVarianceGaussian, gaussian_kl_per_dim
from eoflow_fast.vae.linear_gaussian import equal_block_kl, optimal_kl


def equal_block(n, h):
    return (1 - h) * np.eye(n) + h * np.ones((n, n))


def test_unit_decoder_is_ppca_with_beta_as_noise():
    rng = np.random.RandomState(0)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    lam = np.array([9.0, 5.0, 3.0, 1.5, 0.5, 0.2])
    got = optimal_kl(q @ np.diag(lam) @ q.T, beta=2.0, latent_dim=4, decoder="unit", restarts=2)["kl"]
    want = 0.5 * np.log(np.maximum(lam[:4] / 2.0, 1.0))  # 1/2 log(lambda / beta) above beta, else 0
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("n, h, beta", [(5, 0.99, 2.0), (10, 0.9, 4.0), (6, 0.7, 2.0)])
def test_learned_decoder_equal_block_closed_form(n, h, beta):
    got = optimal_kl(equal_block(n, h), beta=beta, latent_dim=3, restarts=2)["kl"]
    assert got[0] == pytest.approx(equal_block_kl(n, h, beta), abs=1e-3)
    assert got[1:].max() < 1e-3  # one latent per block: the noise directions stay off for beta > 1


def test_learned_decoder_switch_on_threshold():
    n, h = 5, 0.6  # n r = n h + 1 - h = 3.4
    assert equal_block_kl(n, h, 3.5) == 0.0 and optimal_kl(equal_block(n, h), 3.5, 2, restarts=2)["kl"].max() < 1e-3
    assert equal_block_kl(n, h, 3.3) > 0.005
    assert optimal_kl(equal_block(n, h), 3.3, 2, restarts=2)["kl"][0] == pytest.approx(equal_block_kl(n, h, 3.3), abs=1e-3)


def test_fa15_blocks_match_their_one_block_optima():
    fa = factor_analysis("fa15", seed=0)
    joint = optimal_kl(fa.correlation, beta=2.0, latent_dim=5, restarts=1)["kl"]
    blocks = [optimal_kl(fa.correlation[5 * k:5 * k + 5, 5 * k:5 * k + 5], 2.0, 1, restarts=1)["kl"][0] for k in range(3)]
    np.testing.assert_allclose(joint[:3], np.sort(blocks)[::-1], atol=1e-3)
    assert joint[3:].max() < 1e-3


def test_trained_linear_vae_reaches_the_optimum():
    """A linear encoder (mu = A x, per-latent log-variance) and linear decoder trained on samples with
    the reparameterised loss (LearnedVarianceGaussian + beta * KL) keeps the closed-form KL."""
    torch.manual_seed(0)
    n, h, beta = 5, 0.95, 2.0
    x = torch.as_tensor(np.random.RandomState(1).multivariate_normal(np.zeros(n), equal_block(n, h), 4000))
    enc, dec = torch.nn.Linear(n, 2, dtype=torch.float64), torch.nn.Linear(2, n, dtype=torch.float64)
    logvar = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    recon = LearnedVarianceGaussian(n)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), logvar], lr=0.02)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1500)
    for _ in range(1500):
        mu = enc(x)
        lv = logvar.expand_as(mu)
        z = mu + torch.randn_like(mu) * (0.5 * lv).exp()
        loss = recon(dec(z), x) + beta * gaussian_kl_per_dim(mu, lv).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        kl = gaussian_kl_per_dim(enc(x), logvar.expand(len(x), 2)).sort(descending=True).values.numpy()
    assert kl[0] == pytest.approx(equal_block_kl(n, h, beta), abs=0.05)
    assert kl[1] < 0.02
