"""The FrEIA drop-in blocks check x and the conditions against dims_in / dims_c and name the block
and the shapes (before: split_with_sizes, matmul, cat or 'Boolean value of Tensor' errors)."""
import re

import pytest
import torch

import eoflow_fast.compat.freia as Fm

BLOCKS = ["GLOWCouplingBlock", "RNVPCouplingBlock", "AffineCouplingOneSided", "AllInOneBlock"]


def _subnet(c_in, c_out):
    return torch.nn.Sequential(torch.nn.Linear(c_in, 8), torch.nn.ReLU(), torch.nn.Linear(8, c_out))


@pytest.mark.parametrize("shape", [(4, 7), (4, 5), (6,), (4, 6, 1)])
@pytest.mark.parametrize("name", BLOCKS)
def test_x_outside_dims_in_is_refused_by_name(name, shape):
    block = getattr(Fm, name)([(6,)], subnet_constructor=_subnet)
    x = torch.randn(*shape)
    with pytest.raises(ValueError, match=re.escape(f"{name}: x must have shape (B, 6) (dims_in), got {tuple(shape)}")):
        block((x,))
    with pytest.raises(ValueError, match=f"{name}: x must have shape"):
        block.eo_linearize(x)


@pytest.mark.parametrize("c, error, message", [
    ([torch.randn(1, 3)], ValueError, r"condition 0 must have shape \(4, 3\) .* got \(1, 3\)"),
    ([torch.randn(4, 2)], ValueError, r"condition 0 must have shape \(4, 3\) .* got \(4, 2\)"),
    ([torch.randn(4, 3, 1)], ValueError, r"condition 0 must have shape \(4, 3\) .* got \(4, 3, 1\)"),
    (None, ValueError, r"dims_c \[\(3,\)\] declares 1 condition\(s\), got 0"),
    ([torch.randn(4, 3)] * 2, ValueError, r"dims_c .* declares 1 condition\(s\), got 2"),
    (torch.randn(4, 3), TypeError, "c must be a list of condition tensors"),
])
@pytest.mark.parametrize("name", ["GLOWCouplingBlock", "AffineCouplingOneSided", "AllInOneBlock"])
def test_conditions_outside_dims_c_are_refused_by_name(name, c, error, message):
    block = getattr(Fm, name)([(6,)], dims_c=[(3,)], subnet_constructor=_subnet)
    x = torch.randn(4, 6)
    for call in (lambda: block((x,), c=c), lambda: block((x,), c=c, rev=True, jac=False),
                 lambda: block.eo_linearize(x, c)):
        with pytest.raises(error, match=f"{name}: {message}"):
            call()


def test_convolutional_blocks_keep_free_spatial_sizes():
    """As FrEIA: a convolutional subnet takes any spatial size; only the channels are fixed."""
    block = Fm.GLOWCouplingBlock([(4, 8, 8)], dims_c=[(2, 8, 8)],
                                 subnet_constructor=lambda i, o: torch.nn.Conv2d(i, o, 3, padding=1))
    (y,), _ = block((torch.randn(2, 4, 6, 6),), c=[torch.randn(2, 2, 6, 6)])
    assert y.shape == (2, 4, 6, 6)
    with pytest.raises(ValueError, match=r"condition 0 must have shape \(2, 2, 6, 6\)"):
        block((torch.randn(2, 4, 6, 6),), c=[torch.randn(2, 2, 8, 8)])
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4, 8, 8\) \(dims_in\), got \(2, 5, 8, 8\)"):
        block((torch.randn(2, 5, 8, 8),), c=[torch.randn(2, 2, 8, 8)])


# ---- normflows-compat blocks check their dims like the FrEIA-compat ones (before: a (B, 1) param
# of a scale=False coupling was added to a (B, C2) z2 by broadcasting, other mismatches failed in
# matmul / conv / affine_coupling with shapes the user never passed)
def _nf():
    pytest.importorskip("normflows")
    import normflows as nf

    from eoflow_fast.compat import normflows as Cn
    return nf, Cn


def test_normflows_coupling_refuses_a_param_map_of_the_wrong_width():
    nf, Cn = _nf()
    coupling = Cn.AffineCoupling(nf.nets.MLP([2, 8, 1]), scale=False)
    with pytest.raises(ValueError, match=r"AffineCoupling: param_map\(z1\) must have shape \(5, 2\) \(z2's 2 "
                                         r"channels\), got \(5, 1\)"):
        coupling([torch.randn(5, 2), torch.randn(5, 2)])
    coupling = Cn.AffineCoupling(nf.nets.MLP([2, 8, 2]))
    with pytest.raises(ValueError, match=r"AffineCoupling: param_map\(z1\) must have shape \(5, 8\) \(2 x z2's 4 "
                                         r"channels, shift and scale interleaved\), got \(5, 2\)"):
        coupling.inverse([torch.randn(5, 2), torch.randn(5, 4)])


@pytest.mark.parametrize("shape, message", [
    ((5, 6), r"AffineCoupling: param_map takes z1 of shape \(B, 2\), got z1 \(5, 3\) \(z2 \(5, 3\)\)"),
    ((5, 3), r"AffineCoupling: param_map\(z1\) must have shape \(5, 2\) \(2 x z2's 1 channels"),
    ((5, 4, 1), r"AffineCoupling: param_map takes z1 of shape \(B, 2\), got z1 \(5, 2, 1\)"),
])
def test_normflows_block_refuses_inputs_of_other_dims(shape, message):
    nf, Cn = _nf()
    block = Cn.AffineCouplingBlock(nf.nets.MLP([2, 8, 4]))
    assert block(torch.randn(5, 4))[0].shape == (5, 4)
    for direction in ("forward", "inverse", "eo_linearize"):
        with pytest.raises(ValueError, match=message):
            getattr(block, direction)(torch.randn(*shape))


@pytest.mark.parametrize("shape", [(2, 6, 4, 4), (2, 4, 4), (2, 4)])
def test_normflows_glow_block_refuses_other_channels(shape):
    nf, Cn = _nf()
    block = Cn.GlowBlock(4, 8)
    for direction in ("forward", "inverse", "eo_linearize"):
        with pytest.raises(ValueError, match=rf"GlowBlock: x must have shape \(B, 4, H, W\) \(channels=4\), "
                                             rf"got \({', '.join(map(str, shape))}\)"):
            getattr(block, direction)(torch.randn(*shape))
