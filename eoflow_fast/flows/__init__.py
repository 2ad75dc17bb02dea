"""Invertible flow blocks (FrEIA-style ``forward(x, rev) -> (out, log_det)`` plus forward-mode
``jvp``), complete flows, and the entropy-ordered flow model (EOFlow)."""
from .architectures import MultiscaleFlow, mlp_flow, multiscale_flow
from .base import InvertibleModule, LinearInvertible, SequenceFlow
from .coupling import AffineCoupling, Subnet, conv_subnet, mlp_subnet
from .linear import ActNorm, InvConv1x1, Orthogonal, Permutation
from .reshape import HaarDownsample, Squeeze

__all__ = ["ActNorm", "AffineCoupling", "HaarDownsample", "InvConv1x1", "InvertibleModule", "LinearInvertible",
           "MultiscaleFlow", "Orthogonal", "Permutation", "SequenceFlow", "Squeeze", "Subnet", "conv_subnet",
           "mlp_flow", "mlp_subnet", "multiscale_flow"]
