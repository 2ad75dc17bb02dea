"""Disentangling VAEs: ``architectures`` (DEFT Table 1 conv nets, MLPs, FactorVAE discriminator),
``likelihoods`` (Bernoulli / L2 / Gaussian reconstruction, Gaussian KL), ``objectives`` (vanilla,
beta, beta-TCVAE, FactorVAE, DIP-VAE I/II, AnnealedVAE, CascadeVAE-C, bfVAE), ``presets`` (DEFT
Table 3 baselines), ``family`` (the "vae" ModelSpec: flags, build, evaluate, plots)."""
