"""DEFT: stage switching sets the optimizer's learning rates as specified, future groups are zero,
the gradient-scaling variant scales gradients by gamma, the loss is recon + beta_j KL, the presets
hold the paper's Tables 2 and 3, and a run resumes exactly through the engine."""
import math

import pytest
import torch

from eoflow_fast.deft import family as deft_family
from eoflow_fast.deft.model import DEFT
from eoflow_fast.deft.presets import PRESETS
from eoflow_fast.train.contract import optimized_loss
from eoflow_fast.vae import presets as vae_presets

G, K, STAGE = 3, 2, 5


def model(mode="lr", seed=0):
    torch.manual_seed(seed)
    return DEFT(G, K, [30.0, 8.0, 1.0], STAGE, gamma=0.1, gamma_mode=mode)


def images(n=2, seed=1):
    return (torch.rand(n, 1, 64, 64, generator=torch.Generator().manual_seed(seed)) > 0.6).float()


def test_param_groups_one_per_encoder_and_decoder():
    m = model()
    groups = m.param_groups(1e-3)
    assert [g["name"] for g in groups] == ["encoder0", "encoder1", "encoder2", "decoder"]
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))
    for i in range(G):
        assert {id(p) for p in groups[i]["params"]} == {id(p) for p in m.encoder[i].parameters()}


@pytest.mark.parametrize("mode", ["lr", "grad"])
def test_stage_switching_sets_learning_rates(mode):
    m, lr = model(mode), 5e-4
    opt = torch.optim.Adam(m.param_groups(lr), lr=lr)
    for step, stage in [(0, 0), (4, 0), (5, 1), (9, 1), (10, 2), (14, 2), (1000, 2), (3, 0)]:
        m.on_step_start(step, opt)
        assert int(m.stage) == stage
        lrs = [g["lr"] for g in opt.param_groups]
        want = [lr] * (G + 1) if mode == "grad" else [lr if i == stage else 0.1 * lr for i in range(G)] + [lr]
        assert lrs == pytest.approx(want, rel=0, abs=0), (step, lrs)
    with pytest.raises(ValueError, match="parameter groups"):
        m.on_step_start(0, torch.optim.Adam(m.parameters(), lr=lr))


def test_future_groups_are_zero_and_get_no_gradient():
    m = model()
    x = images()
    torch.manual_seed(3)
    terms = m.loss_terms(x, 2)                      # stage 0
    mu, logvar = m.encode(x)
    assert torch.equal(mu[:, K:], torch.zeros(2, (G - 1) * K)) and torch.equal(logvar[:, K:], torch.zeros(2, (G - 1) * K))
    assert not torch.equal(mu[:, :K], torch.zeros(2, K))
    optimized_loss(terms).backward()
    assert all(p.grad is not None for p in m.encoder[0].parameters())
    assert all(p.grad is None for i in (1, 2) for p in m.encoder[i].parameters())
    m.zero_grad(set_to_none=True)
    optimized_loss(m.loss_terms(x, STAGE)).backward()  # stage 1: group 1 is active, group 2 still zero
    assert all(p.grad is not None for i in (0, 1) for p in m.encoder[i].parameters())
    assert all(p.grad is None for p in m.encoder[2].parameters())


def test_loss_is_recon_plus_stage_beta_kl():
    m = model()
    x = images()
    for step, beta in [(0, 30.0), (STAGE, 8.0), (2 * STAGE + 1, 1.0)]:
        torch.manual_seed(9)
        terms = m.loss_terms(x, step)
        mu, logvar = m.encode(x)
        torch.manual_seed(9)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        p = torch.sigmoid(m.decoder(z))
        recon = -(x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2, 3)).mean()
        kl = 0.5 * (mu ** 2 + logvar.exp() - logvar - 1).sum(1).mean()
        torch.testing.assert_close(optimized_loss(terms), recon + beta * kl, rtol=1e-4, atol=1e-3)
        assert float(terms["_stage"]) == min(step // STAGE, G - 1)


def test_learning_rate_mode_moves_inactive_encoders_gamma_times_less():
    """With SGD one step moves each parameter by -lr_group * grad: encoder 0 at stage 1 by gamma lr."""
    m, lr = model(), 0.01
    opt = torch.optim.SGD(m.param_groups(lr), lr=lr)
    x = images()
    m.on_step_start(STAGE, opt)
    before = [p.detach().clone() for p in m.parameters()]
    torch.manual_seed(2)
    optimized_loss(m.loss_terms(x, STAGE)).backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in m.parameters()]
    opt.step()
    scale = {id(p): (0.1 if i != 1 else 1.0) * lr for i, e in enumerate(m.encoder) for p in e.parameters()}
    for p, b, g in zip(m.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), b - scale.get(id(p), lr) * g)


def test_gradient_mode_scales_earlier_groups_gradients():
    x = images()
    grads = {}
    for mode in ("lr", "grad"):
        m = model(mode)
        torch.manual_seed(2)
        optimized_loss(m.loss_terms(x, 2 * STAGE)).backward()  # stage 2: groups 0, 1 earlier
        grads[mode] = [[p.grad for p in e.parameters()] for e in m.encoder] + [[p.grad for p in m.decoder.parameters()]]
    for i, factor in enumerate([0.1, 0.1, 1.0, 1.0]):
        for a, b in zip(grads["lr"][i], grads["grad"][i]):
            torch.testing.assert_close(b, factor * a, rtol=1e-4, atol=1e-7)


def test_presets_hold_table2_and_table3():
    table2 = {"color": (4, 3, 7, (160, 105, 30, 4)), "dsprites": (4, 3, 7, (70, 30, 12, 4)),
              "smallnorb": (2, 5, 100, (50, 1)), "scream": (2, 5, 10, (140, 1)), "chairs": (3, 3, 20, (36, 16, 1))}
    for name, (g, k, epochs, betas) in table2.items():
        p = PRESETS[name]
        assert (p.groups, p.latents_per_group, p.epochs_per_stage, p.betas) == (g, k, epochs, betas)
    assert PRESETS["dsprites"].stage_steps(737_280, 256) == 20_160
    assert vae_presets.table3("dsprites", "annealed") == {"capacity": 5.0}
    assert vae_presets.table3("scream", "betatcvae") == {"beta": 6.0}
    assert vae_presets.table3("color", "beta") == {"beta": 16.0}
    assert vae_presets.table3("smallnorb", "cascade") == {"beta_max": 10.0}
    with pytest.raises(ValueError, match="no setting"):
        vae_presets.table3("dsprites", "dipvae1")


def test_family_resolves_presets_and_overrides():
    kw = deft_family.resolve({"preset": "dsprites", "batch_size": 256}, dataset_len=737_280)
    assert (kw["groups"], kw["latents_per_group"], kw["betas"], kw["stage_steps"]) == (4, 3, [70, 30, 12, 4], 20_160)
    assert kw["data"] == "dsprites" and kw["gamma"] == 0.1 and kw["gamma_mode"] == "lr"
    kw = deft_family.resolve({"preset": "scream", "stage_steps": 50, "betas": [20.0, 2.0]})
    assert (kw["stage_steps"], kw["betas"], kw["data"]) == (50, [20.0, 2.0], "dsprites_scream")
    with pytest.raises(ValueError, match="pass --data"):
        deft_family.resolve({"preset": "smallnorb", "stage_steps": 10})
    with pytest.raises(ValueError, match="--betas has 3 values"):
        deft_family.resolve({"preset": "dsprites", "stage_steps": 10, "betas": [3.0, 2.0, 1.0]})


def test_resume_through_engine_restores_stage_and_learning_rates(tmp_path):
    from eoflow_fast.train.engine import train

    data = torch.utils.data.TensorDataset(images(8, seed=5))

    def run(run_dir, steps, resume=False):
        torch.manual_seed(0)
        m = DEFT(2, 1, [4.0, 1.0], 3)
        config = {"steps": steps, "batch_size": 4, "lr": 1e-3, "ckpt_every": 2, "log_every": 2, "seed": 1,
                  "device": "cpu", "progress": False}
        return m, train(m, data, config, run_dir, resume=resume)

    full, s_full = run(tmp_path / "full", 6)
    run(tmp_path / "part", 4)
    resumed, s_res = run(tmp_path / "part", 6, resume=True)
    assert int(full.stage) == int(resumed.stage) == 1
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert s_full["terms"] == s_res["terms"]
    assert s_res["terms"]["lr/encoder0"] == pytest.approx(1e-4) and s_res["terms"]["lr/encoder1"] == pytest.approx(1e-3)
    assert math.isfinite(s_res["terms"]["loss"])


def test_branch_at_a_stage_boundary_rebuilds_with_new_betas_and_gamma_mode(tmp_path):
    """``train deft --resume RUN --from-checkpoint ckpt-S --branch betas=... --branch gamma_mode=grad``:
    the stage after S trains with the new beta and mode (its KL term is beta * KL), the change is
    recorded, and checkpoints from before the branch still open for evaluation."""
    import json

    from eoflow_fast.cli.main import main
    from eoflow_fast.train import engine
    from eoflow_fast.train.logging import read_metrics

    run = tmp_path / "run"
    common = ["--no-progress", "--cpu-threads", "1"]
    assert main(["train", "deft", "--preset", "dsprites", "--groups", "2", "--latents-per-group", "1", "--betas", "8", "2",
                 "--stage-steps", "3", "--steps", "6", "--batch-size", "8", "--eval-every", "0", "--plot-every", "0",
                 "--ckpt-every", "3", "--log-every", "1", "--device", "cpu", "--run-dir", str(run), *common]) == 0
    assert main(["train", "deft", "--resume", str(run), "--from-checkpoint", "ckpt-00000003.pt",
                 "--branch", "betas=8,5", "--branch", "gamma_mode=grad", *common]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["betas"] == [8.0, 5.0] and config["gamma_mode"] == "grad"
    assert config["branches"][0]["changes"] == {"betas": [[8.0, 2.0], [8.0, 5.0]], "gamma_mode": ["lr", "grad"]}
    stage2 = [r for r in read_metrics(run) if r.get("kind") == "train" and r["step"] > 3]
    assert stage2 and all(r["kl"] == pytest.approx(5.0 * r["_kl"], rel=1e-4) for r in stage2)
    assert all(r["lr/encoder0"] == pytest.approx(r["lr/encoder1"]) for r in stage2)  # grad mode: equal lrs
    assert engine.open_run(run, run / "ckpt-00000003.pt").step == 3
    with pytest.raises(SystemExit):
        main(["train", "deft", "--resume", str(run), "--steps", "9", "--branch", "groups=3", *common])
