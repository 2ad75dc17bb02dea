"""eoflow_fast: fused-kernel engine for entropy-ordered flows, disentangling VAEs and DEFT.

Layers (each imports only the ones below it)::

    cli -> train -> flows | vae | deft | metrics | data -> ops -> kernels (Triton) | _C (C++) | reference
"""
__version__ = "0.1.0"
