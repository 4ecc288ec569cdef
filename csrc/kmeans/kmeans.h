// One Lloyd iteration of K-Means for B independent problems: the contract shared by the CPU
// and CUDA kernels.
//
// x is (B, n, C): problem b clusters the n points x[b, i, :] (per-image mode: one image's
// pixels; cross-image mode: B = 1 and the pixels of the whole batch). x is float32, bfloat16
// or float16, or float64 on the CPU only (exact tests). A non-contiguous x is copied.
// centroids is (B, k, C), k >= 1, in the accumulation dtype "acc": float32, or float64 for a
// float64 x. Every product and sum accumulates in acc.
//
// kmeans_step(x, centroids) -> (labels, distances, sums, counts):
//     labels    (B, n) int64   l_bi = argmin_j ||x_bi - c_bj||^2, ties to the lowest j
//     distances (B, n) acc     max(0, ||x_bi||^2 - 2 x_bi . c_bl + ||c_bl||^2), l = l_bi
//     sums      (B, k, C) acc  sum of the points with label j (0 for an empty cluster)
//     counts    (B, k) int64   number of points with label j
// so that the next centroids are sums / counts wherever counts > 0 (the caller re-seeds empty
// clusters) and the inertia of problem b is sum_i distances[b, i].
//
// Why the expansion ||x||^2 - 2 x.c + ||c||^2 rather than sum_c (x_c - c_c)^2: the search over
// the k centroids then costs one multiply-add per (point, centroid, channel) instead of two
// operations, it is a matrix product (BLAS on the CPU), and ||x||^2 falls out of the same read
// of x. The price is cancellation when points lie far from the origin relative to their
// distance to a centroid (error ~ eps * ||x|| * ||c||); the per-pixel features this package
// clusters are l2-normalised (||x|| = 1), where it is negligible, and distances are clamped at
// 0 so that rounding never makes them negative.
//
// CUDA runs a one-pass kernel (x read once per iteration) where C <= 2048 and the centroids
// and their sums fit in shared memory, else a two-pass one (kmeans_cuda.cu);
// PYCLR_KMEANS_TWO_PASS=1 forces the latter, for benchmarks and tests.
// Counts are int64, exact for any n (a float32 count stops being exact at 2^24 points).
// One pass over the points: no (n, k) distance matrix is ever stored. The CPU kernel is
// deterministic (fixed partition of the points, partial sums merged in a fixed order); the
// CUDA kernel accumulates sums with float atomics, so their last bits may vary run to run.
// Inputs with NaN give unspecified (but in-range) labels: callers reject them first.
#pragma once

#include <tuple>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "../common/checks.h"

namespace pyclr::kmeans {

// The dtype of centroids, distances and sums for a given x.
inline at::ScalarType acc_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_args(const at::Tensor& x, const at::Tensor& centroids) {
  TORCH_CHECK(x.dim() == 3, "x: expected a 3-D tensor of shape (B, n, C), got shape ",
              x.sizes());
  TORCH_CHECK(x.size(0) > 0 && x.size(1) > 0 && x.size(2) > 0,
              "x: expected B, n and C >= 1, got shape ", x.sizes());
  const auto st = x.scalar_type();
  const bool allow_double = x.device().is_cpu();
  TORCH_CHECK(st == at::kFloat || st == at::kBFloat16 || st == at::kHalf ||
                  (allow_double && st == at::kDouble),
              "x: expected dtype float32, bfloat16 or float16",
              allow_double ? " (or float64 on the CPU)" : "", ", got ", st);
  TORCH_CHECK(centroids.dim() == 3, "centroids: expected a 3-D tensor of shape (B, k, C), got shape ",
              centroids.sizes());
  TORCH_CHECK(centroids.size(0) == x.size(0) && centroids.size(2) == x.size(2),
              "centroids: expected shape (B, k, C) = (", x.size(0), ", k, ", x.size(2),
              ") to match x, got ", centroids.sizes());
  TORCH_CHECK(centroids.size(1) >= 1, "centroids: expected k >= 1 centroids, got shape ",
              centroids.sizes());
  TORCH_CHECK(centroids.scalar_type() == acc_dtype(x), "centroids: expected dtype ",
              acc_dtype(x), " (the accumulation dtype for x of dtype ", st, "), got ",
              centroids.scalar_type());
  check_same_device(centroids, "centroids", x, "x");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> step_cpu(const at::Tensor& x,
                                                                    const at::Tensor& centroids);

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> step_cuda(const at::Tensor& x,
                                                                     const at::Tensor& centroids);
#endif

}  // namespace pyclr::kmeans
