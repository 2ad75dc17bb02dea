// Affine coupling on the CPU: forward/reverse with log-det, its fused backward, and the
// primal+tangent (JVP) pass with its reverse-over-forward backward.
//
// Inputs are contiguous (B, N) tensors of float32 or float64. Rows run in parallel
// (at::parallel_for); each row is one vectorised pass (at::vec::Vectorized) that also reduces
// log_det. The math, with c = clamp and u = s_raw / c, k = 2/pi:
//   atan: s = c k atan(u), s' = k / (1 + u^2),  s'' = -2 u s' / (c (1 + u^2))
//   tanh: s = c tanh(u),   s' = 1 - tanh(u)^2,  s'' = -2 tanh(u) s' / c
//   none: s = s_raw,       s' = 1,              s'' = 0
//   forward y = x e^s + t, log_det = sum s;   reverse y = (x - t) e^-s, log_det = -sum s.
// Gradient formulas are written next to each kernel (they match kernels/affine_coupling.py).
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>
#include <torch/torch.h>

namespace {

using at::vec::Vectorized;
constexpr int64_t kAtan = 0, kTanh = 1, kNone = 2;

template <typename T>
struct Clamped {
  Vectorized<T> s, d1, d2;
};

template <typename T>
inline Clamped<T> soft_clamp(const Vectorized<T>& a, T clamp, int64_t fn) {
  using V = Vectorized<T>;
  if (fn == kAtan) {
    const V k(static_cast<T>(0.6366197723675814)), one(1), c(clamp);
    V u = a / c;
    V q = one / (one + u * u);
    V d1 = k * q;
    return {c * k * u.atan(), d1, V(-2) * u * d1 * q / c};
  }
  if (fn == kTanh) {
    const V one(1), c(clamp);
    V th = (a / c).tanh();
    V d1 = one - th * th;
    return {c * th, d1, V(-2) * th * d1 / c};
  }
  return {a, V(1), V(0)};
}

void check_inputs(const std::vector<at::Tensor>& ts) {
  const auto& x = ts[0];
  TORCH_CHECK(x.dim() == 2, "affine_coupling (cpp): expected (B, N) tensors, got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "affine_coupling (cpp): float32/float64 only, got ", x.scalar_type());
  for (const auto& t : ts) {
    TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == x.scalar_type(),
                "affine_coupling (cpp): inputs must be contiguous CPU tensors of one dtype");
  }
}

// Runs body(row, col, count) over vector-sized chunks of every row, rows in parallel.
// count < Vec::size() only on a row's tail; loadu(ptr, count) zero-fills the remainder.
template <typename T, typename F>
void for_each_chunk(int64_t B, int64_t N, F body) {
  constexpr int64_t W = Vectorized<T>::size();
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(N, 1));
  at::parallel_for(0, B, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t j = 0; j < N; j += W) body(r, r * N + j, std::min(W, N - j));
    }
  });
}

template <typename T>
inline Vectorized<T> vload(const T* p, int64_t off, int64_t n) {
  return n == Vectorized<T>::size() ? Vectorized<T>::loadu(p + off) : Vectorized<T>::loadu(p + off, n);
}

template <typename T>
inline void vstore(const Vectorized<T>& v, T* p, int64_t off, int64_t n) {
  v.store(p + off, n);
}

template <typename T>
inline T hsum(const Vectorized<T>& v) {
  return at::vec::vec_reduce_all<T>([](Vectorized<T>& a, Vectorized<T>& b) { return a + b; }, v);
}

std::tuple<at::Tensor, at::Tensor> fwd(const at::Tensor& x, const at::Tensor& s_raw, const at::Tensor& t,
                                       double clamp, int64_t fn, bool reverse) {
  check_inputs({x, s_raw, t});
  auto y = at::empty_like(x);
  const int64_t B = x.size(0), N = x.size(1);
  auto ld_acc = at::zeros({B}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_coupling_fwd", [&] {
    using V = Vectorized<scalar_t>;
    const scalar_t *px = x.data_ptr<scalar_t>(), *pa = s_raw.data_ptr<scalar_t>(), *pt = t.data_ptr<scalar_t>();
    scalar_t *py = y.data_ptr<scalar_t>(), *pld = ld_acc.data_ptr<scalar_t>();
    const scalar_t c = static_cast<scalar_t>(clamp);
    at::parallel_for(0, B, std::max<int64_t>(1, 32768 / std::max<int64_t>(N, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        V acc(0);
        for (int64_t j = 0; j < N; j += V::size()) {
          const int64_t o = r * N + j, n = std::min<int64_t>(V::size(), N - j);
          V xv = vload(px, o, n), tv = vload(pt, o, n);
          auto cl = soft_clamp<scalar_t>(vload(pa, o, n), c, fn);
          V yv = reverse ? (xv - tv) * cl.s.neg().exp() : xv * cl.s.exp() + tv;
          vstore(yv, py, o, n);
          acc = acc + cl.s;  // tail lanes hold s(0) = 0
        }
        pld[r] = reverse ? -hsum(acc) : hsum(acc);
      }
    });
  });
  return {y, ld_acc};
}

// forward: gx = gy e, gs_raw = (gy x e + gld) s'          (gt = gy: returned by the caller)
// reverse: gx = gy e, gt = -gx, gs_raw = -(gy (x - t) e + gld) s',  e = e^-s
std::vector<at::Tensor> bwd(const at::Tensor& x, const at::Tensor& s_raw, const at::Tensor& t, const at::Tensor& gy,
                            const at::Tensor& gld, double clamp, int64_t fn, bool reverse) {
  check_inputs({x, s_raw, t, gy});
  auto gx = at::empty_like(x), gs = at::empty_like(x);
  auto gt = reverse ? at::empty_like(x) : at::Tensor();
  auto gldc = gld.contiguous();
  const int64_t B = x.size(0), N = x.size(1);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_coupling_bwd", [&] {
    using V = Vectorized<scalar_t>;
    const scalar_t *px = x.data_ptr<scalar_t>(), *pa = s_raw.data_ptr<scalar_t>(), *pt = t.data_ptr<scalar_t>();
    const scalar_t *pgy = gy.data_ptr<scalar_t>(), *pgld = gldc.data_ptr<scalar_t>();
    scalar_t *pgx = gx.data_ptr<scalar_t>(), *pgs = gs.data_ptr<scalar_t>();
    scalar_t* pgt = reverse ? gt.data_ptr<scalar_t>() : nullptr;
    const scalar_t c = static_cast<scalar_t>(clamp);
    for_each_chunk<scalar_t>(B, N, [&](int64_t r, int64_t o, int64_t n) {
      V xv = vload(px, o, n), g = vload(pgy, o, n), gl(pgld[r]);
      auto cl = soft_clamp<scalar_t>(vload(pa, o, n), c, fn);
      if (reverse) {
        V e = cl.s.neg().exp();
        V gxv = g * e;
        vstore(gxv, pgx, o, n);
        vstore(gxv.neg(), pgt, o, n);
        vstore(((g * (xv - vload(pt, o, n)) * e + gl) * cl.d1).neg(), pgs, o, n);
      } else {
        V gxv = g * cl.s.exp();
        vstore(gxv, pgx, o, n);
        vstore((gxv * xv + gl) * cl.d1, pgs, o, n);
      }
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
  check_inputs({x, s_raw, t, dx, ds_raw, dt});
  auto y = at::empty_like(x), dy = at::empty_like(x);
  const int64_t B = x.size(0), N = x.size(1);
  auto ld = at::empty({B}, x.options()), dld = at::empty({B}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_coupling_jvp_fwd", [&] {
    using V = Vectorized<scalar_t>;
    const scalar_t *px = x.data_ptr<scalar_t>(), *pa = s_raw.data_ptr<scalar_t>(), *pt = t.data_ptr<scalar_t>();
    const scalar_t *pdx = dx.data_ptr<scalar_t>(), *pda = ds_raw.data_ptr<scalar_t>(), *pdt = dt.data_ptr<scalar_t>();
    scalar_t *py = y.data_ptr<scalar_t>(), *pdy = dy.data_ptr<scalar_t>();
    scalar_t *pld = ld.data_ptr<scalar_t>(), *pdld = dld.data_ptr<scalar_t>();
    const scalar_t c = static_cast<scalar_t>(clamp);
    at::parallel_for(0, B, std::max<int64_t>(1, 16384 / std::max<int64_t>(N, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        V acc(0), dacc(0);
        for (int64_t j = 0; j < N; j += V::size()) {
          const int64_t o = r * N + j, n = std::min<int64_t>(V::size(), N - j);
          V xv = vload(px, o, n), tv = vload(pt, o, n), dxv = vload(pdx, o, n), dtv = vload(pdt, o, n);
          auto cl = soft_clamp<scalar_t>(vload(pa, o, n), c, fn);
          V ds = cl.d1 * vload(pda, o, n);
          if (reverse) {
            V e = cl.s.neg().exp();
            V yv = (xv - tv) * e;
            vstore(yv, py, o, n);
            vstore((dxv - dtv) * e - yv * ds, pdy, o, n);
          } else {
            V e = cl.s.exp();
            vstore(xv * e + tv, py, o, n);
            vstore(e * (dxv + xv * ds) + dtv, pdy, o, n);
          }
          acc = acc + cl.s;
          dacc = dacc + ds;
        }
        const scalar_t sign = reverse ? -1 : 1;
        pld[r] = sign * hsum(acc);
        pdld[r] = sign * hsum(dacc);
      }
    });
  });
  return {y, ld, dy, dld};
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
  check_inputs({x, s_raw, t, dx, ds_raw, dt, gy, gdy});
  auto gx = at::empty_like(x), ga = at::empty_like(x), gdx = at::empty_like(x), gda = at::empty_like(x);
  auto gt = reverse ? at::empty_like(x) : at::Tensor(), gdt = reverse ? at::empty_like(x) : at::Tensor();
  auto gldc = gld.contiguous(), gdldc = gdld.contiguous();
  const int64_t B = x.size(0), N = x.size(1);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_coupling_jvp_bwd", [&] {
    using V = Vectorized<scalar_t>;
    const scalar_t *px = x.data_ptr<scalar_t>(), *pa = s_raw.data_ptr<scalar_t>(), *pt = t.data_ptr<scalar_t>();
    const scalar_t *pdx = dx.data_ptr<scalar_t>(), *pda = ds_raw.data_ptr<scalar_t>(), *pdt = dt.data_ptr<scalar_t>();
    const scalar_t *pgy = gy.data_ptr<scalar_t>(), *pgdy = gdy.data_ptr<scalar_t>();
    const scalar_t *pgld = gldc.data_ptr<scalar_t>(), *pgdld = gdldc.data_ptr<scalar_t>();
    scalar_t *pgx = gx.data_ptr<scalar_t>(), *pga = ga.data_ptr<scalar_t>();
    scalar_t *pgdx = gdx.data_ptr<scalar_t>(), *pgda = gda.data_ptr<scalar_t>();
    scalar_t* pgt = reverse ? gt.data_ptr<scalar_t>() : nullptr;
    scalar_t* pgdt = reverse ? gdt.data_ptr<scalar_t>() : nullptr;
    const scalar_t c = static_cast<scalar_t>(clamp);
    for_each_chunk<scalar_t>(B, N, [&](int64_t r, int64_t o, int64_t n) {
      V xv = vload(px, o, n), dxv = vload(pdx, o, n), da = vload(pda, o, n), g = vload(pgy, o, n), gd = vload(pgdy, o, n);
      V gl(pgld[r]), gdl(pgdld[r]);
      auto cl = soft_clamp<scalar_t>(vload(pa, o, n), c, fn);
      V ds = cl.d1 * da, gxv, gdxv, g_ds, g_s;
      if (reverse) {
        V e = cl.s.neg().exp();
        V yv = (xv - vload(pt, o, n)) * e;
        V dyv = (dxv - vload(pdt, o, n)) * e - yv * ds;
        gxv = e * (g - gd * ds);
        gdxv = gd * e;
        g_ds = (gd * yv + gdl).neg();
        g_s = (g * yv + gl + gd * dyv).neg();
        vstore(gxv.neg(), pgt, o, n);
        vstore(gdxv.neg(), pgdt, o, n);
      } else {
        V e = cl.s.exp();
        gxv = e * (g + gd * ds);
        gdxv = gd * e;
        g_ds = gdxv * xv + gdl;
        g_s = g * xv * e + gl + gdxv * (dxv + xv * ds);
      }
      vstore(gxv, pgx, o, n);
      vstore(gdxv, pgdx, o, n);
      vstore(g_s * cl.d1 + g_ds * cl.d2 * da, pga, o, n);
      vstore(g_ds * cl.d1, pgda, o, n);
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
