"""Pairwise Gaussian log-sum-exp in Triton, streamed over m (flash-attention style).

Self-contained: imports only torch and triton, so the file can be copied into another project.
Inputs: z (B', D), mu and logvar (B, D), optional log-weights w (B', B), all contiguous.

Math, with c_md = -0.5 (log 2pi + logvar_md), h_md = 0.5 exp(-logvar_md), u_nmd = z_nd - mu_md:
    x_nmd = w_nm + c_md - u_nmd^2 h_md        (= w_nm + log N(z_nd; mu_md, exp(logvar_md)))
    s_nm  = w_nm + sum_d (c_md - u_nmd^2 h_md)
    log_joint[n] = logsumexp_m s_nm           (B',)
    log_marginal[n, d] = logsumexp_m x_nmd    (B', D)
``exclude_self`` (B' == B) drops m == n, and a pair with w_nm = -inf is dropped: it contributes
nothing to any output or gradient, even where its density is NaN. Each marginal is its own
log-sum-exp (its own maximum), so a density of -inf or NaN in dimension d reaches only
log_marginal[:, d] and log_joint; a maximum of +-inf shifts by 0 and NaN is kept, as
torch.logsumexp does. Gradients, with p_nm = exp(s_nm - log_joint_n),
q_nmd = exp(x_nmd - log_marginal_nd) and k_nmd = g_joint_n p_nm + g_marginal_nd q_nmd:
    dz_nd = -sum_m 2 k_nmd u_nmd h_md
    dmu_md = sum_n 2 k_nmd u_nmd h_md,   dlogvar_md = sum_n k_nmd (u_nmd^2 h_md - 0.5)
    dw_nm = g_joint_n p_nm + sum_d g_marginal_nd q_nmd
A zero incoming gradient contributes exactly zero (not 0 * NaN): log_joint mixes all dimensions,
so without this a NaN column would reach every column's gradient through g_joint = 0.

Kernels work on (BLOCK_N, BLOCK_M, BLOCK_D) tiles. For D <= 64 one tile holds all of d: the
forward walks the m blocks for one n block keeping running maxima and sums for the joint
(BLOCK_N,) and for each marginal (BLOCK_N, BLOCK_D); the backward recomputes the tiles, once
per n block (dz, dw) and once per m block (dmu, dlogvar). For D > 64 the same kernels run on
64-wide d chunks (a second grid axis) and the joint, which needs all of d, goes through the
(B', B) scores s_nm, summed over the chunks by ``_pair_sum_kernel`` (recomputed in the backward,
where p_nm reads them). Nothing of size B' x B x D is stored and the results are deterministic
(no atomics). Padded and dropped pairs are masked with tl.where (never by adding -inf to a
density that may be NaN), and the launchers skip empty grids (B' = 0 or B = 0).
Arithmetic runs in float32 (float64 for float64 inputs); results come back in z's dtype.
"""
import math

import torch
import triton
import triton.language as tl

_LOG_2PI = math.log(2.0 * math.pi)
# Elements per (BLOCK_N, BLOCK_M, BLOCK_D) tile: 32 (forward) and 16 (backward, which holds more
# tile-sized values at once) fp32 registers a thread at 4 warps; float64 tiles are half as large.
# With these, ptxas (triton 3.9, sm_90) reports spills of 16-72 bytes in 5 of 416 kernel variants
# and none elsewhere (scripts/check_triton_compile.py). Before d was chunked, one tile held all of
# d and D = 256 spilled ~90 bytes, D = 1024 ~20 KB.
_TILE = 4096
_TILE_BWD = 2048
_BLOCK_N = 16
_D_CHUNK = 64  # larger D is walked in chunks of this many dimensions


@triton.jit
def _pair_tile(Z, MU, C, H, W, offs_n, offs_m, offs_d, BP, B, D,
               HAS_W: tl.constexpr, EXCLUDE_SELF: tl.constexpr):
    """Returns u and log N (BN, BM, BD; 0 on padded d and on padded or dropped pairs) and w (BN, BM;
    -inf on padded or dropped pairs)."""
    mask_n = offs_n < BP
    mask_m = offs_m < B
    mask_d = offs_d < D
    z = tl.load(Z + offs_n[:, None].to(tl.int64) * D + offs_d[None, :],
                mask=mask_n[:, None] & mask_d[None, :], other=0.0)
    md = offs_m[:, None].to(tl.int64) * D + offs_d[None, :]
    mmask = mask_m[:, None] & mask_d[None, :]
    mu = tl.load(MU + md, mask=mmask, other=0.0)
    c = tl.load(C + md, mask=mmask, other=0.0)
    h = tl.load(H + md, mask=mmask, other=0.0)
    if mu.dtype != tl.float64:
        z = z.to(tl.float32)
        mu = mu.to(tl.float32)
    keep = mask_n[:, None] & mask_m[None, :]
    if EXCLUDE_SELF:
        keep = keep & (offs_n[:, None] != offs_m[None, :])
    if HAS_W:
        w = tl.load(W + offs_n[:, None].to(tl.int64) * B + offs_m[None, :], mask=keep, other=float("-inf"))
        w = w.to(c.dtype)
        keep = keep & (w != float("-inf"))
    else:
        w = tl.zeros(keep.shape, dtype=c.dtype)
    w = tl.where(keep, w, float("-inf"))
    u = tl.where(keep[:, :, None], z[:, None, :] - mu[None, :, :], 0.0)
    log_density = tl.where(keep[:, :, None], c[None, :, :] - u * u * h[None, :, :], 0.0)
    return u, log_density, w


@triton.jit
def _lse_shift(mx):
    """The shift of a log-sum-exp whose largest term is mx: mx, or 0 where mx is +-inf (torch's rule)."""
    return tl.where(tl.abs(mx) == float("inf"), 0.0, mx)


@triton.jit
def _fwd_kernel(Z, MU, C, H, W, LJ, LM, BP, B, D,
                HAS_W: tl.constexpr, EXCLUDE_SELF: tl.constexpr, JOINT: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """log_marginal for one (n block, d chunk); with JOINT (one chunk holds all of d) also log_joint."""
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    acc = C.dtype.element_ty
    j_max = tl.full((BLOCK_N,), float("-inf"), acc)
    j_sum = tl.zeros((BLOCK_N,), acc)
    m_max = tl.full((BLOCK_N, BLOCK_D), float("-inf"), acc)
    m_sum = tl.zeros((BLOCK_N, BLOCK_D), acc)
    for m0 in range(0, B, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        u, log_density, w = _pair_tile(Z, MU, C, H, W, offs_n, offs_m, offs_d, BP, B, D, HAS_W, EXCLUDE_SELF)
        if JOINT:
            s = w + tl.sum(log_density, axis=2)
            new_max = tl.maximum(j_max, tl.max(s, axis=1))
            shift = _lse_shift(new_max)
            j_sum = j_sum * tl.exp(j_max - shift) + tl.sum(tl.exp(s - shift[:, None]), axis=1)
            j_max = new_max
        x = w[:, :, None] + log_density
        new_max_d = tl.maximum(m_max, tl.max(x, axis=1))
        shift_d = _lse_shift(new_max_d)
        m_sum = m_sum * tl.exp(m_max - shift_d) + tl.sum(tl.exp(x - shift_d[:, None, :]), axis=1)
        m_max = new_max_d
    mask_n = offs_n < BP
    # padded rows (n >= B') are never stored; give them sum 1 so that no log(0) is evaluated
    log_marginal = _lse_shift(m_max) + tl.log(tl.where(mask_n[:, None], m_sum, 1.0))
    if JOINT:
        log_joint = _lse_shift(j_max) + tl.log(tl.where(mask_n, j_sum, 1.0))
        tl.store(LJ + offs_n, log_joint.to(LJ.dtype.element_ty), mask=mask_n)
    tl.store(LM + offs_n[:, None].to(tl.int64) * D + offs_d[None, :], log_marginal.to(LM.dtype.element_ty),
             mask=mask_n[:, None] & (offs_d[None, :] < D))


@triton.jit
def _marginal_grad(log_density, w, offs_n, offs_d, LM, GM, BP, D):
    """g_marginal_nd q_nmd of one tile (BN, BM, BD); 0 on padded or dropped pairs, on padded d and
    where g_marginal_nd = 0."""
    nd = offs_n[:, None].to(tl.int64) * D + offs_d[None, :]
    ndmask = (offs_n[:, None] < BP) & (offs_d[None, :] < D)
    lm = tl.load(LM + nd, mask=ndmask, other=0.0).to(log_density.dtype)
    gm = tl.load(GM + nd, mask=ndmask, other=0.0).to(log_density.dtype)
    q = tl.exp(w[:, :, None] + log_density - lm[:, None, :])
    return tl.where((w != float("-inf"))[:, :, None] & (gm != 0.0)[:, None, :], gm[:, None, :] * q, 0.0)


@triton.jit
def _coefficients(log_density, w, offs_n, offs_m, offs_d, LJ, LM, GJ, GM, S, BP, B, D, JOINT: tl.constexpr):
    """Returns k (BN, BM, BD; 0 on padded d) and dw (BN, BM) of one tile (module doc).

    JOINT: this tile holds all of d, so s_nm = w_nm + sum_d log N; else s_nm is read from S (B', B).
    """
    acc = log_density.dtype
    mask_n = offs_n < BP
    lj = tl.load(LJ + offs_n, mask=mask_n, other=0.0).to(acc)
    gj = tl.load(GJ + offs_n, mask=mask_n, other=0.0).to(acc)
    if JOINT:
        s = w + tl.sum(log_density, axis=2)
    else:
        s = tl.load(S + offs_n[:, None].to(tl.int64) * B + offs_m[None, :],
                    mask=mask_n[:, None] & (offs_m[None, :] < B), other=float("-inf")).to(acc)
    gp = tl.where((w != float("-inf")) & (gj != 0.0)[:, None], gj[:, None] * tl.exp(s - lj[:, None]), 0.0)
    gq = _marginal_grad(log_density, w, offs_n, offs_d, LM, GM, BP, D)
    return gp[:, :, None] + gq, gp + tl.sum(gq, axis=2)


@triton.jit
def _bwd_n_kernel(Z, MU, C, H, W, LJ, LM, GJ, GM, S, DZ, DW, BP, B, D,
                  HAS_W: tl.constexpr, EXCLUDE_SELF: tl.constexpr, JOINT: tl.constexpr, WEIGHTS_GRAD: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """dz for one (n block, d chunk): dz_nd = -sum_m 2 k_nmd u_nmd h_md; dw too when JOINT."""
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dz = tl.zeros((BLOCK_N, BLOCK_D), C.dtype.element_ty)
    for m0 in range(0, B, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        u, log_density, w = _pair_tile(Z, MU, C, H, W, offs_n, offs_m, offs_d, BP, B, D, HAS_W, EXCLUDE_SELF)
        k, dw = _coefficients(log_density, w, offs_n, offs_m, offs_d, LJ, LM, GJ, GM, S, BP, B, D, JOINT)
        h = tl.load(H + offs_m[:, None].to(tl.int64) * D + offs_d[None, :],
                    mask=(offs_m[:, None] < B) & (offs_d[None, :] < D), other=0.0)
        dz -= 2.0 * tl.sum(k * u * h[None, :, :], axis=1)
        if WEIGHTS_GRAD:
            tl.store(DW + offs_n[:, None].to(tl.int64) * B + offs_m[None, :], dw.to(DW.dtype.element_ty),
                     mask=(offs_n[:, None] < BP) & (offs_m[None, :] < B))
    tl.store(DZ + offs_n[:, None].to(tl.int64) * D + offs_d[None, :], dz.to(DZ.dtype.element_ty),
             mask=(offs_n[:, None] < BP) & (offs_d[None, :] < D))


@triton.jit
def _bwd_m_kernel(Z, MU, C, H, W, LJ, LM, GJ, GM, S, DMU, DLV, BP, B, D,
                  HAS_W: tl.constexpr, EXCLUDE_SELF: tl.constexpr, JOINT: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """dmu, dlogvar for one (m block, d chunk): sums over n of 2 k u h and k (u^2 h - 0.5)."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    md = offs_m[:, None].to(tl.int64) * D + offs_d[None, :]
    mmask = (offs_m[:, None] < B) & (offs_d[None, :] < D)
    h = tl.load(H + md, mask=mmask, other=0.0)
    dmu = tl.zeros((BLOCK_M, BLOCK_D), C.dtype.element_ty)
    dlv = tl.zeros((BLOCK_M, BLOCK_D), C.dtype.element_ty)
    for n0 in range(0, BP, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        u, log_density, w = _pair_tile(Z, MU, C, H, W, offs_n, offs_m, offs_d, BP, B, D, HAS_W, EXCLUDE_SELF)
        k, dw = _coefficients(log_density, w, offs_n, offs_m, offs_d, LJ, LM, GJ, GM, S, BP, B, D, JOINT)
        dmu += 2.0 * tl.sum(k * u, axis=0) * h
        dlv += tl.sum(k * (u * u * h[None, :, :] - 0.5), axis=0)
    tl.store(DMU + md, dmu.to(DMU.dtype.element_ty), mask=mmask)
    tl.store(DLV + md, dlv.to(DLV.dtype.element_ty), mask=mmask)


@triton.jit
def _pair_sum_kernel(Z, MU, C, H, W, LM, GM, OUT, BP, B, D,
                     HAS_W: tl.constexpr, EXCLUDE_SELF: tl.constexpr, MARGINAL_GRAD: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """One (n block, m block) of a (B', B) sum over all d, walking d in chunks.

    MARGINAL_GRAD False: OUT = s_nm = w_nm + sum_d log N (-inf for dropped pairs).
    MARGINAL_GRAD True:  OUT = sum_d g_marginal_nd q_nmd (the marginal part of dw).
    """
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    total = tl.zeros((BLOCK_N, BLOCK_M), C.dtype.element_ty)
    w = tl.zeros((BLOCK_N, BLOCK_M), C.dtype.element_ty)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        u, log_density, w = _pair_tile(Z, MU, C, H, W, offs_n, offs_m, offs_d, BP, B, D, HAS_W, EXCLUDE_SELF)
        if MARGINAL_GRAD:
            total += tl.sum(_marginal_grad(log_density, w, offs_n, offs_d, LM, GM, BP, D), axis=2)
        else:
            total += tl.sum(log_density, axis=2)
    if not MARGINAL_GRAD:
        total = w + total
    tl.store(OUT + offs_n[:, None].to(tl.int64) * B + offs_m[None, :], total,
             mask=(offs_n[:, None] < BP) & (offs_m[None, :] < B))


def _blocks(D, tile, dtype):
    """Tile sizes for the n/m-streaming kernels: BLOCK_D covers D up to _D_CHUNK, else one chunk.
    float64 values take two registers each, so its tiles are half as large."""
    tile = tile // 2 if dtype == torch.float64 else tile
    block_d = min(triton.next_power_of_2(max(D, 1)), _D_CHUNK)
    block_m = max(1, min(64, tile // (_BLOCK_N * block_d)))
    return dict(BLOCK_N=_BLOCK_N, BLOCK_M=block_m, BLOCK_D=block_d)


def _d_chunks(D, blocks):
    """Number of d chunks; D = 0 still takes one (the joint is then logsumexp_m w_nm)."""
    return max(1, triton.cdiv(D, blocks["BLOCK_D"]))


def _launch(kernel, grid, *args, **kwargs):
    """kernel[grid](*args, **kwargs); an empty grid (B' = 0 or B = 0) has nothing to write and is skipped."""
    if all(grid):
        kernel[grid](*args, **kwargs)


def _constants(logvar):
    """c = -0.5 (log 2pi + logvar), h = 0.5 exp(-logvar) in the arithmetic dtype, both (B, D)."""
    lv = logvar.to(torch.float64 if logvar.dtype == torch.float64 else torch.float32)
    return (-0.5 * (lv + _LOG_2PI)).contiguous(), (0.5 * torch.exp(-lv)).contiguous()


def _pair_sum(z, mu, c, h, weights, exclude_self, lm=None, gm=None):
    """(B', B) in the arithmetic dtype: s_nm, or with (lm, gm) the marginal part of dw (see _pair_sum_kernel)."""
    (bp, d), b = z.shape, mu.shape[0]
    out = torch.empty((bp, b), device=z.device, dtype=c.dtype)
    grad = lm is not None
    block_d = min(triton.next_power_of_2(max(d, 1)), 8 if grad else 16)
    _launch(
        _pair_sum_kernel, (triton.cdiv(bp, _BLOCK_N), triton.cdiv(b, _BLOCK_N)),
        z, mu, c, h, z if weights is None else weights, z if lm is None else lm, z if gm is None else gm, out,
        bp, b, d, HAS_W=weights is not None, EXCLUDE_SELF=bool(exclude_self), MARGINAL_GRAD=grad,
        BLOCK_N=_BLOCK_N, BLOCK_M=_BLOCK_N, BLOCK_D=block_d)
    return out


def pair_logsumexp_fwd(z, mu, logvar, weights, exclude_self):
    """-> (log_joint (B',), log_marginal (B', D)) in z's dtype.

    D <= _D_CHUNK: one kernel streams m once for both outputs. Larger D: the marginals run per
    d chunk, and the joint is logsumexp_m of the (B', B) scores s_nm summed over all chunks.
    """
    bp, d = z.shape
    c, h = _constants(logvar)
    log_marginal = torch.empty_like(z)
    blocks = _blocks(d, _TILE, z.dtype)
    chunks = _d_chunks(d, blocks)
    if chunks == 1:
        log_joint = torch.empty(bp, device=z.device, dtype=z.dtype)
    else:
        log_joint = torch.logsumexp(_pair_sum(z, mu, c, h, weights, exclude_self), dim=1).to(z.dtype)
    _launch(
        _fwd_kernel, (triton.cdiv(bp, blocks["BLOCK_N"]), chunks),
        z, mu, c, h, z if weights is None else weights, log_joint, log_marginal, bp, mu.shape[0], d,
        HAS_W=weights is not None, EXCLUDE_SELF=bool(exclude_self), JOINT=chunks == 1, **blocks)
    return log_joint, log_marginal


def pair_logsumexp_bwd(z, mu, logvar, weights, exclude_self, log_joint, log_marginal, grad_joint, grad_marginal,
                       weights_grad):
    """-> (dz, dmu, dlogvar, dweights or None). Larger D recomputes the (B', B) scores once."""
    (bp, d), b = z.shape, mu.shape[0]
    c, h = _constants(logvar)
    dz, dmu, dlogvar = torch.empty_like(z), torch.empty_like(mu), torch.empty_like(logvar)
    w = z if weights is None else weights
    blocks = _blocks(d, _TILE_BWD, z.dtype)
    chunks = _d_chunks(d, blocks)
    joint = chunks == 1
    scores = z if joint else _pair_sum(z, mu, c, h, weights, exclude_self)
    dw = None
    if weights_grad:
        if joint:
            dw = torch.empty((bp, b), device=z.device, dtype=z.dtype)
        else:
            keep = weights != float("-inf")
            if exclude_self:
                keep = keep & ~torch.eye(bp, b, dtype=torch.bool, device=z.device)
            gj = grad_joint.to(c.dtype)[:, None]
            joint_part = torch.where(keep & (gj != 0), gj * torch.exp(scores - log_joint.to(c.dtype)[:, None]), 0.0)
            gm_part = _pair_sum(z, mu, c, h, weights, exclude_self, log_marginal, grad_marginal)
            dw = (joint_part + gm_part).to(z.dtype)
    flags = dict(HAS_W=weights is not None, EXCLUDE_SELF=bool(exclude_self), JOINT=joint, **blocks)
    args = (z, mu, c, h, w, log_joint, log_marginal, grad_joint, grad_marginal, scores)
    _launch(
        _bwd_n_kernel, (triton.cdiv(bp, blocks["BLOCK_N"]), chunks),
        *args, dz, z if dw is None else dw, bp, b, d, WEIGHTS_GRAD=bool(weights_grad) and joint, **flags)
    _launch(_bwd_m_kernel, (triton.cdiv(b, blocks["BLOCK_M"]), chunks), *args, dmu, dlogvar, bp, b, d, **flags)
    return dz, dmu, dlogvar, dw
