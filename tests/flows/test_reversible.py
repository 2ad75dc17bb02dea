"""memory="reversible": the same objective and gradients as the stored graph, with every block
recomputed in the backward (float64 rtol 1e-8, float32 rtol 1e-4)."""
import pytest
import torch

from eoflow_fast.flows import mlp_flow, multiscale_flow
from eoflow_fast.flows.eoflow import EOFlow
from eoflow_fast.flows.reversible import encode_with_tangent


def _model(kind, memory, lam, dtype, cond=0):
    torch.manual_seed(0)
    if kind == "mlp":
        flow, shape = mlp_flow(6, blocks=3, hidden=16, cond_channels=cond), (6,)
    else:
        arch = "glow" if kind == "glow" else "realnvp"
        flow, shape = multiscale_flow((2, 8, 8), arch, levels=2, steps=2, hidden=8, cond_channels=cond), (2, 8, 8)
    model = EOFlow(flow, shape, flat_input=kind == "mlp", lam=lam, sigma=0.05, quant_bins=16, memory=memory)
    with torch.no_grad():  # away from the zero-initialised identity
        for name, p in model.named_parameters():
            if "subnet" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.to(dtype), shape


def _step(model, batch, seed=7):
    torch.manual_seed(seed)  # the same noise and sampled dims in both modes
    terms = model.loss_terms(batch, 0)
    model.zero_grad()
    terms["objective"].backward()
    return terms["objective"].detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["mlp", "glow", "realnvp"])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-8), (torch.float32, 1e-4)])
def test_reversible_gradients_equal_stored(kind, lam, dtype, rtol):
    stored, shape = _model(kind, "stored", lam, dtype)
    rev, _ = _model(kind, "reversible", lam, dtype)
    torch.manual_seed(1)
    x = torch.rand(12, *shape, dtype=dtype)
    _step(stored, x[:2]), _step(rev, x[:2])  # ActNorm's data-dependent init on the same batch
    (a, ga), (b, gb) = _step(stored, x), _step(rev, x)
    torch.testing.assert_close(b, a, rtol=rtol, atol=rtol)
    assert ga.keys() == gb.keys() and ga
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=rtol, atol=rtol * 1e-2, msg=name)


def test_reversible_conditional_flow_and_input_gradient():
    stored, shape = _model("glow", "stored", 1.0, torch.float64, cond=3)
    rev, _ = _model("glow", "reversible", 1.0, torch.float64, cond=3)
    x, labels = torch.rand(8, *shape, dtype=torch.float64), torch.randint(0, 3, (8,))
    _step(stored, (x, labels)), _step(rev, (x, labels))
    (a, ga), (b, gb) = _step(stored, (x, labels)), _step(rev, (x, labels))
    torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10)
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-8, atol=1e-10)
    flow = mlp_flow(4, blocks=2, hidden=8).double()
    xs = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    dz = torch.randn(10, 4, dtype=torch.float64)
    torch.autograd.gradcheck(lambda v: encode_with_tangent(flow, v, dz), (xs,))


def test_short_training_tracks_stored():
    losses = {}
    for memory in ("stored", "reversible"):
        model, shape = _model("mlp", memory, 1.0, torch.float64)
        opt = torch.optim.Adam(model.parameters(), lr=5e-3)
        torch.manual_seed(3)
        x = torch.rand(64, *shape, dtype=torch.float64)
        losses[memory] = []
        for step in range(30):
            torch.manual_seed(100 + step)
            loss = model.loss_terms(x, step)["objective"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[memory].append(loss.item())
    assert sum(losses["stored"][-5:]) < sum(losses["stored"][:5])
    torch.testing.assert_close(torch.tensor(losses["reversible"]), torch.tensor(losses["stored"]),
                               rtol=1e-7, atol=1e-9)


def test_unknown_memory_mode_is_refused():
    with pytest.raises(ValueError, match="memory must be one of"):
        EOFlow(mlp_flow(4, blocks=1, hidden=4), (4,), flat_input=True, memory="compact")
