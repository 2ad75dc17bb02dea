// Affine coupling on the CPU: forward/reverse with log-det, its fused backward, and the
// primal+tangent (JVP) pass with its reverse-over-forward backward.
//
// Inputs are (B, N) tensors of float32 or float64 whose rows may be strided (stride(1) == 1, any
// stride(0): e.g. the halves of a subnet output split with chunk); outputs are contiguous. Rows run in parallel
// (at::parallel_for); each row is one vectorised pass (at::vec::Vectorized) that also reduces
// log_det. The math, with c = clamp, a = s_raw, u = a / c, k = 2/pi, sigma(v) = 1 / (1 + e^-v):
//   atan:           s = c k atan(u),       s' = k / (1 + u^2),          s'' = -2 u s' / (c (1 + u^2))
//   tanh:           s = c tanh(u),         s' = 1 - tanh(u)^2,          s'' = -2 tanh(u) s' / c
//   none:           s = a,                 s' = 1,                      s'' = 0
//   freia_atan:     s = 0.636 c atan(a),   s' = 0.636 c / (1 + a^2),    s'' = -2 a s' / (1 + a^2)
//   freia_tanh:     s = c tanh(a),         s' = c (1 - tanh(a)^2),      s'' = -2 tanh(a) s'
//   freia_sigmoid:  s = c tanh(a / 2),     s' = c/2 (1 - tanh(a/2)^2),  s'' = -tanh(a/2) s'
//   logsigmoid:     s = -softplus(-(a+c)), s' = sigma(-(a+c)),          s'' = -sigma(a+c) sigma(-(a+c))
//   neg_logsigmoid: s = softplus(-(a+c)),  s' = -sigma(-(a+c)),         s'' = sigma(a+c) sigma(-(a+c))
// (c is a bound/scale, > 0, except for the two sigmoid maps, where it is an offset: any finite c.)
//   forward y = x e^s + t, log_det = sum s;   reverse y = (x - t) e^-s, log_det = -sum s.
// Gradient formulas are written next to each kernel (they match kernels/affine_coupling.py).
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>
#include <torch/torch.h>

#include <cmath>
#include <type_traits>
#include <utility>

namespace {

using at::vec::Vectorized;
constexpr int64_t kAtan = 0, kTanh = 1, kNone = 2, kFreiaAtan = 3, kFreiaTanh = 4, kFreiaSigmoid = 5,
                  kLogSigmoid = 6, kNegLogSigmoid = 7, kNumClampFns = 8;

template <typename T>
struct Clamped {
  Vectorized<T> s, d1, d2;
};

// atan for float32 with Cephes' range reduction and polynomial (relative error ~1e-7, the same
// as kernels/affine_coupling.py), about 3x cheaper than Sleef's u10 atan; float64 keeps Sleef.
inline Vectorized<float> atan_f32(const Vectorized<float>& x) {
  using V = Vectorized<float>;
  const V one(1.f), zero(0.f);
  const V a = x.abs();
  const V big = a > V(2.414213562373095f), mid = a > V(0.4142135623730950f);
  // r = a (small), (a - 1) / (a + 1) (mid), -1 / a (big): one division
  V num = V::blendv(V::blendv(a, a - one, mid), V(-1.f), big);
  V den = V::blendv(V::blendv(one, a + one, mid), a, big);
  const V r = num / den;
  const V base = V::blendv(V::blendv(zero, V(0.7853981633974483f), mid), V(1.5707963267948966f), big);
  const V z = r * r;
  V p = at::vec::fmadd(V(8.05374449538e-2f), z, V(-1.38776856032e-1f));
  p = at::vec::fmadd(p, z, V(1.99777106478e-1f));
  p = at::vec::fmadd(p, z, V(-3.33329491539e-1f));
  const V res = base + at::vec::fmadd(p * z, r, r);
  return V::blendv(res, res.neg(), x < zero);
}

template <typename T>
inline Vectorized<T> vatan(const Vectorized<T>& u) {
  if constexpr (std::is_same_v<T, float>) return atan_f32(u);
  else return u.atan();
}

// sigma(-v) and sigma(v) sigma(-v), from e = exp(-|v|) (no overflow for any v).
template <typename T>
inline std::pair<Vectorized<T>, Vectorized<T>> sigmoid_neg(const Vectorized<T>& v) {
  using V = Vectorized<T>;
  const V one(1), e = v.abs().neg().exp(), r = one / (one + e);
  const V sig_neg = V::blendv(r, e * r, v >= V(0));  // sigma(-v)
  return {sig_neg, e * r * r};                        // sigma(v) sigma(-v) = e / (1 + e)^2
}

// softplus(-v) = max(-v, 0) + log1p(exp(-|v|)).
template <typename T>
inline Vectorized<T> softplus_neg(const Vectorized<T>& v) {
  using V = Vectorized<T>;
  return at::vec::maximum(v.neg(), V(0)) + v.abs().neg().exp().log1p();
}

// FN is a template parameter so that every kernel loop below is compiled once per clamp function
// and direction, with no branches inside the vector loop.
template <int64_t FN, typename T>
inline Clamped<T> soft_clamp(const Vectorized<T>& a, T clamp) {
  using V = Vectorized<T>;
  const V one(1), c(clamp);
  if constexpr (FN == kAtan) {
    const V k(static_cast<T>(0.6366197723675814));
    V u = a / c;
    V q = one / (one + u * u);
    V d1 = k * q;
    return {c * k * vatan(u), d1, V(-2) * u * d1 * q / c};
  } else if constexpr (FN == kTanh) {
    V th = (a / c).tanh();
    V d1 = one - th * th;
    return {c * th, d1, V(-2) * th * d1 / c};
  } else if constexpr (FN == kFreiaAtan) {
    const V ck = c * V(static_cast<T>(0.636));
    V q = one / (one + a * a);
    V d1 = ck * q;
    return {ck * vatan(a), d1, V(-2) * a * d1 * q};
  } else if constexpr (FN == kFreiaTanh) {
    V th = a.tanh();
    V d1 = c * (one - th * th);
    return {c * th, d1, V(-2) * th * d1};
  } else if constexpr (FN == kFreiaSigmoid) {
    V th = (a * V(0.5)).tanh();
    V d1 = c * V(0.5) * (one - th * th);
    return {c * th, d1, th.neg() * d1};
  } else if constexpr (FN == kLogSigmoid || FN == kNegLogSigmoid) {
    const V v = a + c;
    auto [sig_neg, curv] = sigmoid_neg(v);
    if constexpr (FN == kLogSigmoid) return {softplus_neg(v).neg(), sig_neg, curv.neg()};
    else return {softplus_neg(v), sig_neg.neg(), curv};
  } else {
    return {a, V(1), V(0)};
  }
}

// Calls f(integral_constant<FN>, bool_constant<REVERSE>) for the runtime (fn, reverse);
// fn was range-checked by check_clamp.
template <typename F>
inline void with_config(int64_t fn, bool reverse, F&& f) {
  auto dir = [&](auto fn_c) {
    if (reverse) f(fn_c, std::true_type{});
    else f(fn_c, std::false_type{});
  };
  switch (fn) {
    case kAtan: return dir(std::integral_constant<int64_t, kAtan>{});
    case kTanh: return dir(std::integral_constant<int64_t, kTanh>{});
    case kFreiaAtan: return dir(std::integral_constant<int64_t, kFreiaAtan>{});
    case kFreiaTanh: return dir(std::integral_constant<int64_t, kFreiaTanh>{});
    case kFreiaSigmoid: return dir(std::integral_constant<int64_t, kFreiaSigmoid>{});
    case kLogSigmoid: return dir(std::integral_constant<int64_t, kLogSigmoid>{});
    case kNegLogSigmoid: return dir(std::integral_constant<int64_t, kNegLogSigmoid>{});
    default: return dir(std::integral_constant<int64_t, kNone>{});
  }
}

struct Arg {
  const char* name;
  const at::Tensor& t;
};

// Every (B, N) argument is a CPU tensor of x's shape and dtype (float32/float64) with unit column
// stride (any row stride; empty tensors and single columns may have any strides); args[0] is x.
void check_rows(const char* op, std::initializer_list<Arg> args) {
  const Arg& x = *args.begin();
  TORCH_CHECK(x.t.dim() == 2, op, " (cpp): ", x.name, " must be a (B, N) tensor, got shape ", x.t.sizes());
  TORCH_CHECK(x.t.scalar_type() == at::kFloat || x.t.scalar_type() == at::kDouble, op, " (cpp): ", x.name,
              " must be float32 or float64, got ", x.t.scalar_type());
  for (const Arg& a : args) {
    TORCH_CHECK(a.t.device().is_cpu(), op, " (cpp): ", a.name, " must be a CPU tensor, got device ", a.t.device());
    TORCH_CHECK(a.t.sizes() == x.t.sizes(), op, " (cpp): ", a.name, " has shape ", a.t.sizes(), ", ", x.name,
                " has shape ", x.t.sizes());
    TORCH_CHECK(a.t.scalar_type() == x.t.scalar_type(), op, " (cpp): ", a.name, " has dtype ", a.t.scalar_type(),
                ", ", x.name, " has dtype ", x.t.scalar_type());
    TORCH_CHECK(a.t.numel() == 0 || a.t.size(1) == 1 || a.t.stride(1) == 1, op, " (cpp): ", a.name,
                " must have unit column stride (stride(1) == 1), got strides ", a.t.strides());
  }
}

// A per-row gradient (gld, gdld) is a CPU tensor of shape (B,) and x's dtype.
void check_per_row(const char* op, const char* name, const at::Tensor& v, const at::Tensor& x) {
  TORCH_CHECK(v.device().is_cpu(), op, " (cpp): ", name, " must be a CPU tensor, got device ", v.device());
  TORCH_CHECK(v.dim() == 1 && v.size(0) == x.size(0), op, " (cpp): ", name, " must have shape (B,) = (", x.size(0),
              ",), got ", v.sizes());
  TORCH_CHECK(v.scalar_type() == x.scalar_type(), op, " (cpp): ", name, " has dtype ", v.scalar_type(),
              ", x has dtype ", x.scalar_type());
}

// clamp_fn is a known id; clamp is finite, and > 0 unless the map uses it as an offset.
void check_clamp(const char* op, double clamp, int64_t fn) {
  TORCH_CHECK(fn >= 0 && fn < kNumClampFns, op, " (cpp): clamp_fn must be an id in [0, ", kNumClampFns,
              "), got ", fn);
  const bool offset = fn == kLogSigmoid || fn == kNegLogSigmoid;
  TORCH_CHECK(std::isfinite(clamp) && (offset || clamp > 0), op, " (cpp): clamp must be a finite ",
              offset ? "float" : "positive float", " for clamp_fn id ", fn, ", got ", clamp);
}

// Pointer to element (r, 0) of a (B, N) tensor with unit column stride.
template <typename T>
struct RowPtr {
  T* p;
  int64_t stride;
  explicit RowPtr(const at::Tensor& t) : p(t.data_ptr<T>()), stride(t.stride(0)) {}
  T* operator[](int64_t r) const { return p + r * stride; }
};

inline int64_t row_grain(int64_t N) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(N, 1)); }

template <typename T>
inline Vectorized<T> vload(const T* p, int64_t off, int64_t n) {  // p[off : off + n], zero-filled
  return n == Vectorized<T>::size() ? Vectorized<T>::loadu(p + off) : Vectorized<T>::loadu(p + off, n);
}

// v's first n lanes, the rest zero (for sums over a row's tail).
template <typename T>
inline Vectorized<T> head(const Vectorized<T>& v, int64_t n) {
  return n == Vectorized<T>::size() ? v : Vectorized<T>::set(Vectorized<T>(0), v, n);
}

template <typename T>
inline void vstore(const Vectorized<T>& v, T* p, int64_t off, int64_t n) {
  v.store(p + off, n);
}

template <typename T>
inline T hsum(const Vectorized<T>& v) {
  return at::vec::vec_reduce_all<T>([](Vectorized<T>& a, Vectorized<T>& b) { return a + b; }, v);
}

// Runs row_fn(r) for every row, rows split across threads.
template <typename F>
inline void for_rows(int64_t B, int64_t N, F&& row_fn) {
  at::parallel_for(0, B, row_grain(N), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) row_fn(r);
  });
}

std::tuple<at::Tensor, at::Tensor> fwd(const at::Tensor& x, const at::Tensor& s_raw, const at::Tensor& t,
                                       double clamp, int64_t fn, bool reverse) {
  check_rows("affine_coupling_fwd", {{"x", x}, {"s_raw", s_raw}, {"t", t}});
  check_clamp("affine_coupling_fwd", clamp, fn);
  const int64_t B = x.size(0), N = x.size(1);
  auto y = at::empty({B, N}, x.options());
  auto log_det = at::empty({B}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_coupling_fwd", [&] {
    using V = Vectorized<scalar_t>;
    const RowPtr<scalar_t> X(x), A(s_raw), T(t), Y(y);
    scalar_t* pld = log_det.data_ptr<scalar_t>();
    const scalar_t c = static_cast<scalar_t>(clamp);
    with_config(fn, reverse, [&](auto fn_c, auto rev_c) {
      constexpr int64_t FN = decltype(fn_c)::value;
      constexpr bool REV = decltype(rev_c)::value;
      for_rows(B, N, [&](int64_t r) {
        const scalar_t *xr = X[r], *ar = A[r], *tr = T[r];
        scalar_t* yr = Y[r];
        V acc(0);
        for (int64_t j = 0; j < N; j += V::size()) {
          const int64_t n = std::min<int64_t>(V::size(), N - j);
          V xv = vload(xr, j, n), tv = vload(tr, j, n);
          auto cl = soft_clamp<FN, scalar_t>(vload(ar, j, n), c);
          if constexpr (REV) vstore((xv - tv) * cl.s.neg().exp(), yr, j, n);
          else vstore(xv * cl.s.exp() + tv, yr, j, n);
          acc = acc + head(cl.s, n);  // tail lanes would hold s(0), which need not be 0
        }
        pld[r] = REV ? -hsum(acc) : hsum(acc);
      });
    });
  });
  return {y, log_det};
}

// forward: gx = gy e, gs_raw = (gy x e + gld) s'          (gt = gy: returned by the caller)
// reverse: gx = gy e, gt = -gx, gs_raw = -(gy (x - t) e + gld) s',  e = e^-s
std::vector<at::Tensor> bwd(const at::Tensor& x, const at::Tensor& s_raw, const at::Tensor& t, const at::Tensor& gy,
                            const at::Tensor& gld, double clamp, int64_t fn, bool reverse) {
  check_rows("affine_coupling_bwd", {{"x", x}, {"s_raw", s_raw}, {"t", t}, {"gy", gy}});
  check_per_row("affine_coupling_bwd", "gld", gld, x);
  check_clamp("affine_coupling_bwd", clamp, fn);
  const int64_t B = x.size(0), N = x.size(1);
  auto gx = at::empty({B, N}, x.options()), gs = at::empty({B, N}, x.options());
  auto gt = at::empty({reverse ? B : 0, N}, x.options());
  auto gldc = gld.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_coupling_bwd", [&] {
    using V = Vectorized<scalar_t>;
    const RowPtr<scalar_t> X(x), A(s_raw), T(t), GY(gy), GX(gx), GS(gs), GT(gt);
    const scalar_t* pgld = gldc.data_ptr<scalar_t>();
    const scalar_t c = static_cast<scalar_t>(clamp);
    with_config(fn, reverse, [&](auto fn_c, auto rev_c) {
      constexpr int64_t FN = decltype(fn_c)::value;
      constexpr bool REV = decltype(rev_c)::value;
      for_rows(B, N, [&](int64_t r) {
        const scalar_t *xr = X[r], *ar = A[r], *tr = T[r], *gyr = GY[r];
        scalar_t *gxr = GX[r], *gsr = GS[r];
        const V gl(pgld[r]);
        for (int64_t j = 0; j < N; j += V::size()) {
          const int64_t n = std::min<int64_t>(V::size(), N - j);
          V xv = vload(xr, j, n), g = vload(gyr, j, n);
          auto cl = soft_clamp<FN, scalar_t>(vload(ar, j, n), c);
          if constexpr (REV) {
            V e = cl.s.neg().exp();
            V gxv = g * e;
            vstore(gxv, gxr, j, n);
            vstore(gxv.neg(), GT[r], j, n);
            vstore(((g * (xv - vload(tr, j, n)) * e + gl) * cl.d1).neg(), gsr, j, n);
          } else {
            V gxv = g * cl.s.exp();
            vstore(gxv, gxr, j, n);
            vstore((gxv * xv + gl) * cl.d1, gsr, j, n);
          }
        }
      });
    });
  });
  if (reverse) return {gx, gs, gt};
  return {gx, gs};
}

// Primal and tangent in one pass; ds = s' ds_raw.
// forward: dy = e^s (dx + x ds) + dt, dlog_det = sum ds; reverse: dy = (dx - dt) e^-s - y ds, dlog_det = -sum ds.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> jvp_fwd(
    const at::Tensor& x, const at::Tensor& s_raw, const at::Tensor& t, const at::Tensor& dx,
    const at::Tensor& ds_raw, const at::Tensor& dt, double clamp, int64_t fn, bool reverse) {
  check_rows("affine_coupling_jvp_fwd",
             {{"x", x}, {"s_raw", s_raw}, {"t", t}, {"dx", dx}, {"ds_raw", ds_raw}, {"dt", dt}});
  check_clamp("affine_coupling_jvp_fwd", clamp, fn);
  const int64_t B = x.size(0), N = x.size(1);
  auto y = at::empty({B, N}, x.options()), dy = at::empty({B, N}, x.options());
  auto log_det = at::empty({B}, x.options()), dlog_det = at::empty({B}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_coupling_jvp_fwd", [&] {
    using V = Vectorized<scalar_t>;
    const RowPtr<scalar_t> X(x), A(s_raw), T(t), DX(dx), DA(ds_raw), DT(dt), Y(y), DY(dy);
    scalar_t *pld = log_det.data_ptr<scalar_t>(), *pdld = dlog_det.data_ptr<scalar_t>();
    const scalar_t c = static_cast<scalar_t>(clamp);
    with_config(fn, reverse, [&](auto fn_c, auto rev_c) {
      constexpr int64_t FN = decltype(fn_c)::value;
      constexpr bool REV = decltype(rev_c)::value;
      for_rows(B, N, [&](int64_t r) {
        V acc(0), dacc(0);
        for (int64_t j = 0; j < N; j += V::size()) {
          const int64_t n = std::min<int64_t>(V::size(), N - j);
          V xv = vload(X[r], j, n), tv = vload(T[r], j, n), dxv = vload(DX[r], j, n), dtv = vload(DT[r], j, n);
          auto cl = soft_clamp<FN, scalar_t>(vload(A[r], j, n), c);
          V ds = cl.d1 * vload(DA[r], j, n);
          if constexpr (REV) {
            V e = cl.s.neg().exp();
            V yv = (xv - tv) * e;
            vstore(yv, Y[r], j, n);
            vstore((dxv - dtv) * e - yv * ds, DY[r], j, n);
          } else {
            V e = cl.s.exp();
            vstore(xv * e + tv, Y[r], j, n);
            vstore(e * (dxv + xv * ds) + dtv, DY[r], j, n);
          }
          acc = acc + head(cl.s, n);
          dacc = dacc + ds;  // tail lanes hold ds_raw = 0
        }
        pld[r] = REV ? -hsum(acc) : hsum(acc);
        pdld[r] = REV ? -hsum(dacc) : hsum(dacc);
      });
    });
  });
  return {y, log_det, dy, dlog_det};
}

// Reverse-over-forward; a = s_raw, ds = s' da, incoming (gy, gld, gdy, gdld):
// forward: gx = e (gy + gdy ds), gdx = gdy e, g_ds = gdy e x + gdld, g_s = gy x e + gld + gdy e (dx + x ds)
// reverse: gx = e (gy - gdy ds), gt = -gx, gdx = gdy e, gdt = -gdx, g_ds = -(gdy y + gdld),
//          g_s = -(gy y + gld + gdy dy)
// then ga = g_s s' + g_ds s'' da, gda = g_ds s'. Forward returns (gx, ga, gdx, gda); reverse adds (gt, gdt).
std::vector<at::Tensor> jvp_bwd(const at::Tensor& x, const at::Tensor& s_raw, const at::Tensor& t,
                                const at::Tensor& dx, const at::Tensor& ds_raw, const at::Tensor& dt,
                                const at::Tensor& gy, const at::Tensor& gld, const at::Tensor& gdy,
                                const at::Tensor& gdld, double clamp, int64_t fn, bool reverse) {
  check_rows("affine_coupling_jvp_bwd", {{"x", x}, {"s_raw", s_raw}, {"t", t}, {"dx", dx}, {"ds_raw", ds_raw},
                                        {"dt", dt}, {"gy", gy}, {"gdy", gdy}});
  check_per_row("affine_coupling_jvp_bwd", "gld", gld, x);
  check_per_row("affine_coupling_jvp_bwd", "gdld", gdld, x);
  check_clamp("affine_coupling_jvp_bwd", clamp, fn);
  const int64_t B = x.size(0), N = x.size(1);
  auto opts = x.options();
  auto gx = at::empty({B, N}, opts), ga = at::empty({B, N}, opts);
  auto gdx = at::empty({B, N}, opts), gda = at::empty({B, N}, opts);
  auto gt = at::empty({reverse ? B : 0, N}, opts), gdt = at::empty({reverse ? B : 0, N}, opts);
  auto gldc = gld.contiguous(), gdldc = gdld.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_coupling_jvp_bwd", [&] {
    using V = Vectorized<scalar_t>;
    const RowPtr<scalar_t> X(x), A(s_raw), T(t), DX(dx), DA(ds_raw), DT(dt), GY(gy), GDY(gdy);
    const RowPtr<scalar_t> GX(gx), GA(ga), GDX(gdx), GDA(gda), GT(gt), GDT(gdt);
    const scalar_t *pgld = gldc.data_ptr<scalar_t>(), *pgdld = gdldc.data_ptr<scalar_t>();
    const scalar_t c = static_cast<scalar_t>(clamp);
    with_config(fn, reverse, [&](auto fn_c, auto rev_c) {
      constexpr int64_t FN = decltype(fn_c)::value;
      constexpr bool REV = decltype(rev_c)::value;
      for_rows(B, N, [&](int64_t r) {
        const V gl(pgld[r]), gdl(pgdld[r]);
        for (int64_t j = 0; j < N; j += V::size()) {
          const int64_t n = std::min<int64_t>(V::size(), N - j);
          V xv = vload(X[r], j, n), dxv = vload(DX[r], j, n), da = vload(DA[r], j, n);
          V g = vload(GY[r], j, n), gd = vload(GDY[r], j, n);
          auto cl = soft_clamp<FN, scalar_t>(vload(A[r], j, n), c);
          V ds = cl.d1 * da, gxv, gdxv, g_ds, g_s;
          if constexpr (REV) {
            V e = cl.s.neg().exp();
            V yv = (xv - vload(T[r], j, n)) * e;
            V dyv = (dxv - vload(DT[r], j, n)) * e - yv * ds;
            gxv = e * (g - gd * ds);
            gdxv = gd * e;
            g_ds = (gd * yv + gdl).neg();
            g_s = (g * yv + gl + gd * dyv).neg();
            vstore(gxv.neg(), GT[r], j, n);
            vstore(gdxv.neg(), GDT[r], j, n);
          } else {
            V e = cl.s.exp();
            gxv = e * (g + gd * ds);
            gdxv = gd * e;
            g_ds = gdxv * xv + gdl;
            g_s = g * xv * e + gl + gdxv * (dxv + xv * ds);
          }
          vstore(gxv, GX[r], j, n);
          vstore(gdxv, GDX[r], j, n);
          vstore(g_s * cl.d1 + g_ds * cl.d2 * da, GA[r], j, n);
          vstore(g_ds * cl.d1, GDA[r], j, n);
        }
      });
    });
  });
  if (reverse) return {gx, ga, gdx, gda, gt, gdt};
  return {gx, ga, gdx, gda};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eoflow_fast_cpp, m) {
  m.def("affine_coupling_fwd(Tensor x, Tensor s_raw, Tensor t, float clamp, int clamp_fn, bool reverse) -> (Tensor, Tensor)");
  m.def("affine_coupling_bwd(Tensor x, Tensor s_raw, Tensor t, Tensor gy, Tensor gld, float clamp, int clamp_fn, bool reverse) -> Tensor[]");
  m.def("affine_coupling_jvp_fwd(Tensor x, Tensor s_raw, Tensor t, Tensor dx, Tensor ds_raw, Tensor dt, float clamp, int clamp_fn, bool reverse) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("affine_coupling_jvp_bwd(Tensor x, Tensor s_raw, Tensor t, Tensor dx, Tensor ds_raw, Tensor dt, Tensor gy, Tensor gld, Tensor gdy, Tensor gdld, float clamp, int clamp_fn, bool reverse) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(eoflow_fast_cpp, CPU, m) {
  m.impl("affine_coupling_fwd", &fwd);
  m.impl("affine_coupling_bwd", &bwd);
  m.impl("affine_coupling_jvp_fwd", &jvp_fwd);
  m.impl("affine_coupling_jvp_bwd", &jvp_bwd);
}
