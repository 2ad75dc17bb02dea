"""memory="reversible" (inverses) and "boundaries": the same objective and gradients as the stored
graph, with every block recomputed in the backward (float64 rtol 1e-8, float32 rtol 1e-4, also deep
float32 flows with ReLU inputs at the rounding level); the per-unit round-trip fallback of
"reversible"; bf16 autocast; the transposed subnet tangent of sweep A."""
import pytest
import torch

from eoflow_fast.flows import layer_tangents, mlp_flow, multiscale_flow
from eoflow_fast.flows.coupling import conv_subnet, mlp_subnet
from eoflow_fast.flows.eoflow import EOFlow
from eoflow_fast.flows.reversible import KINK_MARGIN, ReversibleState, encode_with_tangent


def _model(kind, memory, lam, dtype, cond=0, **kw):
    torch.manual_seed(0)
    if kind == "mlp":
        flow, shape = mlp_flow(6, blocks=3, hidden=16, cond_channels=cond), (6,)
    else:
        arch = "glow" if kind == "glow" else "realnvp"
        flow, shape = multiscale_flow((2, 8, 8), arch, levels=2, steps=2, hidden=8, cond_channels=cond), (2, 8, 8)
    model = EOFlow(flow, shape, flat_input=kind == "mlp", lam=lam, sigma=0.05, quant_bins=16, memory=memory,
                  **kw)
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


@pytest.mark.parametrize("memory", ["reversible", "boundaries"])
@pytest.mark.parametrize("kind", ["mlp", "glow", "realnvp"])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-8), (torch.float32, 1e-4)])
def test_reversible_gradients_equal_stored(kind, lam, dtype, rtol, memory):
    # mlp: Orthogonal rotation, ActNorm, Permutation; glow: Squeeze, ActNorm, LU 1x1 conv, factor-out;
    # realnvp: Haar, Permutation, factor-out; all: the fused affine coupling
    stored, shape = _model(kind, "stored", lam, dtype)
    rev, _ = _model(kind, memory, lam, dtype)
    torch.manual_seed(1)
    x = torch.rand(12, *shape, dtype=dtype)
    _step(stored, x[:2]), _step(rev, x[:2])  # ActNorm's data-dependent init on the same batch
    (a, ga), (b, gb) = _step(stored, x), _step(rev, x)
    torch.testing.assert_close(b, a, rtol=rtol, atol=rtol)
    assert ga.keys() == gb.keys() and ga
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=rtol, atol=rtol * 1e-2, msg=name)


@pytest.mark.parametrize("memory", ["reversible", "boundaries"])
def test_reversible_conditional_flow_and_input_gradient(memory):
    stored, shape = _model("glow", "stored", 1.0, torch.float64, cond=3)
    rev, _ = _model("glow", memory, 1.0, torch.float64, cond=3)
    x, labels = torch.rand(8, *shape, dtype=torch.float64), torch.randint(0, 3, (8,))
    _step(stored, (x, labels)), _step(rev, (x, labels))
    (a, ga), (b, gb) = _step(stored, (x, labels)), _step(rev, (x, labels))
    torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10)
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-8, atol=1e-10)
    flow = mlp_flow(4, blocks=2, hidden=8).double()
    xs = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    dz = torch.randn(10, 4, dtype=torch.float64)
    torch.autograd.gradcheck(lambda v: encode_with_tangent(flow, v, dz, memory), (xs,))


def _linear_loss(flow, x, dz, mode):
    """A random linear function of (z, log_det, u) and its parameter gradients."""
    z, ld, u = encode_with_tangent(flow, x, dz, mode)
    torch.manual_seed(5)
    loss = (torch.randn_like(z) * z).sum() + (torch.randn_like(ld) * ld).sum() + (torch.randn_like(u) * u).sum()
    grads = torch.autograd.grad(loss, [p for p in flow.parameters() if p.requires_grad], allow_unused=True)
    return loss.detach(), grads


def test_reversible_two_tangents_per_point_multiscale():
    """m = 2 tangent rows per point (the inverse JVP and the primal VJP tile the recomputed inputs)."""
    model, shape = _model("glow", "stored", 1.0, torch.float64)
    flow = model.flow
    x = torch.rand(3, *shape, dtype=torch.float64)
    flow(x)  # ActNorm init
    dz = torch.randn(6, x[0].numel(), dtype=torch.float64)
    (a, ga), (b, gb) = _linear_loss(flow, x, dz, "boundaries"), _linear_loss(flow, x, dz, "reversible")
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    for g1, g2 in zip(ga, gb):
        torch.testing.assert_close(g2, g1, rtol=1e-8, atol=1e-10)


def _ill_conditioned(model, unit_actnorm=1):
    """Shrink one ActNorm to scale e^-25 with bias 5: y = 5 + 1.4e-11 x keeps ~5 digits of x in
    float64, so that unit's inverse loses ~1e-5 relative accuracy (tolerance 2.2e-13)."""
    norms = [m for m in model.flow.modules() if type(m).__name__ == "ActNorm"]
    with torch.no_grad():
        norms[unit_actnorm].log_scale.fill_(-25.0)
        norms[unit_actnorm].bias.fill_(5.0)


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_ill_conditioned_unit_falls_back_to_storing(lam):
    stored, shape = _model("mlp", "stored", lam, torch.float64)
    rev, _ = _model("mlp", "reversible", lam, torch.float64)
    loose, _ = _model("mlp", "reversible", lam, torch.float64, reversible_tol=1e9)  # never falls back
    torch.manual_seed(1)
    x = torch.rand(12, *shape, dtype=torch.float64)
    for m in (stored, rev, loose):
        _step(m, x[:2])
        _ill_conditioned(m)
    (a, ga), (b, gb), (c, gc) = _step(stored, x), _step(rev, x), _step(loose, x)
    stats = rev.reversible_state.stats
    # mlp_flow units: [Orthogonal, ActNorm, coupling], [Permutation, ActNorm(1), coupling], ...
    assert stats["kept_units"] == [1]
    assert stats["rebuild_error"][1] > 1e-8 > 1e3 * max(stats["rebuild_error"][:1] + stats["rebuild_error"][2:])
    # lam > 0: P2's rebuilt x misses x, so the forward checks; lam = 0: the backward ends off x and is redone
    assert stats["recomputed"] == (lam == 0.0)
    assert loose.reversible_state.stats["kept_units"] == []
    torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10)
    worst = 0.0
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-8, atol=1e-8 * float(ga[name].abs().max()), msg=name)
        worst = max(worst, float((gc[name] - ga[name]).abs().max() / ga[name].abs().max()))
    assert worst > 1e-7  # without the fallback the gradients are visibly off


def test_check_bounds_the_drift_of_the_inverse_chain_not_only_each_round_trip():
    """Every ActNorm at scale e^-3 with bias 1 (8 couplings, float64): each unit's round trip is within
    tol, but rebuilding from z multiplies the error by ~e^3 per unit. The check walks the inverses as
    the backward does and keeps the units where the rebuilt input misses; gradients then equal the
    stored ones (without keeping: 1e-4 relative, measured)."""
    from eoflow_fast.flows.reversible import _program

    def run(memory, **kw):
        torch.manual_seed(0)
        model = EOFlow(mlp_flow(6, blocks=8, hidden=16), (6,), flat_input=True, lam=1.0, sigma=0.05,
                       quant_bins=16, memory=memory, **kw).double()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "subnet" in name:
                    p.add_(0.1 * torch.randn_like(p))
        torch.manual_seed(1)
        x = torch.rand(12, 6, dtype=torch.float64)
        _step(model, x[:2])
        with torch.no_grad():
            for norm in [m for m in model.flow.modules() if type(m).__name__ == "ActNorm"]:
                norm.log_scale.fill_(-3.0)
                norm.bias.fill_(1.0)
        return model, x, _step(model, x)[1]
    stored, x, g_stored = run("stored")
    rev, _, g_rev = run("reversible")
    loose, _, g_loose = run("reversible", reversible_tol=1e9)
    tol = rev.reversible_state.stats["tol"]
    h, trips = x, []
    with torch.no_grad():
        for _, op in _program(rev.flow):
            out = op(h)[0]
            trips.append(float((op(out, rev=True)[0] - h).abs().max() / h.abs().max()))
            h = out
    assert max(trips) < tol / 10  # a per-unit round-trip criterion would keep nothing
    assert rev.reversible_state.stats["kept_units"] and not loose.reversible_state.stats["kept_units"]
    worst = max(float((g_loose[n] - g_stored[n]).abs().max() / g_stored[n].abs().max()) for n in g_stored)
    assert worst > 1e-6
    for name in g_stored:
        torch.testing.assert_close(g_rev[name], g_stored[name], rtol=1e-8,
                                   atol=1e-8 * float(g_stored[name].abs().max()), msg=name)


def test_drift_sentinel_rechecks_between_scheduled_checks():
    """check_every = 1000: the second step is not scheduled for a check, but the reconstructed x'
    misses x (lam > 0, forward) and every unit is checked at once."""
    stored, shape = _model("mlp", "stored", 1.0, torch.float64)
    rev, _ = _model("mlp", "reversible", 1.0, torch.float64, reversible_check_every=1000)
    torch.manual_seed(1)
    x = torch.rand(12, *shape, dtype=torch.float64)
    _step(stored, x[:2]), _step(rev, x[:2])
    assert rev.reversible_state.stats["checked"] and rev.reversible_state.stats["kept_units"] == []
    _step(rev, x[:2])
    assert not rev.reversible_state.stats["checked"]
    for m in (stored, rev):
        _ill_conditioned(m)
    (a, ga), (b, gb) = _step(stored, x), _step(rev, x)
    assert rev.reversible_state.stats["checked"] and rev.reversible_state.stats["kept_units"] == [1]
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-8, atol=1e-8 * float(ga[name].abs().max()), msg=name)


def test_reversible_state_arguments():
    with pytest.raises(ValueError, match="check_every"):
        ReversibleState(check_every=0)
    with pytest.raises(ValueError, match="tol"):
        ReversibleState(tol=0.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        encode_with_tangent(mlp_flow(4, blocks=1, hidden=4), torch.zeros(2, 4), None, "inverse")


@pytest.mark.parametrize("memory", ["reversible", "boundaries"])
def test_short_training_tracks_stored(memory):
    losses = {}
    for memory in ("stored", memory):
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
    torch.testing.assert_close(torch.tensor(losses[memory]), torch.tensor(losses["stored"]),
                               rtol=1e-7, atol=1e-9)


def test_unknown_memory_mode_is_refused():
    with pytest.raises(ValueError, match="memory must be one of"):
        EOFlow(mlp_flow(4, blocks=1, hidden=4), (4,), flat_input=True, memory="compact")


def _glow16(memory, lam, depth):
    """A (3, 16, 16) two-level Glow with ``depth`` couplings, perturbed output layers, no noise."""
    torch.manual_seed(0)
    shape = (3, 16, 16)
    model = EOFlow(multiscale_flow(shape, "glow", 2, depth // 2, 16), shape, flat_input=False, lam=lam,
                   sigma=0.0, dequantize=False, memory=memory)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "subnet" in name and ".4." in name:  # the zero-initialised last layers
                p.add_(0.05 * torch.randn_like(p))
    return model, shape


def _plant_kinks(model, x):
    """Shift the first-layer biases of the first coupling's subnets so that one ReLU input per hidden
    channel (sample 0, centre pixel) sits at the rounding level: sweep B rebuilds that coupling's input
    through every later unit, so without the recorded kinks about half of these masks flip."""
    coupling = next(m for m in model.flow.modules() if type(m).__name__ == "AffineCoupling")
    for net in (coupling.subnet2, coupling.subnet1):  # forward order: the second reads the first's output
        seen = []
        handle = net[1].register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
        with torch.no_grad():
            model.encode(x)
        handle.remove()
        with torch.no_grad():
            net[0].bias -= seen[0][0, :, seen[0].shape[2] // 2, seen[0].shape[3] // 2]


@pytest.mark.parametrize("memory,depth,lam,device", [
    ("reversible", 16, 0.0, "cpu"), ("reversible", 16, 1.0, "cpu"), ("reversible", 64, 1.0, "cpu"),
    ("boundaries", 16, 1.0, "cpu"), pytest.param("reversible", 16, 1.0, "cuda", marks=pytest.mark.cuda)])
def test_deep_float32_gradients_equal_stored_at_relu_kinks(memory, depth, lam, device):
    """float32, up to 64 couplings, with ReLU inputs planted at the rounding level: gradients equal the
    stored path's to rtol 1e-4 (relative to each parameter's largest gradient); without restoring the
    recorded kinks (``restore_kinks=False``, checked at 16 couplings) 4.8e-2 to 7.6e-2 (measured). On
    CUDA with TF32 convolutions off (with TF32 on, see the next test)."""
    def run(mode, restore_kinks=True):
        model, shape = _glow16(mode, lam, depth)
        model = model.to(device)
        if model.reversible_state is not None:
            model.reversible_state.restore_kinks = restore_kinks
        torch.manual_seed(1)
        x = torch.rand(8, *shape).to(device)
        model.loss_terms(x[:2], 0)  # ActNorm init
        _plant_kinks(model, x)
        return model, _step(model, x)

    with torch.backends.cudnn.flags(allow_tf32=False):
        (a, ga), (model, (b, gb)) = run("stored")[1], run(memory)
        if memory == "reversible":
            stats = model.reversible_state.stats
            assert stats["kink_records"] > 0 and stats["kink_margin"] < KINK_MARGIN and not stats["recomputed"]
            if depth == 16:
                g_flipped = run(memory, restore_kinks=False)[1][1]
                assert max(float((g_flipped[n] - ga[n]).abs().max() / ga[n].abs().max()) for n in ga) > 1e-3
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-4, atol=1e-4 * float(ga[name].abs().max()),
                                   msg=name)


@pytest.mark.parametrize("lam", [0.0, 1.0])
@pytest.mark.parametrize("device,precision", [
    ("cpu", "bf16"), pytest.param("cuda", "bf16", marks=pytest.mark.cuda),
    pytest.param("cuda", "tf32", marks=pytest.mark.cuda)])
def test_lower_precision_gradients_as_close_as_stored(device, precision, lam):
    """Subnets in a lower precision (bf16 autocast; TF32 convolutions, PyTorch's CUDA default): the
    recomputing modes are no farther from the float32 CPU gradient than the stored path on the same
    device and precision (median over parameters of the relative max-norm error, 2x slack; measured
    on the CPU under bf16: stored 1.4e-2, reversible 1.5e-2 at lam 0)."""
    def grads(memory, device, precision):
        model, shape = _glow16(memory, lam, 8)
        torch.manual_seed(1)
        x = torch.rand(8, *shape)
        model.loss_terms(x[:2], 0)  # ActNorm init on the CPU, the same for every run
        model, x = model.to(device), x.to(device)
        with torch.backends.cudnn.flags(allow_tf32=precision == "tf32"), \
                torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            torch.manual_seed(7)
            loss = model.loss_terms(x, 0)["objective"]
            model.zero_grad()
            loss.backward()
        return {n: p.grad.cpu() for n, p in model.named_parameters() if p.grad is not None}

    def median_error(g, ref):
        errors = sorted(float((g[n] - ref[n]).abs().max() / ref[n].abs().max()) for n in ref)
        return errors[len(errors) // 2]
    exact = grads("stored", "cpu", "float32")
    stored = median_error(grads("stored", device, precision), exact)
    assert stored < 0.1  # lower precision subnets: off float32 but not broken
    for memory in ("reversible", "boundaries"):
        assert median_error(grads(memory, device, precision), exact) < 2 * stored + 1e-5


@pytest.mark.parametrize("make,shape", [(lambda: conv_subnet(3, 6, 8), (2, 3, 5, 5)),
                                        (lambda: mlp_subnet(4, 6, 7), (3, 4))])
def test_tangent_transpose_is_the_vjp_of_the_tangent(make, shape):
    torch.manual_seed(0)
    net = make().double()
    for p in net.parameters():
        p.data.normal_()
    out, acts = net.forward_cached(torch.randn(*shape, dtype=torch.float64))
    a = torch.randn_like(out)
    w = torch.zeros(*shape, dtype=torch.float64, requires_grad=True)
    expected = torch.autograd.grad(net.tangent(w, acts), w, a)[0]
    torch.testing.assert_close(layer_tangents.tangent_transpose(net, a, acts), expected, rtol=1e-12, atol=1e-12)
    strided = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU())
    assert layer_tangents.tangent_transpose(strided, a, acts) is None
    assert not layer_tangents.has_transpose_rules(strided)


@pytest.mark.parametrize("memory", ["reversible", "boundaries"])
def test_torch_compile_gives_the_eager_gradients(memory):
    """Under torch.compile the recomputing encode runs eagerly (``torch.compiler.disable``) inside the
    compiled loss; objective and gradients equal eager mode's (backend "eager": Dynamo's tracing only,
    inductor measured separately in the README)."""
    model, shape = _model("glow", memory, 1.0, torch.float64)
    torch.manual_seed(1)
    x = torch.rand(6, *shape, dtype=torch.float64)
    _step(model, x[:2])
    a, ga = _step(model, x)
    torch._dynamo.reset()
    compiled = torch.compile(lambda v: model.loss_terms(v, 0)["objective"], backend="eager")
    torch.manual_seed(7)
    b = compiled(x)
    model.zero_grad()
    b.backward()
    torch.testing.assert_close(b.detach(), a, rtol=1e-12, atol=1e-12)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ga[name], rtol=1e-10, atol=1e-12, msg=name)
