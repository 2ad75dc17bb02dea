"""Hostile inputs to the estimator ops (issue 13, items 1, 2, 4, 5, 7) on the C++, reference and
Triton-interpreter backends: non-finite or overflowing entries stay in their own dimension,
backward NaN does not cross columns, empty batches work, bad keywords are named, and the raw
C++ ops check every tensor they are given.

"Matches the reference" below means: the same entries are NaN / +inf / -inf, and the finite
entries agree to a dtype tolerance (the reference runs in the same dtype, so overflow happens in
the same places)."""
import math

import pytest
import torch
from backend_cases import needs_cpp

from eoflow_fast import ops
from eoflow_fast.ops._dispatch import cpp_ops
from eoflow_fast.reference import gaussian_pair_logsumexp as ref_pair
from eoflow_fast.reference import marginal_entropy as ref_entropy
from eoflow_fast.reference import tc_decomposition as ref_tc

BACKENDS = [pytest.param("cpp", marks=needs_cpp), "triton", "torch"]
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 2e-4, torch.float64: 1e-9}
INF = math.inf


def assert_matches(got, want, tol, where=""):
    """Same NaN / +inf / -inf pattern; finite entries close."""
    assert got.shape == want.shape, where
    for name, test in (("nan", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
        assert torch.equal(test(got), test(want)), f"{where}: {name} pattern differs:\n{got}\n{want}"
    finite = torch.isfinite(want)
    torch.testing.assert_close(got[finite].double(), want[finite].double(), rtol=tol, atol=tol, msg=where)


def assert_healthy_columns(got, want, bad_col, tol, where=""):
    """Columns other than bad_col are finite and equal to the reference; elsewhere the op is close
    to the reference wherever the reference is finite."""
    keep = [d for d in range(want.shape[1]) if d != bad_col]
    assert torch.isfinite(want[:, keep]).all(), f"{where}: the reference itself is not finite"
    torch.testing.assert_close(got[:, keep].double(), want[:, keep].double(), rtol=tol, atol=tol, msg=where)
    finite = torch.isfinite(want)
    torch.testing.assert_close(got[finite].double(), want[finite].double(), rtol=tol, atol=tol, msg=where)


def _pair_inputs(gen, dtype, rows=7, dim=5):
    mu = torch.randn(rows, dim, generator=gen, dtype=torch.float64)
    logvar = 0.5 * torch.randn(rows, dim, generator=gen, dtype=torch.float64)
    z = mu + torch.randn(rows, dim, generator=gen, dtype=torch.float64)
    return [t.to(dtype) for t in (z, mu, logvar)]


def _pair(backend):
    if backend == "torch":
        return ref_pair.gaussian_pair_logsumexp
    return lambda *a, **k: ops.gaussian_pair_logsumexp(*a, backend=backend, **k)


# item 1: (input, value) written into one entry [2, 1]; D = 70 takes Triton's chunked-d path
POISON = [("z", v) for v in (INF, -INF, 1e30, -1e30, math.nan)] + \
         [("mu", v) for v in (INF, -INF, 1e30, -1e30)] + [("logvar", v) for v in (INF, -1e30, -90.0)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("which,value", POISON, ids=[f"{w}={v}" for w, v in POISON])
def test_one_bad_entry_stays_in_its_dimension(gen, backend, dtype, exclude_self, which, value):
    z, mu, logvar = _pair_inputs(gen, dtype)
    {"z": z, "mu": mu, "logvar": logvar}[which][2, 1] = value
    want = ref_pair.gaussian_pair_logsumexp(z, mu, logvar, exclude_self=exclude_self)
    got = _pair(backend)(z, mu, logvar, exclude_self=exclude_self)
    for g, w, name in zip(got, want, ("log_joint", "log_marginal")):
        assert_matches(g, w, TOL[dtype], f"{backend} {name}")
    # the math: dimensions other than 1 never see the bad entry
    healthy = [0, 2, 3, 4]
    assert torch.isfinite(got[1][:, healthy]).all()
    clean = ref_pair.gaussian_pair_logsumexp(z[:, healthy], mu[:, healthy], logvar[:, healthy],
                                             exclude_self=exclude_self)[1]
    torch.testing.assert_close(got[1][:, healthy], clean, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which,value", [("z", INF), ("z", 1e30), ("mu", -INF), ("logvar", -90.0),
                                         ("logvar", INF)])
def test_one_bad_entry_chunked_dimensions(gen, backend, which, value):
    """D = 70: Triton walks d in 64-wide chunks and takes the joint through the (B', B) scores."""
    z, mu, logvar = _pair_inputs(gen, torch.float32, rows=5, dim=70)
    {"z": z, "mu": mu, "logvar": logvar}[which][2, 1] = value
    weights = torch.randn(5, 5, generator=gen).masked_fill(torch.eye(5, dtype=torch.bool).roll(1, 0), -INF)
    want = ref_pair.gaussian_pair_logsumexp(z, mu, logvar, weights=weights)
    got = _pair(backend)(z, mu, logvar, weights=weights)
    for g, w in zip(got, want):
        assert_matches(g, w, TOL[torch.float32], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_collapsed_column_float32_entropy(gen, backend):
    """z[:, 2] = 5e-20 randn: its bandwidth^-2 overflows float32; the other columns stay finite."""
    z = torch.randn(50, 3, generator=gen)
    z[:, 2] = 5e-20 * torch.randn(50, generator=gen)
    want = ref_entropy.marginal_entropy(z)
    got = ops.marginal_entropy(z, backend=backend)
    assert torch.isfinite(got[:2]).all()
    assert_matches(got, want, 1e-4, backend)


def test_collapsed_column_float32_entropy_default_path(gen):
    z = torch.randn(50, 3, generator=gen)
    z[:, 2] = 5e-20 * torch.randn(50, generator=gen)
    assert_matches(ops.marginal_entropy(z), ref_entropy.marginal_entropy(z), 1e-4)


# item 2: backward
ENTROPY_POISON = ["nan", "inf", "-inf", "constant"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("poison", ENTROPY_POISON)
def test_entropy_gradient_stays_in_its_column(gen, backend, dtype, poison):
    z = torch.randn(13, 4, generator=gen, dtype=torch.float64).to(dtype)
    if poison == "constant":
        z[:, 1] = 0.7
    else:
        z[5, 1] = float(poison)
    coeffs = torch.randn(4, generator=gen, dtype=dtype)

    def grad(fn):
        leaf = z.clone().requires_grad_()
        entropy = fn(leaf)
        return entropy, torch.autograd.grad((entropy * coeffs).nansum(), leaf)[0]

    want = grad(ref_entropy.marginal_entropy)
    got = grad(lambda x: ops.marginal_entropy(x, backend=backend))
    assert_matches(got[0], want[0], TOL[dtype], "entropy")
    assert_healthy_columns(got[1], want[1], 1, 10 * TOL[dtype], "dH/dz")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("which,value", [("z", INF), ("z", math.nan), ("mu", INF), ("mu", 1e30),
                                         ("logvar", -90.0), ("logvar", INF)])
def test_pair_marginal_gradient_stays_in_its_column(gen, backend, dtype, which, value):
    """Only log_marginal is differentiated: its math is per dimension, so is its gradient."""
    z, mu, logvar = _pair_inputs(gen, dtype)
    {"z": z, "mu": mu, "logvar": logvar}[which][2, 1] = value
    g_marginal = torch.randn(7, 5, generator=gen, dtype=dtype)

    def grads(fn):
        leaves = [t.clone().requires_grad_() for t in (z, mu, logvar)]
        _, log_marginal = fn(*leaves, exclude_self=True)
        return torch.autograd.grad(log_marginal, leaves, g_marginal)

    for name, got, want in zip(("dz", "dmu", "dlogvar"), grads(_pair(backend)),
                               grads(ref_pair.gaussian_pair_logsumexp)):
        assert_healthy_columns(got, want, 1, 10 * TOL[dtype], f"{backend} {name}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("estimator", ["mws", "mss", "plain"])
@pytest.mark.parametrize("which,value", [("z", INF), ("logvar", -90.0), ("mu", 1e30)])
def test_tc_dimensionwise_kl_gradient_stays_in_its_column(gen, backend, estimator, which, value):
    """dwkl = mean_n[sum_d log q(z_nd) - log p(z_n)] is a sum over dimensions of per-dimension terms."""
    z, mu, logvar = _pair_inputs(gen, torch.float32, rows=9, dim=4)
    {"z": z, "mu": mu, "logvar": logvar}[which][2, 1] = value

    def grads(fn):
        leaves = [t.clone().requires_grad_() for t in (z, mu, logvar)]
        return torch.autograd.grad(fn(*leaves, 100, estimator=estimator)[2], leaves)

    got = grads(lambda *a, **k: ops.tc_decomposition(*a, backend=backend, **k))
    for name, g, w in zip(("dz", "dmu", "dlogvar"), got, grads(ref_tc.tc_decomposition)):
        assert_healthy_columns(g, w, 1, 1e-3, f"{backend} {name}")


# item 4: empty inputs
EMPTY = [(0, 5, 3, False), (5, 0, 3, False), (5, 5, 0, False), (0, 0, 3, False), (0, 0, 0, False),
         (0, 0, 3, True), (4, 4, 0, True), (0, 4, 70, False), (4, 0, 70, False)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("rows_z,rows_mu,dim,exclude_self", EMPTY)
def test_pair_empty_inputs(gen, backend, weighted, rows_z, rows_mu, dim, exclude_self):
    z = torch.randn(rows_z, dim, generator=gen, dtype=torch.float64)
    mu = torch.randn(rows_mu, dim, generator=gen, dtype=torch.float64)
    logvar = torch.randn(rows_mu, dim, generator=gen, dtype=torch.float64)
    weights = torch.randn(rows_z, rows_mu, generator=gen, dtype=torch.float64) if weighted else None

    def run(fn):
        leaves = [t.clone().requires_grad_() for t in (z, mu, logvar) + ((weights,) if weighted else ())]
        out = fn(*leaves[:3], weights=leaves[3] if weighted else None, exclude_self=exclude_self)
        g = torch.autograd.grad([o.sum() for o in out], leaves, allow_unused=True, materialize_grads=True)
        return out, g

    want, want_grads = run(ref_pair.gaussian_pair_logsumexp)
    got, got_grads = run(_pair(backend))
    for g, w in zip(got + got_grads, want + want_grads):
        assert_matches(g, w, 1e-12, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_entropy_and_tc_empty(gen, backend):
    z = torch.randn(6, 0, generator=gen, dtype=torch.float64).requires_grad_()
    entropy = ops.marginal_entropy(z, backend=backend)
    assert entropy.shape == (0,)
    assert torch.autograd.grad(entropy.sum(), z)[0].shape == (6, 0)
    for estimator in ("mws", "mss", "plain"):
        got = ops.tc_decomposition(z, z, z, 50, estimator=estimator, backend=backend)
        want = ref_tc.tc_decomposition(z, z, z, 50, estimator=estimator)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)
        assert torch.autograd.grad(sum(got), z)[0].shape == (6, 0)
    empty = torch.zeros(0, 3)
    with pytest.raises(ValueError, match="marginal_entropy: needs at least 2 rows in z, got shape"):
        ops.marginal_entropy(empty, backend=backend)
    with pytest.raises(ValueError, match="tc_decomposition: estimator 'mws' needs at least 1 row in z"):
        ops.tc_decomposition(empty, empty, empty, 10, backend=backend)


# item 5: keywords
Z = torch.randn(8, 3)
BAD_KEYWORDS = [
    (lambda: ops.marginal_entropy(Z, bandwidth="0.5"), TypeError, "bandwidth must be a finite positive float"),
    (lambda: ops.marginal_entropy(Z, bandwidth=True), TypeError, "bandwidth must be a finite positive float"),
    (lambda: ops.marginal_entropy(Z, bandwidth=[0.5]), TypeError, "bandwidth must be a finite positive float"),
    (lambda: ops.marginal_entropy(Z, bandwidth=torch.ones(3, device="meta")), ValueError,
     "bandwidth is on the meta device"),
    (lambda: ops.marginal_entropy(Z, bandwidth=torch.ones(3, dtype=torch.long)), TypeError, "bandwidth must be a "
     "floating-point tensor"),
    (lambda: ops.marginal_entropy(Z, bandwidth=-0.5), ValueError, "bandwidth must be a finite positive float"),
    (lambda: ops.marginal_entropy(Z, bandwidth=0), ValueError, "bandwidth must be a finite positive float"),
    (lambda: ops.marginal_entropy(Z, bandwidth=math.nan), ValueError, "bandwidth must be a finite positive float"),
    (lambda: ops.marginal_entropy(Z, bandwidth=INF), ValueError, "bandwidth must be a finite positive float"),
    (lambda: ops.marginal_entropy(Z, bandwidth=torch.tensor([0.5, INF, 0.5])), ValueError,
     "bandwidth must be finite and > 0"),
    (lambda: ops.marginal_entropy(Z, bandwidth=torch.tensor([0.5, math.nan, 0.5])), ValueError,
     "bandwidth must be finite and > 0"),
    (lambda: ops.marginal_entropy(Z, bandwidth=torch.tensor(-1.0)), ValueError, "bandwidth must be finite and > 0"),
    (lambda: ops.marginal_entropy(Z, method="histogram"), ValueError, "method must be one of"),
    (lambda: ops.marginal_entropy(Z, method=["kde"]), TypeError, "method must be a string"),
    (lambda: ops.tc_decomposition(Z, Z, Z, 100, estimator="iwae"), ValueError, "estimator must be one of"),
    (lambda: ops.tc_decomposition(Z, Z, Z, 100, estimator=None), TypeError, "estimator must be a string"),
    (lambda: ops.tc_decomposition(Z, Z, Z, True), TypeError,
     "dataset_size must be a positive int, got True \\(bool\\)"),
    (lambda: ops.tc_decomposition(Z, Z, Z, 100.0), TypeError,
     "dataset_size must be a positive int, got 100.0 \\(float\\)"),
    (lambda: ops.tc_decomposition(Z, Z, Z, "100"), TypeError,
     "dataset_size must be a positive int, got '100' \\(str\\)"),
    (lambda: ops.tc_decomposition(Z, Z, Z, 0), ValueError, "dataset_size must be a positive int, got 0"),
    (lambda: ops.tc_decomposition(Z, Z, Z, -5), ValueError, "dataset_size must be a positive int, got -5"),
    (lambda: ops.gaussian_pair_logsumexp(Z, Z, Z, exclude_self=1), TypeError, "exclude_self must be a bool"),
    (lambda: ops.gaussian_pair_logsumexp(Z, Z, Z, exclude_self="yes"), TypeError, "exclude_self must be a bool"),
    (lambda: ops.gaussian_pair_logsumexp(Z, Z, Z, exclude_self=None), TypeError, "exclude_self must be a bool"),
    (lambda: ops.gaussian_pair_logsumexp(Z, Z, Z, weights=torch.zeros(8, 7)), ValueError,
     r"weights must have shape \(B', B\) = \(8, 8\)"),
    (lambda: ops.gaussian_pair_logsumexp(Z, Z, Z, weights=torch.zeros(8)), ValueError, "weights must have 2 dims"),
    (lambda: ops.gaussian_pair_logsumexp(Z, Z, Z, weights=torch.zeros(8, 8, dtype=torch.float64)), TypeError,
     "weights has dtype torch.float64, z has dtype torch.float32"),
    (lambda: ops.gaussian_pair_logsumexp(Z, Z, Z, weights=torch.zeros(8, 8, dtype=torch.long)), TypeError,
     "weights must be a floating-point tensor"),
    (lambda: ops.gaussian_pair_logsumexp(Z, Z, Z, weights=torch.zeros(8, 8, device="meta")), ValueError,
     "weights is on the meta device"),
    (lambda: ops.gaussian_pair_logsumexp(Z, Z, Z, weights=[[0.0] * 8] * 8), TypeError,
     "weights must be a torch.Tensor"),
    (lambda: ops.gaussian_pair_logsumexp(Z, Z, Z, backend=["cpp"]), ValueError, "backend must be one of"),
]


@pytest.mark.parametrize("call,error,match", BAD_KEYWORDS, ids=[str(i) for i in range(len(BAD_KEYWORDS))])
def test_bad_keyword_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_good_keywords_still_accepted(gen):
    """The checks refuse only what is wrong: numpy ints, int bandwidths and () tensors pass."""
    np = pytest.importorskip("numpy")
    z = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ops.marginal_entropy(z, bandwidth=1), ops.marginal_entropy(z, bandwidth=1.0))
    torch.testing.assert_close(ops.marginal_entropy(z, bandwidth=torch.tensor(0.5, dtype=torch.float64)),
                               ops.marginal_entropy(z, bandwidth=0.5))
    for a, b in zip(ops.tc_decomposition(z, z, z, np.int64(100)), ops.tc_decomposition(z, z, z, 100)):
        torch.testing.assert_close(a, b)


# item 7: the raw C++ ops
def _raw_args(rows_z=6, rows_mu=6, dim=3, dtype=torch.float32):
    z, mu, logvar = torch.randn(rows_z, dim, dtype=dtype), torch.randn(rows_mu, dim, dtype=dtype), \
        torch.randn(rows_mu, dim, dtype=dtype)
    return dict(z=z, mu=mu, logvar=logvar, weights=torch.zeros(rows_z, rows_mu, dtype=dtype), exclude_self=False)


def _raw_bwd_args(**kw):
    a = _raw_args(**kw)
    bp, d = a["z"].shape
    a.update(log_joint=torch.zeros(bp, dtype=a["z"].dtype), log_marginal=torch.zeros(bp, d, dtype=a["z"].dtype),
             grad_joint=torch.ones(bp, dtype=a["z"].dtype), grad_marginal=torch.ones(bp, d, dtype=a["z"].dtype),
             weights_grad=True)
    return a


FWD_NAMES = ("z", "mu", "logvar", "weights", "exclude_self")
BWD_NAMES = FWD_NAMES + ("log_joint", "log_marginal", "grad_joint", "grad_marginal", "weights_grad")
RAW_BAD = [  # (op, argument, replacement, message)
    ("fwd", "z", torch.randn(6), "z must be 2-D"),
    ("fwd", "mu", torch.randn(6, 3, 1), "mu must be 2-D"),
    ("fwd", "mu", torch.randn(6, 4), r"mu must have shape \(B, D\) with z's D = \[6, 3\], got \[6, 4\]"),
    ("fwd", "logvar", torch.randn(5, 3), r"logvar must have shape \(B, D\) = \[6, 3\], got \[5, 3\]"),
    ("fwd", "logvar", torch.randn(6, 3, dtype=torch.float64), "logvar has dtype Double, z has dtype Float"),
    ("fwd", "logvar", torch.randn(3, 6).t(), "logvar must be contiguous"),
    ("fwd", "logvar", torch.randn(6, 3, device="meta"), "Meta"),  # the dispatcher refuses it before the kernel
    ("fwd", "weights", torch.zeros(6, 5), r"weights must have shape \(B', B\) = \[6, 6\], got \[6, 5\]"),
    ("fwd", "z", torch.randn(6, 3, dtype=torch.float16), "z must be float32 or float64"),
    ("bwd", "log_joint", torch.zeros(5), r"log_joint must have shape \(B',\) = \[6\], got \[5\]"),
    ("bwd", "log_marginal", torch.zeros(6, 2), r"log_marginal must have shape \(B', D\) = \[6, 3\]"),
    ("bwd", "log_marginal", torch.zeros(6), r"log_marginal must have shape \(B', D\)"),
    ("bwd", "grad_joint", torch.zeros(1), r"grad_joint must have shape \(B',\) = \[6\], got \[1\]"),
    ("bwd", "grad_joint", torch.zeros(6, 1), r"grad_joint must have shape \(B',\)"),
    ("bwd", "grad_marginal", torch.zeros(6, 1), r"grad_marginal must have shape \(B', D\) = \[6, 3\], got \[6, 1\]"),
    ("bwd", "grad_marginal", torch.zeros(7, 3), r"grad_marginal must have shape \(B', D\)"),
    ("bwd", "grad_marginal", torch.zeros(6, 3, dtype=torch.float64), "grad_marginal has dtype Double"),
    ("bwd", "grad_joint", torch.zeros(12)[::2], "grad_joint must be contiguous"),
    ("bwd", "weights", None, "weights_grad is true but weights is None"),
]


@needs_cpp
@pytest.mark.parametrize("which,name,value,match", RAW_BAD, ids=[f"{r[0]}-{r[1]}-{i}" for i, r in enumerate(RAW_BAD)])
def test_raw_cpp_op_checks_every_tensor(which, name, value, match):
    kwargs = _raw_args() if which == "fwd" else _raw_bwd_args()
    kwargs[name] = value
    op = getattr(cpp_ops(), f"gaussian_pair_logsumexp_{which}")
    names = FWD_NAMES if which == "fwd" else BWD_NAMES
    with pytest.raises(RuntimeError, match=match):
        op(*(kwargs[n] for n in names))


@needs_cpp
def test_raw_cpp_op_flags():
    kwargs = _raw_args(rows_z=4)
    kwargs["weights"] = None
    with pytest.raises(RuntimeError, match="exclude_self needs as many rows in z as in mu, got 4 and 6"):
        cpp_ops().gaussian_pair_logsumexp_fwd(*(kwargs[n] for n in FWD_NAMES[:4]), True)


@needs_cpp
def test_raw_cpp_backward_short_gradient_with_large_batch_raises():
    """A 1-element grad_joint with B' = 200,000 must be refused, not read out of bounds."""
    kwargs = _raw_bwd_args(rows_z=200_000, rows_mu=2, dim=2)
    kwargs["weights"], kwargs["weights_grad"] = None, False
    kwargs["grad_joint"] = torch.ones(1)
    with pytest.raises(RuntimeError, match=r"grad_joint must have shape \(B',\) = \[200000\], got \[1\]"):
        cpp_ops().gaussian_pair_logsumexp_bwd(*(kwargs[n] for n in BWD_NAMES))
    kwargs["grad_joint"], kwargs["grad_marginal"] = torch.ones(200_000), torch.ones(200_000, 1)
    with pytest.raises(RuntimeError, match=r"grad_marginal must have shape \(B', D\) = \[200000, 2\]"):
        cpp_ops().gaussian_pair_logsumexp_bwd(*(kwargs[n] for n in BWD_NAMES))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["kde", "gaussian"])
@pytest.mark.parametrize("value", [0.7, 123.456, 0.0])
def test_constant_column_entropy_is_minus_inf_with_zero_gradient(gen, backend, method, value):
    """A constant column (its float variance may round to 1e-32, not 0) has entropy -inf, the limit
    of both estimates (the kde gave NaN: 0/0 of a zero bandwidth), and gradient 0; the other columns
    are those of the data without it. A given kde bandwidth keeps the column's finite estimate."""
    z = torch.randn(13, 3, generator=gen, dtype=torch.float64)
    with_constant = torch.cat([z[:, :1], torch.full((13, 1), value, dtype=torch.float64), z[:, 1:]], 1)
    leaf = with_constant.clone().requires_grad_()
    got = ops.marginal_entropy(leaf, method=method, backend=backend)
    (dz,) = torch.autograd.grad(got.sum(), leaf)
    assert got[1] == -INF
    assert_matches(got[[0, 2, 3]], ops.marginal_entropy(z, method=method, backend=backend), 1e-12, backend)
    assert torch.isfinite(dz).all() and (dz[:, 1] == 0).all()
    fixed = ops.marginal_entropy(with_constant, bandwidth=0.5, backend=backend)[1]
    assert fixed == pytest.approx(0.5 * math.log(2 * math.pi * 0.25), rel=1e-12)  # -log N(0; 0, h^2)
