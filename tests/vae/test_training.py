"""Architectures match DEFT's Table 1; a few training steps of every objective reduce the loss; a
run resumed through the engine continues exactly like the uninterrupted one."""
import pytest
import torch
from torch import nn

from eoflow_fast.train.contract import optimized_loss
from eoflow_fast.vae import architectures as A
from eoflow_fast.vae import objectives as O


def conv_layers(module, kind):
    return [m for m in module.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("channels", [1, 3])
def test_table1_architectures(channels):
    x = torch.rand(2, channels, 64, 64)
    lite, std, dec = A.lite_encoder(3, channels), A.standard_encoder(10, channels), A.DeconvDecoder(12, channels)
    assert [c.out_channels for c in conv_layers(lite, nn.Conv2d)] == [8, 8, 16, 16]
    assert [c.out_channels for c in conv_layers(std, nn.Conv2d)] == [32, 32, 64, 64]
    assert [m.out_features for m in conv_layers(lite, nn.Linear)] == [64, 6]
    assert [m.out_features for m in conv_layers(std, nn.Linear)] == [256, 20]
    assert [m.out_features for m in conv_layers(dec, nn.Linear)] == [256, 1024]
    assert [c.out_channels for c in conv_layers(dec, nn.ConvTranspose2d)] == [64, 32, 32, channels]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in conv_layers(lite, nn.Conv2d))
    mu, logvar = lite(x)
    assert mu.shape == logvar.shape == (2, 3)
    assert std(x)[0].shape == (2, 10)
    assert dec(torch.randn(2, 12)).shape == (2, channels, 64, 64)
    with pytest.raises(ValueError, match=r"x has shape \(2, 2, 64, 64\)"):
        lite(torch.rand(2, 2, 64, 64))


def test_build_encoder_decoder_picks_networks():
    enc, dec = A.build_encoder_decoder((7,), 2)
    assert isinstance(enc, A.MLPEncoder) and isinstance(dec, A.MLPDecoder)
    enc, _ = A.build_encoder_decoder((3, 64, 64), 5, "lite")
    assert [c.out_channels for c in conv_layers(enc, nn.Conv2d)] == [8, 8, 16, 16]
    with pytest.raises(ValueError, match="observation_shape"):
        A.build_encoder_decoder((1, 32, 32), 5)


def tabular_data(n=256, p=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    factors = torch.randn(n, 2, generator=g)
    loading = torch.randn(2, p, generator=g)
    return factors @ loading + 0.1 * torch.randn(n, p, generator=g)


HPARAMS = {
    "vanilla": {}, "beta": {"beta": 4.0}, "betatcvae": {"beta": 6.0, "dataset_size": 256},
    "factorvae": {"gamma": 10.0, "disc_width": 32, "disc_depth": 2}, "dipvae1": {"lambda_od": 2.0}, "dipvae2": {"lambda_od": 2.0},
    "annealed": {"capacity": 5.0, "gamma": 10.0, "iteration_threshold": 40}, "cascade": {"stage_steps": 20},
    "bfvae": {"beta": 4.0, "gamma": 5.0, "disc_width": 32, "disc_depth": 2},
}


@pytest.mark.parametrize("name", sorted(O.MODELS))
def test_few_steps_reduce_the_loss(tc_op, name):
    torch.manual_seed(0)
    data = tabular_data()
    model = O.make_objective(name, A.MLPEncoder(8, 4, (32,)), A.MLPDecoder(4, 8, (32,)),
                             reconstruction="gaussian", **HPARAMS[name])
    groups = model.param_groups(3e-3) if hasattr(model, "param_groups") else [{"params": model.parameters()}]
    opt = torch.optim.Adam(groups, lr=3e-3)
    fixed = data[:128]

    def eval_loss(step):
        torch.manual_seed(123)
        with torch.no_grad():
            return float(optimized_loss(model.loss_terms(fixed, step)))

    before = eval_loss(40)
    for step in range(40):
        batch = data[torch.randint(0, 256, (64,))]
        opt.zero_grad()
        optimized_loss(model.loss_terms(batch, step)).backward()
        opt.step()
        if hasattr(model, "auxiliary_step"):
            model.auxiliary_step(batch, step)
    after = eval_loss(40)
    assert after < before - 1.0, (before, after)  # nats per sample
    assert len(model.kl_history) == 1 and len(model.kl_history[0][1]) == 4


def test_conv_beta_vae_trains_on_images():
    torch.manual_seed(0)
    x = (torch.rand(8, 1, 64, 64) > 0.7).float()
    model = O.BetaVAE(A.lite_encoder(2), A.DeconvDecoder(2), beta=1.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(8):
        opt.zero_grad()
        loss = optimized_loss(model.loss_terms((x, torch.zeros(8, 5)), step))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 50.0, losses  # nats per image


def engine_run(model_fn, data, run_dir, steps, resume=False):
    from eoflow_fast.train.engine import train

    torch.manual_seed(0)
    model = model_fn()
    config = {"steps": steps, "batch_size": 32, "lr": 1e-3, "ckpt_every": 5, "log_every": 5, "seed": 3,
              "device": "cpu", "progress": False}
    summary = train(model, torch.utils.data.TensorDataset(data), config, run_dir, resume=resume)
    return model, summary


@pytest.mark.parametrize("name", ["factorvae", "cascade"])
def test_resume_continues_exactly(tmp_path, name):
    def make():
        return O.make_objective(name, A.MLPEncoder(8, 3, (16,)), A.MLPDecoder(3, 8, (16,)),
                                reconstruction="gaussian", kl_log_every=4,
                                **({"gamma": 5.0, "disc_width": 16, "disc_depth": 2} if name == "factorvae" else {"stage_steps": 4}))

    data = tabular_data(96)
    full, s_full = engine_run(make, data, tmp_path / "full", 14)
    engine_run(make, data, tmp_path / "part", 10)
    resumed, s_res = engine_run(make, data, tmp_path / "part", 14, resume=True)
    assert s_res["start_step"] == 10 and s_res["step"] == 14
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert s_full["terms"] == s_res["terms"]
    assert full.kl_history == resumed.kl_history
