"""eoflow_fast.compat.normflows against normflows 1.7 itself (float64): same draws and parameter
names, forward / inverse / log-det / gradients, and the decoder JVP of eo_linearize."""
import pytest
import torch

nf = pytest.importorskip("normflows")
from eoflow_fast.compat import normflows as Cn  # noqa: E402


def _perturb(*modules):
    with torch.no_grad():
        ps = [list(m.parameters()) for m in modules]
        for group in zip(*ps):
            noise = 0.3 * torch.randn_like(group[0])
            for p in group:
                p.add_(noise)


def _coupling_twins(scale_map, scale, split_mode, seed=0):
    out = []
    for mod in (nf.flows, Cn):
        torch.manual_seed(seed)
        param_map = nf.nets.MLP([3, 16, 16, 2 * 3 if scale else 3], init_zeros=False)
        out.append(mod.AffineCouplingBlock(param_map, scale=scale, scale_map=scale_map, split_mode=split_mode).double())
    return out


def _glow_twins(scale_map, split_mode, seed=0):
    out = []
    for mod in (nf.flows, Cn):
        torch.manual_seed(seed)
        out.append(mod.GlowBlock(4, 8, scale_map=scale_map, split_mode=split_mode, init_zeros=False).double())
    return out


def _run(flow, x, direction):
    flow.zero_grad()
    x = x.clone().requires_grad_(True)
    y, ld = getattr(flow, direction)(x)
    (y.square().sum() + 2 * ld.sum()).backward()
    return [y.detach(), ld.detach(), x.grad] + [p.grad for p in flow.parameters() if p.grad is not None]


def _assert_same(ref, ours, x):
    assert list(ref.state_dict()) == list(ours.state_dict())
    for direction in ("forward", "inverse"):
        for a, b in zip(_run(ref, x, direction), _run(ours, x, direction)):
            torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("scale_map", ["exp", "sigmoid", "sigmoid_inv"])
@pytest.mark.parametrize("split_mode", ["channel", "channel_inv"])
def test_affine_coupling_block_matches_normflows(scale_map, split_mode):
    ref, ours = _coupling_twins(scale_map, True, split_mode)
    _perturb(ref, ours)
    _assert_same(ref, ours, torch.randn(5, 6, dtype=torch.float64))


def test_shift_only_coupling_matches_normflows():
    ref, ours = _coupling_twins("exp", False, "channel")
    _perturb(ref, ours)
    _assert_same(ref, ours, torch.randn(5, 6, dtype=torch.float64))


@pytest.mark.parametrize("scale_map", ["exp", "sigmoid"])
@pytest.mark.parametrize("split_mode", ["channel", "checkerboard"])
def test_glow_block_matches_normflows(scale_map, split_mode):
    ref, ours = _glow_twins(scale_map, split_mode)
    x = torch.randn(3, 4, 4, 4, dtype=torch.float64)
    ref.inverse(x), ours.inverse(x)  # ActNorm's data-dependent init, on the same batch
    _perturb(ref, ours)
    _assert_same(ref, ours, x)


@pytest.mark.parametrize("scale_map", ["exp", "sigmoid", "sigmoid_inv"])
def test_eo_linearize_is_the_decoder_jvp(scale_map):
    _, ours = _glow_twins(scale_map, "channel")
    x = torch.randn(3, 4, 4, 4, dtype=torch.float64)
    ours.inverse(x)
    _perturb(ours)
    z, ld, inverse_jvp = ours.eo_linearize(x)
    z_ref, ld_ref = ours.inverse(x)
    torch.testing.assert_close(z, z_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ld, ld_ref, rtol=1e-12, atol=1e-12)
    dz = torch.randn(6, 4, 4, 4, dtype=torch.float64)
    expected = torch.func.jvp(lambda v: ours.forward(v)[0], (z.repeat(2, 1, 1, 1),), (dz,))[1]
    torch.testing.assert_close(inverse_jvp(dz), expected, rtol=1e-10, atol=1e-10)
