"""Every flow block: exact inverse, log-det = log|det| of autograd's Jacobian, jvp = torch.func.jvp."""
import copy
import math

import pytest
import torch

from eoflow_fast.flows import (ActNorm, AffineCoupling, HaarDownsample, InvConv1x1, Orthogonal, Permutation,
                               SequenceFlow, Squeeze, mlp_flow, multiscale_flow)


def _randomise(module, gen, scale=0.3):
    """Move every parameter off its identity-like init so couplings, ActNorm and rotations act."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        for m in module.modules():
            if isinstance(m, ActNorm):
                m.initialized.fill_(True)
    return module


CASES = {
    "coupling_mlp": (lambda: AffineCoupling(5, 8, "mlp"), (3, 5)),
    "coupling_conv": (lambda: AffineCoupling(3, 4, "conv"), (2, 3, 4, 4)),
    "coupling_tanh": (lambda: AffineCoupling(4, 8, "mlp", clamp=1.5, clamp_fn="tanh"), (3, 4)),
    "actnorm_flat": (lambda: ActNorm(4), (3, 4)),
    "actnorm_image": (lambda: ActNorm(3), (2, 3, 2, 2)),
    "permutation": (lambda: Permutation(5, seed=3), (3, 5)),
    "invconv_flat": (lambda: InvConv1x1(4, seed=1), (3, 4)),
    "invconv_image": (lambda: InvConv1x1(3, seed=2), (2, 3, 2, 2)),
    "orthogonal": (lambda: Orthogonal(4), (3, 4)),
    "orthogonal_image": (lambda: Orthogonal(3), (2, 3, 2, 2)),
    "squeeze": (lambda: Squeeze(), (2, 2, 4, 4)),
    "haar": (lambda: HaarDownsample(2), (2, 2, 4, 4)),
    "sequence_mlp_flow": (lambda: mlp_flow(6, blocks=2, hidden=8), (3, 6)),
    "glow": (lambda: multiscale_flow((2, 4, 4), "glow", levels=2, steps=1, hidden=4), (2, 2, 4, 4)),
    "realnvp": (lambda: multiscale_flow((2, 4, 4), "realnvp", levels=2, steps=1, hidden=4), (2, 2, 4, 4)),
}


@pytest.fixture(params=sorted(CASES))
def case(request, gen):
    make, shape = CASES[request.param]
    module = _randomise(make().double(), gen)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    return module, x


def _jacobian(f, x_single):
    return torch.autograd.functional.jacobian(f, x_single).reshape(x_single.numel(), -1)


def test_inverse_and_log_det(case):
    module, x = case
    y, log_det = module(x)
    assert log_det.shape == (x.shape[0],)
    x_back, log_det_rev = module(y, rev=True)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(log_det_rev, -log_det, atol=1e-10, rtol=1e-10)
    for b in range(x.shape[0]):
        J = _jacobian(lambda v: module(v[None])[0][0], x[b])
        sign, logabs = torch.linalg.slogdet(J.T)
        assert sign != 0
        torch.testing.assert_close(log_det[b], logabs, atol=1e-9, rtol=1e-9)
        J_rev = _jacobian(lambda v: module(v[None], rev=True)[0][0], y[b])
        torch.testing.assert_close(log_det_rev[b], torch.linalg.slogdet(J_rev)[1], atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("rev", [False, True])
def test_jvp_matches_torch_func(case, rev, gen):
    module, x = case
    if rev:
        x = module(x)[0].detach()
    dx = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    out, log_det, dout = module.jvp(x, dx, rev=rev)
    ref_out, ref_dout = torch.func.jvp(lambda v: module(v, rev=rev)[0], (x,), (dx,))
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(log_det, module(x, rev=rev)[1], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(dout, ref_dout, atol=1e-9, rtol=1e-9)


def test_linearize_reuses_forward_and_matches_inverse_jvp(case, gen):
    """linearize(x): out and log_det as forward; inverse_jvp(dy) = jvp(f(x), dy, rev=True), and its
    gradient w.r.t. x and the parameters equals that of the recomputing path (g(f(x)) = x)."""
    module, x = case
    x = x.clone().requires_grad_(True)
    dy = torch.randn(module(x)[0].shape, generator=gen, dtype=x.dtype)
    w = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    out, log_det, inverse_jvp = module.linearize(x)
    ref_out, ref_log_det = module(x)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(log_det, ref_log_det, atol=1e-12, rtol=1e-12)
    dx = inverse_jvp(dy)
    ref_dx = module.jvp(ref_out, dy, rev=True)[2]
    torch.testing.assert_close(dx, ref_dx, atol=1e-9, rtol=1e-9)
    inputs = [x] + [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad((w * dx).sum() + log_det.sum() + (out ** 2).sum(), inputs, allow_unused=True)
    ref_grads = torch.autograd.grad((w * ref_dx).sum() + ref_log_det.sum() + (ref_out ** 2).sum(), inputs, allow_unused=True)
    for g, r in zip(grads, ref_grads):
        if r is None:
            assert g is None or not g.any()
        else:
            torch.testing.assert_close(g, r, atol=1e-8, rtol=1e-8)
    # m = 3 tangents per point, stacked tile-wise: row j*B + b belongs to point b
    dys = torch.randn((3 * dy.shape[0],) + dy.shape[1:], generator=gen, dtype=x.dtype)
    stacked = inverse_jvp(dys)
    for j, dy_j in enumerate(dys.chunk(3)):
        torch.testing.assert_close(stacked.chunk(3)[j], module.jvp(ref_out, dy_j, rev=True)[2], atol=1e-9, rtol=1e-9)
    with pytest.raises(ValueError, match="dy has shape"):
        inverse_jvp(dy[:, :1])
    with pytest.raises(ValueError, match="dy has shape"):
        inverse_jvp(torch.cat([dy, dy[:1]]))


def test_jvp_is_differentiable(gen):
    """Reverse-over-forward: grad of a function of the tangent matches finite differences (gradcheck)."""
    module = _randomise(AffineCoupling(4, 6, "mlp"), gen).double()
    x = torch.randn(2, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    dx = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: module.jvp(v, dx, rev=True)[2], (x,))


def test_actnorm_data_dependent_init(gen):
    x = 3.0 + 2.0 * torch.randn(256, 4, 3, 3, generator=gen)
    an = ActNorm(4)
    y, _ = an(x)
    mean, std = y.mean((0, 2, 3)), y.std((0, 2, 3))
    torch.testing.assert_close(mean, torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones(4), atol=1e-4, rtol=0)
    assert bool(an.initialized)
    log_scale = an.log_scale.detach().clone()
    an(x + 5.0)  # initialised once only
    torch.testing.assert_close(an.log_scale.detach(), log_scale)


def test_zero_initialised_coupling_is_identity(gen):
    x = torch.randn(3, 6, generator=gen)
    y, log_det = AffineCoupling(6, 8)(x)
    torch.testing.assert_close(y, x)
    torch.testing.assert_close(log_det, torch.zeros(3))


def test_multiscale_output_is_flat():
    flow = multiscale_flow((3, 8, 8), "glow", levels=3, steps=1, hidden=4)
    z, _ = flow(torch.randn(2, 3, 8, 8))
    assert z.shape == (2, 3 * 8 * 8)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="channels"):
        AffineCoupling(4, 8)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="even H and W"):
        Squeeze()(torch.randn(1, 1, 3, 4))
    with pytest.raises(ValueError, match="divisible"):
        multiscale_flow((1, 6, 6), "glow", levels=2)
    with pytest.raises(ValueError, match="dx has shape"):
        Permutation(3).jvp(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(TypeError, match="InvertibleModule"):
        SequenceFlow(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="subnet"):
        AffineCoupling(4, 8, subnet="rnn")
    assert math.isclose(float(Orthogonal(3)(torch.randn(2, 3))[1][0]), 0.0)


@pytest.mark.cuda
@pytest.mark.parametrize("arch", ["glow", "realnvp"])
def test_linearize_on_cuda_matches_cpu_float64(arch, gen):
    """The training path on CUDA (Triton coupling kernels, float32): out, log_det, the decoder tangent
    and the parameter gradients match the float64 CPU computation."""
    ref = _randomise(multiscale_flow((3, 8, 8), arch, levels=2, steps=2, hidden=8).double(), gen, scale=0.05)
    x = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    dz = torch.randn(4, 3 * 8 * 8, generator=gen, dtype=torch.float64)
    results = []
    with torch.backends.cudnn.flags(allow_tf32=False):  # TF32 convolutions would round to ~1e-3
        for module, dev, dtype in [(ref, "cpu", torch.float64), (copy.deepcopy(ref).float().cuda(), "cuda", torch.float32)]:
            out, log_det, inverse_jvp = module.linearize(x.to(dev, dtype))
            dx = inverse_jvp(dz.to(dev, dtype))
            loss = (w.to(dev, dtype) * dx).sum() + log_det.sum() + (out ** 2).sum()
            grads = torch.autograd.grad(loss, list(module.parameters()))
            results.append([t.detach().double().cpu() for t in (out, log_det, dx, *grads)])
    for r, c in zip(*results):
        torch.testing.assert_close(c, r, atol=1e-3, rtol=1e-3)
