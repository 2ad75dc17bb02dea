"""Fused Triton kernels for the affine coupling of RealNVP / Glow flows.

Self-contained: imports only torch and triton, so the file can be copied into another project.
Every launcher takes 2-D tensors of shape (B, N) (flatten the non-batch dims first) whose rows
may be strided (``stride(1) == 1``, any ``stride(0)``: e.g. the halves of a subnet output split
with ``chunk``), and returns new contiguous tensors; the row reduction for ``log_det`` is written as (B, cdiv(N, BLOCK))
partial sums and finished with one small ``sum(1)``, so results are deterministic.

Math (c = clamp, a = s_raw, u = a / c, k = 2/pi, sigma(v) = 1 / (1 + e^-v)):
    scale map    atan:           s = c k atan(u),        s' = k / (1 + u^2),         s'' = -2 u s' / (c (1 + u^2))
                 tanh:           s = c tanh(u),          s' = 1 - tanh(u)^2,         s'' = -2 tanh(u) s' / c
                 none:           s = a,                  s' = 1,                     s'' = 0
                 freia_atan:     s = 0.636 c atan(a),    s' = 0.636 c / (1 + a^2),   s'' = -2 a s' / (1 + a^2)
                 freia_tanh:     s = c tanh(a),          s' = c (1 - tanh(a)^2),     s'' = -2 tanh(a) s'
                 freia_sigmoid:  s = c tanh(a/2),        s' = c/2 (1 - tanh(a/2)^2), s'' = -tanh(a/2) s'
                 logsigmoid:     s = -softplus(-(a+c)),  s' = sigma(-(a+c)),         s'' = -sigma(a+c) sigma(-(a+c))
                 neg_logsigmoid: s = softplus(-(a+c)),   s' = -sigma(-(a+c)),        s'' = sigma(a+c) sigma(-(a+c))
                 (c is a bound or scale, > 0, except for the two sigmoid maps: there an offset)
    forward      y = x e^s + t,          log_det = sum_n s
    reverse      y = (x - t) e^-s,       log_det = -sum_n s
    tangents     forward: dy = e^s (dx + x ds) + dt;   reverse: dy = (dx - dt) e^-s - y ds;  ds = s' ds_raw
Gradients are derived in each backward kernel's docstring. Backward kernels recompute e^s from
the inputs instead of reading stored intermediates (one read of each input, one write of each
gradient). Loads are upcast to float32 (float64 stays float64); stores use the input dtype.
atan and tanh use Cephes' float32 polynomials for float32 (relative error ~1e-7) and its
double-precision rational approximations for float64 (~1e-16), written in plain ``tl`` arithmetic
so they compile on every Triton version and run under ``TRITON_INTERPRET=1`` alike. The clamp
reaches the kernels as a 1-element tensor of the compute dtype (a Python float argument would be
passed as float32).
"""
import torch
import triton
import triton.language as tl

CLAMP_FN_IDS = {"atan": 0, "tanh": 1, "none": 2, "freia_atan": 3, "freia_tanh": 4, "freia_sigmoid": 5,
                "logsigmoid": 6, "neg_logsigmoid": 7}
_K = tl.constexpr(0.6366197723675814)  # 2 / pi; Triton reads globals only as constexpr
_PI_2 = tl.constexpr(1.5707963267948966)
_PI_4 = tl.constexpr(0.7853981633974483)
_MOREBITS = tl.constexpr(6.123233995736765886130e-17)  # pi/2 - float64(pi/2), Cephes' correction
_FREIA_K = tl.constexpr(0.636)  # FrEIA 0.2's literal, not 2/pi


@triton.jit
def _up(v):
    """Upcast half types to float32; float32 and float64 pass through."""
    if v.dtype != tl.float64:
        v = v.to(tl.float32)
    return v


@triton.jit
def _atan_f32(x):
    """atan with Cephes' float32 range reduction and polynomial (|error| ~ 1e-7 relative)."""
    a = tl.abs(x)
    big = a > 2.414213562373095
    mid = (a > 0.4142135623730950) & (a <= 2.414213562373095)
    safe = tl.where(big, a, 1.0)
    r = tl.where(big, -1.0 / safe, tl.where(mid, (a - 1.0) / (a + 1.0), a))
    base = tl.where(big, _PI_2, tl.where(mid, _PI_4, 0.0))
    z = r * r
    p = (((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1) * z * r + r
    res = base + p
    return tl.where(x < 0, -res, res)


@triton.jit
def _atan_f64(x):
    """atan with Cephes' double-precision reduction (tan(3pi/8), 0.66) and rational P/Q (~1e-16)."""
    a = tl.abs(x)
    big = a > 2.41421356237309504880
    mid = (a > 0.66) & (a <= 2.41421356237309504880)
    safe = tl.where(big, a, 1.0)
    r = tl.where(big, -1.0 / safe, tl.where(mid, (a - 1.0) / (a + 1.0), a))
    # constants enter through float64 arithmetic: tl.where of two Python floats would make float32
    zero = tl.zeros(a.shape, a.dtype)
    base = tl.where(big, zero + _PI_2, tl.where(mid, zero + _PI_4, zero))
    low = tl.where(big, zero + _MOREBITS, tl.where(mid, zero + 0.5 * _MOREBITS, zero))
    z = r * r
    p = (((-8.750608600031904122785e-1 * z - 1.615753718733365076637e1) * z - 7.500855792314704667340e1) * z
         - 1.228866684490136173410e2) * z - 6.485021904942025371773e1
    q = ((((z + 2.485846490142306297962e1) * z + 1.650270098316988542046e2) * z + 4.328810604912902668951e2) * z
         + 4.853903996359136964868e2) * z + 1.945506571482613964425e2
    res = base + ((r * (z * p / q) + r) + low)
    return tl.where(x < 0, -res, res)


@triton.jit
def _atan(x):
    if x.dtype == tl.float64:
        res = _atan_f64(x)
    else:
        res = _atan_f32(x)
    return res


@triton.jit
def _tanh(u):
    """tanh(u) = 1 - 2 / (e^(2u) + 1) for |u| >= 0.625; below, where that difference cancels,
    Cephes' odd approximation u + u z R(z), z = u^2 (a polynomial for float32, a rational
    function for float64): relative error ~1e-7 / ~1e-16 everywhere."""
    th = 1.0 - 2.0 / (tl.exp(2.0 * u) + 1.0)
    z = u * u
    if u.dtype == tl.float64:
        p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z - 1.61468768441708447952e3
        q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z + 4.84406305325125486048e3
        small = u + u * (z * p / q)
    else:
        small = ((((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z + 1.33314422036e-1) * z
                 - 3.33332819422e-1) * z * u + u
    return tl.where(tl.abs(u) < 0.625, small, th)


@triton.jit
def _sigmoid_neg(v):
    """(sigma(-v), sigma(v) sigma(-v)) from e = exp(-|v|): no overflow for any v."""
    e = tl.exp(-tl.abs(v))
    r = 1.0 / (1.0 + e)
    return tl.where(v >= 0, e * r, r), e * r * r


@triton.jit
def _softplus_neg(v):
    """softplus(-v) = max(-v, 0) + log1p(e), e = exp(-|v|); log1p(e) = log(w) e / (w - 1) with
    w = 1 + e (Goldberg's exact-rounding trick; e itself where w rounds to 1)."""
    e = tl.exp(-tl.abs(v))
    w = 1.0 + e
    wm1 = w - 1.0
    log1p = tl.where(wm1 == 0.0, e, tl.log(w) * (e / tl.where(wm1 == 0.0, 1.0, wm1)))
    return tl.maximum(-v, 0.0) + log1p


@triton.jit
def _soft_clamp(a, clamp, CLAMP_FN: tl.constexpr):
    """Returns (s, s', s'') of the scale map at a = s_raw (ids as in CLAMP_FN_IDS)."""
    if CLAMP_FN == 0:
        u = a / clamp
        q = 1.0 / (1.0 + u * u)
        s = (clamp * _K) * _atan(u)
        d1 = _K * q
        d2 = -2.0 * u * d1 * q / clamp
    elif CLAMP_FN == 1:
        th = _tanh(a / clamp)
        s = clamp * th
        d1 = 1.0 - th * th
        d2 = -2.0 * th * d1 / clamp
    elif CLAMP_FN == 3:
        q = 1.0 / (1.0 + a * a)
        s = (clamp * _FREIA_K) * _atan(a)
        d1 = (clamp * _FREIA_K) * q
        d2 = -2.0 * a * d1 * q
    elif CLAMP_FN == 4:
        th = _tanh(a)
        s = clamp * th
        d1 = clamp * (1.0 - th * th)
        d2 = -2.0 * th * d1
    elif CLAMP_FN == 5:
        th = _tanh(0.5 * a)
        s = clamp * th
        d1 = (0.5 * clamp) * (1.0 - th * th)
        d2 = -th * d1
    elif CLAMP_FN == 6:
        v = a + clamp
        sig_neg, curv = _sigmoid_neg(v)
        s = -_softplus_neg(v)
        d1 = sig_neg
        d2 = -curv
    elif CLAMP_FN == 7:
        v = a + clamp
        sig_neg, curv = _sigmoid_neg(v)
        s = _softplus_neg(v)
        d1 = -sig_neg
        d2 = curv
    else:
        s = a
        d1 = tl.full(a.shape, 1.0, a.dtype)
        d2 = tl.zeros(a.shape, a.dtype)
    return s, d1, d2


@triton.jit
def _fwd_kernel(X, S, T, Y, PART, N, n_blk, CLAMP, sx, ss, st,
                REVERSE: tl.constexpr, CLAMP_FN: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    blk = tl.program_id(1)
    cols = blk * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    r = row.to(tl.int64)
    off = r * N + cols
    x = _up(tl.load(X + r * sx + cols, mask=mask, other=0.0))
    a = _up(tl.load(S + r * ss + cols, mask=mask, other=0.0))
    t = _up(tl.load(T + r * st + cols, mask=mask, other=0.0))
    s, d1, d2 = _soft_clamp(a, tl.load(CLAMP), CLAMP_FN)
    if REVERSE:
        y = (x - t) * tl.exp(-s)
        part = -tl.sum(tl.where(mask, s, 0.0), axis=0)
    else:
        y = x * tl.exp(s) + t
        part = tl.sum(tl.where(mask, s, 0.0), axis=0)
    tl.store(Y + off, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(PART + row * n_blk + blk, part)


@triton.jit
def _bwd_kernel(X, S, T, GY, GLD, GX, GS, GT, N, CLAMP, sx, ss, st,
                REVERSE: tl.constexpr, CLAMP_FN: tl.constexpr, BLOCK: tl.constexpr):
    """forward: gx = gy e, gs_raw = (gy x e + gld) s', (gt = gy, not written)
    reverse: gx = gy e, gt = -gx, gs_raw = -(gy y + gld) s', with e = e^-s, y = (x - t) e."""
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    r = row.to(tl.int64)
    off = r * N + cols
    x = _up(tl.load(X + r * sx + cols, mask=mask, other=0.0))
    a = _up(tl.load(S + r * ss + cols, mask=mask, other=0.0))
    gy = _up(tl.load(GY + off, mask=mask, other=0.0))
    gld = _up(tl.load(GLD + row))
    s, d1, d2 = _soft_clamp(a, tl.load(CLAMP), CLAMP_FN)
    if REVERSE:
        t = _up(tl.load(T + r * st + cols, mask=mask, other=0.0))
        e = tl.exp(-s)
        gx = gy * e
        gs = -(gy * (x - t) * e + gld) * d1
        tl.store(GT + off, (-gx).to(GT.dtype.element_ty), mask=mask)
    else:
        e = tl.exp(s)
        gx = gy * e
        gs = (gx * x + gld) * d1
    tl.store(GX + off, gx.to(GX.dtype.element_ty), mask=mask)
    tl.store(GS + off, gs.to(GS.dtype.element_ty), mask=mask)


@triton.jit
def _jvp_fwd_kernel(X, S, T, DX, DS, DT, Y, DY, PART, DPART, N, n_blk, CLAMP, sx, ss, st, sdx, sds, sdt,
                    REVERSE: tl.constexpr, CLAMP_FN: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    blk = tl.program_id(1)
    cols = blk * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    r = row.to(tl.int64)
    off = r * N + cols
    x = _up(tl.load(X + r * sx + cols, mask=mask, other=0.0))
    a = _up(tl.load(S + r * ss + cols, mask=mask, other=0.0))
    t = _up(tl.load(T + r * st + cols, mask=mask, other=0.0))
    dx = _up(tl.load(DX + r * sdx + cols, mask=mask, other=0.0))
    da = _up(tl.load(DS + r * sds + cols, mask=mask, other=0.0))
    dt = _up(tl.load(DT + r * sdt + cols, mask=mask, other=0.0))
    s, d1, d2 = _soft_clamp(a, tl.load(CLAMP), CLAMP_FN)
    ds = d1 * da
    if REVERSE:
        e = tl.exp(-s)
        y = (x - t) * e
        dy = (dx - dt) * e - y * ds
        sign = -1.0
    else:
        e = tl.exp(s)
        y = x * e + t
        dy = e * (dx + x * ds) + dt
        sign = 1.0
    tl.store(Y + off, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(DY + off, dy.to(DY.dtype.element_ty), mask=mask)
    tl.store(PART + row * n_blk + blk, sign * tl.sum(tl.where(mask, s, 0.0), axis=0))
    tl.store(DPART + row * n_blk + blk, sign * tl.sum(tl.where(mask, ds, 0.0), axis=0))


@triton.jit
def _jvp_bwd_kernel(X, S, T, DX, DS, DT, GY, GLD, GDY, GDLD, GX, GA, GT, GDX, GDA, GDT, N, CLAMP,
                    sx, ss, st, sdx, sds, sdt, REVERSE: tl.constexpr, CLAMP_FN: tl.constexpr, BLOCK: tl.constexpr):
    """Reverse-over-forward. With a = s_raw, ds = s' da and incoming (gy, gld, gdy, gdld):
    forward: gx = e (gy + gdy ds),  gdx = gdy e,  g_ds = gdy e x + gdld,
             g_s = gy x e + gld + gdy e (dx + x ds),   (gt = gy, gdt = gdy: not written)
    reverse: gx = e (gy - gdy ds),  gt = -gx,  gdx = gdy e,  gdt = -gdx,
             g_ds = -(gdy y + gdld),  g_s = -(gy y + gld + gdy dy)
    then ga = g_s s' + g_ds s'' da,  gda = g_ds s'."""
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    r = row.to(tl.int64)
    off = r * N + cols
    x = _up(tl.load(X + r * sx + cols, mask=mask, other=0.0))
    a = _up(tl.load(S + r * ss + cols, mask=mask, other=0.0))
    dx = _up(tl.load(DX + r * sdx + cols, mask=mask, other=0.0))
    da = _up(tl.load(DS + r * sds + cols, mask=mask, other=0.0))
    gy = _up(tl.load(GY + off, mask=mask, other=0.0))
    gdy = _up(tl.load(GDY + off, mask=mask, other=0.0))
    gld = _up(tl.load(GLD + row))
    gdld = _up(tl.load(GDLD + row))
    s, d1, d2 = _soft_clamp(a, tl.load(CLAMP), CLAMP_FN)
    ds = d1 * da
    if REVERSE:
        t = _up(tl.load(T + r * st + cols, mask=mask, other=0.0))
        dt = _up(tl.load(DT + r * sdt + cols, mask=mask, other=0.0))
        e = tl.exp(-s)
        y = (x - t) * e
        dy = (dx - dt) * e - y * ds
        gx = e * (gy - gdy * ds)
        gdx = gdy * e
        g_ds = -(gdy * y + gdld)
        g_s = -(gy * y + gld + gdy * dy)
        tl.store(GT + off, (-gx).to(GT.dtype.element_ty), mask=mask)
        tl.store(GDT + off, (-gdx).to(GDT.dtype.element_ty), mask=mask)
    else:
        e = tl.exp(s)
        gx = e * (gy + gdy * ds)
        gdx = gdy * e
        g_ds = gdx * x + gdld
        g_s = gy * x * e + gld + gdx * (dx + x * ds)
    tl.store(GX + off, gx.to(GX.dtype.element_ty), mask=mask)
    tl.store(GDX + off, gdx.to(GDX.dtype.element_ty), mask=mask)
    tl.store(GA + off, (g_s * d1 + g_ds * d2 * da).to(GA.dtype.element_ty), mask=mask)
    tl.store(GDA + off, (g_ds * d1).to(GDA.dtype.element_ty), mask=mask)


_BLOCK = 1024
_WARPS = 4


def _grid(x):
    return (x.shape[0], triton.cdiv(x.shape[1], _BLOCK))


def _launch(kernel, x):
    """``kernel[grid]`` over x's (B, N) tiles; a no-op for an empty x (B = 0 or N = 0), whose
    outputs need no writes (a zero-size grid is a launch error)."""
    return kernel[_grid(x)] if x.numel() else (lambda *args, **kwargs: None)


def _acc_dtype(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _new(x):
    return torch.empty(x.shape, device=x.device, dtype=x.dtype)


def _row_strides(*tensors):
    return [v.stride(0) for v in tensors]


def _partials(x):
    b, n_blk = _grid(x)
    return torch.empty((b, n_blk), device=x.device, dtype=_acc_dtype(x)), n_blk


def _param(x, clamp):
    """The clamp as a 1-element tensor of the compute dtype (float64 for float64 inputs): a Python
    float kernel argument would be passed as float32, which is not float64-accurate."""
    return torch.full((1,), float(clamp), device=x.device, dtype=_acc_dtype(x))


def _flags(clamp_fn, reverse):
    return dict(REVERSE=bool(reverse), CLAMP_FN=CLAMP_FN_IDS[clamp_fn], BLOCK=_BLOCK, num_warps=_WARPS)


def coupling_fwd(x, s_raw, t, clamp, clamp_fn, reverse):
    """(B, N) inputs -> (y (B, N), log_det (B,)) in x's dtype."""
    y = _new(x)
    part, n_blk = _partials(x)
    _launch(_fwd_kernel, x)(x, s_raw, t, y, part, x.shape[1], n_blk, _param(x, clamp), *_row_strides(x, s_raw, t),
                          **_flags(clamp_fn, reverse))
    return y, part.sum(1).to(x.dtype)


def coupling_bwd(x, s_raw, t, gy, gld, clamp, clamp_fn, reverse):
    """-> (gx, gs_raw, gt); forward returns gy itself as gt (no copy)."""
    gx, gs = _new(x), _new(x)
    gt = _new(x) if reverse else gy
    _launch(_bwd_kernel, x)(x, s_raw, t, gy.contiguous(), gld.contiguous(), gx, gs, gt, x.shape[1], _param(x, clamp),
                          *_row_strides(x, s_raw, t), **_flags(clamp_fn, reverse))
    return gx, gs, gt


def coupling_jvp_fwd(x, s_raw, t, dx, ds_raw, dt, clamp, clamp_fn, reverse):
    """-> (y, log_det, dy, dlog_det): primal and tangent in one pass."""
    y, dy = _new(x), _new(x)
    part, n_blk = _partials(x)
    dpart = torch.empty_like(part)
    _launch(_jvp_fwd_kernel, x)(x, s_raw, t, dx, ds_raw, dt, y, dy, part, dpart, x.shape[1], n_blk, _param(x, clamp),
                              *_row_strides(x, s_raw, t, dx, ds_raw, dt), **_flags(clamp_fn, reverse))
    return y, part.sum(1).to(x.dtype), dy, dpart.sum(1).to(x.dtype)


def coupling_jvp_bwd(x, s_raw, t, dx, ds_raw, dt, gy, gld, gdy, gdld, clamp, clamp_fn, reverse):
    """-> (gx, gs_raw, gt, gdx, gds_raw, gdt); forward returns gy and gdy themselves as gt, gdt."""
    gx, ga, gdx, gda = (_new(x) for _ in range(4))
    gt = _new(x) if reverse else gy
    gdt = _new(x) if reverse else gdy
    _launch(_jvp_bwd_kernel, x)(x, s_raw, t, dx, ds_raw, dt, gy.contiguous(), gld.contiguous(), gdy.contiguous(),
                              gdld.contiguous(), gx, ga, gt, gdx, gda, gdt, x.shape[1], _param(x, clamp),
                              *_row_strides(x, s_raw, t, dx, ds_raw, dt), **_flags(clamp_fn, reverse))
    return gx, ga, gt, gdx, gda, gdt
