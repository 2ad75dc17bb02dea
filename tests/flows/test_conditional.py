"""Conditional couplings (cond_channels = k): the condition is an extra subnet input; every pass
(forward, reverse, jvp, linearize) agrees with its definition, in float64."""
import pytest
import torch

from eoflow_fast.flows import AffineCoupling, mlp_flow, multiscale_flow
from eoflow_fast.flows.conditioning import conditioned
from eoflow_fast.flows.eoflow import EOFlow


def _perturbed(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module.double()


def _manual_forward(block, x, c):
    """GLOW coupling written out with [h, c] subnet inputs (the definition)."""
    from eoflow_fast.reference.affine_coupling import affine_coupling
    x1, x2 = x.split([block.c1, block.c2], 1)
    cc = c[:, :, None, None].expand(-1, -1, *x.shape[2:]) if x.dim() == 4 else c
    s2, t2 = block.subnet2(torch.cat([x2, cc], 1))[0].chunk(2, 1)
    y1, ld1 = affine_coupling(x1, s2, t2, block.clamp, block.clamp_fn)
    s1, t1 = block.subnet1(torch.cat([y1, cc], 1))[0].chunk(2, 1)
    y2, ld2 = affine_coupling(x2, s1, t1, block.clamp, block.clamp_fn)
    return torch.cat([y1, y2], 1), ld1 + ld2


@pytest.mark.parametrize("subnet,shape", [("mlp", (6,)), ("conv", (4, 3, 3))])
def test_conditional_coupling_matches_its_definition(subnet, shape):
    torch.manual_seed(0)
    block = _perturbed(AffineCoupling(shape[0], 16, subnet, cond_channels=3))
    x, c = torch.randn(5, *shape, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    with conditioned(block, c):
        y, ld = block(x)
        x_back, ld_back = block(y, rev=True)
        dx = torch.randn_like(x)
        _, _, dy = block.jvp(x, dx)
        out, ld_lin, inverse_jvp = block.linearize(x)
        dz = torch.randn(2 * 5, *shape, dtype=torch.float64)
        c2 = c.repeat(2, 1)
    y_ref, ld_ref = _manual_forward(block, x, c)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ld, ld_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_back, x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ld_back, -ld, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(dy, torch.func.jvp(lambda v: _manual_forward(block, v, c)[0], (x,), (dx,))[1],
                               rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out, y, rtol=1e-12, atol=1e-12)
    with conditioned(block, c2):
        expected = torch.func.jvp(lambda v: block(v, rev=True)[0], (y.repeat(2, *[1] * (y.dim() - 1)),), (dz,))[1]
    got = inverse_jvp(dz)  # the linearized pass keeps its conditioned activations
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_condition_changes_the_map_and_is_required():
    torch.manual_seed(1)
    flow = _perturbed(mlp_flow(4, blocks=2, hidden=8, cond_channels=2))
    x = torch.randn(3, 4, dtype=torch.float64)
    with conditioned(flow, torch.tensor([[1., 0.]] * 3, dtype=torch.float64)):
        z0, _ = flow(x)
    with conditioned(flow, torch.tensor([[0., 1.]] * 3, dtype=torch.float64)):
        z1, _ = flow(x)
    assert (z0 - z1).abs().max() > 1e-3
    with pytest.raises(ValueError, match="conditional"):
        flow(x)
    with pytest.raises(ValueError, match=r"condition has shape \(3, 5\)"):
        with conditioned(flow, torch.zeros(3, 5, dtype=torch.float64)):
            flow(x)
    with pytest.raises(ValueError, match="no conditional coupling"):
        with conditioned(mlp_flow(4, blocks=1, hidden=8), torch.zeros(3, 2)):
            pass


def test_conditional_eoflow_trains_on_labels_and_checks_them():
    torch.manual_seed(2)
    flow = multiscale_flow((1, 4, 4), "glow", levels=1, steps=2, hidden=8, cond_channels=3)
    model = EOFlow(flow, (1, 4, 4), flat_input=False, lam=1.0, quant_bins=16).double()
    x, labels = torch.rand(8, 1, 4, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    terms = model.loss_terms((x, labels), 0)
    terms["objective"].backward()
    grads = [p.grad for n, p in model.named_parameters() if "subnet" in n and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    with model.conditioned(labels):
        x_back = model.decode_full(model.encode(x)[0])
    torch.testing.assert_close(x_back, x, rtol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match=r"values in \[0, 3\)"):
        model.loss_terms((x, torch.full((8,), 3)), 0)
    with pytest.raises(ValueError, match="batches must be"):
        model.loss_terms(x, 0)


def test_cli_family_trains_and_evaluates_a_label_conditional_flow(tmp_path):
    from eoflow_fast.flows import family
    from eoflow_fast.train.engine import train

    cfg = {"model": "eoflow", "data": "digits", "condition": "label", "blocks": 1, "hidden": 8, "steps": 2,
           "batch_size": 64, "progress": False}
    model, ds, test_set = family.build(cfg)
    assert model.cond_channels == 10 and isinstance(ds[0], (tuple, list))
    train(model, ds, cfg, tmp_path)
    flat = family.evaluate(tmp_path, model, {**cfg, "eval_samples": 64, "entropy_samples": 16,
                                             "entropy_batch": 16}, None)
    assert all(v == v for v in flat.values())  # no NaN in bits/dim, MTC, PSNR
    with pytest.raises(ValueError, match="needs a dataset with class labels"):
        family.build({**cfg, "data": "wine"})


def test_compress_denoise_traverse_run_on_a_conditional_run(tmp_path, capsys):
    from eoflow_fast.cli.main import main
    from eoflow_fast.flows import family
    from eoflow_fast.train.engine import train

    cfg = {"model": "eoflow", "data": "digits", "condition": "label", "blocks": 1, "hidden": 8, "steps": 2,
           "batch_size": 64, "progress": False}
    model, ds, _ = family.build(cfg)
    train(model, ds, cfg, tmp_path)
    assert main(["compress", str(tmp_path), "--core", "8", "--n", "5"]) == 0
    assert main(["denoise", str(tmp_path), "--core", "auto", "--sigma", "0.1", "--n", "4"]) == 0
    assert main(["traverse", str(tmp_path), "--dims", "2", "--steps", "3"]) == 0
