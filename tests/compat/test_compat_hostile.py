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
