"""EOFlow.from_module: the EOFlow objective on FrEIA / normflows models, fused blocks against the
torch.func fallback on the peers' own blocks, and FrEIA's README example with one import swapped."""
import numpy as np
import pytest
import torch
from torch import nn

Ff = pytest.importorskip("FrEIA.framework")
Fm = pytest.importorskip("FrEIA.modules")
nf = pytest.importorskip("normflows")
from eoflow_fast.compat import freia as Cm  # noqa: E402
from eoflow_fast.compat import normflows as Cn  # noqa: E402
from eoflow_fast.flows import mlp_flow  # noqa: E402
from eoflow_fast.flows.eoflow import EOFlow  # noqa: E402


def subnet_fc(c_in, c_out):
    return nn.Sequential(nn.Linear(c_in, 32), nn.ReLU(), nn.Linear(32, c_out))


def _freia_inn(modules, dim=6, seed=0):
    torch.manual_seed(seed)
    np.random.seed(seed)
    inn = Ff.SequenceINN(dim)
    for k in range(3):
        # hard permutations: FrEIA's soft ones are orthogonal only to float32 rounding, which moves the
        # fallback's inverse primal (and so its JVP) by ~1e-9 relative against the reused activations
        inn.append(modules.AllInOneBlock, subnet_constructor=subnet_fc, permute_soft=False)
        inn.append(modules.GLOWCouplingBlock, subnet_constructor=subnet_fc, clamp=1.5)
    with torch.no_grad():
        for p in inn.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn_like(p))
    return inn.double()


def _objective_and_grads(model, x, seed=3):
    torch.manual_seed(seed)  # same noise augmentation and dimension draws
    terms = model.loss_terms(x, 0)
    model.zero_grad()
    terms["objective"].backward()
    return terms["objective"].detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_eoflow_objective_on_freia_fused_equals_freia_fallback(lam):
    x = torch.rand(16, 6, dtype=torch.float64)
    ours = EOFlow.from_module(_freia_inn(Cm), (6,), lam=lam, sigma=0.05)
    peer = EOFlow.from_module(_freia_inn(Fm), (6,), lam=lam, sigma=0.05)
    (a, ga), (b, gb) = _objective_and_grads(peer, x), _objective_and_grads(ours, x)
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    assert len(ga) == len(gb) > 0
    for u, v in zip(ga, gb):
        torch.testing.assert_close(v, u, rtol=1e-8, atol=1e-10)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_eoflow_on_normflows_glow_fused_equals_fallback():
    x = torch.rand(4, 4, 4, 4, dtype=torch.float64)
    models = []
    for mod in (nf.flows, Cn):
        torch.manual_seed(0)
        flows = [mod.GlowBlock(4, 8, init_zeros=False) for _ in range(2)]
        models.append(EOFlow.from_module(nf.NormalizingFlow(nf.distributions.DiagGaussian((4, 4, 4)), flows)
                                         .double(), (4, 4, 4), lam=1.0))
        models[-1].flow._encode(x)  # ActNorm's data-dependent init on one batch
    peer, ours = models
    with torch.no_grad():
        for p, q in zip(peer.parameters(), ours.parameters()):
            noise = 0.1 * torch.randn_like(p)
            p.add_(noise)
            q.add_(noise)
    (a, ga), (b, gb) = _objective_and_grads(peer, x), _objective_and_grads(ours, x)
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(v, u, rtol=1e-8, atol=1e-10)


def test_native_flow_passes_through_and_explained_entropy_runs():
    flow = mlp_flow(4, blocks=2, hidden=8).double()
    model = EOFlow.from_module(flow, (4,), lam=1.0)
    assert model.flow is flow
    inn_model = EOFlow.from_module(_freia_inn(Cm, dim=4), (4,), lam=1.0)
    out = inn_model.explained_entropy(torch.rand(20, 4, dtype=torch.float64), batch_size=8, chunk=2)
    assert out["entropy"].shape == (4,) and torch.isfinite(out["entropy"]).all()
    x = torch.rand(5, 4, dtype=torch.float64)
    torch.testing.assert_close(inn_model.decode_full(inn_model.encode(x)[0]), x, rtol=1e-5, atol=1e-6)


def test_unknown_model_is_refused_by_name():
    with pytest.raises(TypeError, match="Linear is not a FrEIA"):
        EOFlow.from_module(nn.Linear(3, 3), (3,))


def _readme_losses(modules, steps=30):
    """FrEIA's README example (moons, 8 AllInOneBlocks with soft permutations) with a data seed."""
    from sklearn.datasets import make_moons
    torch.manual_seed(0)
    np.random.seed(0)
    inn = Ff.SequenceINN(2)
    for _ in range(8):
        inn.append(modules.AllInOneBlock, subnet_constructor=lambda c_in, c_out: nn.Sequential(
            nn.Linear(c_in, 512), nn.ReLU(), nn.Linear(512, c_out)), permute_soft=True)
    optimizer = torch.optim.Adam(inn.parameters(), lr=0.001)
    losses = []
    for i in range(steps):
        optimizer.zero_grad()
        data, _ = make_moons(n_samples=100, noise=0.05, random_state=i)
        x = torch.Tensor(data)
        z, log_jac_det = inn(x)
        loss = (0.5 * torch.sum(z ** 2, 1) - log_jac_det).mean() / 2
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_freia_readme_example_with_swapped_import_trains_identically():
    ref, ours = _readme_losses(Fm), _readme_losses(Cm)
    assert ref[-1] < ref[0]
    np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=2e-6)
