// nvcuda::wmma for the CPU emulation (pyclr_emu.h). Every lane holds the whole tile of a
// fragment, element (r, c) at x[r * cols + c], so code that treats fragment elements one by one
// (the only kind the API allows: their placement across lanes is unspecified) works unchanged.
// mma_sync is computed once per warp (pyclr_emu::warp_collective), and fails the launch when
// the lanes' copies of an operand differ. Loads read the whole tile in every lane; stores split the tile's elements among the 32 lanes,
// so that a lane reading what others stored needs a __syncwarp, as on the device. mma_sync
// multiplies in fp32: the products of 16-bit and tf32 operands are exact there, and tf32
// operands are truncated to their 10 stored mantissa bits as the tensor cores do, whether or not
// the code rounded them with __float_to_tf32 first. The sums run in k order, which the tensor
// cores do not promise: the last bits of a sum may differ from the device's.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "pyclr_emu.h"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  using element_type = std::conditional_t<std::is_same_v<T, precision::tf32>, float, T>;
  static constexpr bool is_tf32 = std::is_same_v<T, precision::tf32>;
  static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
  static constexpr int num_elements = rows * cols;
  element_type x[num_elements];
};

namespace detail {

inline float value(float v) { return v; }
inline float value(__half v) { return __half2float(v); }
inline float value(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename E>
E element(float v) {
  if constexpr (std::is_same_v<E, __half>) {
    return __float2half_rn(v);
  } else if constexpr (std::is_same_v<E, __nv_bfloat16>) {
    return __float2bfloat16_rn(v);
  } else {
    return v;
  }
}

// What the tensor cores read of a tf32 operand: the top 19 bits.
inline float tf32_operand(float v) {
  return std::bit_cast<float>(std::bit_cast<uint32_t>(v) & 0xffffe000u);
}

}  // namespace detail

// cvt.rna.tf32.f32: round to 10 mantissa bits, ties away from zero.
inline float __float_to_tf32(float v) {
  if (!std::isfinite(v)) return v;
  return std::bit_cast<float>((std::bit_cast<uint32_t>(v) + 0x1000u) & 0xffffe000u);
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& v) {
  using E = typename fragment<Use, M, N, K, T, Layout>::element_type;
  for (auto& e : f.x) e = detail::element<E>(static_cast<float>(detail::value(v)));
}

// matrix_a / matrix_b: the layout is the fragment's.
template <typename Use, int M, int N, int K, typename T, typename Layout, typename P>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  using F = fragment<Use, M, N, K, T, Layout>;
  static_assert(std::is_same_v<Layout, row_major> || std::is_same_v<Layout, col_major>,
                "matrix_a and matrix_b fragments carry their layout");
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] =
          std::is_same_v<Layout, row_major> ? p[r * ldm + c] : p[c * ldm + r];
}

template <int M, int N, int K, typename T, typename P>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const P* p, unsigned ldm,
                      layout_t layout) {
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      f.x[r * N + c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}

template <int M, int N, int K, typename T, typename P>
void store_matrix_sync(P* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm,
                       layout_t layout) {
  const unsigned lane = pyclr_emu::state().lane;
  for (int e = static_cast<int>(lane); e < M * N; e += 32) {
    const int r = e / N, c = e % N;
    (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[e];
  }
}

// d = a b + c; d may be c.
template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB, typename TC>
void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TB, LB>& b,
              const fragment<accumulator, M, N, K, TC>& c) {
  static_assert(std::is_same_v<TA, TB>, "operands of one precision");
  constexpr bool tf32 = std::is_same_v<TA, precision::tf32>;
  const auto operand = [](auto v) {
    const float f = detail::value(v);
    return tf32 ? detail::tf32_operand(f) : f;
  };
  struct Operands {
    decltype(a.x) ax;
    decltype(b.x) bx;
    decltype(c.x) cx;
  } in;
  std::memcpy(in.ax, a.x, sizeof(a.x));
  std::memcpy(in.bx, b.x, sizeof(b.x));
  std::memcpy(in.cx, c.x, sizeof(c.x));
  float out[M * N];
  pyclr_emu::warp_collective("mma_sync", &in, sizeof(in), out, sizeof(out), [&](void* result) {
    float af[M * K], bf[K * N];
    for (int e = 0; e < M * K; ++e) af[e] = operand(in.ax[e]);
    for (int e = 0; e < K * N; ++e) bf[e] = operand(in.bx[e]);
    auto* o = static_cast<float*>(result);
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        float acc = in.cx[i * N + j];
        for (int k = 0; k < K; ++k) acc += af[i * K + k] * bf[k * N + j];
        o[i * N + j] = acc;
      }
  });
  std::memcpy(d.x, out, sizeof(out));
}

}  // namespace nvcuda::wmma
