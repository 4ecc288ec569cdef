// Fused NT-Xent on the CPU (contract: ntxent.h). Rows are processed in blocks, one block per
// task of at::parallel_for; each block walks the column blocks with a (kRowBlock x kColBlock)
// similarity tile that BLAS fills (single-threaded inside the parallel region), carrying a
// per-row online log-sum-exp. The backward recomputes each tile and accumulates C_tile * Z_k.
// Extra memory: one tile per thread plus O(M * d) for the fp32 copy and the gradient.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/functional.h>  // vec_reduce_all (torch 2.4's vec.h lacks it)
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "ntxent.h"

namespace pyclr::ntxent {
namespace {

constexpr int64_t kRowBlock = 64;
constexpr int64_t kColBlock = 512;

template <typename acc_t>
constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();

struct Range {
  int64_t begin, end;
  int64_t size() const { return end - begin; }
  bool intersects(const Range& o) const { return begin < o.end && o.begin < end; }
};

// The columns row i (of view `view`) is compared with.
Range mask_columns(int64_t view, int64_t n, int64_t negatives) {
  if (negatives == kCross) return view == 0 ? Range{n, 2 * n} : Range{0, n};
  return {0, 2 * n};
}

// Splits each view's slice of rows into blocks of at most kRowBlock, so that no block
// straddles the two views (in kCross mode the views see different columns).
struct RowBlocks {
  Range view_rows[2];
  int64_t per_view[2];
  int64_t count() const { return per_view[0] + per_view[1]; }
  std::pair<int64_t, Range> block(int64_t b) const {
    const int64_t view = b < per_view[0] ? 0 : 1;
    const int64_t start = view_rows[view].begin + (b - (view ? per_view[0] : 0)) * kRowBlock;
    return {view, {start, std::min(start + kRowBlock, view_rows[view].end)}};
  }
};

RowBlocks row_blocks(Range view0, Range view1) {
  auto nblocks = [](Range r) { return (r.size() + kRowBlock - 1) / kRowBlock; };
  return {{view0, view1}, {nblocks(view0), nblocks(view1)}};
}

template <typename acc_t>
acc_t max_of(const acc_t* x, int64_t len) {
  using Vec = at::vec::Vectorized<acc_t>;
  int64_t c = 0;
  acc_t m = kNegInf<acc_t>;
  if (len >= Vec::size()) {
    Vec vm(kNegInf<acc_t>);
    for (; c + Vec::size() <= len; c += Vec::size()) vm = at::vec::maximum(vm, Vec::loadu(x + c));
    m = at::vec::vec_reduce_all<acc_t>([](Vec& a, Vec& b) { return at::vec::maximum(a, b); }, vm);
  }
  for (; c < len; ++c) m = std::max(m, x[c]);
  return m;
}

// sum_c exp(x_c - shift)
template <typename acc_t>
acc_t sum_exp(const acc_t* x, int64_t len, acc_t shift) {
  using Vec = at::vec::Vectorized<acc_t>;
  int64_t c = 0;
  acc_t acc = 0;
  if (len >= Vec::size()) {
    const Vec vshift(shift);
    Vec vacc(acc_t(0));
    for (; c + Vec::size() <= len; c += Vec::size()) vacc = vacc + (Vec::loadu(x + c) - vshift).exp();
    acc = at::vec::vec_reduce_all<acc_t>([](Vec& a, Vec& b) { return a + b; }, vacc);
  }
  for (; c < len; ++c) acc += std::exp(x[c] - shift);
  return acc;
}

// In place: s_c <- w_row * exp(x_c - lse_row) + w_c * exp(x_c - lse_c) with x_c = s_c*scale,
// the backward's coefficient C_jk (lse is +inf for non-anchors, so their term is exactly 0).
// Each exponent is at most 0 in exact arithmetic (a softmax entry); it is clamped there, so
// that rounding at huge logits (normalize=False) cannot overflow exp. A NaN stays NaN.
template <typename acc_t>
void coefficients(acc_t* s, int64_t len, acc_t scale, acc_t w_row, acc_t lse_row,
                  const acc_t* w, const acc_t* lse) {
  using Vec = at::vec::Vectorized<acc_t>;
  int64_t c = 0;
  const Vec vs(scale), vw_row(w_row), vlse_row(lse_row), zero(acc_t(0));
  for (; c + Vec::size() <= len; c += Vec::size()) {
    const Vec x = Vec::loadu(s + c) * vs;
    const Vec a = vw_row * at::vec::minimum(x - vlse_row, zero).exp();
    const Vec b = Vec::loadu(w + c) * at::vec::minimum(x - Vec::loadu(lse + c), zero).exp();
    (a + b).store(s + c);
  }
  for (; c < len; ++c) {
    const acc_t x = s[c] * scale;
    s[c] = w_row * std::exp(std::min(x - lse_row, acc_t(0))) +
           w[c] * std::exp(std::min(x - lse[c], acc_t(0)));
  }
}

// In place: x_c <- x_c * scale. The logits s_jk = (z_j . z_k) * (1/tau) are the GEMM's dot
// products rounded once more by this product, in the forward and in the backward alike
// (coefficients), and then read as stored by the max, the sum and the positive's score.
// (Not GEMM's alpha: it may scale one operand while packing, so that s_jk and s_kj would round
// apart, and the backward's exp(s_jk - lse_k) leans on them agreeing with the forward's.)
template <typename acc_t>
void scale_in_place(acc_t* x, int64_t len, acc_t scale) {
  using Vec = at::vec::Vectorized<acc_t>;
  int64_t c = 0;
  const Vec vs(scale);
  for (; c + Vec::size() <= len; c += Vec::size()) (Vec::loadu(x + c) * vs).store(x + c);
  for (; c < len; ++c) x[c] *= scale;
}

at::Tensor tile_view(const at::Tensor& tile, int64_t rows, int64_t cols) {
  return tile.narrow(0, 0, rows).narrow(1, 0, cols);
}

template <typename acc_t>
void forward_impl(const at::Tensor& z, acc_t inv_tau, int64_t negatives, int64_t offset,
                  int64_t count, at::Tensor& loss, at::Tensor& lse) {
  const int64_t m = z.size(0), n = m / 2;
  acc_t* loss_p = loss.mutable_data_ptr<acc_t>();
  acc_t* lse_p = lse.mutable_data_ptr<acc_t>();
  const RowBlocks blocks = row_blocks({offset, offset + count}, {n + offset, n + offset + count});

  at::parallel_for(0, blocks.count(), 1, [&](int64_t b0, int64_t b1) {
    at::Tensor tile = at::empty({kRowBlock, kColBlock}, z.options());
    acc_t* tp = tile.mutable_data_ptr<acc_t>();
    std::vector<acc_t> row_max(kRowBlock), row_sum(kRowBlock), row_pos(kRowBlock);
    for (int64_t b = b0; b < b1; ++b) {
      const auto [view, rows] = blocks.block(b);
      const Range cols_all = mask_columns(view, n, negatives);
      std::fill(row_max.begin(), row_max.end(), kNegInf<acc_t>);
      std::fill(row_sum.begin(), row_sum.end(), acc_t(0));
      for (int64_t c0 = cols_all.begin; c0 < cols_all.end; c0 += kColBlock) {
        const Range cols{c0, std::min(c0 + kColBlock, cols_all.end)};
        at::Tensor s = tile_view(tile, rows.size(), cols.size());
        at::mm_out(s, z.narrow(0, rows.begin, rows.size()),
                   z.narrow(0, cols.begin, cols.size()).t());
        for (int64_t i = 0; i < rows.size(); ++i) {
          acc_t* si = tp + i * kColBlock;
          scale_in_place(si, cols.size(), inv_tau);
          const int64_t self = rows.begin + i, pos = (self + n) % m;
          // the positive's score from the same tile as the lse: when it dominates the row,
          // lse - score is log(1 + the rest) >= 0 however large the logits
          if (pos >= cols.begin && pos < cols.end) row_pos[i] = si[pos - cols.begin];
          if (negatives == kAll && self >= cols.begin && self < cols.end)
            si[self - cols.begin] = kNegInf<acc_t>;
          const acc_t tile_max = max_of(si, cols.size());
          if (tile_max == kNegInf<acc_t>) continue;  // only the excluded diagonal in this tile
          const acc_t new_max = std::max(row_max[i], tile_max);
          row_sum[i] = row_sum[i] * std::exp(row_max[i] - new_max) +
                       sum_exp(si, cols.size(), new_max);
          row_max[i] = new_max;
        }
      }
      for (int64_t i = 0; i < rows.size(); ++i) {
        const int64_t row = rows.begin + i;
        const int64_t a = view * count + (row - view * n - offset);
        lse_p[a] = row_max[i] + std::log(row_sum[i]);
        loss_p[a] = has_positive(negatives) ? lse_p[a] - row_pos[i] : lse_p[a];
      }
    }
  });
}

// w and lse_rows are per-row over all M rows (non-anchors: w = 0, lse = +inf).
template <typename acc_t>
void backward_impl(const at::Tensor& z, const at::Tensor& w, const at::Tensor& lse_rows,
                   acc_t inv_tau, int64_t negatives, Range anchors0, Range anchors1,
                   at::Tensor& grad) {
  const int64_t m = z.size(0), n = m / 2, d = z.size(1);
  const acc_t* wp = w.const_data_ptr<acc_t>();
  const acc_t* lp = lse_rows.const_data_ptr<acc_t>();
  const acc_t* zp = z.const_data_ptr<acc_t>();
  acc_t* gp = grad.mutable_data_ptr<acc_t>();
  auto has_anchor = [&](Range r) { return r.intersects(anchors0) || r.intersects(anchors1); };
  const RowBlocks blocks = row_blocks({0, n}, {n, m});

  at::parallel_for(0, blocks.count(), 1, [&](int64_t b0, int64_t b1) {
    at::Tensor tile = at::empty({kRowBlock, kColBlock}, z.options());
    acc_t* tp = tile.mutable_data_ptr<acc_t>();
    for (int64_t b = b0; b < b1; ++b) {
      const auto [view, rows] = blocks.block(b);
      const Range cols_all = mask_columns(view, n, negatives);
      at::Tensor g_rows = grad.narrow(0, rows.begin, rows.size());
      const at::Tensor z_rows = z.narrow(0, rows.begin, rows.size());
      const bool rows_have_anchor = has_anchor(rows);
      for (int64_t c0 = cols_all.begin; c0 < cols_all.end; c0 += kColBlock) {
        const Range cols{c0, std::min(c0 + kColBlock, cols_all.end)};
        if (!rows_have_anchor && !has_anchor(cols)) continue;  // every C_jk here is 0
        at::Tensor s = tile_view(tile, rows.size(), cols.size());
        const at::Tensor z_cols = z.narrow(0, cols.begin, cols.size());
        at::mm_out(s, z_rows, z_cols.t());
        for (int64_t i = 0; i < rows.size(); ++i) {
          const int64_t row = rows.begin + i;
          acc_t* si = tp + i * kColBlock;
          coefficients(si, cols.size(), inv_tau, wp[row], lp[row], wp + cols.begin,
                       lp + cols.begin);
          if (negatives == kAll && row >= cols.begin && row < cols.end) si[row - cols.begin] = 0;
        }
        g_rows.addmm_(s, z_cols);
      }
      for (int64_t row = rows.begin; row < rows.end; ++row) {
        const int64_t pos = (row + n) % m;
        const acc_t wpos = has_positive(negatives) ? wp[row] + wp[pos] : acc_t(0);
        acc_t* g = gp + row * d;
        const acc_t* zpos = zp + pos * d;
        for (int64_t c = 0; c < d; ++c) g[c] = (g[c] - wpos * zpos[c]) * inv_tau;
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& z_in, double temperature,
                                               int64_t negatives, int64_t offset,
                                               int64_t count) {
  check_args(z_in, temperature, negatives, offset, count);
  TORCH_CHECK(z_in.device().is_cpu(), "z: expected a CPU tensor, got ", z_in.device());
  // detach: the tile GEMMs are internal and must not be seen by autograd
  const at::Tensor z = z_in.detach().to(acc_dtype(z_in)).contiguous();
  at::Tensor loss = at::empty({2 * count}, z.options());
  at::Tensor lse = at::empty({2 * count}, z.options());
  if (z.scalar_type() == at::kDouble) {
    forward_impl<double>(z, 1.0 / temperature, negatives, offset, count, loss, lse);
  } else {
    forward_impl<float>(z, static_cast<float>(1.0 / temperature), negatives, offset, count,
                        loss, lse);
  }
  return {loss, lse};
}

at::Tensor backward_cpu(const at::Tensor& grad_loss, const at::Tensor& z_in, const at::Tensor& lse,
                        double temperature, int64_t negatives, int64_t offset, int64_t count) {
  check_backward_args(grad_loss, z_in, lse, temperature, negatives, offset, count);
  TORCH_CHECK(z_in.device().is_cpu(), "z: expected a CPU tensor, got ", z_in.device());
  // detach: the tile GEMMs are internal and must not be seen by autograd
  const at::Tensor z = z_in.detach().to(acc_dtype(z_in)).contiguous();
  const int64_t m = z.size(0), n = m / 2;
  at::Tensor w = at::zeros({m}, z.options());
  at::Tensor lse_rows = at::full({m}, std::numeric_limits<double>::infinity(), z.options());
  for (int64_t view = 0; view < 2; ++view) {
    w.narrow(0, view * n + offset, count).copy_(grad_loss.narrow(0, view * count, count));
    lse_rows.narrow(0, view * n + offset, count).copy_(lse.narrow(0, view * count, count));
  }
  const Range anchors0{offset, offset + count}, anchors1{n + offset, n + offset + count};
  at::Tensor grad = at::zeros(z.sizes(), z.options());
  if (z.scalar_type() == at::kDouble) {
    backward_impl<double>(z, w, lse_rows, 1.0 / temperature, negatives, anchors0, anchors1, grad);
  } else {
    backward_impl<float>(z, w, lse_rows, static_cast<float>(1.0 / temperature), negatives,
                         anchors0, anchors1, grad);
  }
  return grad.to(z_in.scalar_type());
}

}  // namespace pyclr::ntxent

TORCH_LIBRARY_IMPL(pyclr, CPU, m) {
  m.impl("nt_xent_forward", &pyclr::ntxent::forward_cpu);
  m.impl("nt_xent_backward", &pyclr::ntxent::backward_cpu);
}
