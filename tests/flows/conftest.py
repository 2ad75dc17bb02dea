"""Flow tests use tiny tensors: one intra-op thread avoids OpenMP spin contention on shared CPUs."""
import torch

torch.set_num_threads(1)
