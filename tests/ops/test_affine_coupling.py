"""affine_coupling / affine_coupling_jvp: every backend against the PyTorch reference."""
import math

import pytest
import torch
from backend_cases import case_params, needs_cpp

from eoflow_fast import ops
from eoflow_fast.ops import BackendUnavailable
from eoflow_fast.reference import affine_coupling as ref

CLAMP_FNS = list(ref.CLAMP_FNS)
# (backend, device, dtype, rtol) that run here; the float32 atan is a polynomial (~1e-7 rel), the
# float64 kernels are float64-accurate.
CPU_CASES = [("cpp", "cpu", torch.float64, 1e-12), ("cpp", "cpu", torch.float32, 2e-5),
             ("triton", "cpu", torch.float32, 2e-5), ("triton", "cpu", torch.float64, 1e-12)]
CUDA_CASES = [("triton", "cuda", torch.float32, 2e-5), ("triton", "cuda", torch.float16, 2e-2),
              ("triton", "cuda", torch.bfloat16, 5e-2)]


ALL_CASES = case_params(CPU_CASES + CUDA_CASES)


def _inputs(gen, shape, n, dtype, device, scale=1.5):
    return [(scale * torch.randn(shape, generator=gen, dtype=torch.float64)).to(device=device, dtype=dtype)
            for _ in range(n)]


def _rel_err(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("backend,device,dtype,rtol", ALL_CASES)
@pytest.mark.parametrize("clamp_fn", CLAMP_FNS)
@pytest.mark.parametrize("reverse", [False, True])
def test_forward_backward_matches_reference(gen, backend, device, dtype, rtol, clamp_fn, reverse):
    shape = (5, 3, 7, 11)  # N = 231: not a multiple of any block or vector width
    x, s_raw, t = _inputs(gen, shape, 3, dtype, device)
    gy, = _inputs(gen, shape, 1, dtype, device)
    gld, = _inputs(gen, (shape[0],), 1, dtype, device)
    leaves = [v.clone().requires_grad_() for v in (x, s_raw, t)]
    y, log_det = ops.affine_coupling(*leaves, clamp=1.7, clamp_fn=clamp_fn, reverse=reverse, backend=backend)
    grads = torch.autograd.grad((y, log_det), leaves, (gy, gld))

    ref_leaves = [v.double().requires_grad_() for v in (x, s_raw, t)]
    y_ref, ld_ref = ref.affine_coupling(*ref_leaves, 1.7, clamp_fn, reverse)
    grads_ref = torch.autograd.grad((y_ref, ld_ref), ref_leaves, (gy.double(), gld.double()))

    assert y.shape == x.shape and log_det.shape == (shape[0],) and y.dtype == dtype
    assert _rel_err(y, y_ref) < rtol
    assert _rel_err(log_det, ld_ref) < rtol
    for g, g_ref in zip(grads, grads_ref):
        assert _rel_err(g, g_ref) < rtol


@pytest.mark.parametrize("backend,device,dtype,rtol", ALL_CASES)
@pytest.mark.parametrize("clamp_fn", CLAMP_FNS)
@pytest.mark.parametrize("reverse", [False, True])
def test_jvp_and_its_backward_match_reference(gen, backend, device, dtype, rtol, clamp_fn, reverse):
    shape = (4, 37)
    prim = _inputs(gen, shape, 6, dtype, device)
    cot = _inputs(gen, shape, 1, dtype, device) + _inputs(gen, (4,), 1, dtype, device) \
        + _inputs(gen, shape, 1, dtype, device) + _inputs(gen, (4,), 1, dtype, device)
    leaves = [v.clone().requires_grad_() for v in prim]
    outs = ops.affine_coupling_jvp(*leaves, clamp=2.0, clamp_fn=clamp_fn, reverse=reverse, backend=backend)
    grads = torch.autograd.grad(outs, leaves, cot)

    ref_leaves = [v.double().requires_grad_() for v in prim]
    outs_ref = ref.affine_coupling_jvp(*ref_leaves, 2.0, clamp_fn, reverse)
    grads_ref = torch.autograd.grad(outs_ref, ref_leaves, [c.double() for c in cot])
    for o, o_ref in zip(outs, outs_ref):
        assert _rel_err(o, o_ref) < rtol
    for g, g_ref in zip(grads, grads_ref):
        assert _rel_err(g, g_ref) < rtol


@pytest.mark.parametrize("clamp_fn", CLAMP_FNS)
@pytest.mark.parametrize("reverse", [False, True])
def test_reference_jvp_equals_torch_func_jvp_and_finite_differences(gen, clamp_fn, reverse):
    x, s_raw, t, dx, ds, dt = _inputs(gen, (3, 8), 6, torch.float64, "cpu")
    f = lambda a, b, c: ref.affine_coupling(a, b, c, 2.0, clamp_fn, reverse)  # noqa: E731
    (y, ld), (dy, dld) = torch.func.jvp(f, (x, s_raw, t), (dx, ds, dt))
    out = ref.affine_coupling_jvp(x, s_raw, t, dx, ds, dt, 2.0, clamp_fn, reverse)
    for a, b in zip(out, (y, ld, dy, dld)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    h = 1e-6
    y_p, ld_p = f(x + h * dx, s_raw + h * ds, t + h * dt)
    y_m, ld_m = f(x - h * dx, s_raw - h * ds, t - h * dt)
    torch.testing.assert_close(out[2], (y_p - y_m) / (2 * h), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out[3], (ld_p - ld_m) / (2 * h), rtol=1e-6, atol=1e-7)


# the Triton interpreter is slow: two maps there (its gradients are compared with the reference above)
GRADCHECK_CASES = [pytest.param(b, f, r, marks=[needs_cpp] if b == "cpp" else [])
                   for b in ("torch", "cpp") for f in CLAMP_FNS for r in (False, True)] + \
    [("triton", "atan", False), ("triton", "neg_logsigmoid", True)]


@pytest.mark.parametrize("backend,clamp_fn,reverse", GRADCHECK_CASES)
def test_gradcheck_float64(gen, backend, clamp_fn, reverse):
    shape = (1, 3) if backend == "triton" else (2, 5)
    x, s_raw, t, dx, ds, dt = [v.requires_grad_() for v in _inputs(gen, shape, 6, torch.float64, "cpu")]
    kw = dict(clamp=1.3, clamp_fn=clamp_fn, reverse=reverse, backend=backend)
    assert torch.autograd.gradcheck(lambda a, b, c: ops.affine_coupling(a, b, c, **kw), (x, s_raw, t))
    assert torch.autograd.gradcheck(lambda *v: ops.affine_coupling_jvp(*v, **kw), (x, s_raw, t, dx, ds, dt))


@pytest.mark.parametrize("backend,device,dtype,rtol", ALL_CASES)
def test_forward_mode_ad_and_reverse_over_forward(gen, backend, device, dtype, rtol):
    """forward_ad / torch.func.jvp through the op give the reference tangent, and the gradient of
    a loss of that tangent (reverse-over-forward) matches the reference's."""
    import torch.autograd.forward_ad as fwAD

    x, s_raw, t, dx = _inputs(gen, (3, 4, 5), 4, dtype, device)
    s_leaf = s_raw.clone().requires_grad_()
    with fwAD.dual_level():
        y, log_det = ops.affine_coupling(fwAD.make_dual(x, dx), s_leaf, t, backend=backend)
        dy, dld = fwAD.unpack_dual(y).tangent, fwAD.unpack_dual(log_det).tangent
        g_s = torch.autograd.grad((dy ** 2).sum(), s_leaf)[0]

    xd, sd, td, dxd = x.double(), s_raw.double().requires_grad_(), t.double(), dx.double()
    _, dy_ref = torch.func.jvp(lambda a: ref.affine_coupling(a, sd, td)[0], (xd,), (dxd,))
    g_ref = torch.autograd.grad((dy_ref ** 2).sum(), sd)[0]
    assert _rel_err(dy, dy_ref) < rtol
    assert dld.abs().max().item() == 0.0  # log_det does not depend on x
    assert _rel_err(g_s, g_ref) < 5 * rtol
    _, dy_func = torch.func.jvp(lambda a: ops.affine_coupling(a, s_raw, t, backend=backend)[0], (x,), (dx,))
    assert _rel_err(dy_func, dy_ref) < rtol


@pytest.mark.parametrize("backend", ["torch", pytest.param("cpp", marks=needs_cpp), "triton"])
@pytest.mark.parametrize("clamp_fn", CLAMP_FNS)
def test_reverse_inverts_forward(gen, backend, clamp_fn):
    # float64: with clamp_fn="none" and s near -6, float32's (y - t) e^-s loses ~|t| eps e^-s to
    # cancellation, which is the arithmetic, not the op; float64 checks the inverse tightly.
    x, s_raw, t = _inputs(gen, (6, 2, 9), 3, torch.float64, "cpu")
    y, ld = ops.affine_coupling(x, s_raw, t, clamp_fn=clamp_fn, backend=backend)
    x_back, ld_back = ops.affine_coupling(y, s_raw, t, clamp_fn=clamp_fn, reverse=True, backend=backend)
    torch.testing.assert_close(x_back, x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ld + ld_back, torch.zeros_like(ld), rtol=0, atol=1e-9)


def test_soft_clamp_definitions():
    s_raw = torch.tensor([-100.0, -1.0, 0.0, 0.5, 100.0], dtype=torch.float64)
    c = 2.0
    torch.testing.assert_close(ops.soft_clamp(s_raw, c, "atan"), c * (2 / math.pi) * torch.atan(s_raw / c))
    torch.testing.assert_close(ops.soft_clamp(s_raw, c, "tanh"), c * torch.tanh(s_raw / c))
    torch.testing.assert_close(ops.soft_clamp(s_raw, c, "none"), s_raw)
    assert ops.soft_clamp(s_raw, c, "atan").abs().max() < c  # bounded by the clamp


@pytest.mark.parametrize("backend", ["torch", pytest.param("cpp", marks=needs_cpp), "triton"])
def test_non_contiguous_inputs(gen, backend):
    base = _inputs(gen, (7, 12), 3, torch.float32, "cpu")
    x, s_raw, t = (b.t() for b in base)  # (12, 7), strided
    assert not x.is_contiguous()
    y, ld = ops.affine_coupling(x, s_raw, t, backend=backend)
    y_ref, ld_ref = ref.affine_coupling(x.contiguous(), s_raw.contiguous(), t.contiguous())
    torch.testing.assert_close(y, y_ref, rtol=2e-5, atol=1e-5)
    torch.testing.assert_close(ld, ld_ref, rtol=2e-5, atol=1e-5)


@pytest.mark.parametrize("backend", [pytest.param("cpp", marks=needs_cpp), "triton"])
@pytest.mark.parametrize("reverse", [False, True])
def test_row_strided_chunks_go_in_without_copy(gen, backend, reverse):
    """s_raw, t (and their tangents) as ``chunk`` halves of one (B, 2, C, H, W) tensor: rows strided."""
    st, dst = _inputs(gen, (3, 4, 5, 6), 2, torch.float64, "cpu")
    x, dx = _inputs(gen, (3, 2, 5, 6), 2, torch.float64, "cpu")
    s_raw, t = st.chunk(2, dim=1)
    ds_raw, dt = dst.chunk(2, dim=1)
    assert not s_raw.is_contiguous() and s_raw.reshape(3, -1).stride() == (120, 1)
    leaves = [v.clone().requires_grad_() for v in (x, st, dx, dst)]
    outs = ops.affine_coupling_jvp(leaves[0], *leaves[1].chunk(2, 1), leaves[2], *leaves[3].chunk(2, 1),
                                   reverse=reverse, backend=backend)
    outs_ref = ref.affine_coupling_jvp(x, s_raw, t, dx, ds_raw, dt, 2.0, "atan", reverse)
    for o, o_ref in zip(outs, outs_ref):
        assert _rel_err(o, o_ref) < 2e-6
    y, ld = ops.affine_coupling(x, s_raw, t, reverse=reverse, backend=backend)
    assert _rel_err(y, outs_ref[0]) < 2e-6 and _rel_err(ld, outs_ref[1]) < 2e-6
    grads = torch.autograd.grad(sum(o.sum() for o in outs), leaves)
    ref_leaves = [v.clone().requires_grad_() for v in (x, st, dx, dst)]
    outs_ref = ref.affine_coupling_jvp(ref_leaves[0], *ref_leaves[1].chunk(2, 1), ref_leaves[2],
                                       *ref_leaves[3].chunk(2, 1), 2.0, "atan", reverse)
    grads_ref = torch.autograd.grad(sum(o.sum() for o in outs_ref), ref_leaves)
    for g, g_ref in zip(grads, grads_ref):
        assert _rel_err(g, g_ref) < 2e-6


def test_forward_gradient_of_t_is_the_incoming_gradient():
    x, s_raw, t = (torch.randn(3, 4, requires_grad=True) for _ in range(3))
    y, _ = ops.affine_coupling(x, s_raw, t, backend="triton")
    gy = torch.randn(3, 4)
    (g_t,) = torch.autograd.grad(y, t, gy)
    torch.testing.assert_close(g_t, gy, rtol=0, atol=0)


@pytest.mark.parametrize("bad,match", [
    (dict(s_raw=torch.randn(3, 5)), r"s_raw has shape \(3, 5\), x has shape \(3, 4\)"),
    (dict(t=torch.randn(3, 4, dtype=torch.float64)), "t has dtype torch.float64, x has dtype torch.float32"),
    (dict(x=torch.ones(3, 4, dtype=torch.int64)), "x must be a floating-point tensor"),
    (dict(t=torch.randn(3, 4, device="meta")), "t is on the meta device"),
    (dict(clamp=0.0), "clamp must be a finite positive float, got 0.0"),
    (dict(clamp_fn="sigmoid"), "clamp_fn must be one of"),
    (dict(backend="cuda"), "backend must be one of"),
    (dict(x=torch.randn(4), s_raw=torch.randn(4), t=torch.randn(4)), "batch dim"),
])
def test_bad_input_errors_name_the_argument(bad, match):
    args = dict(x=torch.randn(3, 4), s_raw=torch.randn(3, 4), t=torch.randn(3, 4))
    args.update(bad)
    x, s_raw, t = args.pop("x"), args.pop("s_raw"), args.pop("t")
    with pytest.raises((ValueError, TypeError), match=match):
        ops.affine_coupling(x, s_raw, t, **args)


def test_forcing_an_unavailable_backend_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailable, match="Triton needs CUDA tensors"):
        ops.affine_coupling(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3), backend="triton")
    with pytest.raises(BackendUnavailable, match="float32/float64"):
        ops.affine_coupling(*(torch.randn(2, 3, dtype=torch.float16) for _ in range(3)), backend="cpp")


def test_auto_falls_back_to_reference_with_one_warning(monkeypatch):
    from eoflow_fast.ops import _dispatch

    monkeypatch.setattr(_dispatch, "_cpp_problem", lambda device, dtype: "pretend the build failed")
    monkeypatch.setattr(_dispatch, "_warned", set())
    x = torch.randn(2, 3)
    with pytest.warns(RuntimeWarning, match="pretend the build failed; using the PyTorch reference"):
        y, _ = ops.affine_coupling(x, x, x)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.affine_coupling(x, x, x)  # second call: no second warning
    torch.testing.assert_close(y, ref.affine_coupling(x, x, x)[0])


@needs_cpp
def test_torch_compile_treats_the_op_as_one_node():
    import torch._dynamo as dynamo

    def loss(x, s_raw, t):
        y, ld = ops.affine_coupling(x, 2 * s_raw, t)
        return y.square().sum() + ld.sum()

    explained = dynamo.explain(loss)(*(torch.randn(2, 3) for _ in range(3)))
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    leaves = [torch.randn(4, 6, requires_grad=True) for _ in range(3)]
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    out = compiled(*leaves)
    grads = torch.autograd.grad(out, leaves)
    out_ref = loss(*leaves)
    grads_ref = torch.autograd.grad(out_ref, leaves)
    torch.testing.assert_close(out, out_ref)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref)
