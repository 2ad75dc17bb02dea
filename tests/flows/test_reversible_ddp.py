"""memory="reversible" and "boundaries" under DDP (2 processes, gloo): the gradients DDP averages over
ranks equal the stored path's, and equal one process averaging the per-rank gradients."""
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from eoflow_fast.flows import multiscale_flow
from eoflow_fast.flows.eoflow import EOFlow

SHAPE, B = (2, 8, 8), 6
MEMORY = ("stored", "reversible", "boundaries")


class _LossTerms(torch.nn.Module):
    """forward(x) = the objective (what the training engine wraps in DDP)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.loss_terms(x, 0)["objective"]


def _model(memory):
    torch.manual_seed(0)
    model = EOFlow(multiscale_flow(SHAPE, "glow", levels=2, steps=2, hidden=8), SHAPE, flat_input=False, lam=1.0,
                   sigma=0.05, quant_bins=16, memory=memory).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "subnet" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.loss_terms(torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64), 0)
    return model  # ActNorm initialised on a batch every rank shares


def _batch(rank):
    return torch.rand(B, *SHAPE, generator=torch.Generator().manual_seed(100 + rank), dtype=torch.float64)


def _grads(module, rank):
    torch.manual_seed(7 + rank)  # the noise and the sampled dims differ per rank
    module.zero_grad()
    module(_batch(rank)).backward()
    return {n: p.grad.clone() for n, p in module.named_parameters()}


def _worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        out[rank] = {memory: _grads(DistributedDataParallel(_LossTerms(_model(memory))), rank) for memory in MEMORY}
    finally:
        dist.destroy_process_group()



def test_ddp_gradients_of_recomputing_modes_equal_stored(two_ranks):
    per_rank = two_ranks(_worker)
    single = [_grads(_LossTerms(_model("stored")), rank) for rank in range(2)]
    names = single[0].keys()
    assert any(not torch.allclose(single[0][n], single[1][n]) for n in names)  # the ranks' batches differ
    for rank in range(2):
        for memory in MEMORY:
            for name in names:  # DDP prefixes "module."
                got = per_rank[rank][memory][f"module.{name}"]
                torch.testing.assert_close(got, (single[0][name] + single[1][name]) / 2, rtol=1e-8, atol=1e-10,
                                           msg=f"rank {rank} {memory} {name}")
