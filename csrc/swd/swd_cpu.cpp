// Squared sliced 2-Wasserstein distance on the CPU (contract: swd.h). Both projections are one
// matrix product each, computed transposed, (L, M), so that every projection is a contiguous
// row; at::parallel_for then hands out projections: each task ranks its data row (sorting it
// with the row indices) and its prior row, and scatters the differences of equal ranks into the
// residual's row. Per-projection sums of squares are added up in order after the parallel
// region, so the loss does not depend on the number of threads.
//
// fp32 projections are sorted with an LSD radix sort on their bits: linear in M, and the forward
// at M = 4096, L = 128 took under a third of the time it took with std::sort. float64, which
// only gradcheck uses, keeps std::sort.
// Extra memory: O(M L) for the two projections and the residual, O(M) per thread.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include "swd.h"

namespace pyclr::swd {
namespace {

// Projections handed to one task at least, in elements: below this, threads cost more than
// the sort they would share.
constexpr int64_t kMinTaskElements = 16384;

// --- fp32: LSD radix sort ---------------------------------------------------------------------

constexpr int kDigitBits = 8;
constexpr int kBuckets = 1 << kDigitBits;
constexpr int kPasses = 32 / kDigitBits;

// An unsigned integer with the order of the float (IEEE 754): a negative float has every bit
// flipped, a positive one only its sign bit. Every NaN, whatever its sign bit, takes the
// largest key (it reads back as a positive NaN), so NaNs sort last as in torch.sort: a NaN
// with the sign bit set (x86's inf - inf in h @ W) would otherwise sort first and shift every
// other row of its projection to the wrong prior rank. The loss is NaN either way.
uint32_t order_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0xffffffffu;
  return u ^ ((u >> 31) ? 0xffffffffu : 0x80000000u);
}

float from_order_bits(uint32_t u) {
  u ^= (u >> 31) ? 0x80000000u : 0xffffffffu;
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

struct Sorted {
  const uint32_t* keys;
  const uint32_t* rows;
};

// Stable LSD radix sort of keys[0, m), rows carried along when kRows. Each pass moves the
// elements between the buffers and their *_tmp twins; returns where the result ended up.
template <bool kRows>
Sorted radix_sort(uint32_t* keys, uint32_t* keys_tmp, uint32_t* rows, uint32_t* rows_tmp,
                  int64_t m) {
  int64_t counts[kPasses][kBuckets] = {};
  for (int64_t i = 0; i < m; ++i)
    for (int p = 0; p < kPasses; ++p) ++counts[p][(keys[i] >> (p * kDigitBits)) % kBuckets];
  const uint32_t first = keys[0];
  for (int p = 0; p < kPasses; ++p) {
    const int shift = p * kDigitBits;
    int64_t* next = counts[p];  // becomes the next free slot of each bucket
    if (next[(first >> shift) % kBuckets] == m) continue;  // one digit throughout: no move
    int64_t offset = 0;
    for (int b = 0; b < kBuckets; ++b) offset += std::exchange(next[b], offset);
    for (int64_t i = 0; i < m; ++i) {
      const int64_t to = next[(keys[i] >> shift) % kBuckets]++;
      keys_tmp[to] = keys[i];
      if constexpr (kRows) rows_tmp[to] = rows[i];
    }
    std::swap(keys, keys_tmp);
    if constexpr (kRows) std::swap(rows, rows_tmp);
  }
  return {keys, rows};
}

// Ranks one fp32 projection at a time; owns the per-thread buffers.
class RadixRanker {
 public:
  explicit RadixRanker(int64_t m)
      : x_keys_(2 * m), y_keys_(2 * m), rows_(2 * m), m_(m) {}

  // Writes residual[row] for every row of the projection; returns the sum of its squares.
  double rank(const float* x, const float* y, float* residual) {
    const int64_t m = m_;
    uint32_t* xk = x_keys_.data();
    uint32_t* yk = y_keys_.data();
    uint32_t* rows = rows_.data();
    for (int64_t i = 0; i < m; ++i) {
      xk[i] = order_bits(x[i]);
      yk[i] = order_bits(y[i]);
      rows[i] = static_cast<uint32_t>(i);
    }
    const Sorted xs = radix_sort<true>(xk, xk + m, rows, rows + m, m);
    const Sorted ys = radix_sort<false>(yk, yk + m, nullptr, nullptr, m);
    double sum = 0;
    for (int64_t r = 0; r < m; ++r) {
      const float diff = from_order_bits(xs.keys[r]) - from_order_bits(ys.keys[r]);
      residual[xs.rows[r]] = diff;
      sum += static_cast<double>(diff) * diff;
    }
    return sum;
  }

 private:
  std::vector<uint32_t> x_keys_, y_keys_, rows_;  // each: m elements and m of scratch
  int64_t m_;
};

// --- float64: comparison sort -----------------------------------------------------------------

// A strict weak order with every NaN last and equivalent to each other, as torch.sort orders
// them: std::sort with a plain < on NaN is undefined behaviour (it may read out of bounds).
bool nan_last_less(double a, double b) {
  return !std::isnan(a) && (std::isnan(b) || a < b);
}

class ComparisonRanker {
 public:
  explicit ComparisonRanker(int64_t m) : x_(m), y_(m) {}

  double rank(const double* x, const double* y, double* residual) {
    const int64_t m = static_cast<int64_t>(y_.size());
    for (int64_t i = 0; i < m; ++i) x_[i] = {x[i], i};
    std::copy(y, y + m, y_.begin());
    std::sort(x_.begin(), x_.end(),
              [](const Ranked& a, const Ranked& b) { return nan_last_less(a.value, b.value); });
    std::sort(y_.begin(), y_.end(), nan_last_less);
    double sum = 0;
    for (int64_t r = 0; r < m; ++r) {
      const double diff = x_[r].value - y_[r];
      residual[x_[r].row] = diff;
      sum += diff * diff;
    }
    return sum;
  }

 private:
  struct Ranked {
    double value;
    int64_t row;
  };
  std::vector<Ranked> x_;
  std::vector<double> y_;
};

template <typename acc_t>
using Ranker = std::conditional_t<std::is_same_v<acc_t, float>, RadixRanker, ComparisonRanker>;

// xt, yt, residual_t: (L, M) contiguous. Returns the sum of the squared residuals.
template <typename acc_t>
double forward_impl(const at::Tensor& xt, const at::Tensor& yt, at::Tensor& residual_t) {
  const int64_t num_proj = xt.size(0), m = xt.size(1);
  const acc_t* x = xt.const_data_ptr<acc_t>();
  const acc_t* y = yt.const_data_ptr<acc_t>();
  acc_t* residual = residual_t.mutable_data_ptr<acc_t>();
  std::vector<double> sums(num_proj);
  const int64_t grain = std::max<int64_t>(1, kMinTaskElements / m);
  at::parallel_for(0, num_proj, grain, [&](int64_t l0, int64_t l1) {
    Ranker<acc_t> ranker(m);
    for (int64_t l = l0; l < l1; ++l)
      sums[l] = ranker.rank(x + l * m, y + l * m, residual + l * m);
  });
  double total = 0;
  for (const double s : sums) total += s;
  return total;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& h_in,
                                               const at::Tensor& prior_samples_in,
                                               const at::Tensor& projections_in) {
  check_args(h_in, prior_samples_in, projections_in);
  TORCH_CHECK(h_in.device().is_cpu(), "h: expected a CPU tensor, got ", h_in.device());
  TORCH_CHECK(h_in.size(0) <= std::numeric_limits<uint32_t>::max(), "h: ", h_in.size(0),
              " rows exceed 2^32 - 1, the most the CPU kernel ranks");
  const auto acc = acc_dtype(h_in);
  // detach: the products are internal and must not be seen by autograd
  // mm_out, not mm: autocast recasts mm's operands (to bf16 under torch.autocast) but leaves
  // out= variants alone, and the sort below reads acc-typed values
  const at::Tensor wt = projections_in.detach().to(acc).t();
  const int64_t num_proj = wt.size(0), m = h_in.size(0);
  const auto acc_options = h_in.options().dtype(acc);
  at::Tensor xt = at::empty({num_proj, m}, acc_options);
  at::Tensor yt = at::empty({num_proj, m}, acc_options);
  at::mm_out(xt, wt, h_in.detach().to(acc).t());
  at::mm_out(yt, wt, prior_samples_in.detach().to(acc).t());
  at::Tensor residual_t = at::empty({num_proj, m}, xt.options());
  at::Tensor loss = at::empty({}, xt.options());
  const double scale = 1.0 / (static_cast<double>(m) * static_cast<double>(num_proj));
  if (acc == at::kDouble) {
    *loss.mutable_data_ptr<double>() = forward_impl<double>(xt, yt, residual_t) * scale;
  } else {
    *loss.mutable_data_ptr<float>() =
        static_cast<float>(forward_impl<float>(xt, yt, residual_t) * scale);
  }
  return {loss, residual_t.t()};
}

}  // namespace pyclr::swd

TORCH_LIBRARY_IMPL(pyclr, CPU, m) {
  m.impl("swd_forward", &pyclr::swd::forward_cpu);
}
