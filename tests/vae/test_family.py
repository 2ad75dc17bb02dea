"""The "vae" family: flags -> objective and hyperparameters (defaults, Table 3 presets, bfVAE
ablations), build on a table, plots."""
import pytest
import torch

from eoflow_fast.train import registry
from eoflow_fast.vae import family as F
from eoflow_fast.vae import objectives as O


def test_registered():
    assert registry.get("vae").build is F.build and registry.get("deft").name == "deft"


@pytest.mark.parametrize("config,name,expected", [
    ({"objective": "beta"}, "beta", {"beta": 4.0}),
    ({"objective": "beta", "preset": "dsprites"}, "beta", {"beta": 16.0}),
    ({"objective": "beta", "preset": "dsprites", "beta": 2.0}, "beta", {"beta": 2.0}),
    ({"objective": "betatcvae", "preset": "scream", "tc_estimator": "mss"}, "betatcvae",
     {"beta": 6.0, "dataset_size": 1000, "estimator": "mss"}),
    ({"objective": "annealed", "preset": "color"}, "annealed",
     {"capacity": 10.0, "gamma": 1000.0, "iteration_threshold": 100_000}),
    ({"objective": "cascade", "cascade_stage_steps": 50}, "cascade", {"beta_max": 10.0, "stage_steps": 50}),
    ({"objective": "factorvae"}, "factorvae", {"gamma": 10.0, "disc_lr": 1e-4, "disc_width": 1000, "disc_depth": 6}),
    ({"objective": "dipvae2", "lambda_od": 5.0}, "dipvae2", {"lambda_od": 5.0, "lambda_d": None}),
    ({"objective": "bfvae", "ablation": "vanilla"}, "vanilla", {}),
    ({"objective": "bfvae", "ablation": "factor", "gamma": 3.0, "disc_width": 64}, "factorvae",
     {"gamma": 3.0, "disc_lr": 1e-4, "disc_width": 64, "disc_depth": 6}),
    ({"objective": "bfvae"}, "bfvae", {"beta": 2.0, "gamma": 10.0, "disc_lr": 1e-4, "disc_width": 1000, "disc_depth": 6}),
    ({"objective": "bfvae", "ablation": "beta"}, "beta", {"beta": 2.0}),  # bfVAE's beta, not beta-VAE's 4
    ({"objective": "bfvae", "beta": 8.0, "gamma": 2.0}, "bfvae",
     {"beta": 8.0, "gamma": 2.0, "disc_lr": 1e-4, "disc_width": 1000, "disc_depth": 6}),
])
def test_resolve_hparams(config, name, expected):
    assert F.resolve_hparams(config, 1000) == (name, expected)


def test_resolve_hparams_rejects_misuse():
    with pytest.raises(ValueError, match="--ablation applies to --model bfvae"):
        F.resolve_hparams({"objective": "beta", "ablation": "beta"}, 10)
    with pytest.raises(ValueError, match="no setting"):
        F.resolve_hparams({"objective": "factorvae", "preset": "dsprites"}, 10)


@pytest.mark.parametrize("config,message", [
    ({"objective": "bfvae", "ablation": "vanilla", "beta": 4.0}, "--beta 4 has no effect with --ablation vanilla"),
    ({"objective": "bfvae", "ablation": "beta", "gamma": 10.0}, "--gamma 10 has no effect with --ablation beta"),
    ({"objective": "factorvae", "beta": 6.0}, "beta is fixed at 1"),
    ({"objective": "betatcvae", "gamma": 3.0}, "it reads --beta"),
    ({"objective": "dipvae2", "beta": 2.0}, "neither --beta nor --gamma"),
])
def test_weights_the_objective_does_not_read_are_refused(config, message):
    """A --beta or --gamma the objective ignores would train another model than the user asked for."""
    with pytest.raises(ValueError, match=message):
        F.resolve_hparams(config, 10)


@pytest.mark.parametrize("ablation,fixed", [("vanilla", {"beta": 1.0, "gamma": 0.0}), ("beta", {"gamma": 0.0}),
                                            ("factor", {"beta": 1.0})])
def test_fixed_weights_are_recorded_and_reread(ablation, fixed):
    """config.json gets the weights an ablation fixes, and a config holding them resolves again
    (resume, eval) to the same model."""
    name, hp = F.resolve_hparams({"objective": "bfvae", "ablation": ablation}, 10)
    flags = F.resolved_flags(name, hp)
    assert {k: flags[k] for k in fixed} == fixed
    assert F.resolve_hparams({"objective": "bfvae", "ablation": ablation, **flags}, 10) == (name, hp)


def test_build_on_fa15_and_plot(tmp_path):
    config = {"objective": "betatcvae", "data": "fa15", "latent_dim": 4, "encoder": "standard", "beta": 6.0}
    model, dataset, eval_dataset = F.build(config)
    assert isinstance(model, O.BetaTCVAE) and model.dataset_size == len(dataset) and eval_dataset is None
    assert model.reconstruction == "gaussian_learned" and model.encoder.input_dim == 15 and model.encoder.latent_dim == 4
    model.kl_history = [(0, [1.0, 0.1, 0.0, 0.0]), (100, [2.0, 0.2, 0.0, 0.01])]
    F.plot(str(tmp_path), model, config, 100)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["kl_per_dim_100.png", "traversals_100.png"]


def test_representation_and_decode_functions():
    from eoflow_fast.vae.architectures import build_encoder_decoder

    model = O.VAE(*build_encoder_decoder((5,), 2), reconstruction="gaussian")
    obs = torch.randn(300, 5).numpy()
    codes = F.representation_fn(model)(obs)
    assert codes.shape == (300, 2)
    torch.testing.assert_close(torch.as_tensor(codes), model.encode(torch.as_tensor(obs))[0].detach())
    assert F.decode_fn(model)(codes).shape == (300, 5)


@pytest.mark.parametrize("data, expected", [("fa100", 20), ("fa24", 10), ("fa15", 10), ("wine", 10)])
def test_default_latent_dim_leaves_room_for_off_latents_and_is_recorded(data, expected):
    """FA tables get max(10, 2q) latents (q = 10 on FA100), everything else 10; an explicit value wins;
    config.json records the one used."""
    config = {"objective": "beta", "data": data, "latent_dim": None, "encoder": "standard"}
    model, _, _ = F.build(config)
    assert config["latent_dim"] == expected and model.encoder.latent_dim == expected
    config = {"objective": "beta", "data": data, "latent_dim": 3, "encoder": "standard"}
    F.build(config)
    assert config["latent_dim"] == 3
