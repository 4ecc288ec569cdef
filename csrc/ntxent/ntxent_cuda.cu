// NT-Xent forward and backward on CUDA; the mathematical contract is in ntxent.h.
//
// Fused: the M x M score matrix S = Z Z^T / tau is recomputed tile by tile on tensor cores and
// never stored. A block owns kBM = 64 rows (4 warps x 16 rows, always inside one view) and
// sweeps column tiles of kBN = 64. For each column tile it stages both operand tiles in shared
// memory one d-chunk (kDC elements) at a time, each warp multiplies its 16 rows into a 16 x 64
// fp32 strip of S, and then works on that strip alone:
//   forward:  fold the strip into a per-row online log-sum-exp (running max and sum);
//   backward: turn the strip into coefficients C_jk = w_j P_jk + w_k P_kj and accumulate
//             G_j += sum_k C_jk z_k for its rows over one d-chunk of the gradient; the
//             positive's coefficient is applied exactly (what rounding C_jp(j) to the
//             operand type lost, plus -(w_j + w_p(j)), multiplies z_p(j) in fp32).
// A warp only reads back the strip it wrote, so strip work needs only __syncwarp;
// __syncthreads guards the operand tiles that the four warps share.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>
#include <torch/version.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "../common/cuda_dispatch.cuh"
#include "ntxent.h"

// bf16 and tf32 wmma need sm_80; older targets get a trapping stub (the host refuses them).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define PYCLR_NTXENT_HAS_MMA 1
#else
#define PYCLR_NTXENT_HAS_MMA 0
#endif

namespace pyclr::ntxent {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBM = 16 * kWarps;  // rows per block: one 16-row strip per warp
constexpr int kBN = 64;           // columns per S tile: four 16-wide wmma tiles
constexpr int kDC = 128;          // d-chunk staged at a time; also the gradient's d-chunk
constexpr int kLds = kBN + 4;     // S strip row stride (floats): +4 shifts each row by 4 banks
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
// The row tile's operand stays staged for the whole sweep (one slot per d-chunk) while the
// block fits in this much shared memory; beyond it, it is re-staged for every column tile.
constexpr size_t kResidentSmemLimit = 100 * 1024;

static_assert(kBM == kBN, "row and column operand tiles share one layout");

// Forward blocks resident per SM as shared memory allows for d <= kDC on H100 (fp32 tiles are
// twice the size). Declaring it lets ptxas use the registers that leaves: by default it caps
// the fp32 forward at 96 and spills.
template <typename T>
constexpr int kForwardBlocksPerSm = sizeof(T) == 4 ? 2 : 4;

// Dynamic shared memory of one block: q_slots row-operand tiles, one column-operand tile, the
// four warps' S strips and (backward) the column tile's w and lse. Regions stay 128-byte aligned.
template <typename T>
struct Layout {
  // Operand tiles: kBM rows x kDC elements, rows padded by 16 bytes (4 banks) so that the
  // eight rows a wmma load touches fall in different banks.
  static constexpr int kLdt = kDC + 16 / int(sizeof(T));
  // The backward overwrites each S strip row in place with its coefficients in T.
  static constexpr int kLdc = kLds * int(sizeof(float) / sizeof(T));
  static constexpr size_t kTileBytes = sizeof(T) * kBM * kLdt;
  static constexpr size_t kStripsBytes = sizeof(float) * kBM * kLds;
  static constexpr size_t kColumnBytes = sizeof(float) * 2 * kBN;

  static size_t bytes(int q_slots) {
    return (q_slots + 1) * kTileBytes + kStripsBytes + kColumnBytes;
  }
  static_assert(kTileBytes % 128 == 0 && kStripsBytes % 128 == 0, "regions stay aligned");
};

struct Span {
  int begin, end;
};

template <typename T>
struct Problem {
  const T* z;          // (2n, d), contiguous
  int n;               // rows per view
  int d;
  int offset, count;   // anchors: [offset, offset + count) in each view
  bool cross;          // negatives == kCross
  bool exclude_self;   // negatives == kAll: the diagonal is masked
  bool positive;       // loss subtracts the positive's score (all modes but kSelf)
  float scale_log2;    // log2(e) / tau: a raw dot product times this is a base-2 logit
  float inv_tau;
  int tiles_per_view;  // row tiles per view (gridDim.x = 2 * tiles_per_view)
  int chunks;          // ceil(d / kDC)
  bool q_resident;     // every d-chunk of the row tile stays staged for the whole sweep
  bool vec_ok;         // rows start 16-byte aligned, so operands load as 16-byte vectors

  __host__ __device__ int q_slots() const { return q_resident ? chunks : 1; }
};

// Columns [c * kDC, c * kDC + width) of chunk c, width rounded up to 16 so the MMAs can step
// over it; the staged tile is zero beyond d.
__host__ __device__ inline int chunk_width(int c, int d) {
  const int w = d - c * kDC < kDC ? d - c * kDC : kDC;
  return (w + 15) & ~15;
}

__host__ __device__ inline int partner(int row, int n) { return row < n ? row + n : row - n; }

#if PYCLR_NTXENT_HAS_MMA

// How each input dtype meets the tensor cores. 16-bit types are m16n16k16 operands as they are.
// fp32 is staged as is and split when a fragment is loaded (see Operand): tf32 (m16n16k8)
// alone keeps 11 significant bits, far from the fp32 accuracy callers expect unless they
// allowed TF32 for fp32 matrix products, as torch.mm reads it (fp32_tf32_allowed, with_split).
// Products accumulate in fp32.
template <typename T>
struct Mma;

template <>
struct Mma<__half> {
  using Precision = __half;
  static constexpr int kK = 16;
  __device__ static __half operand(float x) { return __float2half_rn(x); }
  __device__ static __half output(float x) { return __float2half_rn(x); }
  __device__ static float value(__half x) { return __half2float(x); }
};

template <>
struct Mma<__nv_bfloat16> {
  using Precision = __nv_bfloat16;
  static constexpr int kK = 16;
  __device__ static __nv_bfloat16 operand(float x) { return __float2bfloat16_rn(x); }
  __device__ static __nv_bfloat16 output(float x) { return __float2bfloat16_rn(x); }
  __device__ static float value(__nv_bfloat16 x) { return __bfloat162float(x); }
};

template <>
struct Mma<float> {
  using Precision = wmma::precision::tf32;
  static constexpr int kK = 8;
  __device__ static float operand(float x) { return x; }
  __device__ static float output(float x) { return x; }
  __device__ static float value(float x) { return x; }
};

template <typename T>
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, Mma<T>::kK, typename Mma<T>::Precision,
                             wmma::row_major>;
// K^T for S = Q K^T: the row-major K tile read as a column-major B operand.
template <typename T>
using FragBt = wmma::fragment<wmma::matrix_b, 16, 16, Mma<T>::kK, typename Mma<T>::Precision,
                              wmma::col_major>;
template <typename T>
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, Mma<T>::kK, typename Mma<T>::Precision,
                             wmma::row_major>;
template <typename T>
using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, Mma<T>::kK, float>;

// A loaded MMA operand. With kSplit (fp32 only) it is split 3xTF32-style into a tf32 head and
// the tf32 rounding of the remainder, and a product takes three MMAs (head*head + head*tail +
// tail*head, dropping tail*tail): about 22 significant bits instead of tf32's 11. Without it,
// fp32 operands are rounded to tf32 and a product is one MMA. 16-bit operands are exact and use
// `head` alone. The kernels are compiled for each kSplit their type takes (see with_split).
template <bool kSplit, typename T, typename Frag>
struct Operand {
  Frag head, tail;

  __device__ void load(const T* p, int ldm) {
    wmma::load_matrix_sync(head, p, ldm);
    if constexpr (std::is_same_v<T, float>) {
      for (int i = 0; i < head.num_elements; ++i) {
        const float x = head.x[i];
        head.x[i] = wmma::__float_to_tf32(x);
        if constexpr (kSplit) tail.x[i] = wmma::__float_to_tf32(x - head.x[i]);
      }
    }
  }
};

template <bool kSplit, typename T, typename FragA, typename FragB>
__device__ void mma(FragAcc<T>& acc, const Operand<kSplit, T, FragA>& a,
                    const Operand<kSplit, T, FragB>& b) {
  if constexpr (kSplit) {
    wmma::mma_sync(acc, a.tail, b.head, acc);  // the small terms first
    wmma::mma_sync(acc, a.head, b.tail, acc);
  }
  wmma::mma_sync(acc, a.head, b.head, acc);
}

template <typename T>
struct Smem {
  T* q;             // q_slots row-operand tiles
  T* k;             // the column-operand tile
  float* strips;    // S tile, one 16 x kLds strip per warp
  float* col_w;     // backward: w of the column tile's rows (0 outside the sweep)
  float* col_lse;   // backward: their base-2 lse (+inf outside the sweep)

  __device__ Smem(unsigned char* base, int q_slots) {
    q = reinterpret_cast<T*>(base);
    k = q + q_slots * kBM * Layout<T>::kLdt;
    strips = reinterpret_cast<float*>(k + kBN * Layout<T>::kLdt);
    col_w = strips + kBM * kLds;
    col_lse = col_w + kBN;
  }
  __device__ float* strip(int warp) const { return strips + warp * 16 * kLds; }
};

// A lane's share of its warp's 16-row strip: row r, the interleaved half h of the columns
// (h, h + 2, ...), visited in an order rotated by rot so that the 32 lanes of a warp read
// 32 different banks (rows r and r + 8 would otherwise collide, the row stride being 4 banks).
struct StripLane {
  int warp, lane, r, h, rot;
  int row;  // global row

  __device__ explicit StripLane(int row0)
      : warp(threadIdx.x / 32), lane(threadIdx.x % 32), r(lane / 2), h(lane % 2),
        rot(r / 8), row(row0 + warp * 16 + r) {}
  __device__ int column(int j) const { return h + 2 * ((j + rot) % (kBN / 2)); }
};

__device__ inline float warp_sum(float x) {
  for (int s = 16; s > 0; s /= 2) x += __shfl_xor_sync(0xffffffffu, x, s);
  return x;
}

template <typename T>
__device__ bool has_anchor(const Problem<T>& p, int lo, int hi) {
  const auto meets = [&](int first) { return lo < first + p.count && first < hi; };
  return meets(p.offset) || meets(p.n + p.offset);
}

template <typename T>
__device__ Span column_span(const Problem<T>& p, int view) {
  if (!p.cross) return {0, 2 * p.n};
  const int begin = (1 - view) * p.n;
  return {begin, begin + p.n};
}

// The common case of stage_tile: a whole kDC-wide chunk inside d, aligned. Every thread
// issues kBatch 16-byte loads before it stores any, to keep loads in flight.
template <typename T>
__device__ void stage_full_chunk(T* tile, const T* z, int d, int row0, int row_end, int d0) {
  constexpr int kVec = 16 / int(sizeof(T));
  constexpr int kPerRow = kDC / kVec;
  constexpr int kIters = kBM * kPerRow / kThreads;
  constexpr int kBatch = 8;
  static_assert(kThreads % kPerRow == 0 && kIters % kBatch == 0, "tile splits evenly");
  const int c = (threadIdx.x % kPerRow) * kVec;
#pragma unroll
  for (int b = 0; b < kIters; b += kBatch) {
    uint4 raw[kBatch];
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int row = row0 + (threadIdx.x + (b + i) * kThreads) / kPerRow;
      raw[i] = row < row_end
                   ? __ldg(reinterpret_cast<const uint4*>(z + int64_t(row) * d + d0 + c))
                   : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int r = (threadIdx.x + (b + i) * kThreads) / kPerRow;
      *reinterpret_cast<uint4*>(tile + r * Layout<T>::kLdt + c) = raw[i];
    }
  }
}

// Stages rows [row0, row0 + kBM) x features [d0, d0 + width) of z into a shared tile.
// Rows >= row_end and features >= d are staged as zero: zero padding changes no dot product.
// Callers synchronise.
template <typename T>
__device__ void stage_tile(T* tile, const Problem<T>& p, int row0, int row_end, int d0,
                           int width) {
  if (p.vec_ok && d0 + kDC <= p.d) {
    stage_full_chunk(tile, p.z, p.d, row0, row_end, d0);
    return;
  }
  constexpr int kVec = 16 / int(sizeof(T));
  const int per_row = width / kVec;
  for (int i = threadIdx.x; i < kBM * per_row; i += kThreads) {
    const int r = i / per_row;
    const int c = (i - r * per_row) * kVec;
    const int row = row0 + r;
    T* dst = tile + r * Layout<T>::kLdt + c;
    const T* src = p.z + int64_t(row) * p.d + d0 + c;
    if (row < row_end && p.vec_ok && d0 + c < p.d) {  // d % kVec == 0: whole vector inside
      *reinterpret_cast<uint4*>(dst) = __ldg(reinterpret_cast<const uint4*>(src));
      continue;
    }
    for (int e = 0; e < kVec; ++e) {
      const bool inside = row < row_end && d0 + c + e < p.d;
      dst[e] = inside ? src[e] : Mma<T>::operand(0.f);
    }
  }
}

template <typename T>
__device__ void stage_resident_q(const Smem<T>& sm, const Problem<T>& p, int row0, int row_end) {
  if (!p.q_resident) return;
  for (int c = 0; c < p.chunks; ++c)
    stage_tile(sm.q + c * kBM * Layout<T>::kLdt, p, row0, row_end, c * kDC, chunk_width(c, p.d));
}

// acc[t] += Q_w K_t^T over one staged chunk: Q_w is the warp's 16 rows of the row tile,
// K_t rows [16 t, 16 t + 16) of the column tile.
template <bool kSplit, typename T>
__device__ void mma_scores(FragAcc<T> (&acc)[kBN / 16], const T* q_w, const T* k, int width) {
  for (int kk = 0; kk < width; kk += Mma<T>::kK) {
    Operand<kSplit, T, FragA<T>> a;
    a.load(q_w + kk, Layout<T>::kLdt);
#pragma unroll
    for (int t = 0; t < kBN / 16; ++t) {
      Operand<kSplit, T, FragBt<T>> b;
      b.load(k + t * 16 * Layout<T>::kLdt + kk, Layout<T>::kLdt);
      mma(acc[t], a, b);
    }
  }
}

// acc = raw dot products of the warp's 16 rows with columns [col0, col0 + kBN) over all of d.
// Chunks are visited so that chunk `last` comes last: its column tile is still staged on
// return (the backward multiplies it by C). `at_first_sync` runs right after the first
// __syncthreads, once every warp is done with the previous column tile.
template <bool kSplit, typename T, typename F>
__device__ void compute_scores(FragAcc<T> (&acc)[kBN / 16], const Smem<T>& sm,
                               const Problem<T>& p, int row0, int row_end, int col0,
                               int col_end, int last, F&& at_first_sync) {
  for (auto& a : acc) wmma::fill_fragment(a, 0.f);
  const int warp = threadIdx.x / 32;
  for (int i = 1; i <= p.chunks; ++i) {
    const int c = (last + i) % p.chunks;
    const int width = chunk_width(c, p.d);
    __syncthreads();  // every warp is done reading the tiles about to be overwritten
    if (i == 1) at_first_sync();
    const T* q = sm.q;
    if (p.q_resident) {
      q += c * kBM * Layout<T>::kLdt;
    } else {
      stage_tile(sm.q, p, row0, row_end, c * kDC, width);
    }
    stage_tile(sm.k, p, col0, col_end, c * kDC, width);
    __syncthreads();  // staged tiles visible to every warp
    mma_scores<kSplit>(acc, q + warp * 16 * Layout<T>::kLdt, sm.k, width);
  }
}

template <typename T>
__device__ void store_strip(float* strip, const FragAcc<T> (&acc)[kBN / 16]) {
#pragma unroll
  for (int t = 0; t < kBN / 16; ++t)
    wmma::store_matrix_sync(strip + t * 16, acc[t], kLds, wmma::mem_row_major);
  __syncwarp();  // lanes read entries other lanes stored
}

// Running log-sum-exp of base-2 logits over one lane's half of a row.
struct OnlineLse {
  float m = -INFINITY;   // running max
  float l = 0.f;         // sum of exp2(logit - m)
  float positive = 0.f;  // the positive's base-2 logit, in the one lane of the two that met it
};

// Folds the lane's 32 entries of the strip into its running state. Masked entries are
// excluded by index; while a row has seen no valid entry its state stays (-inf, 0), never
// computing -inf - -inf. A NaN entry makes l NaN (sum of exp2f(NaN - m)), so the lse is NaN.
// The entry at positive_col (-1: none) is kept as it was folded, so that the loss subtracts
// the very value the lse summed: a row whose positive dominates then loses log(1 + the rest)
// >= 0, however large the logits (normalize=False).
__device__ void fold_strip(OnlineLse& st, const float* strip, const StripLane& me, int col0,
                           int col_end, bool exclude_diagonal, int positive_col, float scale_log2) {
  float v[kBN / 2];
  float tile_max = -INFINITY;
#pragma unroll
  for (int j = 0; j < kBN / 2; ++j) {
    const int c = me.column(j);
    const int col = col0 + c;
    const bool valid = col < col_end && !(exclude_diagonal && col == me.row);
    // __fmul_rn: the product rounded, never fused into the exp2f argument's subtraction below,
    // so that v[j] - m <= 0 holds for the values the max was taken over
    v[j] = valid ? __fmul_rn(strip[me.r * kLds + c], scale_log2) : -INFINITY;
    tile_max = fmaxf(tile_max, v[j]);
    st.positive = col == positive_col ? v[j] : st.positive;
  }
  const float m = fmaxf(st.m, tile_max);
  if (m == -INFINITY) {  // every entry so far masked, or NaN (which fmaxf skips)
    bool nan_seen = false;
#pragma unroll
    for (int j = 0; j < kBN / 2; ++j) nan_seen |= v[j] != v[j];
    if (nan_seen) {  // a NaN poisons the row, as on the CPU: l stays NaN from here on
      st.m = 0.f;
      st.l = NAN;
    }
    return;
  }
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < kBN / 2; ++j) sum += exp2f(v[j] - m);
  st.l = st.l * exp2f(st.m - m) + sum;
  st.m = m;
}

// Merges the two halves of each row (lanes 2r and 2r + 1): the natural-log lse and the loss.
// The loss is (m - positive + log2 l) ln2, the difference taken in base 2 before scaling: m is
// the largest folded value and l >= 1 (the largest contributes exp2(0) = 1), so it is >= 0
// exactly, with no cancellation of two large natural-log values (lse - positive ln2, which
// nvcc would also contract into one fma).
struct RowResult {
  float lse, loss;
};
__device__ RowResult finish_row(const OnlineLse& st, bool has_positive) {
  const float m_other = __shfl_xor_sync(0xffffffffu, st.m, 1);
  const float l_other = __shfl_xor_sync(0xffffffffu, st.l, 1);
  const float positive = st.positive + __shfl_xor_sync(0xffffffffu, st.positive, 1);  // one lane met it
  const float m = fmaxf(st.m, m_other);
  if (m == -INFINITY) return {-INFINITY, -INFINITY};
  const float log2_l = log2f(st.l * exp2f(st.m - m) + l_other * exp2f(m_other - m));
  const float lse = (m + log2_l) * kLn2;
  return {lse, has_positive ? ((m - positive) + log2_l) * kLn2 : lse};
}

// Stages w and the base-2 lse of the column tile's rows; rows outside [col0, col_end) get
// w = 0 and lse = +inf, so their terms vanish without producing NaN.
template <typename T>
__device__ void stage_column_terms(const Smem<T>& sm, const float* w, const float* lse, int col0,
                                   int col_end) {
  for (int i = threadIdx.x; i < kBN; i += kThreads) {
    const bool inside = col0 + i < col_end;
    sm.col_w[i] = inside ? w[col0 + i] : 0.f;
    sm.col_lse[i] = inside ? lse[col0 + i] * kLog2e : INFINITY;
  }
}

// Overwrites the lane's entries of the strip with sigma * C_jk in the MMA operand type,
// C_jk = w_j exp(s_jk - lse_j) + w_k exp(s_jk - lse_k), 0 where k is masked for row j, and
// adds to `residual` what rounding lost at the row's positive column (positive_col; -1 for
// none): sigma * C_jp - operand(sigma * C_jp). When the pair is well aligned (P_jp near 1 at
// a small tau) C_jp is about w_j + w_p, nearly cancelled by the positive term -(w_j + w_p):
// rounding it to 16 bits alone would leave an error of the gradient's own size.
// Every lane reads all its scores before any lane writes: a 16-bit C row overlaps the first
// half of its own S row, which the row's other lane also reads.
template <typename T>
__device__ void scores_to_coefficients(float* strip, const StripLane& me, const float* col_w,
                                       const float* col_lse, float w_row, float lse_row,
                                       int col0, int col_end, bool exclude_diagonal,
                                       int positive_col, float scale_log2, float sigma,
                                       float& residual) {
  // C_jk of column c of the tile, unscaled
  // Each exponent is <= 0 in exact arithmetic (a softmax entry): clamped there, so that
  // rounding at huge logits (normalize=False) cannot overflow exp2f; a NaN passes through.
  const auto at_most_0 = [](float e) { return e > 0.f ? 0.f : e; };
  const auto coefficient = [&](int c) {
    const float t = __fmul_rn(strip[me.r * kLds + c], scale_log2);  // rounded as the forward's
    return w_row * exp2f(at_most_0(t - lse_row)) + col_w[c] * exp2f(at_most_0(t - col_lse[c]));
  };
  float coef[kBN / 2];
#pragma unroll
  for (int j = 0; j < kBN / 2; ++j) {
    const int c = me.column(j);
    const int col = col0 + c;
    const bool valid = col < col_end && !(exclude_diagonal && col == me.row);
    coef[j] = valid ? sigma * coefficient(c) : 0.f;
  }
  // The positive (never masked) is in this tile and among this lane's columns (h, h + 2, ...).
  const int pc = positive_col - col0;
  const bool has_positive = pc >= 0 && pc < kBN && (pc & 1) == me.h;
  const float positive = has_positive ? sigma * coefficient(pc) : 0.f;
  __syncwarp();
  T* out = reinterpret_cast<T*>(strip);
#pragma unroll
  for (int j = 0; j < kBN / 2; ++j)
    out[me.r * Layout<T>::kLdc + me.column(j)] = Mma<T>::operand(coef[j]);
  // Against the value stored (this lane's own write): `positive` is computed apart from the
  // loop, and a different FMA contraction could round it to the other side of a 16-bit step.
  if (has_positive) residual += positive - Mma<T>::value(out[me.r * Layout<T>::kLdc + pc]);
  __syncwarp();  // lanes load coefficients other lanes wrote
}

// g[f] += C_w (16 x kBN) * Z (kBN x 16, columns [16 f, 16 f + 16) of the staged chunk).
template <bool kSplit, typename T>
__device__ void mma_gradient(FragAcc<T> (&g)[kDC / 16], const T* c_w, const T* z_tile,
                             int width) {
#pragma unroll
  for (int kk = 0; kk < kBN; kk += Mma<T>::kK) {
    Operand<kSplit, T, FragA<T>> a;
    a.load(c_w + kk, Layout<T>::kLdc);
#pragma unroll
    for (int f = 0; f < kDC / 16; ++f) {
      if (f * 16 < width) {
        Operand<kSplit, T, FragB<T>> b;
        b.load(z_tile + kk * Layout<T>::kLdt + f * 16, Layout<T>::kLdt);
        mma(g[f], a, b);
      }
    }
  }
}

// grad_j = (G_j / sigma - ((w_j + w_p(j)) - residual_j / sigma) z_p(j)) / tau (kSelf: no
// z_p(j) term) for the strip's rows and the chunk's columns, staging each 16 x 16 accumulator
// through the strip. `residual` is the lane's share (see scores_to_coefficients).
template <typename T>
__device__ void write_gradient(const FragAcc<T> (&g)[kDC / 16], float* strip,
                               const StripLane& me, bool row_ok, const Problem<T>& p,
                               const float* w, float w_row, T* grad, int chunk, int width,
                               float inv_sigma, float residual) {
  const int pr = partner(me.row, p.n);
  // The row's positive column fell to one of its two lanes; both need the sum.
  residual += __shfl_xor_sync(0xffffffffu, residual, 1);
  const float positive_coef = row_ok && p.positive ? (w_row + w[pr]) - residual * inv_sigma : 0.f;
#pragma unroll
  for (int f = 0; f < kDC / 16; ++f) {
    if (f * 16 >= width) break;
    wmma::store_matrix_sync(strip, g[f], kLds, wmma::mem_row_major);
    __syncwarp();
    const int col = chunk * kDC + f * 16 + me.h * 8;
    if (row_ok) {
      for (int e = 0; e < 8 && col + e < p.d; ++e) {
        const float zp = Mma<T>::value(p.z[int64_t(pr) * p.d + col + e]);
        const float gj = strip[me.r * kLds + me.h * 8 + e] * inv_sigma - positive_coef * zp;
        grad[int64_t(me.row) * p.d + col + e] = Mma<T>::output(gj * p.inv_tau);
      }
    }
    __syncwarp();  // the next accumulator overwrites the strip
  }
}

#endif  // PYCLR_NTXENT_HAS_MMA

// One block per anchor row tile; writes loss and lse of its anchors.
template <typename T, bool kSplit>
__global__ void __launch_bounds__(kThreads, kForwardBlocksPerSm<T>)
    forward_kernel(Problem<T> p, float* loss, float* lse) {
#if PYCLR_NTXENT_HAS_MMA
  extern __shared__ __align__(128) unsigned char smem[];
  const Smem<T> sm(smem, p.q_slots());
  const int view = blockIdx.x / p.tiles_per_view;
  const int first = (blockIdx.x % p.tiles_per_view) * kBM;  // first anchor, within the view
  const int row0 = view * p.n + p.offset + first;
  const int row_end = view * p.n + p.offset + p.count;
  const Span cols = column_span(p, view);
  const StripLane me(row0);
  float* strip = sm.strip(me.warp);

  stage_resident_q(sm, p, row0, row_end);
  OnlineLse state;
  const int positive_col = p.positive ? partner(me.row, p.n) : -1;  // never masked
  for (int col0 = cols.begin; col0 < cols.end; col0 += kBN) {
    FragAcc<T> acc[kBN / 16];
    compute_scores<kSplit>(acc, sm, p, row0, row_end, col0, cols.end, p.chunks - 1, [] {});
    store_strip<T>(strip, acc);
    fold_strip(state, strip, me, col0, cols.end, p.exclude_self, positive_col, p.scale_log2);
    // The next column tile stores into the strip only after compute_scores' __syncthreads.
  }
  const RowResult row = finish_row(state, p.positive);
  if (me.h == 0 && me.row < row_end) {
    const int a = view * p.count + first + me.warp * 16 + me.r;
    lse[a] = row.lse;
    loss[a] = row.loss;
  }
#else
  __trap();
#endif
}

// One block per (row tile of all M rows, d-chunk of the gradient); writes grad rows
// [row0, row0 + kBM) x that chunk. w and lse are full length (M,) (see backward_cuda).
// A power of two (exact to apply and to undo) near 2^13 / max|grad_loss|: |C_jk| <= 2 max|w|,
// so the scaled coefficients stay below 2^14, far from fp16 overflow, while small ones stay
// clear of fp16 underflow. Read on the device: no host sync in the backward.
__device__ float coefficient_scale(const float* grad_max) {
  const float g = *grad_max;
  if (!(g > 0.f) || isinf(g)) return 1.f;  // zero, inf or nan: unscaled (nan/inf propagate)
  const int e = static_cast<int>(fminf(fmaxf(floorf(log2f(8192.f / g)), -126.f), 126.f));
  return __int_as_float((e + 127) << 23);  // 2^e exactly (a normal float for |e| <= 126)
}

template <typename T, bool kSplit>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(Problem<T> p, const float* w, const float* lse, T* grad, const float* grad_max) {
#if PYCLR_NTXENT_HAS_MMA
  const float sigma = coefficient_scale(grad_max), inv_sigma = 1.f / sigma;
  extern __shared__ __align__(128) unsigned char smem[];
  const Smem<T> sm(smem, p.q_slots());
  const int view = blockIdx.x / p.tiles_per_view;
  const int row0 = view * p.n + (blockIdx.x % p.tiles_per_view) * kBM;
  const int row_end = (view + 1) * p.n;
  const int chunk = blockIdx.y;
  const int width = chunk_width(chunk, p.d);
  const Span cols = column_span(p, view);
  const StripLane me(row0);
  float* strip = sm.strip(me.warp);
  const bool row_ok = me.row < row_end;
  const float w_row = row_ok ? w[me.row] : 0.f;
  const float lse_row = row_ok ? lse[me.row] * kLog2e : INFINITY;
  const bool rows_have_anchor = has_anchor(p, row0, min(row0 + kBM, row_end));
  const int positive_col = row_ok && p.positive ? partner(me.row, p.n) : -1;
  float residual = 0.f;  // see scores_to_coefficients

  stage_resident_q(sm, p, row0, row_end);
  FragAcc<T> g[kDC / 16];
  for (auto& f : g) wmma::fill_fragment(f, 0.f);
  for (int col0 = cols.begin; col0 < cols.end; col0 += kBN) {
    // With no anchor among the rows or the columns, w_j = w_k = 0 and C vanishes.
    if (!rows_have_anchor && !has_anchor(p, col0, min(col0 + kBN, cols.end))) continue;
    FragAcc<T> acc[kBN / 16];
    compute_scores<kSplit>(acc, sm, p, row0, row_end, col0, cols.end, chunk,
                   [&] { stage_column_terms(sm, w, lse, col0, cols.end); });
    store_strip<T>(strip, acc);
    scores_to_coefficients<T>(strip, me, sm.col_w, sm.col_lse, w_row, lse_row, col0, cols.end,
                              p.exclude_self, positive_col, p.scale_log2, sigma, residual);
    // sm.k still holds this column tile's chunk `chunk`: exactly the rows z_k to multiply.
    mma_gradient<kSplit>(g, reinterpret_cast<const T*>(strip), sm.k, width);
  }
  __syncwarp();  // the last coefficient loads are done before the strip is reused
  write_gradient(g, strip, me, row_ok, p, w, w_row, grad, chunk, width, inv_sigma, residual);
#else
  __trap();
#endif
}

// ---------------------------------------------------------------------------------------------
// Host side


void check_cuda_input(const at::Tensor& z) {
  TORCH_CHECK(z.is_cuda(), "z: expected a CUDA tensor, got device ", z.device());
  TORCH_CHECK(z.size(0) <= (int64_t{1} << 30) && z.size(1) <= int64_t{65535} * kDC,
              "z: shape ", z.sizes(), " is too large for the CUDA kernel");
}

// Whether fp32 matrix products may use TF32, read as torch.mm reads it (torch 2.10+:
// torch.backends.cuda.matmul.fp32_precision == "tf32", which
// torch.set_float32_matmul_precision("high") sets; older: allow_tf32). Off by default.
bool fp32_tf32_allowed() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 10)
  return at::globalContext().float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL) ==
         at::Float32Precision::TF32;
#elif TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR == 9
  return at::globalContext().float32Precision("cuda", "matmul") == "tf32";
#else
  return at::globalContext().allowTF32CuBLAS();
#endif
}

template <typename T>
Problem<T> make_problem(const at::Tensor& z, double temperature, int64_t negatives,
                        int64_t offset, int64_t count, int64_t rows_per_view) {
  const int device = c10::cuda::current_device();
  int major = 0, smem_optin = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  TORCH_CHECK(major >= 8, "nt_xent (CUDA): needs compute capability 8.0 or newer, got ", major,
              ".x");
  Problem<T> p{};
  p.z = static_cast<const T*>(z.const_data_ptr());
  p.n = static_cast<int>(z.size(0) / 2);
  p.d = static_cast<int>(z.size(1));
  p.offset = static_cast<int>(offset);
  p.count = static_cast<int>(count);
  p.cross = negatives == kCross;
  p.exclude_self = negatives == kAll;
  p.positive = has_positive(negatives);
  p.scale_log2 = static_cast<float>(1.4426950408889634 / temperature);
  p.inv_tau = static_cast<float>(1.0 / temperature);
  p.tiles_per_view = static_cast<int>((rows_per_view + kBM - 1) / kBM);
  p.chunks = (p.d + kDC - 1) / kDC;
  p.vec_ok = reinterpret_cast<uintptr_t>(p.z) % 16 == 0 && (p.d * sizeof(T)) % 16 == 0;
  const size_t limit = std::min<size_t>(kResidentSmemLimit, smem_optin);
  p.q_resident = Layout<T>::bytes(p.chunks) <= limit;
  return p;
}

// Calls f(std::bool_constant<kSplit>{}) with the products fp32 inputs get: 3xTF32 unless TF32
// is allowed. 16-bit inputs have one kernel (kSplit false).
template <typename T, typename F>
void with_split(F&& f) {
  if constexpr (std::is_same_v<T, float>) {
    if (!fp32_tf32_allowed()) return f(std::true_type{});
  }
  f(std::false_type{});
}

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, size_t smem, Args&&... args) {
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem)));
  kernel<<<grid, kThreads, smem, at::cuda::getCurrentCUDAStream()>>>(
      std::forward<Args>(args)...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& z_in, double temperature,
                                                int64_t negatives, int64_t offset,
                                                int64_t count) {
  check_args(z_in, temperature, negatives, offset, count);
  check_cuda_input(z_in);
  const at::cuda::CUDAGuard guard(z_in.device());
  const at::Tensor z = z_in.contiguous();
  const auto options = z.options().dtype(at::kFloat);
  at::Tensor loss = at::empty({2 * count}, options);
  at::Tensor lse = at::empty({2 * count}, options);
  dispatch_float_types(z.scalar_type(), "nt_xent", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Problem<T> p = make_problem<T>(z, temperature, negatives, offset, count, count);
    with_split<T>([&](auto split) {
      launch(forward_kernel<T, decltype(split)::value>, dim3(2 * p.tiles_per_view),
             Layout<T>::bytes(p.q_slots()), p, loss.mutable_data_ptr<float>(),
             lse.mutable_data_ptr<float>());
    });
  });
  return {loss, lse};
}

at::Tensor backward_cuda(const at::Tensor& grad_loss, const at::Tensor& z_in,
                         const at::Tensor& lse, double temperature, int64_t negatives,
                         int64_t offset, int64_t count) {
  check_backward_args(grad_loss, z_in, lse, temperature, negatives, offset, count);
  check_cuda_input(z_in);
  const at::cuda::CUDAGuard guard(z_in.device());
  const at::Tensor z = z_in.contiguous();
  const int64_t n = z.size(0) / 2;

  // max|grad_loss| stays on the device (the kernel derives its coefficient scale from it):
  // reading it here would stop the host until the forward pass has run
  const at::Tensor grad_max = grad_loss.abs().amax().to(at::kFloat);

  // Full-length per-row terms: anchors carry their grad_loss and lse, every other row has
  // w = 0 and lse = +inf, so exp(s - lse) is exactly 0 there and 0 * finite never makes NaN.
  const auto options = z.options().dtype(at::kFloat);
  at::Tensor w = at::zeros({2 * n}, options);
  at::Tensor lse_full = at::full({2 * n}, INFINITY, options);
  for (int64_t view = 0; view < 2; ++view) {
    w.narrow(0, view * n + offset, count).copy_(grad_loss.narrow(0, view * count, count));
    lse_full.narrow(0, view * n + offset, count).copy_(lse.narrow(0, view * count, count));
  }

  at::Tensor grad = at::empty(z.sizes(), z.options());
  dispatch_float_types(z.scalar_type(), "nt_xent", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Problem<T> p = make_problem<T>(z, temperature, negatives, offset, count, n);
    with_split<T>([&](auto split) {
      launch(backward_kernel<T, decltype(split)::value>, dim3(2 * p.tiles_per_view, p.chunks),
             Layout<T>::bytes(p.q_slots()), p, w.const_data_ptr<float>(),
             lse_full.const_data_ptr<float>(), static_cast<T*>(grad.mutable_data_ptr()),
             grad_max.const_data_ptr<float>());
    });
  });
  return grad;
}

}  // namespace pyclr::ntxent

namespace pyclr {

// {CUDART_VERSION, every architecture this file was compiled for}.
std::vector<int64_t> cuda_build_info() { return {CUDART_VERSION, __CUDA_ARCH_LIST__}; }

}  // namespace pyclr

TORCH_LIBRARY_IMPL(pyclr, CUDA, m) {
  m.impl("nt_xent_forward", &pyclr::ntxent::forward_cuda);
  m.impl("nt_xent_backward", &pyclr::ntxent::backward_cuda);
}
