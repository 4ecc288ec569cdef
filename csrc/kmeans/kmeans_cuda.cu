// One fused Lloyd iteration on CUDA (contract: kmeans.h). Two kernels; the host picks.
//
// One-pass kernel (C <= 2048 and the centroids and their sums fit in 200 KB of shared memory:
// k * C <= 25K, e.g. k <= 12 at C = 2048): the floor, one read of x per iteration. The grid is
// flat over (problem, slice of its points), one block per slice, one wave of blocks in all. A block stages its problem's centroids in shared memory with ||c||^2 and zeroed sums;
// each warp then takes kP points at a time and holds them whole in registers (lane owns
// channels lane, lane + 32, ...: coalesced loads), computes the k dot products against the
// staged centroids (one shared load feeds kP FMAs), sums them over the lanes with shuffles,
// keeps the argmin (strict <, increasing j: ties to the lowest j), and adds the points it
// still holds into the shared sums and counts of their labels with shared-memory atomics.
// The block ends by adding its non-zero sums and counts to the outputs with one atomicAdd
// each. x is read once; nothing of size n x k exists.
//
// Two-pass kernel (any k and C; PYCLR_KMEANS_TWO_PASS=1 forces it). One launch covers all B
// problems: the grid is flat over (problem, tile of kTilePoints points), one block of kThreads per tile.
// A small kernel before it computes ||c||^2 for every centroid.
//
// Assignment. A tile is visited in kRounds rounds of 32 points, 4 per warp. For each group of
// kGroup centroids, the block stages the group one channel chunk (kChunk channels) at a time
// in shared memory; each lane owns channels lane, lane + 32, ... of the chunk, loads its 4
// points' values there (coalesced: the warp reads 64-128 contiguous bytes per point and
// instruction) and multiply-adds them with every staged centroid value, so one shared load
// feeds 4 FMAs and any k or C works: the centroids never need to fit on chip. Warp shuffles then
// sum each (point, centroid) dot product over the lanes, and every lane keeps the running argmin
// of ||c||^2 - 2 x.c across groups, in increasing j (ties to the lowest j). ||x||^2 is summed
// from the same registers during the first group.
//
// Accumulation. The tile's labels go to shared memory and are ranked (a stable counting sort,
// O(tile^2) comparisons, negligible next to the k*C work per point); each thread then owns
// channels and walks the tile's points in label order, carrying a running sum that it adds to
// sums[b, label, channel] with one atomicAdd per run. That is at most min(k, tile) atomics
// per (tile, channel) instead of one per (point, channel), and the warp's atomics hit
// consecutive addresses. Counts take one atomicAdd per run.
//
// Memory: x is read once for the distances (k / kGroup times through L1/L2 when k > kGroup)
// and once more for the sums, which L2 serves only in part; no (n, k) matrix exists. Where
// the centroids fit in shared memory the one-pass kernel above reads x once instead.
// Exact ties: equal centroids are staged and summed by identical instruction sequences, so
// they get bitwise equal distances and the strict < keeps the lowest j.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <tuple>
#include <type_traits>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../common/cuda_dispatch.cuh"
#include "kmeans.h"

namespace pyclr::kmeans {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kRowsPerWarp = 4;                       // points a warp carries at once
constexpr int kRoundPoints = kWarps * kRowsPerWarp;   // 32
constexpr int kRounds = 4;
constexpr int kTilePoints = kRoundPoints * kRounds;   // 128 points per block
constexpr int kGroup = 8;                             // centroids per staged group
constexpr int kPerLane = 4;                           // channels per lane per chunk
constexpr int kChunk = 32 * kPerLane;                 // 128 channels per staged chunk
constexpr int kSumBatch = 16;                         // loads in flight per thread for the sums
static_assert(kTilePoints % kSumBatch == 0, "batches stay inside the tile's shared arrays");

__device__ inline float to_float(float v) { return v; }
__device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline float to_float(__half v) { return __half2float(v); }

__device__ inline float warp_sum(float v) {
  for (int s = 16; s > 0; s /= 2) v += __shfl_xor_sync(0xffffffffu, v, s);
  return v;
}

template <typename T>
struct Problem {
  const T* x;                    // (B, n, C)
  const float* centroids;        // (B, k, C)
  const float* cnorm;            // (B, k): ||c||^2, from centroid_norms_kernel
  int64_t* labels;               // (B, n)
  float* distances;              // (B, n)
  float* sums;                   // (B, k, C), zeroed
  unsigned long long* counts;    // (B, k), zeroed
  int64_t n;
  int c, k;
  int64_t tiles_per_problem;
};

struct Tile {
  int64_t b;      // problem
  int64_t first;  // index of the tile's first point within the problem
  int count;      // points in the tile, 1..kTilePoints
};

template <typename T>
__device__ Tile tile_of_block(const Problem<T>& p) {
  Tile t;
  t.b = blockIdx.x / p.tiles_per_problem;
  t.first = (blockIdx.x % p.tiles_per_problem) * kTilePoints;
  const int64_t left = p.n - t.first;
  t.count = left < kTilePoints ? static_cast<int>(left) : kTilePoints;
  return t;
}

// Centroids [g, g + kGroup) x channels [c0, c0 + kChunk) of problem b into shared memory,
// zero outside k and C (zero channels add nothing; centroids beyond k are never chosen).
template <typename T>
__device__ void stage_centroids(float (*staged)[kChunk], const Problem<T>& p, int64_t b, int g,
                                int c0) {
  const float* cb = p.centroids + b * p.k * int64_t(p.c);
  for (int e = threadIdx.x; e < kGroup * kChunk; e += kThreads) {
    const int j = e / kChunk, ch = c0 + e % kChunk;
    staged[j][e % kChunk] = (g + j < p.k && ch < p.c) ? cb[int64_t(g + j) * p.c + ch] : 0.f;
  }
}

// The running argmin of one warp's kRowsPerWarp points (the same in every lane).
struct Nearest {
  float best[kRowsPerWarp];
  int label[kRowsPerWarp];
  float xnorm[kRowsPerWarp];
};

// Labels and distances of the warp's points [local0, local0 + kRowsPerWarp) of the tile.
// Every thread of the block calls it the same number of times (it synchronises).
template <typename T>
__device__ Nearest assign_rows(const Problem<T>& p, const Tile& t, int local0,
                               float (*staged)[kChunk]) {
  const int lane = threadIdx.x % 32;
  const T* xb = p.x + (t.b * p.n + t.first) * int64_t(p.c);
  Nearest out;
  for (int r = 0; r < kRowsPerWarp; ++r) {
    out.best[r] = INFINITY;
    out.label[r] = 0;
    out.xnorm[r] = 0.f;
  }
  for (int g = 0; g < p.k; g += kGroup) {
    float acc[kRowsPerWarp][kGroup];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
      for (int j = 0; j < kGroup; ++j) acc[r][j] = 0.f;
    for (int c0 = 0; c0 < p.c; c0 += kChunk) {
      // The points' values first, so that their loads are in flight during the staging.
      float xv[kRowsPerWarp][kPerLane];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
        for (int e = 0; e < kPerLane; ++e) {
          const int i = local0 + r, ch = c0 + lane + 32 * e;
          xv[r][e] = (i < t.count && ch < p.c) ? to_float(xb[int64_t(i) * p.c + ch]) : 0.f;
        }
      __syncthreads();  // every warp is done with the previous chunk's staged centroids
      stage_centroids(staged, p, t.b, g, c0);
      __syncthreads();
      if (g == 0) {
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
          for (int e = 0; e < kPerLane; ++e) out.xnorm[r] = fmaf(xv[r][e], xv[r][e], out.xnorm[r]);
      }
#pragma unroll
      for (int j = 0; j < kGroup; ++j)
#pragma unroll
        for (int e = 0; e < kPerLane; ++e) {
          const float cv = staged[j][lane + 32 * e];
#pragma unroll
          for (int r = 0; r < kRowsPerWarp; ++r) acc[r][j] = fmaf(xv[r][e], cv, acc[r][j]);
        }
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
      for (int j = 0; j < kGroup; ++j) {
        const float dot = warp_sum(acc[r][j]);
        if (g + j < p.k) {
          const float d = p.cnorm[t.b * p.k + g + j] - 2.f * dot;
          if (d < out.best[r]) {
            out.best[r] = d;
            out.label[r] = g + j;
          }
        }
      }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) out.xnorm[r] = warp_sum(out.xnorm[r]);
  return out;
}

// Writes labels[i] for the tile's points into `tile_label` and the outputs.
template <typename T>
__device__ void assign_tile(const Problem<T>& p, const Tile& t, int* tile_label,
                            float (*staged)[kChunk]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // t.count is the same for the whole block, so every thread runs the same rounds.
  for (int round = 0; round < kRounds && round * kRoundPoints < t.count; ++round) {
    const int local0 = round * kRoundPoints + warp * kRowsPerWarp;
    const Nearest near = assign_rows(p, t, local0, staged);
    // Every lane holds the same butterfly sums (a + b == b + a exactly); lane 0 writes.
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const int i = local0 + r;
        if (i < t.count) {
          const int64_t out = t.b * p.n + t.first + i;
          p.labels[out] = near.label[r];
          p.distances[out] = fmaxf(near.xnorm[r] + near.best[r], 0.f);
          tile_label[i] = near.label[r];
        }
      }
    }
  }
}

// order[s] = the tile point of rank s when sorted by (label, index); sorted_label[s] its label.
__device__ void sort_by_label(const int* tile_label, int count, int* order, int* sorted_label) {
  for (int i = threadIdx.x; i < count; i += kThreads) {
    const int li = tile_label[i];
    int rank = 0;
    for (int j = 0; j < count; ++j) {
      const int lj = tile_label[j];
      rank += (lj < li) || (lj == li && j < i);
    }
    order[rank] = i;
    sorted_label[rank] = li;
  }
}

// Adds the tile's points into sums and counts, one atomicAdd per run of equal labels.
template <typename T>
__device__ void accumulate_tile(const Problem<T>& p, const Tile& t, const int* order,
                                const int* sorted_label) {
  float* sums = p.sums + t.b * p.k * int64_t(p.c);
  for (int s = threadIdx.x; s < t.count; s += kThreads) {
    const int label = sorted_label[s];
    if (s > 0 && sorted_label[s - 1] == label) continue;  // not the first of its run
    int end = s + 1;
    while (end < t.count && sorted_label[end] == label) ++end;
    atomicAdd(p.counts + t.b * p.k + label, static_cast<unsigned long long>(end - s));
  }
  const T* xb = p.x + (t.b * p.n + t.first) * int64_t(p.c);
  for (int ch = threadIdx.x; ch < p.c; ch += kThreads) {
    int current = sorted_label[0];
    float run = 0.f;
    for (int s0 = 0; s0 < t.count; s0 += kSumBatch) {
      // kSumBatch independent loads in flight before any atomic (which the compiler will not
      // move loads across): one at a time, this loop would wait on memory latency.
      float v[kSumBatch];
#pragma unroll
      for (int u = 0; u < kSumBatch; ++u)
        v[u] = s0 + u < t.count ? to_float(xb[int64_t(order[s0 + u]) * p.c + ch]) : 0.f;
#pragma unroll
      for (int u = 0; u < kSumBatch; ++u) {
        if (s0 + u < t.count) {
          if (sorted_label[s0 + u] != current) {
            atomicAdd(sums + int64_t(current) * p.c + ch, run);
            current = sorted_label[s0 + u];
            run = 0.f;
          }
          run += v[u];
        }
      }
    }
    atomicAdd(sums + int64_t(current) * p.c + ch, run);
  }
}

// ||c_r||^2 for the rows of centroids (rows = B * k), one warp per row. Every row is summed by
// the same code in the same order, so equal centroids get bitwise equal norms (and, from
// step_kernel, equal dot products): the exact tie goes to the lowest j.
__global__ void __launch_bounds__(kThreads)
    centroid_norms_kernel(const float* centroids, int64_t rows, int c, float* norms) {
  const int64_t r = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;  // uniform over the warp: the shuffles below see all 32 lanes
  const float* row = centroids + r * c;
  float s = 0.f;
  for (int ch = lane; ch < c; ch += 32) s = fmaf(row[ch], row[ch], s);
  s = warp_sum(s);
  if (lane == 0) norms[r] = s;
}

// ptxas: 128 registers and no spills, so two blocks per SM; asking for three spills acc.
template <typename T>
__global__ void __launch_bounds__(kThreads, 2) step_kernel(Problem<T> p) {
  __shared__ float staged[kGroup][kChunk];
  __shared__ int tile_label[kTilePoints];
  __shared__ int order[kTilePoints];
  __shared__ int sorted_label[kTilePoints];
  const Tile t = tile_of_block(p);
  assign_tile(p, t, tile_label, staged);
  __syncthreads();  // tile_label complete
  sort_by_label(tile_label, t.count, order, sorted_label);
  __syncthreads();  // order and sorted_label complete
  accumulate_tile(p, t, order, sorted_label);
}

// ---------------------------------------------------------------------------------------------
// One-pass kernel

constexpr int kOnePassMaxValues = 64;  // channels per lane: C <= 32 * 64 = 2048
// Shared memory it may take (and at most the device's opt-in limit per block: 227 KB on sm_90,
// 163 KB on an A100, 99 KB on sm_86/89); beyond, the two-pass kernel runs. One block per SM
// at the most, then, for the largest problems: still 8 warps x kP points of loads in flight
// per SM.
constexpr size_t kOnePassSmemLimit = 200 * 1024;

// Dynamic shared memory of a one-pass block: centroids and sums (k x C floats each), ||c||^2
// (k floats), counts (k unsigned ints).
inline size_t onepass_smem_bytes(int64_t k, int64_t c) {
  return static_cast<size_t>(2 * k * c + 2 * k) * sizeof(float);
}

template <typename T>
struct OnePass {
  const T* x;                  // (B, n, C)
  const float* centroids;      // (B, k, C)
  int64_t* labels;             // (B, n)
  float* distances;            // (B, n)
  float* sums;                 // (B, k, C), zeroed
  unsigned long long* counts;  // (B, k), zeroed
  int64_t n;
  int c, k;
  int slices;                  // blocks per problem
  int64_t slice_points;        // points per slice (the last may have fewer)
};

// kV values per lane per point (channels lane + 32 e, e < kV), kP points per warp at a time.
template <typename T, int kV, int kP>
__global__ void __launch_bounds__(kThreads, 1) onepass_kernel(OnePass<T> p) {
  extern __shared__ __align__(16) unsigned char smem[];
  float* cent = reinterpret_cast<float*>(smem);
  float* ssum = cent + p.k * p.c;
  float* cnorm = ssum + p.k * p.c;
  unsigned* scount = reinterpret_cast<unsigned*>(cnorm + p.k);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t b = blockIdx.x / p.slices;
  const int64_t lo = (blockIdx.x % p.slices) * p.slice_points;
  const int64_t hi = lo + p.slice_points < p.n ? lo + p.slice_points : p.n;
  const int kc = p.k * p.c;

  const float* cb = p.centroids + b * kc;
  for (int e = threadIdx.x; e < kc; e += kThreads) {
    cent[e] = cb[e];
    ssum[e] = 0.f;
  }
  for (int j = threadIdx.x; j < p.k; j += kThreads) scount[j] = 0u;
  __syncthreads();
  // ||c_j||^2 by one warp per centroid, every row by the same code: equal centroids get
  // bitwise equal norms (and, below, equal dot products), so exact ties go to the lowest j.
  for (int j = warp; j < p.k; j += kWarps) {
    float s = 0.f;
    for (int ch = lane; ch < p.c; ch += 32) s = fmaf(cent[j * p.c + ch], cent[j * p.c + ch], s);
    s = warp_sum(s);
    if (lane == 0) cnorm[j] = s;
  }
  __syncthreads();

  const T* xb = p.x + b * p.n * int64_t(p.c);
  for (int64_t i0 = lo + int64_t(warp) * kP; i0 < hi; i0 += int64_t(kWarps) * kP) {
    float xv[kP][kV];
    float xnorm[kP];
#pragma unroll
    for (int q = 0; q < kP; ++q) {
      xnorm[q] = 0.f;
#pragma unroll
      for (int e = 0; e < kV; ++e) {
        const int ch = lane + 32 * e;
        xv[q][e] = (i0 + q < hi && ch < p.c) ? to_float(xb[(i0 + q) * p.c + ch]) : 0.f;
        xnorm[q] = fmaf(xv[q][e], xv[q][e], xnorm[q]);
      }
    }
    float best[kP];
    int label[kP];
#pragma unroll
    for (int q = 0; q < kP; ++q) {
      best[q] = INFINITY;
      label[q] = 0;
    }
    for (int j = 0; j < p.k; ++j) {
      float dot[kP];
#pragma unroll
      for (int q = 0; q < kP; ++q) dot[q] = 0.f;
      const float* cj = cent + j * p.c + lane;
#pragma unroll
      for (int e = 0; e < kV; ++e) {
        const float cv = lane + 32 * e < p.c ? cj[32 * e] : 0.f;
#pragma unroll
        for (int q = 0; q < kP; ++q) dot[q] = fmaf(xv[q][e], cv, dot[q]);
      }
#pragma unroll
      for (int q = 0; q < kP; ++q) {
        const float d = cnorm[j] - 2.f * warp_sum(dot[q]);
        if (d < best[q]) {
          best[q] = d;
          label[q] = j;
        }
      }
    }
#pragma unroll
    for (int q = 0; q < kP; ++q) {
      const float norm = warp_sum(xnorm[q]);
      if (i0 + q >= hi) continue;  // uniform over the warp
      if (lane == 0) {
        p.labels[b * p.n + i0 + q] = label[q];
        p.distances[b * p.n + i0 + q] = fmaxf(norm + best[q], 0.f);
        atomicAdd(scount + label[q], 1u);
      }
      float* row = ssum + label[q] * p.c;
#pragma unroll
      for (int e = 0; e < kV; ++e)
        if (lane + 32 * e < p.c) atomicAdd(row + lane + 32 * e, xv[q][e]);
    }
  }
  __syncthreads();
  // A zero sum adds nothing (clusters absent from the slice are common in per-image mode).
  float* sums = p.sums + b * kc;
  for (int e = threadIdx.x; e < kc; e += kThreads)
    if (ssum[e] != 0.f) atomicAdd(sums + e, ssum[e]);
  for (int j = threadIdx.x; j < p.k; j += kThreads)
    if (scount[j] != 0u) atomicAdd(p.counts + b * p.k + j, static_cast<unsigned long long>(scount[j]));
}

// Values per lane for C channels (a power of two, at least 8), or 0 when C is too wide.
inline int onepass_values(int64_t c) {
  int v = 8;
  while (v < kOnePassMaxValues && 32 * int64_t{v} < c) v *= 2;
  return 32 * int64_t{v} >= c ? v : 0;
}

template <typename T, int kV>
void launch_onepass(const OnePass<T>& p, int64_t blocks, size_t smem, cudaStream_t stream) {
  // Two points per warp at a time: each shared centroid load feeds two FMAs. ptxas (sm_90):
  // 61 / 107 / 128 / 254 registers for kV = 8 / 16 / 32 / 64, no spills; at kV = 64 that is
  // one block per SM, as the shared memory of k = 8 centroids of 2048 channels is anyway.
  constexpr int kP = 2;
  auto* kernel = onepass_kernel<T, kV, kP>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem)));
  kernel<<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}


}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> step_cuda(const at::Tensor& x_in,
                                                                     const at::Tensor& centroids_in) {
  check_args(x_in, centroids_in);
  TORCH_CHECK(x_in.is_cuda(), "x: expected a CUDA tensor, got device ", x_in.device());
  const int64_t batch = x_in.size(0), n = x_in.size(1), c = x_in.size(2),
                k = centroids_in.size(1);
  // int channel and centroid loops (stepping by kChunk / kGroup) and a 1-D grid.
  constexpr int64_t kLoopMax = int64_t{1} << 30;
  const int64_t tiles = (n + kTilePoints - 1) / kTilePoints;
  const int64_t norm_blocks = (batch * k + kWarps - 1) / kWarps;
  TORCH_CHECK(c <= kLoopMax && k <= kLoopMax && batch * tiles <= std::numeric_limits<int>::max() &&
                  norm_blocks <= std::numeric_limits<int>::max(),
              "kmeans_step (CUDA): x of shape ", x_in.sizes(), " with ", k,
              " centroids is too large for the CUDA kernel");
  const at::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.detach().contiguous();
  const at::Tensor centroids = centroids_in.detach().contiguous();
  const auto options = centroids.options();
  const auto stream = at::cuda::getCurrentCUDAStream();
  at::Tensor labels = at::empty({batch, n}, options.dtype(at::kLong));
  at::Tensor distances = at::empty({batch, n}, options);
  at::Tensor sums = at::zeros({batch, k, c}, options);
  at::Tensor counts = at::zeros({batch, k}, options.dtype(at::kLong));
  // The fields both kernels' parameter structs share.
  const auto set_common = [&](auto& p) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(p.x)>>;
    p.x = static_cast<const T*>(x.const_data_ptr());
    p.centroids = centroids.const_data_ptr<float>();
    p.labels = labels.mutable_data_ptr<int64_t>();
    p.distances = distances.mutable_data_ptr<float>();
    p.sums = sums.mutable_data_ptr<float>();
    p.counts = reinterpret_cast<unsigned long long*>(counts.mutable_data_ptr<int64_t>());
    p.n = n;
    p.c = static_cast<int>(c);
    p.k = static_cast<int>(k);
  };

  const int values = onepass_values(c);
  const size_t smem = onepass_smem_bytes(k, c);
  // PYCLR_KMEANS_TWO_PASS=1 forces the two-pass kernel (benchmarks compare the two; tests
  // run both on the same shapes).
  const char* force = std::getenv("PYCLR_KMEANS_TWO_PASS");
  const bool two_pass = force != nullptr && force[0] == '1';
  const int device = c10::cuda::current_device();
  int smem_optin = 0, smem_per_sm = 0;
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
  if (!two_pass && values > 0 && smem <= std::min<size_t>(kOnePassSmemLimit, smem_optin)) {
    // One wave: as many blocks as fit on the GPU at once, split evenly among the problems,
    // with at least kMinSlice points each (each block ends with k * C atomics).
    constexpr int64_t kMinSlice = 64;
    int sms = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    // blocks resident per SM (1 KB of each block's shared memory is the system's)
    const int64_t per_sm = std::clamp<int64_t>(int64_t{smem_per_sm} / int64_t(smem + 1024), 1, 2);
    const int64_t target = int64_t(sms) * per_sm;
    const int64_t slices = std::clamp<int64_t>((target + batch - 1) / batch, 1,
                                               (n + kMinSlice - 1) / kMinSlice);
    const int64_t slice_points = (n + slices - 1) / slices;
    const int64_t blocks = batch * ((n + slice_points - 1) / slice_points);
    TORCH_CHECK(blocks <= std::numeric_limits<int>::max(), "kmeans_step (CUDA): x of shape ",
                x_in.sizes(), " is too large for the CUDA kernel");
    dispatch_float_types(x.scalar_type(), "kmeans_step", [&](auto tag) {
      using T = typename decltype(tag)::type;
      OnePass<T> p{};
      set_common(p);
      p.slices = static_cast<int>(blocks / batch);
      p.slice_points = slice_points;
      switch (values) {
        case 8: return launch_onepass<T, 8>(p, blocks, smem, stream);
        case 16: return launch_onepass<T, 16>(p, blocks, smem, stream);
        case 32: return launch_onepass<T, 32>(p, blocks, smem, stream);
        default: return launch_onepass<T, 64>(p, blocks, smem, stream);
      }
    });
    return {labels, distances, sums, counts};
  }

  at::Tensor cnorm = at::empty({batch, k}, options);
  centroid_norms_kernel<<<static_cast<unsigned>(norm_blocks), kThreads, 0, stream>>>(
      centroids.const_data_ptr<float>(), batch * k, static_cast<int>(c),
      cnorm.mutable_data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  dispatch_float_types(x.scalar_type(), "kmeans_step", [&](auto tag) {
    using T = typename decltype(tag)::type;
    Problem<T> p{};
    set_common(p);
    p.cnorm = cnorm.const_data_ptr<float>();
    p.tiles_per_problem = tiles;
    step_kernel<T><<<static_cast<unsigned>(batch * tiles), kThreads, 0, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {labels, distances, sums, counts};
}

}  // namespace pyclr::kmeans

TORCH_LIBRARY_IMPL(pyclr, CUDA, m) { m.impl("kmeans_step", &pyclr::kmeans::step_cuda); }
