"""Triton kernels of eoflow_fast. Each file imports only torch and triton, so it can be copied
into another project. Installed as ``eoflow_fast.kernels``."""
