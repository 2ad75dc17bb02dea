"""affine_coupling robustness (issue 13, items 3-7) and the FrEIA / normflows scale maps (issue 17):
double backward, empty inputs, keyword validation, float64 accuracy of every backend, and the
argument checks of the raw C++ ops. Every backend is compared with the PyTorch reference."""
import math

import pytest
import torch
from backend_cases import needs_cpp

from eoflow_fast import ops
from eoflow_fast.reference import affine_coupling as ref

CLAMP_FNS = list(ref.CLAMP_FNS)
BACKENDS = ["torch", pytest.param("cpp", marks=needs_cpp), "triton"]
F64 = torch.float64


def _draw(gen, shape, n, dtype=F64, scale=1.5):
    return [(scale * torch.randn(shape, generator=gen, dtype=F64)).to(dtype) for _ in range(n)]


# ---------------------------------------------------------------- 3. double backward
# every map on the fused CPU path; the Triton interpreter is slow, so there one map per kind
GRADGRAD_CASES = [(b, f, r) for b in ("torch", "cpp") for f in CLAMP_FNS for r in (False, True)] + \
    [("triton", "atan", False), ("triton", "neg_logsigmoid", True)]


@pytest.mark.parametrize("backend,clamp_fn,reverse", [pytest.param(*c, marks=[needs_cpp] if c[0] == "cpp" else [])
                                                      for c in GRADGRAD_CASES])
def test_gradgradcheck_float64(gen, backend, clamp_fn, reverse):
    kw = dict(clamp=1.3, clamp_fn=clamp_fn, reverse=reverse, backend=backend)
    prim = [v.requires_grad_() for v in _draw(gen, (1, 3) if backend == "triton" else (2, 3), 6)]
    assert torch.autograd.gradgradcheck(lambda a, b, c: ops.affine_coupling(a, b, c, **kw), prim[:3])
    assert torch.autograd.gradgradcheck(lambda *v: ops.affine_coupling_jvp(*v, **kw), prim)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clamp_fn", ["atan", "logsigmoid"])
def test_gradient_penalty_matches_reference_and_is_not_zero(gen, backend, clamp_fn):
    """d/d(x, s_raw, t) of |d loss / d s_raw|^2, the double backward of a gradient penalty."""
    prim = _draw(gen, (3, 2, 5), 3)

    def penalty_grads(fn):
        leaves = [v.clone().requires_grad_() for v in prim]
        y, log_det = fn(*leaves)
        (g_s,) = torch.autograd.grad((y ** 2).sum() + log_det.sum(), leaves[1], create_graph=True)
        return torch.autograd.grad((g_s ** 2).sum(), leaves)

    got = penalty_grads(lambda *v: ops.affine_coupling(*v, clamp_fn=clamp_fn, backend=backend))
    want = penalty_grads(lambda *v: ref.affine_coupling(*v, 2.0, clamp_fn))
    for g, w in zip(got, want):
        assert w.abs().max() > 0
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_tensor_in_two_slots_gets_both_gradients_once(gen, backend):
    (v,) = _draw(gen, (2, 4), 1)
    leaf = v.clone().requires_grad_()
    y, ld = ops.affine_coupling(leaf, leaf, leaf, backend=backend)
    (g,) = torch.autograd.grad((y ** 2).sum() + ld.sum(), leaf, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), leaf)
    ref_leaf = v.clone().requires_grad_()
    y_r, ld_r = ref.affine_coupling(ref_leaf, ref_leaf, ref_leaf)
    (g_r,) = torch.autograd.grad((y_r ** 2).sum() + ld_r.sum(), ref_leaf, create_graph=True)
    (gg_r,) = torch.autograd.grad(g_r.sum(), ref_leaf)
    torch.testing.assert_close(g, g_r, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gg, gg_r, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- 4. empty inputs
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(0, 4), (0, 2, 3), (3, 0), (2, 0, 5)])
@pytest.mark.parametrize("reverse", [False, True])
def test_empty_inputs_give_empty_outputs_and_gradients(backend, shape, reverse):
    kw = dict(clamp_fn="logsigmoid", reverse=reverse, backend=backend)  # s(0) != 0: log_det must still be 0
    leaves = [torch.randn(shape, dtype=F64).requires_grad_() for _ in range(6)]
    y, log_det = ops.affine_coupling(*leaves[:3], **kw)
    assert y.shape == shape and log_det.shape == (shape[0],) and not log_det.any()
    grads = torch.autograd.grad(y.sum() + log_det.sum(), leaves[:3])
    assert all(g.shape == shape for g in grads)
    outs = ops.affine_coupling_jvp(*leaves, **kw)
    assert [o.shape for o in outs] == [shape, (shape[0],), shape, (shape[0],)]
    assert not outs[1].any() and not outs[3].any()
    grads = torch.autograd.grad(sum(o.sum() for o in outs), leaves)
    assert all(g.shape == shape for g in grads)


# ---------------------------------------------------------------- 5. keyword validation
BAD_KEYWORDS = [
    (dict(clamp="2"), TypeError, "clamp must be a finite positive float, got '2'"),
    (dict(clamp=None), TypeError, "clamp must be a finite positive float, got None"),
    (dict(clamp=True), TypeError, "clamp must be a finite positive float, got True"),
    (dict(clamp=torch.tensor(2.0)), TypeError, "clamp must be a finite positive float"),
    (dict(clamp=math.inf), ValueError, "clamp must be a finite positive float, got inf"),
    (dict(clamp=math.nan), ValueError, "clamp must be a finite positive float, got nan"),
    (dict(clamp=-1.0), ValueError, "clamp must be a finite positive float, got -1.0"),
    (dict(clamp=0), ValueError, "clamp must be a finite positive float, got 0"),
    (dict(clamp=math.inf, clamp_fn="logsigmoid"), ValueError, "clamp must be a finite float, got inf"),
    (dict(clamp="2", clamp_fn="neg_logsigmoid"), TypeError, "clamp must be a finite float, got '2'"),
    (dict(clamp_fn=["atan"]), TypeError, r"clamp_fn must be a string, one of \('atan'"),
    (dict(clamp_fn=None), TypeError, "clamp_fn must be a string"),
    (dict(clamp_fn="sigmoid"), ValueError, "clamp_fn must be one of"),
    (dict(clamp_fn="ATAN"), ValueError, "clamp_fn must be one of"),
    (dict(reverse="False"), TypeError, "reverse must be a bool, got 'False'"),
    (dict(reverse=1), TypeError, "reverse must be a bool, got 1"),
    (dict(reverse=None), TypeError, "reverse must be a bool, got None"),
    (dict(backend="gpu"), ValueError, "backend must be one of"),
    (dict(backend=None), TypeError, "backend must be a string"),
    (dict(backend=["cpp"]), TypeError, "backend must be a string"),
]


@pytest.mark.parametrize("jvp", [False, True])
@pytest.mark.parametrize("bad,error,match", BAD_KEYWORDS)
def test_bad_keywords_name_the_argument(bad, error, match, jvp):
    v = [torch.randn(2, 3) for _ in range(6)]
    with pytest.raises(error, match=f"affine_coupling: {match}"):
        if jvp:
            ops.affine_coupling_jvp(*v, **bad)
        else:
            ops.affine_coupling(*v[:3], **bad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clamp_fn", list(ref.OFFSET_CLAMP_FNS))
@pytest.mark.parametrize("clamp", [0.0, -2.5, 3])
def test_sigmoid_maps_take_any_finite_offset(gen, backend, clamp_fn, clamp):
    x, s_raw, t = _draw(gen, (3, 7), 3)
    y, ld = ops.affine_coupling(x, s_raw, t, clamp=clamp, clamp_fn=clamp_fn, backend=backend)
    y_r, ld_r = ref.affine_coupling(x, s_raw, t, float(clamp), clamp_fn)
    torch.testing.assert_close(y, y_r, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ld, ld_r, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- 6. accuracy of the scale maps
# every range-reduction boundary of the atan / tanh approximations (0.41, 0.625, 0.66, 2.41), for
# u = s_raw / clamp with clamp 1 and 2, plus extremes; the Triton interpreter runs one program per row
_S_RAW = torch.tensor([0.0, 1e-300, -1e-12, 1e-7, 0.3, -0.4, 0.43, 0.61, -0.64, 0.65, 0.8, -0.83, 1.2, 1.3, -1.33,
                       2.41, -2.42, 4.8, 4.85, -5.0, 7.0, -40.0, 300.0, -1e4], dtype=F64)


@pytest.mark.parametrize("backend,dtype,rtol", [pytest.param("cpp", F64, 1e-14, marks=needs_cpp),
                                                ("triton", F64, 1e-14),
                                                pytest.param("cpp", torch.float32, 1e-6, marks=needs_cpp),
                                                ("triton", torch.float32, 1e-6)])
@pytest.mark.parametrize("clamp_fn", CLAMP_FNS)
@pytest.mark.parametrize("clamp", [1.0, 2.0])
def test_scale_map_is_accurate_elementwise(backend, dtype, rtol, clamp_fn, clamp):
    """One-column rows: log_det[b] = s(s_raw[b]) and dlog_det[b] = s'(s_raw[b]) exactly, so each
    value of the map and its slope is compared on its own (no cancellation, no averaging), over
    inputs that cross every range-reduction boundary of the atan / tanh approximations."""
    a = _S_RAW.to(dtype)[:, None]
    z, one = torch.zeros_like(a), torch.ones_like(a)
    _, ld, _, dld = ops.affine_coupling_jvp(z, a, z, z, one, z, clamp=clamp, clamp_fn=clamp_fn, backend=backend)
    a64 = a.double()[:, 0]
    s_ref, d_ref = ref.soft_clamp(a64, clamp, clamp_fn), ref.soft_clamp_slope(a64, clamp, clamp_fn)
    # the slope near saturation (1 - tanh^2, ...) cancels in any formula: its error is scaled by its maximum
    floors = (torch.finfo(dtype).tiny, d_ref.abs().max().item())
    for got, want, floor in ((ld, s_ref, floors[0]), (dld, d_ref, floors[1])):
        err = (got.double() - want).abs() / want.abs().clamp_min(floor)
        assert err.max().item() < rtol, (a64[err.argmax()].item(), got[err.argmax()].item(), want[err.argmax()].item())


def test_scale_maps_are_the_freia_and_normflows_formulas():
    a = torch.linspace(-30, 30, 241, dtype=F64)
    c = 1.9
    torch.testing.assert_close(ref.soft_clamp(a, c, "freia_atan"), c * 0.636 * torch.atan(a), rtol=1e-15, atol=0)
    torch.testing.assert_close(ref.soft_clamp(a, c, "freia_tanh"), c * torch.tanh(a), rtol=1e-15, atol=0)
    torch.testing.assert_close(ref.soft_clamp(a, c, "freia_sigmoid"), c * 2 * (torch.sigmoid(a) - 0.5),
                               rtol=1e-13, atol=1e-15)
    # normflows: y = x * sigmoid(a + 2) ("sigmoid_inv") and y = x / sigmoid(a + 2) ("sigmoid")
    torch.testing.assert_close(ref.soft_clamp(a, 2.0, "logsigmoid").exp(), torch.sigmoid(a + 2), rtol=1e-14, atol=0)
    torch.testing.assert_close(ref.soft_clamp(a, 2.0, "neg_logsigmoid").exp(), 1 / torch.sigmoid(a + 2),
                               rtol=1e-14, atol=0)
    assert ref.soft_clamp(a, c, "freia_atan").abs().max() < c * 0.636 * math.pi / 2


@pytest.mark.parametrize("clamp_fn", CLAMP_FNS)
def test_reference_slope_is_the_derivative_of_the_map(clamp_fn):
    a = torch.linspace(-8, 8, 65, dtype=F64, requires_grad=True)
    (d,) = torch.autograd.grad(ref.soft_clamp(a, 1.3, clamp_fn).sum(), a)
    torch.testing.assert_close(ref.soft_clamp_slope(a, 1.3, clamp_fn), d, rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------- 7. the raw C++ ops check every argument
def _raw():
    import eoflow_fast._C  # noqa: F401  (registers torch.ops.eoflow_fast_cpp)

    return torch.ops.eoflow_fast_cpp


def _raw_args(op, b=4, n=5, dtype=torch.float32):
    m = lambda: torch.zeros(b, n, dtype=dtype)  # noqa: E731
    v = lambda: torch.zeros(b, dtype=dtype)  # noqa: E731
    tensors = {"fwd": dict(x=m(), s_raw=m(), t=m()),
               "bwd": dict(x=m(), s_raw=m(), t=m(), gy=m(), gld=v()),
               "jvp_fwd": dict(x=m(), s_raw=m(), t=m(), dx=m(), ds_raw=m(), dt=m()),
               "jvp_bwd": dict(x=m(), s_raw=m(), t=m(), dx=m(), ds_raw=m(), dt=m(), gy=m(), gld=v(), gdy=m(),
                               gdld=v())}[op]
    return tensors, [2.0, 0, False]


def _call(op, tensors, cfg):
    return getattr(_raw(), f"affine_coupling_{op}")(*tensors.values(), *cfg)


RAW_OPS = ["fwd", "bwd", "jvp_fwd", "jvp_bwd"]


def _raw_cases():
    for op in RAW_OPS:
        names = list(_raw_args(op)[0])
        for name in names:
            per_row = name in ("gld", "gdld")
            yield op, name, "shape", torch.zeros(4, 1) if per_row else torch.zeros(4, 6), \
                r"must have shape \(B,\)" if per_row else f"{name} has shape"
            yield op, name, "dtype", torch.zeros(4 if per_row else (4, 5), dtype=torch.float64), f"{name} has dtype"
            if not per_row:
                yield op, name, "column stride", torch.zeros(4, 10)[:, ::2], f"{name} must have unit column stride"
        yield op, "gld" if "gld" in names else "x", "huge B", None, None


@needs_cpp
@pytest.mark.parametrize("op,name,what,bad,match", [c for c in _raw_cases() if c[2] != "huge B"],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_raw_cpp_ops_check_each_tensor(op, name, what, bad, match):
    tensors, cfg = _raw_args(op)
    tensors[name] = bad
    with pytest.raises(RuntimeError, match=match):
        _call(op, tensors, cfg)


@needs_cpp
@pytest.mark.parametrize("op", ["bwd", "jvp_bwd"])
@pytest.mark.parametrize("name", ["gld", "gdld"])
def test_raw_cpp_one_element_per_row_gradient_with_large_batch_raises(op, name):
    tensors, cfg = _raw_args(op, b=200_000, n=1)
    if name not in tensors:
        pytest.skip(f"{op} has no {name}")
    tensors[name] = torch.zeros(1)
    with pytest.raises(RuntimeError, match=rf"{name} must have shape \(B,\) = \(200000,\), got \[1\]"):
        _call(op, tensors, cfg)


@needs_cpp
@pytest.mark.parametrize("op", RAW_OPS)
@pytest.mark.parametrize("clamp,fn,match", [
    (2.0, -1, r"clamp_fn must be an id in \[0, 8\), got -1"), (2.0, 8, r"clamp_fn must be an id in \[0, 8\), got 8"),
    (-1.0, 0, "clamp must be a finite positive float"), (0.0, 3, "clamp must be a finite positive float"),
    (math.inf, 1, "clamp must be a finite positive float"), (math.nan, 2, "clamp must be a finite positive float"),
    (math.inf, 6, "clamp must be a finite float"), (math.nan, 7, "clamp must be a finite float")])
def test_raw_cpp_ops_check_clamp(op, clamp, fn, match):
    tensors, _ = _raw_args(op)
    with pytest.raises(RuntimeError, match=match):
        _call(op, tensors, [clamp, fn, False])


@needs_cpp
@pytest.mark.parametrize("op", RAW_OPS)
def test_raw_cpp_ops_check_rank_dtype_and_device(op):
    tensors, cfg = _raw_args(op)
    with pytest.raises(RuntimeError, match=r"x must be a \(B, N\) tensor"):
        _call(op, {k: v.reshape(-1) if k == "x" else v for k, v in tensors.items()}, cfg)
    ints = {k: v.long() for k, v in tensors.items()}
    with pytest.raises(RuntimeError, match="x must be float32 or float64, got Long"):
        _call(op, ints, cfg)
    with pytest.raises(RuntimeError, match="t must be a CPU tensor|[Mm]eta"):
        _call(op, {k: v.to("meta") if k == "t" else v for k, v in tensors.items()}, cfg)


@needs_cpp
@pytest.mark.parametrize("op", RAW_OPS)
@pytest.mark.parametrize("shape", [(0, 5), (3, 0)])
def test_raw_cpp_ops_take_empty_inputs(op, shape):
    tensors, cfg = _raw_args(op, *shape)
    outs = _call(op, tensors, [1.0, 6, True])
    for o in outs:
        assert o.numel() == 0 or not o.any()


@needs_cpp
@pytest.mark.parametrize("clamp_fn", CLAMP_FNS)
def test_raw_cpp_reduction_ignores_the_vector_tail(gen, clamp_fn):
    """N not a multiple of the vector width: the padded lanes must not enter log_det, even for maps
    with s(0) != 0 (the sigmoid maps)."""
    for n in (1, 3, 5, 9, 17):
        x, s_raw, t = _draw(gen, (2, n), 3)
        _, ld = _call("fwd", dict(x=x, s_raw=s_raw, t=t), [2.0, ref.CLAMP_FNS.index(clamp_fn), False])
        torch.testing.assert_close(ld, ref.affine_coupling(x, s_raw, t, 2.0, clamp_fn)[1], rtol=1e-13, atol=1e-13)
