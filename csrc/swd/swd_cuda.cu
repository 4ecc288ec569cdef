// Squared sliced 2-Wasserstein distance on CUDA (contract: swd.h).
//
// Three steps, all on the current stream:
//   1. both projections as fp32 matrix products (cuBLAS), computed transposed, (L, M), so that
//      every projection is a contiguous segment of M values; every NaN in them made positive
//      (CUB sorts a negative NaN first, torch.sort every NaN last);
//   2. CUB's segmented sort orders each segment: the data with its row indices (SortPairs),
//      the prior as plain keys (SortKeys); temporary storage comes from torch's caching
//      allocator;
//   3. one kernel walks the sorted segments, scatters residual_t[l, row] = xs - ys (equal
//      ranks) and adds up the squares in fp64: per thread, then per block, then one atomicAdd
//      per block.
// CUB takes int offsets here, so M * L must fit in int32 (checked; 2^31 elements would
// already need 48 GiB of buffers). Extra memory: about 6 M L * 4 bytes at the peak (the two
// projections, their sorted copies, the row indices before and after the sort) plus CUB's
// temporary storage; the residual reuses the data projection's buffer.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <utility>

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cub/device/device_segmented_sort.cuh>

#include "swd.h"

namespace pyclr::swd {
namespace {

constexpr int kThreads = 256;
// Enough blocks to fill any current GPU several times over; beyond that the grid-stride
// loops just take more turns.
constexpr int64_t kMaxBlocks = 8192;

int grid_for(int64_t n) {
  return static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

// rows[l * m + i] = i: the row index each projection's sort carries along with the value.
__global__ void __launch_bounds__(kThreads) row_indices_kernel(int* rows, int m, int n) {
  // a 64-bit counter: e + stride may pass INT_MAX on the last turn
  for (int64_t e = blockIdx.x * kThreads + threadIdx.x; e < n; e += gridDim.x * kThreads)
    rows[e] = static_cast<int>(e) % m;
}

// Every NaN of v[0..n) made the positive quiet NaN: CUB's radix order puts a NaN with the sign
// bit set first (before -inf), torch.sort puts every NaN last; a NaN sorted first would shift
// the other rows of its projection to the wrong prior rank.
__global__ void __launch_bounds__(kThreads) positive_nan_kernel(float* v, int n) {
  // a 64-bit counter: e + stride may pass INT_MAX on the last turn
  for (int64_t e = blockIdx.x * kThreads + threadIdx.x; e < n; e += gridDim.x * kThreads)
    if (isnan(v[e])) v[e] = __int_as_float(0x7fffffff);
}

__device__ double warp_sum(double x) {
  for (int s = 16; s > 0; s /= 2) x += __shfl_xor_sync(0xffffffffu, x, s);
  return x;
}

// For every sorted position e = l * m + r: residual_t[l * m + rows[e]] = xs[e] - ys[e];
// *sum_sq += the sum of the squares.
__global__ void __launch_bounds__(kThreads)
    residual_kernel(const float* xs, const int* rows, const float* ys, float* residual_t, int m,
                    int n, double* sum_sq) {
  double acc = 0;
  // a 64-bit counter: e + stride may pass INT_MAX on the last turn
  for (int64_t e = blockIdx.x * kThreads + threadIdx.x; e < n; e += gridDim.x * kThreads) {
    const int i = static_cast<int>(e);
    const float diff = xs[i] - ys[i];
    residual_t[(i - i % m) + rows[i]] = diff;
    acc += static_cast<double>(diff) * diff;
  }
  __shared__ double warp_sums[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  acc = warp_sum(acc);
  if (lane == 0) warp_sums[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    acc = warp_sum(lane < kThreads / 32 ? warp_sums[lane] : 0.0);
    if (lane == 0) atomicAdd(sum_sq, acc);
  }
}

void check_cuda_input(const at::Tensor& h, int64_t num_proj) {
  TORCH_CHECK(h.is_cuda(), "h: expected a CUDA tensor, got device ", h.device());
  TORCH_CHECK(h.size(0) * num_proj <= std::numeric_limits<int>::max(),
              "h and projections: M * L = ", h.size(0), " * ", num_proj,
              " exceeds 2^31 - 1, the most the CUDA kernel sorts at once; use fewer rows or "
              "projections per call");
}

// Segments per CUB call. Above its partitioning threshold (300 or 500 segments, by policy)
// DeviceSegmentedSort copies segment counts to the host and synchronises the stream (unless
// built with relocatable device code), which also rules out CUDA-graph capture; below it,
// every segment is sorted by its own block, as large segments are in the partitioned path.
constexpr int kSegmentsPerSort = 256;

// Sorts each of the num_proj segments of m values: x with the row indices, y alone; in calls
// of at most kSegmentsPerSort segments, so that no call synchronises with the host.
void sort_segments(const at::Tensor& xt, const at::Tensor& yt, at::Tensor& xs, at::Tensor& rows,
                   at::Tensor& ys) {
  const int num_proj = static_cast<int>(xt.size(0)), m = static_cast<int>(xt.size(1));
  const auto int_options = xt.options().dtype(at::kInt);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  // offsets[l] = l * m: within a call, segment l is [offsets[l], offsets[l + 1]) of the call's
  // own (shifted) pointers; the row indices 0..m-1 of each segment are the same in every call
  const int per_call = std::min(num_proj, kSegmentsPerSort);
  at::Tensor rows_in = at::empty({int64_t{per_call} * m}, int_options);
  row_indices_kernel<<<grid_for(per_call * m), kThreads, 0, stream>>>(
      rows_in.mutable_data_ptr<int>(), m, per_call * m);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor offsets = at::arange(0, int64_t{per_call} * m + 1, m, int_options);
  const int* begin = offsets.const_data_ptr<int>();

  const float* x = xt.const_data_ptr<float>();
  const float* y = yt.const_data_ptr<float>();
  float* x_out = xs.mutable_data_ptr<float>();
  float* y_out = ys.mutable_data_ptr<float>();
  int* rows_out = rows.mutable_data_ptr<int>();
  const int* rows_in_p = rows_in.const_data_ptr<int>();
  // the largest call (the first) sizes the temporary storage every call shares
  size_t pair_bytes = 0, key_bytes = 0;
  C10_CUDA_CHECK(cub::DeviceSegmentedSort::SortPairs(nullptr, pair_bytes, x, x_out, rows_in_p,
                                                     rows_out, per_call * m, per_call, begin,
                                                     begin + 1, stream));
  C10_CUDA_CHECK(cub::DeviceSegmentedSort::SortKeys(nullptr, key_bytes, y, y_out, per_call * m,
                                                    per_call, begin, begin + 1, stream));
  // At least one byte: a null d_temp_storage would make CUB only report the size.
  const size_t bytes = std::max<size_t>({pair_bytes, key_bytes, 1});
  at::Tensor temp = at::empty({static_cast<int64_t>(bytes)}, xt.options().dtype(at::kByte));
  void* temp_p = temp.mutable_data_ptr();
  // All calls run in stream order, so they can share one temporary buffer.
  for (int l0 = 0; l0 < num_proj; l0 += per_call) {
    const int count = std::min(per_call, num_proj - l0);
    const int64_t shift = int64_t{l0} * m;
    size_t call_pair_bytes = bytes, call_key_bytes = bytes;
    C10_CUDA_CHECK(cub::DeviceSegmentedSort::SortPairs(
        temp_p, call_pair_bytes, x + shift, x_out + shift, rows_in_p, rows_out + shift,
        count * m, count, begin, begin + 1, stream));
    C10_CUDA_CHECK(cub::DeviceSegmentedSort::SortKeys(temp_p, call_key_bytes, y + shift,
                                                      y_out + shift, count * m, count, begin,
                                                      begin + 1, stream));
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& h_in,
                                                const at::Tensor& prior_samples_in,
                                                const at::Tensor& projections_in) {
  check_args(h_in, prior_samples_in, projections_in);
  const int64_t num_proj = projections_in.size(1), m = h_in.size(0);
  check_cuda_input(h_in, num_proj);
  const at::cuda::CUDAGuard guard(h_in.device());
  // detach: the products are internal and must not be seen by autograd
  // mm_out, not mm: autocast recasts mm's operands (to bf16 under torch.autocast) but leaves
  // out= variants alone, and the kernels below read float
  const at::Tensor wt = projections_in.detach().to(at::kFloat).t();
  const auto float_options = h_in.options().dtype(at::kFloat);
  at::Tensor xt = at::empty({num_proj, m}, float_options);
  at::Tensor yt = at::empty({num_proj, m}, float_options);
  at::mm_out(xt, wt, h_in.detach().to(at::kFloat).t());
  at::mm_out(yt, wt, prior_samples_in.detach().to(at::kFloat).t());
  for (at::Tensor* t : {&xt, &yt}) {
    positive_nan_kernel<<<grid_for(m * num_proj), kThreads, 0,
                          c10::cuda::getCurrentCUDAStream()>>>(t->mutable_data_ptr<float>(),
                                                               static_cast<int>(m * num_proj));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  at::Tensor xs = at::empty_like(xt);
  at::Tensor ys = at::empty_like(yt);
  at::Tensor rows = at::empty(xt.sizes(), xt.options().dtype(at::kInt));
  sort_segments(xt, yt, xs, rows, ys);

  // The unsorted projections are done with: the residual takes x's buffer and y's returns to
  // the caching allocator (both stream-ordered, so the sorts above still read them first).
  at::Tensor residual_t = std::move(xt);
  yt = at::Tensor();
  const int n = static_cast<int>(m * num_proj);
  at::Tensor sum_sq = at::zeros({}, residual_t.options().dtype(at::kDouble));  // xt is moved from
  residual_kernel<<<grid_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      xs.const_data_ptr<float>(), rows.const_data_ptr<int>(), ys.const_data_ptr<float>(),
      residual_t.mutable_data_ptr<float>(), static_cast<int>(m), n,
      sum_sq.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor loss = sum_sq.mul(1.0 / (static_cast<double>(m) * num_proj)).to(at::kFloat);
  return {loss, residual_t.t()};
}

}  // namespace pyclr::swd

TORCH_LIBRARY_IMPL(pyclr, CUDA, m) {
  m.impl("swd_forward", &pyclr::swd::forward_cuda);
}
