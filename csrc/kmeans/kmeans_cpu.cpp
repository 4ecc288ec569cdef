// One fused Lloyd iteration on the CPU (contract: kmeans.h).
//
// Each problem's points are cut into slices of kSlice points, one task of at::parallel_for
// per (problem, slice). A task walks its slice three points at a time: a register-blocked
// micro-kernel computes their dot products with the centroids, four centroids at a time
// (12 vector accumulators: each vector of x loaded once feeds four FMAs, each vector of a
// centroid three; 2 x 4 ran up to 25% slower, channel blocking slower still), then each
// point takes its argmin and adds itself into the slice's partial sums while its row is still
// in L1. A BLAS tile is no better here: with k ~ 8 columns the GEMM is a tall skinny one that
// MKL runs at a fraction of peak plus a fixed ~20 us per call.
//
// Every dot product x_i . c_j is accumulated in the same order (one vector accumulator over
// the channels, a fixed horizontal reduction, then the tail) whatever the blocking, so equal
// centroids get bitwise equal distances and the exact tie goes to the lowest j.
// The slices depend on n only, never on the number of threads or on B, and their partial sums
// are merged in slice order: results are identical run to run, and a problem solved inside a
// batch gives exactly what it gives alone. Extra memory: the partial sums,
// B * ceil(n / kSlice) * k * C values (k / kSlice of an fp32 x), and kPoints rows per thread.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/functional.h>  // vec_reduce_all (torch 2.4's vec.h lacks it)
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include "kmeans.h"

namespace pyclr::kmeans {
namespace {

constexpr int64_t kSlice = 1024;  // points per task (and per partial sum)
constexpr int kPoints = 3;        // points per micro-kernel call (3 x 4 fills the 16 ymm)
constexpr int kCentroids = 4;     // centroids per micro-kernel call
// Tasks smaller than this many multiply-adds (tens of microseconds) are grouped: waking
// another thread costs more than it saves, and far more when the cores are oversubscribed.
constexpr int64_t kMinWorkPerThread = int64_t{1} << 20;

int64_t grain(int64_t work_per_task) {
  return std::max<int64_t>(1, kMinWorkPerThread / std::max<int64_t>(1, work_per_task));
}

template <typename acc_t>
acc_t reduce_sum(const at::vec::Vectorized<acc_t>& v) {
  using Vec = at::vec::Vectorized<acc_t>;
  return at::vec::vec_reduce_all<acc_t>([](Vec& p, Vec& q) { return p + q; }, v);
}

// out[p * stride + q] = x_p . c_q for P points and Q centroids of length len.
template <int P, int Q, typename acc_t>
void dot_tile(const acc_t* const* x, const acc_t* const* c, int64_t len, acc_t* out,
              int64_t stride) {
  using Vec = at::vec::Vectorized<acc_t>;
  Vec acc[P][Q];
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) acc[p][q] = Vec(acc_t(0));
  int64_t e = 0;
  for (; e + Vec::size() <= len; e += Vec::size()) {
    Vec xv[P];
    for (int p = 0; p < P; ++p) xv[p] = Vec::loadu(x[p] + e);
    for (int q = 0; q < Q; ++q) {
      const Vec cv = Vec::loadu(c[q] + e);
      for (int p = 0; p < P; ++p) acc[p][q] = at::vec::fmadd(xv[p], cv, acc[p][q]);
    }
  }
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) {
      acc_t s = reduce_sum(acc[p][q]);
      for (int64_t t = e; t < len; ++t) s = std::fma(x[p][t], c[q][t], s);
      out[p * stride + q] = s;
    }
}

// dots[p * k + j] = x_p . c_j for P points and all k centroids.
template <int P, typename acc_t>
void dot_all(const acc_t* const* x, const acc_t* centroids, int64_t k, int64_t len, acc_t* dots) {
  int64_t j = 0;
  for (; j + kCentroids <= k; j += kCentroids) {
    const acc_t* c[kCentroids];
    for (int q = 0; q < kCentroids; ++q) c[q] = centroids + (j + q) * len;
    dot_tile<P, kCentroids>(x, c, len, dots + j, k);
  }
  for (; j < k; ++j) {
    const acc_t* c[1] = {centroids + j * len};
    dot_tile<P, 1>(x, c, len, dots + j, k);
  }
}

// ||x||^2 with four independent accumulators: one would serialise on the FMA latency. (Only the
// points' norms go through here; the centroids' use dot_tile, like their dot products.)
template <typename acc_t>
acc_t squared_norm(const acc_t* x, int64_t len) {
  using Vec = at::vec::Vectorized<acc_t>;
  constexpr int64_t kStep = 4 * Vec::size();
  Vec acc[4] = {Vec(acc_t(0)), Vec(acc_t(0)), Vec(acc_t(0)), Vec(acc_t(0))};
  int64_t e = 0;
  for (; e + kStep <= len; e += kStep)
    for (int a = 0; a < 4; ++a) {
      const Vec v = Vec::loadu(x + e + a * Vec::size());
      acc[a] = at::vec::fmadd(v, v, acc[a]);
    }
  for (; e + Vec::size() <= len; e += Vec::size()) {
    const Vec v = Vec::loadu(x + e);
    acc[0] = at::vec::fmadd(v, v, acc[0]);
  }
  acc_t s = reduce_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
  for (; e < len; ++e) s = std::fma(x[e], x[e], s);
  return s;
}

// dst[c] += src[c]
template <typename acc_t>
void add_into(acc_t* dst, const acc_t* src, int64_t len) {
  using Vec = at::vec::Vectorized<acc_t>;
  int64_t c = 0;
  for (; c + Vec::size() <= len; c += Vec::size())
    (Vec::loadu(dst + c) + Vec::loadu(src + c)).store(dst + c);
  for (; c < len; ++c) dst[c] += src[c];
}

// The lowest j minimising ||c_j||^2 - 2 x.c_j (||x||^2 is common to every j).
template <typename acc_t>
std::pair<int64_t, acc_t> nearest(const acc_t* dots, const acc_t* cnorm, int64_t k) {
  int64_t best_j = 0;
  acc_t best = cnorm[0] - 2 * dots[0];
  for (int64_t j = 1; j < k; ++j) {
    const acc_t d = cnorm[j] - 2 * dots[j];
    if (d < best) {
      best = d;
      best_j = j;
    }
  }
  return {best_j, best};
}

// ||c_j||^2 for every centroid, (B * k), by the same dot as the points' (exact ties again).
template <typename acc_t>
std::vector<acc_t> centroid_norms(const at::Tensor& centroids) {
  const int64_t rows = centroids.size(0) * centroids.size(1), c = centroids.size(2);
  const acc_t* cp = centroids.const_data_ptr<acc_t>();
  std::vector<acc_t> norms(rows);
  for (int64_t r = 0; r < rows; ++r) {
    const acc_t* row[1] = {cp + r * c};
    dot_tile<1, 1>(row, row, c, &norms[r], 1);
  }
  return norms;
}

struct Outputs {
  at::Tensor labels, distances, partial_sums, partial_counts;
};

// Row i of problem b in acc: a pointer into x when x already is in acc, else converted into
// `buffer`.
template <typename scalar_t, typename acc_t>
const acc_t* row_in_acc(const scalar_t* xb, int64_t i, int64_t c, acc_t* buffer) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return xb + i * c;
  } else {
    for (int64_t e = 0; e < c; ++e) buffer[e] = static_cast<acc_t>(xb[i * c + e]);
    return buffer;
  }
}

template <typename scalar_t, typename acc_t>
void assign_slices(const at::Tensor& x, const at::Tensor& centroids,
                   const std::vector<acc_t>& cnorm, Outputs& out) {
  const int64_t batch = x.size(0), n = x.size(1), c = x.size(2), k = centroids.size(1);
  const int64_t slices = (n + kSlice - 1) / kSlice;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const acc_t* cp = centroids.const_data_ptr<acc_t>();
  int64_t* labels = out.labels.mutable_data_ptr<int64_t>();
  acc_t* distances = out.distances.mutable_data_ptr<acc_t>();
  acc_t* psums = out.partial_sums.mutable_data_ptr<acc_t>();
  int64_t* pcounts = out.partial_counts.mutable_data_ptr<int64_t>();

  const int64_t task_grain = grain(std::min(n, kSlice) * (k + 2) * c);  // dots, norm, sum
  at::parallel_for(0, batch * slices, task_grain, [&](int64_t t0, int64_t t1) {
    std::vector<acc_t> dots(kPoints * k), buffers(std::is_same_v<scalar_t, acc_t> ? 0 : kPoints * c);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / slices, begin = (t % slices) * kSlice;
      const int64_t end = std::min(begin + kSlice, n);
      const scalar_t* xb = xp + b * n * c;
      const acc_t* cb = cp + b * k * c;
      const acc_t* cn = cnorm.data() + b * k;
      acc_t* sums = psums + t * k * c;  // (b, slice) is partial row t
      int64_t* counts = pcounts + t * k;
      for (int64_t i0 = begin; i0 < end; i0 += kPoints) {
        const int m = static_cast<int>(std::min<int64_t>(kPoints, end - i0));
        const acc_t* rows[kPoints];
        for (int p = 0; p < m; ++p)
          rows[p] = row_in_acc<scalar_t, acc_t>(xb, i0 + p, c, buffers.data() + p * c);
        if (m == kPoints) {
          dot_all<kPoints>(rows, cb, k, c, dots.data());
        } else {  // the slice's last points
          for (int p = 0; p < m; ++p) dot_all<1>(rows + p, cb, k, c, dots.data() + p * k);
        }
        for (int p = 0; p < m; ++p) {
          const auto [j, partial] = nearest(dots.data() + p * k, cn, k);
          labels[b * n + i0 + p] = j;
          distances[b * n + i0 + p] = std::max(acc_t(0), squared_norm(rows[p], c) + partial);
          add_into(sums + j * c, rows[p], c);
          counts[j] += 1;
        }
      }
    }
  });
}

// sums[b, j] = sum over slices s, in order, of partial[b, s, j].
template <typename acc_t>
at::Tensor merge_slices(const at::Tensor& partial) {
  const int64_t batch = partial.size(0), slices = partial.size(1), k = partial.size(2),
                c = partial.size(3);
  if (slices == 1) return partial.view({batch, k, c});
  at::Tensor sums = at::empty({batch, k, c}, partial.options());
  const acc_t* src = partial.const_data_ptr<acc_t>();
  acc_t* dst = sums.mutable_data_ptr<acc_t>();
  at::parallel_for(0, batch * k, grain(slices * c), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / k, j = r % k;
      acc_t* out = dst + r * c;
      std::fill(out, out + c, acc_t(0));
      for (int64_t s = 0; s < slices; ++s) add_into(out, src + ((b * slices + s) * k + j) * c, c);
    }
  });
  return sums;
}

template <typename scalar_t, typename acc_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> step_impl(const at::Tensor& x,
                                                                     const at::Tensor& centroids) {
  const int64_t batch = x.size(0), n = x.size(1), c = x.size(2), k = centroids.size(1);
  const int64_t slices = (n + kSlice - 1) / kSlice;
  const auto acc_options = centroids.options();
  Outputs out{at::empty({batch, n}, acc_options.dtype(at::kLong)),
              at::empty({batch, n}, acc_options),
              at::zeros({batch, slices, k, c}, acc_options),
              at::zeros({batch, slices, k}, acc_options.dtype(at::kLong))};
  assign_slices<scalar_t, acc_t>(x, centroids, centroid_norms<acc_t>(centroids), out);
  at::Tensor sums = merge_slices<acc_t>(out.partial_sums);
  at::Tensor counts = slices == 1 ? out.partial_counts.view({batch, k}) : out.partial_counts.sum(1);
  return {out.labels, out.distances, sums, counts};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> step_cpu(const at::Tensor& x_in,
                                                                    const at::Tensor& centroids_in) {
  check_args(x_in, centroids_in);
  TORCH_CHECK(x_in.device().is_cpu(), "x: expected a CPU tensor, got ", x_in.device());
  const at::Tensor x = x_in.detach().contiguous();
  const at::Tensor centroids = centroids_in.detach().contiguous();
  switch (x.scalar_type()) {
    case at::kDouble:
      return step_impl<double, double>(x, centroids);
    case at::kFloat:
      return step_impl<float, float>(x, centroids);
    case at::kBFloat16:
      return step_impl<c10::BFloat16, float>(x, centroids);
    case at::kHalf:
      return step_impl<c10::Half, float>(x, centroids);
    default:
      TORCH_CHECK(false, "kmeans_step: unsupported dtype ", x.scalar_type());
  }
}

}  // namespace pyclr::kmeans

TORCH_LIBRARY_IMPL(pyclr, CPU, m) { m.impl("kmeans_step", &pyclr::kmeans::step_cpu); }
