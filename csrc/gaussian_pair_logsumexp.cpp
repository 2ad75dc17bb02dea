// Pairwise Gaussian log-sum-exp on the CPU, streaming over m (never a B' x B x D tensor).
//
// z (B', D), mu and logvar (B, D), optional log-weights w (B', B); with c_md = -0.5 (log 2pi +
// logvar_md), h_md = 0.5 exp(-logvar_md), u_nmd = z_nd - mu_md:
//   x_nmd = w_nm + c_md - u_nmd^2 h_md                 (w_nm + log N(z_nd; mu_md, exp(logvar_md)))
//   s_nm  = w_nm + sum_d (c_md - u_nmd^2 h_md)
//   log_joint[n] = logsumexp_m s_nm,   log_marginal[n, d] = logsumexp_m x_nmd.
// exclude_self (B' == B) drops m == n; pairs with w_nm = -inf are dropped: they contribute nothing
// to any output or gradient. Each dimension's marginal is its own log-sum-exp (its own maximum,
// its own -inf handling): a density that is -inf, or NaN, in one dimension touches only that
// dimension's log_marginal and the joint, as in the reference.
// Forward: rows n in parallel; per row one pass for the maxima (no exp), one for the sums; a
// maximum of +-inf shifts by 0 and NaN is kept, as torch.logsumexp does.
// Backward, with p_nm = exp(s_nm - log_joint_n), q_nmd = exp(x_nmd - log_marginal_nd) and
// k_nmd = g_joint_n p_nm + g_marginal_nd q_nmd:
//   dz_nd = -sum_m k_nmd u_nmd 2 h_md          (pass over n, rows in parallel)
//   dmu_md = sum_n k_nmd u_nmd 2 h_md,  dlogvar_md = sum_n k_nmd (u_nmd^2 h_md - 0.5)   (pass over m)
//   dw_nm = g_joint_n p_nm + sum_d g_marginal_nd q_nmd   (only when asked).
// A zero incoming gradient contributes exactly zero (not 0 * NaN): log_joint mixes all dimensions,
// so without this a NaN column would reach every column's gradient through g_joint = 0.
// Both passes recompute x from the inputs; memory stays O((B' + B) D) plus O(D + B) per thread
// (rows are copied once, padded to the vector width, so the inner loops use full vectors only).
// The same math is in kernels/gaussian_pair_logsumexp.py and eoflow_fast/reference/.
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

namespace {

using at::Tensor;
using at::vec::Vectorized;
constexpr double kLog2Pi = 1.8378770664093453;

template <typename T>
inline T hsum(const Vectorized<T>& v) {
  return at::vec::vec_reduce_all<T>([](Vectorized<T>& a, Vectorized<T>& b) { return a + b; }, v);
}

// exp_u20 clamps its argument with min/max, which turn NaN into +inf; this keeps NaN (as exp does).
template <typename T>
inline Vectorized<T> exp_keep_nan(const Vectorized<T>& x) {
  return Vectorized<T>::blendv(x.exp_u20(), x, x.isnan());
}

// The shift of a log-sum-exp whose largest term is mx: mx itself, 0 when mx is +-inf (torch.logsumexp's rule).
template <typename T>
inline T lse_shift(T mx) {
  return std::isinf(mx) ? T(0) : mx;
}

// Rows padded to Dp (a multiple of the vector width) so that every load is a full vector:
// z, mu, c, h pad with 0 (log N = 0 there), log_marginal with +inf and its grad with 0 (q = 0).
template <typename T>
struct Pairs {
  int64_t Bp, B, D, Dp;
  const T *z, *mu, *c, *h, *w;  // w may be null
  bool exclude_self;
  // log-weight of the pair (n, m); -inf when the pair is dropped.
  T weight(int64_t n, int64_t m) const {
    if (exclude_self && n == m) return -std::numeric_limits<T>::infinity();
    return w ? w[n * B + m] : T(0);
  }
  // Writes u_nmd and log N_nmd (length Dp) and returns sum_d log N_nmd.
  T densities(int64_t n, int64_t m, T* u, T* ln) const {
    using V = Vectorized<T>;
    const T *zn = z + n * Dp, *mum = mu + m * Dp, *cm = c + m * Dp, *hm = h + m * Dp;
    V acc(0);
    for (int64_t d = 0; d < Dp; d += V::size()) {
      V ud = V::loadu(zn + d) - V::loadu(mum + d);
      V lnd = V::loadu(cm + d) - ud * ud * V::loadu(hm + d);
      ud.store(u + d);
      lnd.store(ln + d);
      acc = acc + lnd;
    }
    return hsum(acc);
  }
};

template <typename T>
struct Grads {
  const T *lj, *lm, *gj, *gm;  // lm, gm padded to Dp
  // Calls body(d, k) for the vectors of k_nmd = g_joint_n p_nm + g_marginal_nd q_nmd of one pair
  // and returns dw_nm = g_joint_n p_nm + sum_d g_marginal_nd q_nmd.
  template <typename F>
  T coefficients(const Pairs<T>& P, int64_t n, T wm, T s, const T* ln, F body) const {
    using V = Vectorized<T>;
    const T jp = gj[n] == T(0) ? T(0) : gj[n] * std::exp(s - lj[n]);
    const T *lmn = lm + n * P.Dp, *gmn = gm + n * P.Dp;
    V dw(0);
    for (int64_t d = 0; d < P.Dp; d += V::size()) {
      const V g = V::loadu(gmn + d);
      V mq = V::blendv(g * exp_keep_nan(V(wm) + V::loadu(ln + d) - V::loadu(lmn + d)), V(0), g == V(0));
      dw = dw + mq;
      body(d, V(jp) + mq);
    }
    return jp + hsum(dw);
  }
};

// Rows per parallel chunk: about 64k pair-dimension terms each.
inline int64_t grain(int64_t inner) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(inner, 1)); }

template <typename T>
void forward_impl(const Pairs<T>& P, T* log_joint, T* log_marginal) {
  using V = Vectorized<T>;
  const T ninf = -std::numeric_limits<T>::infinity();
  at::parallel_for(0, P.Bp, grain(P.B * P.Dp), [&](int64_t n0, int64_t n1) {
    std::vector<T> u(P.Dp), ln(P.Dp), mx(P.Dp), sum(P.Dp), s(P.B);
    for (int64_t n = n0; n < n1; ++n) {
      std::fill(mx.begin(), mx.end(), ninf);
      T smax = ninf;
      for (int64_t m = 0; m < P.B; ++m) {  // pass 1: maxima
        const T wm = P.weight(n, m);
        if (wm == ninf) { s[m] = ninf; continue; }
        s[m] = wm + P.densities(n, m, u.data(), ln.data());
        smax = std::max(smax, s[m]);
        for (int64_t d = 0; d < P.Dp; d += V::size())
          at::vec::maximum(V::loadu(mx.data() + d), V(wm) + V::loadu(ln.data() + d)).store(mx.data() + d);
      }
      for (auto& v : mx) v = lse_shift(v);  // a column with only -inf terms: sum 0, log gives -inf
      std::fill(sum.begin(), sum.end(), T(0));
      T ssum = 0;
      const T sshift = lse_shift(smax);
      for (int64_t m = 0; m < P.B; ++m) {  // pass 2: sums; s_nm = -inf drops m from the joint only
        const T wm = P.weight(n, m);
        if (wm == ninf) continue;
        ssum += std::exp(s[m] - sshift);
        P.densities(n, m, u.data(), ln.data());
        for (int64_t d = 0; d < P.Dp; d += V::size()) {
          V e = (V(wm) + V::loadu(ln.data() + d) - V::loadu(mx.data() + d)).exp_u20();
          (V::loadu(sum.data() + d) + e).store(sum.data() + d);
        }
      }
      log_joint[n] = sshift + std::log(ssum);
      for (int64_t d = 0; d < P.D; ++d) log_marginal[n * P.D + d] = mx[d] + std::log(sum[d]);
    }
  });
}

template <typename T>
void backward_impl(const Pairs<T>& P, const Grads<T>& G, T* dz, T* dmu, T* dlogvar, T* dw) {
  using V = Vectorized<T>;
  const T ninf = -std::numeric_limits<T>::infinity();
  // pass over n: dz_nd = -sum_m 2 k u h (and dw)
  at::parallel_for(0, P.Bp, grain(P.B * P.Dp), [&](int64_t n0, int64_t n1) {
    std::vector<T> u(P.Dp), ln(P.Dp), acc(P.Dp);
    for (int64_t n = n0; n < n1; ++n) {
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t m = 0; m < P.B; ++m) {
        const T wm = P.weight(n, m);
        if (wm == ninf) {
          if (dw) dw[n * P.B + m] = 0;
          continue;
        }
        const T s = wm + P.densities(n, m, u.data(), ln.data());
        const T* hm = P.h + m * P.Dp;
        const T dwnm = G.coefficients(P, n, wm, s, ln.data(), [&](int64_t d, const V& k) {
          V g = k * V::loadu(u.data() + d) * V::loadu(hm + d);
          (V::loadu(acc.data() + d) - g - g).store(acc.data() + d);
        });
        if (dw) dw[n * P.B + m] = dwnm;
      }
      std::copy(acc.begin(), acc.begin() + P.D, dz + n * P.D);
    }
  });
  // pass over m: dmu_md = sum_n 2 k u h, dlogvar_md = sum_n k (u^2 h - 0.5); u^2 h is not taken as
  // c - log N, which is -inf - -inf = NaN where logvar = +inf
  at::parallel_for(0, P.B, grain(P.Bp * P.Dp), [&](int64_t m0, int64_t m1) {
    std::vector<T> u(P.Dp), ln(P.Dp), amu(P.Dp), alv(P.Dp);
    for (int64_t m = m0; m < m1; ++m) {
      std::fill(amu.begin(), amu.end(), T(0));
      std::fill(alv.begin(), alv.end(), T(0));
      const T* hm = P.h + m * P.Dp;
      for (int64_t n = 0; n < P.Bp; ++n) {
        const T wm = P.weight(n, m);
        if (wm == ninf) continue;
        const T s = wm + P.densities(n, m, u.data(), ln.data());
        G.coefficients(P, n, wm, s, ln.data(), [&](int64_t d, const V& k) {
          const V ud = V::loadu(u.data() + d), hd = V::loadu(hm + d), g = k * ud * hd;
          (V::loadu(amu.data() + d) + g + g).store(amu.data() + d);
          (V::loadu(alv.data() + d) + k * (ud * ud * hd - V(T(0.5)))).store(alv.data() + d);
        });
      }
      std::copy(amu.begin(), amu.begin() + P.D, dmu + m * P.D);
      std::copy(alv.begin(), alv.begin() + P.D, dlogvar + m * P.D);
    }
  });
}

constexpr const char* kOp = "gaussian_pair_logsumexp (cpp): ";

// t (called name) is a contiguous CPU tensor of z's dtype with the given shape (described by what).
void expect(const Tensor& t, const char* name, at::IntArrayRef shape, const char* what, const Tensor& z) {
  TORCH_CHECK(t.sizes() == shape, kOp, name, " must have shape ", what, " = ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.device().is_cpu(), kOp, name, " must be a CPU tensor, got device ", t.device());
  TORCH_CHECK(t.scalar_type() == z.scalar_type(), kOp, name, " has dtype ", t.scalar_type(), ", z has dtype ",
              z.scalar_type());
  TORCH_CHECK(t.is_contiguous(), kOp, name, " must be contiguous");
}

void check(const Tensor& z, const Tensor& mu, const Tensor& logvar, const std::optional<Tensor>& weights,
           bool exclude_self) {
  TORCH_CHECK(z.dim() == 2, kOp, "z must be 2-D (B', D), got shape ", z.sizes());
  TORCH_CHECK(mu.dim() == 2, kOp, "mu must be 2-D (B, D), got shape ", mu.sizes());
  TORCH_CHECK(z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble, kOp,
              "z must be float32 or float64, got ", z.scalar_type());
  const int64_t Bp = z.size(0), B = mu.size(0), D = z.size(1);
  expect(z, "z", {Bp, D}, "(B', D)", z);
  expect(mu, "mu", {B, D}, "(B, D) with z's D", z);
  expect(logvar, "logvar", {B, D}, "(B, D)", z);
  if (weights) expect(*weights, "weights", {Bp, B}, "(B', B)", z);
  TORCH_CHECK(!exclude_self || Bp == B, kOp, "exclude_self needs as many rows in z as in mu, got ", Bp, " and ", B);
}

// (rows, D) -> contiguous (rows, Dp), new columns filled with value.
Tensor pad(const Tensor& t, int64_t Dp, double value) {
  return at::constant_pad_nd(t, {0, Dp - t.size(1)}, value).contiguous();
}

// Padded z, mu, c = -0.5 (log 2pi + logvar), h = 0.5 exp(-logvar), kept alive with the Pairs.
struct Padded {
  Tensor z, mu, c, h;
  Padded(const Tensor& z_, const Tensor& mu_, const Tensor& logvar, int64_t Dp)
      : z(pad(z_, Dp, 0)), mu(pad(mu_, Dp, 0)), c(pad((logvar + kLog2Pi) * -0.5, Dp, 0)),
        h(pad((-logvar).exp() * 0.5, Dp, 0)) {}
  template <typename T>
  Pairs<T> pairs(int64_t D, const std::optional<Tensor>& weights, bool exclude_self) const {
    return {z.size(0), mu.size(0), D, z.size(1), z.data_ptr<T>(), mu.data_ptr<T>(), c.data_ptr<T>(),
            h.data_ptr<T>(), weights ? weights->data_ptr<T>() : nullptr, exclude_self};
  }
};

int64_t padded_width(const Tensor& z) {
  const int64_t W = z.scalar_type() == at::kFloat ? Vectorized<float>::size() : Vectorized<double>::size();
  return std::max<int64_t>(1, (z.size(1) + W - 1) / W) * W;
}

std::tuple<Tensor, Tensor> gaussian_pair_logsumexp_fwd(const Tensor& z, const Tensor& mu, const Tensor& logvar,
                                                       const std::optional<Tensor>& weights, bool exclude_self) {
  check(z, mu, logvar, weights, exclude_self);
  const Padded in(z, mu, logvar, padded_width(z));
  Tensor log_joint = at::empty({z.size(0)}, z.options());
  Tensor log_marginal = at::empty_like(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "gaussian_pair_logsumexp_fwd", [&] {
    forward_impl<scalar_t>(in.pairs<scalar_t>(z.size(1), weights, exclude_self), log_joint.data_ptr<scalar_t>(),
                           log_marginal.data_ptr<scalar_t>());
  });
  return {log_joint, log_marginal};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> gaussian_pair_logsumexp_bwd(
    const Tensor& z, const Tensor& mu, const Tensor& logvar, const std::optional<Tensor>& weights,
    bool exclude_self, const Tensor& log_joint, const Tensor& log_marginal, const Tensor& grad_joint,
    const Tensor& grad_marginal, bool weights_grad) {
  check(z, mu, logvar, weights, exclude_self);
  const int64_t Bp = z.size(0), D = z.size(1);
  expect(log_joint, "log_joint", {Bp}, "(B',)", z);
  expect(log_marginal, "log_marginal", {Bp, D}, "(B', D)", z);
  expect(grad_joint, "grad_joint", {Bp}, "(B',)", z);
  expect(grad_marginal, "grad_marginal", {Bp, D}, "(B', D)", z);
  TORCH_CHECK(!weights_grad || weights.has_value(), kOp, "weights_grad is true but weights is None");
  const int64_t Dp = padded_width(z);
  const Padded in(z, mu, logvar, Dp);
  const Tensor lm = pad(log_marginal, Dp, std::numeric_limits<double>::infinity()), gm = pad(grad_marginal, Dp, 0);
  Tensor dz = at::empty_like(z), dmu = at::empty_like(mu), dlogvar = at::empty_like(logvar);
  Tensor dw = weights_grad ? at::empty({z.size(0), mu.size(0)}, z.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "gaussian_pair_logsumexp_bwd", [&] {
    const Grads<scalar_t> G{log_joint.data_ptr<scalar_t>(), lm.data_ptr<scalar_t>(), grad_joint.data_ptr<scalar_t>(),
                            gm.data_ptr<scalar_t>()};
    backward_impl<scalar_t>(in.pairs<scalar_t>(z.size(1), weights, exclude_self), G, dz.data_ptr<scalar_t>(),
                            dmu.data_ptr<scalar_t>(), dlogvar.data_ptr<scalar_t>(),
                            weights_grad ? dw.data_ptr<scalar_t>() : nullptr);
  });
  return {dz, dmu, dlogvar, dw};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eoflow_fast_cpp, m) {
  m.def("gaussian_pair_logsumexp_fwd(Tensor z, Tensor mu, Tensor logvar, Tensor? weights, bool exclude_self)"
        " -> (Tensor, Tensor)");
  m.def("gaussian_pair_logsumexp_bwd(Tensor z, Tensor mu, Tensor logvar, Tensor? weights, bool exclude_self,"
        " Tensor log_joint, Tensor log_marginal, Tensor grad_joint, Tensor grad_marginal, bool weights_grad)"
        " -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(eoflow_fast_cpp, CPU, m) {
  m.impl("gaussian_pair_logsumexp_fwd", &gaussian_pair_logsumexp_fwd);
  m.impl("gaussian_pair_logsumexp_bwd", &gaussian_pair_logsumexp_bwd);
}
