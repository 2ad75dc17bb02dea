"""CLI tests: in-process through ``eoflow_fast.cli.main.main(argv)``; one torch thread (the
commands apply ``--cpu-threads``, default 1, themselves)."""
import torch

torch.set_num_threads(1)
