"""SHA-256 digests that name a model's weights, whatever file held them.

``state_digest(state_dict)`` hashes, per entry in order, ``"NAME:DTYPE:SHAPE\\n"`` and the tensor's
bytes (on the CPU, contiguous). ``weights_digest(module)`` is the module's own ``weights_digest()``
when it defines one (a model whose evaluation changes bookkeeping buffers hashes only its weights,
e.g. ``EOFlow`` hashes its flow), else the digest of its whole ``state_dict()``. A file derived from
a model (``entropy.json``, ``metrics.json``) records it, so results of other weights are never
taken for this model's.
"""
from __future__ import annotations

import hashlib

import torch


def state_digest(state: dict) -> str:
    """Hex SHA-256 of a state dict (names, dtypes, shapes and bytes of its tensors, in order)."""
    digest = hashlib.sha256()
    for name, value in state.items():
        value = value.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}\n".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def weights_digest(module: torch.nn.Module) -> str:
    """``module.weights_digest()`` if the module defines it, else ``state_digest(module.state_dict())``."""
    own = getattr(module, "weights_digest", None)
    return own() if callable(own) else state_digest(module.state_dict())
