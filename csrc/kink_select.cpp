// Kink selection on the CPU: the entries of x near zero relative to its largest magnitude.
//
// x (any shape, float32/float64, read flat), rel > 0:
//   threshold = max(rel * max_i |x_i|, tiny),  idx = ascending {i : |x_i| <= threshold},  values = x[idx].
// A NaN anywhere makes the maximum, hence the threshold, NaN, and nothing is selected (torch.max's rule,
// as in eoflow_fast/reference/kink_select.py). Two passes over x, chunks in parallel (at::parallel_for):
// (1) max |x| with at::vec::maximum, which propagates NaN; (2) per chunk, vector compares whose lanes
// are tested together (zero_mask), so a chunk without hits costs one compare per vector; hits are counted,
// the chunk offsets prefix-summed, and a third pass over the chunks with hits writes idx and values in order.
// The same math is in kernels/kink_select.py.
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

namespace {

using at::Tensor;
using at::vec::Vectorized;
constexpr int64_t kChunk = 1 << 15;

template <typename T>
T max_abs(const T* x, int64_t n) {
  using V = Vectorized<T>;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<T> part(chunks, T(0));
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
      V acc(T(0));
      int64_t i = lo;
      for (; i + V::size() <= hi; i += V::size()) acc = at::vec::maximum(acc, V::loadu(x + i).abs());
      T m = at::vec::vec_reduce_all<T>([](V& a, V& b) { return at::vec::maximum(a, b); }, acc);
      for (; i < hi; ++i) {
        const T a = std::abs(x[i]);
        m = (std::isnan(a) || a > m) ? a : m;
      }
      part[c] = m;
    }
  });
  T m = T(0);
  for (T p : part) m = (std::isnan(p) || p > m) ? p : m;
  return m;
}

// Calls hit(i) for each i in [lo, hi) with |x_i| <= t, in ascending order.
template <typename T, typename F>
inline void scan(const T* x, int64_t lo, int64_t hi, T t, F&& hit) {
  using V = Vectorized<T>;
  const V vt(t);
  const int all = (1 << V::size()) - 1;
  int64_t i = lo;
  for (; i + V::size() <= hi; i += V::size()) {
    const int miss = (V::loadu(x + i).abs() <= vt).zero_mask();  // bit j set: lane j is not a hit
    if (miss == all) continue;
    for (int j = 0; j < V::size(); ++j)
      if (!((miss >> j) & 1)) hit(i + j);
  }
  for (; i < hi; ++i)
    if (std::abs(x[i]) <= t) hit(i);
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor> select(const Tensor& xc, double rel) {
  const T* x = xc.data_ptr<T>();
  const int64_t n = xc.numel();
  const T peak = n ? max_abs(x, n) : T(0);
  const T t = std::max(static_cast<T>(rel) * peak, std::numeric_limits<T>::min());  // in T, as torch does
  const T threshold = std::isnan(peak) ? peak : t;
  const auto options = xc.options();
  Tensor thr = at::full({}, threshold, options);
  if (std::isnan(threshold) || n == 0)
    return {at::empty({0}, options.dtype(at::kLong)), at::empty({0}, options), thr};
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<int64_t> count(chunks + 1, 0);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t k = 0;
      scan(x, c * kChunk, std::min(n, (c + 1) * kChunk), threshold, [&](int64_t) { ++k; });
      count[c + 1] = k;
    }
  });
  for (int64_t c = 0; c < chunks; ++c) count[c + 1] += count[c];
  Tensor idx = at::empty({count[chunks]}, options.dtype(at::kLong));
  Tensor values = at::empty({count[chunks]}, options);
  int64_t* ip = idx.data_ptr<int64_t>();
  T* vp = values.data_ptr<T>();
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      if (count[c + 1] == count[c]) continue;
      int64_t k = count[c];
      scan(x, c * kChunk, std::min(n, (c + 1) * kChunk), threshold, [&](int64_t i) {
        ip[k] = i;
        vp[k++] = x[i];
      });
    }
  });
  return {idx, values, thr};
}

std::tuple<Tensor, Tensor, Tensor> kink_select(const Tensor& x, double rel) {
  TORCH_CHECK(x.device().is_cpu(), "kink_select: x must be a CPU tensor");
  const Tensor xc = x.contiguous();
  if (xc.scalar_type() == at::kDouble) return select<double>(xc, rel);
  TORCH_CHECK(xc.scalar_type() == at::kFloat, "kink_select: x must be float32 or float64");
  return select<float>(xc, rel);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eoflow_fast_cpp, m) {
  m.def("kink_select(Tensor x, float rel) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(eoflow_fast_cpp, CPU, m) {
  m.impl("kink_select", &kink_select);
}
