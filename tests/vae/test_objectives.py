"""Each objective's loss against a hand-written reference on fixed inputs, the KL and TC terms
against closed forms on Gaussian cases, and the FactorVAE discriminator update."""
import math

import pytest
import torch

from eoflow_fast.vae import objectives as O
from eoflow_fast.vae.architectures import MLPDecoder, MLPEncoder
from eoflow_fast.vae.likelihoods import bernoulli, gaussian, gaussian_kl_per_dim, l2

P, D, B = 6, 3, 16


@pytest.fixture
def gen():
    """Fresh random inputs per run (the seed is printed on failure)."""
    seed = torch.seed() % 2**31
    print("seed", seed)
    return torch.Generator().manual_seed(seed)


def nets(seed=0):
    torch.manual_seed(seed)
    return MLPEncoder(P, D, hidden=(8,)).double(), MLPDecoder(D, P, hidden=(8,)).double()


def fixed_batch():
    g = torch.Generator().manual_seed(123)
    return torch.randn(B, P, generator=g, dtype=torch.float64)


def forward_ref(model, x, seed):
    """(out, mu, logvar, z) with the same noise the model draws after torch.manual_seed(seed)."""
    mu, logvar = model.encoder(x)
    torch.manual_seed(seed)
    eps = torch.randn_like(mu)
    z = mu + eps * torch.exp(0.5 * logvar)
    return model.decoder(z), mu, logvar, z


def ref_gaussian_nll(out, x):
    total = 0.0
    for b in range(x.shape[0]):
        total = total + sum(0.5 * (x[b, i] - out[b, i]) ** 2 + 0.5 * math.log(2 * math.pi) for i in range(x.shape[1]))
    return total / x.shape[0]


def ref_kl_dims(mu, logvar):
    return torch.stack([sum(0.5 * (mu[b, k] ** 2 + math.e ** logvar[b, k] - logvar[b, k] - 1)
                            for b in range(mu.shape[0])) / mu.shape[0] for k in range(mu.shape[1])])


def model_terms(model, x, step, seed=7):
    torch.manual_seed(seed)
    return model.loss_terms(x, step)


def optimized(terms):
    return sum(v for k, v in terms.items() if not k.startswith("_"))


# ---- likelihoods and KL ------------------------------------------------------------------------
def test_reconstruction_losses_match_formulas(gen):
    x = torch.rand(4, 1, 5, 5, generator=gen, dtype=torch.float64).round()
    logits = torch.randn(4, 1, 5, 5, generator=gen, dtype=torch.float64)
    p = torch.sigmoid(logits)
    ref_bce = -(x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2, 3)).mean()
    torch.testing.assert_close(bernoulli(logits, x), ref_bce)
    torch.testing.assert_close(l2(logits, x), ((x - p) ** 2).sum((1, 2, 3)).mean())
    y, m = torch.randn(4, 3, generator=gen, dtype=torch.float64), torch.randn(4, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(gaussian(m, y), torch.as_tensor(ref_gaussian_nll(m, y)))
    with pytest.raises(ValueError, match="decoder output has shape"):
        l2(logits[:, :, :4], x)


def test_kl_matches_closed_form_gaussian_kl(gen):
    mu = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    logvar = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(gaussian_kl_per_dim(mu, logvar), torch.distributions.kl_divergence(q, p).mean(0))


# ---- TC: materialised reference and closed form --------------------------------------------------
def log_normal(x, mu, logvar):
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mu) ** 2 / logvar.exp())


def materialised_decomposition(z, mu, logvar, n, estimator):
    """Chen et al. (2018) estimators, written out: (mi, tc, dwkl)."""
    b, d = z.shape
    log_q = log_normal(z[:, None, :], mu[None], logvar[None])          # (b, b, d): q(z_j | x_i)
    if estimator == "mws":
        log_w = torch.full((b, b), -math.log(b * n), dtype=z.dtype)
    else:
        m = b - 1
        w = torch.full((b, b), 1.0 / m, dtype=z.dtype)
        for j in range(b):
            w[j, (j + 1) % b] = (n - m) / (n * m)
            w[j, j] = 1.0 / n
        log_w = w.log()
    log_qz = torch.logsumexp(log_w + log_q.sum(2), 1)
    log_prod = torch.logsumexp(log_w[:, :, None] + log_q, 1).sum(1)
    log_qzx = log_normal(z, mu, logvar).sum(1)
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    return (log_qzx - log_qz).mean(), (log_qz - log_prod).mean(), (log_prod - log_pz).mean()


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_tc_decomposition_matches_materialised_chen_estimators(gen, tc_op, estimator):
    z, mu = (torch.randn(12, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    logvar = 0.3 * torch.randn(12, 3, generator=gen, dtype=torch.float64)
    got = tc_op(z, mu, logvar, 500, estimator=estimator)
    want = materialised_decomposition(z, mu, logvar, 500, estimator)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_tc_and_mi_match_gaussian_closed_form(tc_op):
    """mu ~ N(0, s^2 R), R = [[1, r], [r, 1]], fixed sigma^2: the aggregate posterior is
    N(0, s^2 R + sigma^2 I), so TC = 1/2 (sum log diag S - logdet S) and
    I(x; z) = 1/2 logdet S - D/2 log sigma^2. Taking the batch as the whole data set, q(z) is the
    batch mixture (1/B) sum_m q(z|x_m); MWS weights it 1/(B N), so with N = B the exact values are
    mi_mws - log N and tc_mws - (D - 1) log N."""
    g = torch.Generator().manual_seed(0)
    n, r, s2, sigma2 = 2000, 0.8, 4.0, 1.0
    cov_mu = s2 * torch.tensor([[1.0, r], [r, 1.0]], dtype=torch.float64)
    mu = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov_mu).T
    logvar = torch.full_like(mu, math.log(sigma2))
    z = mu + torch.randn(n, 2, generator=g, dtype=torch.float64) * math.sqrt(sigma2)
    mi, tc, _ = tc_op(z, mu, logvar, n, estimator="mws")
    mi, tc = mi - math.log(n), tc - math.log(n)
    s = cov_mu + sigma2 * torch.eye(2, dtype=torch.float64)
    tc_true = 0.5 * (torch.log(torch.diagonal(s)).sum() - torch.logdet(s))
    mi_true = 0.5 * torch.logdet(s) - math.log(sigma2)
    assert abs(float(tc) - float(tc_true)) < 0.05, (float(tc), float(tc_true))
    assert abs(float(mi) - float(mi_true)) < 0.06, (float(mi), float(mi_true))


# ---- objectives vs hand-written references ---------------------------------------------------
def test_vanilla_and_beta_vae_losses():
    x = fixed_batch()
    for model, beta in [(O.VAE(*nets(), reconstruction="gaussian"), 1.0),
                        (O.BetaVAE(*nets(), beta=4.0, reconstruction="gaussian"), 4.0)]:
        out, mu, logvar, _ = forward_ref(model, x, 7)
        want = ref_gaussian_nll(out, x) + beta * ref_kl_dims(mu, logvar).sum()
        torch.testing.assert_close(optimized(model_terms(model, x, 3)), want)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_betatcvae_loss(tc_op, estimator):
    x = fixed_batch()
    model = O.BetaTCVAE(*nets(), beta=6.0, dataset_size=1000, estimator=estimator, reconstruction="gaussian")
    out, mu, logvar, z = forward_ref(model, x, 7)
    _, tc, _ = materialised_decomposition(z, mu, logvar, 1000, estimator)
    want = ref_gaussian_nll(out, x) + ref_kl_dims(mu, logvar).sum() + 5.0 * tc
    terms = model_terms(model, x, 3)
    torch.testing.assert_close(optimized(terms), want)
    torch.testing.assert_close(terms["_tc"], tc.detach())


def test_annealed_vae_loss_follows_capacity_schedule():
    x = fixed_batch()
    model = O.AnnealedVAE(*nets(), capacity=5.0, gamma=1000.0, iteration_threshold=100, reconstruction="gaussian")
    for step, c in [(0, 0.0), (40, 2.0), (100, 5.0), (500, 5.0)]:
        out, mu, logvar, _ = forward_ref(model, x, 7)
        want = ref_gaussian_nll(out, x) + 1000.0 * abs(ref_kl_dims(mu, logvar).sum() - c)
        torch.testing.assert_close(optimized(model_terms(model, x, step)), want)


def test_cascade_vae_per_dimension_weights():
    x = fixed_batch()
    model = O.CascadeVAE(*nets(), beta_max=10.0, beta_min=1.0, stage_steps=50, reconstruction="gaussian")
    for step, weights in [(0, [1, 10, 10]), (49, [1, 10, 10]), (50, [1, 1, 10]), (120, [1, 1, 1]), (10**6, [1, 1, 1])]:
        out, mu, logvar, _ = forward_ref(model, x, 7)
        kl = ref_kl_dims(mu, logvar)
        want = ref_gaussian_nll(out, x) + sum(w * kl[k] for k, w in enumerate(weights))
        torch.testing.assert_close(optimized(model_terms(model, x, step)), want)


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_dip_vae_loss(kind):
    x = fixed_batch()
    model = O.DIPVAE(*nets(), kind=kind, lambda_od=2.0, reconstruction="gaussian")
    assert model.lambda_d == (20.0 if kind == "i" else 2.0)
    out, mu, logvar, _ = forward_ref(model, x, 7)
    mean = [sum(mu[b, k] for b in range(B)) / B for k in range(D)]
    cov = [[sum((mu[b, i] - mean[i]) * (mu[b, j] - mean[j]) for b in range(B)) / B for j in range(D)] for i in range(D)]
    if kind == "ii":
        for i in range(D):
            cov[i][i] = cov[i][i] + sum(math.e ** logvar[b, i] for b in range(B)) / B
    dip = sum(2.0 * cov[i][j] ** 2 for i in range(D) for j in range(D) if i != j) + sum(
        model.lambda_d * (cov[i][i] - 1) ** 2 for i in range(D))
    want = ref_gaussian_nll(out, x) + ref_kl_dims(mu, logvar).sum() + dip
    torch.testing.assert_close(optimized(model_terms(model, x, 0)), want)


@pytest.mark.parametrize("beta,gamma", [(1.0, 10.0), (4.0, 3.0)])
def test_factor_and_bfvae_losses(beta, gamma):
    x = fixed_batch()
    model = O.BfVAE(*nets(), beta=beta, gamma=gamma, disc_width=16, disc_depth=2, reconstruction="gaussian").double()
    out, mu, logvar, z = forward_ref(model, x, 7)
    logits = model.discriminator(z)
    tc = sum(logits[b, 0] - logits[b, 1] for b in range(B)) / B
    want = ref_gaussian_nll(out, x) + beta * ref_kl_dims(mu, logvar).sum() + gamma * tc
    torch.testing.assert_close(optimized(model_terms(model, x, 0)), want)
    assert O.FactorVAE(*nets(), gamma=gamma).beta == 1.0


def test_discriminator_loss_and_update():
    model = O.BfVAE(*nets(), beta=1.0, gamma=10.0, disc_width=16, disc_depth=2, reconstruction="gaussian").double()
    main_params = {id(p) for g in model.param_groups(1e-3) for p in g["params"]}
    assert not main_params & {id(p) for p in model.discriminator.parameters()}
    assert len(main_params) == len(list(model.encoder.parameters())) + len(list(model.decoder.parameters()))
    z = torch.randn(B, D, dtype=torch.float64) @ torch.tensor([[1.0, 0.9, 0.0], [0.0, 0.4, 0.0], [0, 0, 1.0]],
                                                                 dtype=torch.float64)
    torch.manual_seed(5)
    perm = torch.argsort(torch.rand(z.shape), dim=0)
    shuffled = torch.stack([z[perm[:, k], k] for k in range(D)], 1)
    p_real = torch.softmax(model.discriminator(z), 1).clamp(1e-6, 1 - 1e-6)
    p_shuf = torch.softmax(model.discriminator(shuffled), 1).clamp(1e-6, 1 - 1e-6)
    want = -(0.5 * p_real[:, 0].log().mean() + 0.5 * p_shuf[:, 1].log().mean())
    torch.manual_seed(5)
    torch.testing.assert_close(model.discriminator_loss(z), want)
    # auxiliary_step uses the codes of the step's forward and moves only the discriminator
    encoder_before = [p.detach().clone() for p in model.encoder.parameters()]
    disc_before = [p.detach().clone() for p in model.discriminator.parameters()]
    model.loss_terms(fixed_batch(), 4)
    stats = model.auxiliary_step(fixed_batch(), 4)
    assert set(stats) == {"disc_loss"} and math.isfinite(stats["disc_loss"])
    assert all(torch.equal(a, b) for a, b in zip(encoder_before, model.encoder.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, model.discriminator.parameters()))
    assert set(model.auxiliary_optimizers()) == {"discriminator"}


def test_shuffle_dims_permutes_each_column():
    z = torch.arange(40.0).reshape(10, 4)
    s = O.shuffle_dims(z)
    for k in range(4):
        assert sorted(s[:, k].tolist()) == z[:, k].tolist()


def test_make_objective_rejects_unknown_names():
    with pytest.raises(ValueError, match="model='nope'"):
        O.make_objective("nope", *nets())
    with pytest.raises(ValueError, match="estimator"):
        O.BetaTCVAE(*nets(), estimator="bad")


# ---- learned-variance Gaussian (tabular default) --------------------------------------------
def test_gaussian_learned_is_the_gaussian_nll_at_the_mle_variance(gen):
    """loss = mean_b -log N(x_b | out_b, diag s) with s_i = mean_b (x_bi - out_bi)^2, checked with
    torch.distributions; gradients (float64 gradcheck) and the min_var floor."""
    from eoflow_fast.vae.likelihoods import get_reconstruction

    lik = get_reconstruction("gaussian_learned", P)
    x = torch.randn(B, P, generator=gen, dtype=torch.float64) * torch.rand(P, generator=gen, dtype=torch.float64) * 3
    out = torch.randn(B, P, generator=gen, dtype=torch.float64, requires_grad=True)
    s = (x - out).detach().pow(2).mean(0)
    want = -torch.distributions.Normal(out.detach(), s.sqrt()).log_prob(x).sum(1).mean()
    torch.testing.assert_close(lik(out, x), want)
    assert torch.autograd.gradcheck(lambda o: lik(o, x), (out,))
    floored = get_reconstruction("gaussian_learned", P)
    floored.min_var = 1e-2
    exact = x.clone()
    exact[:, 0] = out.detach()[:, 0]  # feature 0 reconstructed exactly: s_0 = floor
    s0 = (exact - out.detach()).pow(2).mean(0).clamp_min(1e-2)
    want = -torch.distributions.Normal(out.detach(), s0.sqrt()).log_prob(exact).sum(1).mean()
    torch.testing.assert_close(floored(out.detach(), exact), want)


def test_gaussian_learned_validates_and_registers():
    from eoflow_fast.vae.likelihoods import get_reconstruction

    with pytest.raises(ValueError, match="needs num_features"):
        get_reconstruction("gaussian_learned")
    lik = get_reconstruction("gaussian_learned", P)
    with pytest.raises(ValueError, match=r"expected \(B, 6\)"):
        lik(torch.zeros(4, 5), torch.zeros(4, 5))
    model = O.BfVAE(*nets(), beta=2.0, gamma=1.0, disc_width=8, disc_depth=1, reconstruction="gaussian_learned").double()
    assert "likelihood.variance" in model.state_dict()
    x = fixed_batch()
    out, *_ = model(x)
    model.loss_terms(x, 0)  # training mode: the reported variance moves 1% of the way to the batch MLE
    torch.testing.assert_close(model.likelihood.variance, 0.99 + 0.01 * (x - out).detach().pow(2).mean(0),
                               rtol=0.05, atol=0.0)
