"""eoflow_fast.compat.freia against FrEIA 0.2 itself: same construction draws, state_dict names,
forward / reverse / log-det / gradients to float64 rounding, and composition in SequenceINN/GraphINN."""
import numpy as np
import pytest
import torch
from torch import nn

Ff = pytest.importorskip("FrEIA.framework")
Fm = pytest.importorskip("FrEIA.modules")
from eoflow_fast.compat import freia as Cm  # noqa: E402



@pytest.fixture(autouse=True)
def float64_default():
    """The comparisons run in float64 (subnets built by the constructors included)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def subnet_fc(c_in, c_out):
    return nn.Sequential(nn.Linear(c_in, 16), nn.ReLU(), nn.Linear(16, c_out))


def subnet_conv(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(8, c_out, 1))


def subnet_tanh(c_in, c_out):  # a layer without a tangent rule: exercises the torch.func fallback
    return nn.Sequential(nn.Linear(c_in, 16), nn.Tanh(), nn.Linear(16, c_out))


def _twins(cls_name, dims_in, dims_c=None, seed=0, **kw):
    """(FrEIA block, compat block) built from the same RNG states; the subnets' last layers are
    scaled up so the clamp is exercised away from the identity."""
    blocks = []
    for mod in (Fm, Cm):
        torch.manual_seed(seed)
        np.random.seed(seed)
        blocks.append(getattr(mod, cls_name)(dims_in, dims_c=dims_c or [], **kw).double())
    ref, ours = blocks
    assert list(ref.state_dict()) == list(ours.state_dict())
    for (name, a), b in zip(ref.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        for p_ref, p_ours in zip(ref.parameters(), ours.parameters()):
            if not p_ref.requires_grad:  # fixed permutations stay permutations
                continue
            noise = 0.7 * torch.randn_like(p_ref)
            p_ref.add_(noise)
            p_ours.add_(noise)
    return ref, ours


def _grads(block, x, c, rev):
    block.zero_grad()
    x = x.clone().requires_grad_(True)
    kw = {"c": c} if c else {}
    (y,), ld = block((x,), rev=rev, **kw)
    (y.square().sum() + 3 * ld.sum()).backward()
    return y.detach(), ld.detach(), x.grad, [p.grad for p in block.parameters() if p.requires_grad]


def _inverse_tol(kw):
    """FrEIA stores a soft permutation and its transpose as float32, so its inverse is exact only to
    float32 orthogonality (~1e-7), in FrEIA as here."""
    return 1e-5 if kw.get("permute_soft") else 1e-10


CASES = [
    ("GLOWCouplingBlock", [(6,)], dict(subnet_constructor=subnet_fc)),
    ("GLOWCouplingBlock", [(7,)], dict(subnet_constructor=subnet_fc, clamp=1.5, clamp_activation="TANH")),
    ("GLOWCouplingBlock", [(15,)], dict(subnet_constructor=subnet_fc, clamp_activation="SIGMOID")),
    ("GLOWCouplingBlock", [(4, 5, 5)], dict(subnet_constructor=subnet_conv)),
    ("GLOWCouplingBlock", [(6,)], dict(subnet_constructor=subnet_fc, clamp_activation=lambda u: torch.sin(u))),
    ("GLOWCouplingBlock", [(5,)], dict(subnet_constructor=subnet_tanh, split_len=2)),
    ("RNVPCouplingBlock", [(6,)], dict(subnet_constructor=subnet_fc)),
    ("RNVPCouplingBlock", [(3, 4, 4)], dict(subnet_constructor=subnet_conv, clamp=3.0)),
    ("AffineCouplingOneSided", [(7,)], dict(subnet_constructor=subnet_fc)),
    ("AffineCouplingOneSided", [(4, 4, 4)], dict(subnet_constructor=subnet_conv, clamp_activation="TANH")),
    ("AllInOneBlock", [(6,)], dict(subnet_constructor=subnet_fc)),
    ("AllInOneBlock", [(7,)], dict(subnet_constructor=subnet_fc, permute_soft=True, global_affine_type="SIGMOID")),
    ("AllInOneBlock", [(5,)], dict(subnet_constructor=subnet_fc, gin_block=True, reverse_permutation=True)),
    ("AllInOneBlock", [(6,)], dict(subnet_constructor=subnet_fc, learned_householder_permutation=3,
                                   global_affine_type="EXP")),
    ("AllInOneBlock", [(4, 3, 3)], dict(subnet_constructor=subnet_conv, permute_soft=True)),
]


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1][0]}")
def test_block_matches_freia(case, conditional):
    name, dims_in, kw = case
    dims_c = [(2, *dims_in[0][1:])] if conditional else []
    ref, ours = _twins(name, dims_in, dims_c, **kw)
    x = 1.5 * torch.randn(5, *dims_in[0])
    c = [torch.randn(5, *dims_c[0])] if conditional else []
    for rev in (False, True):
        # float64 rounding relative to each tensor's scale (reverse-mode gradients reach 1e8 here)
        ga, gb = _grads(ref, x, c, rev), _grads(ours, x, c, rev)
        for a, b in zip([*ga[:3], *ga[3]], [*gb[:3], *gb[3]]):
            assert (a is None) == (b is None)
            if a is None:  # a parameter the block does not use (GIN's global scale)
                continue
            torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-11 * float(a.abs().max().clamp_min(1.0)))
    (y,), _ = ours((x,), c=c, rev=False)
    (x_back,), _ = ours((y,), c=c, rev=True)
    tol = _inverse_tol(kw)
    torch.testing.assert_close(x_back, x, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1][0]}")
def test_eo_linearize_is_the_decoder_jvp(case):
    """eo_linearize's inverse_jvp(dy) equals torch.func.jvp of the block's reverse at its output,
    for m stacked tangents per point, and its output and log-det equal the forward pass."""
    name, dims_in, kw = case
    _, ours = _twins(name, dims_in, [(2, *dims_in[0][1:])], **kw)
    x, c = torch.randn(4, *dims_in[0]), [torch.randn(4, 2, *dims_in[0][1:])]
    out, ld, inverse_jvp = ours.eo_linearize(x, c)
    (y,), ld_ref = ours((x,), c=c)
    torch.testing.assert_close(out, y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ld, ld_ref, rtol=1e-12, atol=1e-12)
    dy = torch.randn(3 * 4, *dims_in[0])
    c3 = [c[0].repeat(3, *[1] * (c[0].dim() - 1))]
    expected = torch.func.jvp(lambda v: ours((v,), c=c3, rev=True)[0][0], (y.repeat(3, *[1] * (y.dim() - 1)),),
                              (dy,))[1]
    tol = _inverse_tol(kw)
    torch.testing.assert_close(inverse_jvp(dy), expected, rtol=tol, atol=tol)


def test_composes_in_sequence_and_graph_inn_and_loads_freia_state():
    torch.manual_seed(1)
    np.random.seed(1)
    inn_ref = Ff.SequenceINN(6)
    for _ in range(3):
        inn_ref.append(Fm.AllInOneBlock, subnet_constructor=subnet_fc, permute_soft=True)
    inn = Ff.SequenceINN(6)
    for _ in range(3):
        inn.append(Cm.AllInOneBlock, subnet_constructor=subnet_fc, permute_soft=True)
    inn_ref.double(), inn.double()
    inn.load_state_dict(inn_ref.state_dict())
    x = torch.randn(8, 6)
    for a, b in zip(inn_ref(x), inn(x)):
        torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-12)

    nodes = [Ff.InputNode(4, name="in")]
    nodes.append(Ff.Node(nodes[-1], Cm.GLOWCouplingBlock, {"subnet_constructor": subnet_fc}))
    nodes.append(Ff.Node(nodes[-1], Fm.PermuteRandom, {"seed": 0}))
    nodes.append(Ff.Node(nodes[-1], Cm.RNVPCouplingBlock, {"subnet_constructor": subnet_fc}))
    nodes.append(Ff.OutputNode(nodes[-1], name="out"))
    graph = Ff.GraphINN(nodes)
    z, ld = graph(torch.randn(3, 4))
    x_back, ld_back = graph(z, rev=True)
    assert z.shape == (3, 4)
    torch.testing.assert_close(ld_back, -ld, rtol=1e-10, atol=1e-10)


def test_bad_clamp_activation_is_named():
    with pytest.raises(ValueError, match="Unknown clamp activation"):
        Cm.GLOWCouplingBlock([(4,)], subnet_constructor=subnet_fc, clamp_activation="RELU")
    with pytest.raises(TypeError, match="clamp_activation"):
        Cm.GLOWCouplingBlock([(4,)], subnet_constructor=subnet_fc, clamp_activation=3)
