"""FactorVAE / bfVAE under DDP: the discriminator, stepped in ``auxiliary_step`` outside DDP,
averages its gradients over ranks, so every rank keeps the same discriminator, equal to one
process stepping on the mean of the per-rank gradients."""

import torch
import torch.distributed as dist

from eoflow_fast.vae import objectives as O
from eoflow_fast.vae.architectures import MLPDecoder, MLPEncoder

P, D, B = 6, 3, 16


def _model():
    torch.manual_seed(0)
    return O.BfVAE(MLPEncoder(P, D, hidden=(8,)), MLPDecoder(D, P, hidden=(8,)), beta=1.0, gamma=10.0,
                   disc_width=16, disc_depth=2, reconstruction="gaussian").double()


def _codes(rank):
    return torch.randn(B, D, generator=torch.Generator().manual_seed(100 + rank), dtype=torch.float64)


def _worker(rank, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model = _model()
        model._codes = (0, _codes(rank))
        torch.manual_seed(7 + rank)  # the dimension shuffles differ per rank too
        model.auxiliary_step(None, 0)
        out[rank] = [p.detach().clone() for p in model.discriminator.parameters()]
    finally:
        dist.destroy_process_group()



def test_discriminator_gradients_are_averaged_over_ranks(two_ranks):
    per_rank = two_ranks(_worker)
    for a, b in zip(*per_rank):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # one process: the mean of the two ranks' gradients, then the same Adam step
    model = _model()
    grads = []
    for rank in range(2):
        model.discriminator.zero_grad()
        torch.manual_seed(7 + rank)
        model.discriminator_loss(_codes(rank)).backward()
        grads.append([p.grad.clone() for p in model.discriminator.parameters()])
    for p, g0, g1 in zip(model.discriminator.parameters(), *grads):
        p.grad = (g0 + g1) / 2
    model.disc_optimizer.step()
    for got, want in zip(per_rank[0], model.discriminator.parameters()):
        torch.testing.assert_close(got, want.detach(), rtol=1e-12, atol=1e-12)
    # and without the averaging the ranks would have drifted apart
    assert any(not torch.equal(a, b) for a, b in zip(*grads))
