"""Public kernel API: thin autograd wrappers over Triton (CUDA), C++ (CPU) and PyTorch reference
backends. Every op takes ``backend="auto"|"triton"|"cpp"|"torch"``; see ``_dispatch`` for the rule.

Names are loaded lazily so that importing one op never pays for another's kernels.
"""
import sys
from importlib import import_module
from types import ModuleType

from ._dispatch import BACKENDS, BackendUnavailable

_EXPORTS = {
    "affine_coupling": "affine_coupling",
    "affine_coupling_jvp": "affine_coupling",
    "soft_clamp": "affine_coupling",
    "gaussian_pair_logsumexp": "gaussian_pair_logsumexp",
    "tc_decomposition": "tc_decomposition",
    "marginal_entropy": "marginal_entropy",
    "kink_select": "kink_select",
}

__all__ = ["BACKENDS", "BackendUnavailable", *_EXPORTS]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(f"{__name__}.{_EXPORTS[name]}")
    # Loading a submodule binds its name on this package (``ops.affine_coupling`` would become the
    # module); rebind every export of that module to the function it names.
    for export, owner in _EXPORTS.items():
        if owner == _EXPORTS[name]:
            globals()[export] = getattr(module, export)
    return globals()[name]


class _Namespace(ModuleType):
    """Keeps ``ops.<name>`` the function when a submodule of the same name is imported directly
    (``from .gaussian_pair_logsumexp import ...`` inside another op), which would otherwise bind
    the submodule over the export."""

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Namespace
