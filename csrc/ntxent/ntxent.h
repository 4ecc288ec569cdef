// NT-Xent (SimCLR) loss: the contract shared by the CPU and CUDA kernels.
//
// z is the (M, d) stack of both views, M = 2N, already l2-normalised by the caller when the
// user asked for it (normalisation is O(M*d) and lives in Python, so autograd handles it).
// s_ik = (z_i . z_k) / tau, accumulated in fp32; the positive of row i is p(i) = (i + N) mod M.
// mask(i): negatives == kAll   -> every k != i          (the diagonal excluded by index)
//          negatives == kCross -> every k in the other view (view(i) = i >= N), p(i) included
//          negatives == kSelf  -> every k, i included, and no positive term: the logsumexp
//                                 uniformity of the generalized loss (SPEC.md section 2)
//
// Anchors (the rows whose loss is computed) are the two ranges
//     [offset, offset + count)  and  [N + offset, N + offset + count);
// anchor a in [0, 2*count) is row r(a) = a < count ? offset + a : N + offset + (a - count).
// A single process uses offset = 0, count = N (every row). With gather_distributed, z holds
// every rank's rows and the anchors are this rank's own.
//
// Accumulation is fp32 (fp64 for float64 inputs, which only the CPU kernel accepts, for
// gradcheck). "acc" below is float32, or float64 for float64 inputs.
// forward  -> (loss, lse), each (2*count,) in acc:
//     lse_a  = log sum_{k in mask(r(a))} exp(s_{r(a),k})
//     loss_a = lse_a - s_{r(a), p(r(a))}          (kSelf: loss_a = lse_a)
// backward(grad_loss (2*count,) in acc, z, lse) -> grad_z (M, d) in z's dtype:
//     w_i = grad_loss[a] if i = r(a) else 0;   P_ik = exp(s_ik - lse_i) (i an anchor, k in mask(i))
//     grad_z_j = (1/tau) [ sum_{k in mask(j)} (w_j P_jk + w_k P_kj) z_k  -  (w_j + w_p(j)) z_p(j) ]
//     (kSelf: without the last term; its k = j term is 2 w_j P_jj z_j, as d s_jj / d z_j = 2 z_j / tau)
// The coefficient matrix C_jk = w_j P_jk + w_k P_kj is symmetric, so a row tile of the
// gradient needs only the forward's per-row lse: no M x M matrix is ever stored.
#pragma once

#include <cmath>
#include <tuple>

#include <ATen/core/Tensor.h>

#include "../common/checks.h"

namespace pyclr::ntxent {

enum Negatives : int64_t { kAll = 0, kCross = 1, kSelf = 2 };

// Whether loss_a subtracts the positive's score (every mode but kSelf).
inline bool has_positive(int64_t negatives) { return negatives != kSelf; }

constexpr double kMinTemperature = 1e-3, kMaxTemperature = 1e6;

inline void check_args(const at::Tensor& z, double temperature, int64_t negatives,
                       int64_t offset, int64_t count) {
  check_float_matrix(z, "z", /*allow_double=*/z.device().is_cpu());
  TORCH_CHECK(z.size(0) % 2 == 0, "z: expected an even number of rows (two views), got ",
              z.size(0));
  // the range the kernels are tested in against float64 (pyclr.losses._checks.TEMPERATURE_RANGE):
  // below it 1/tau overflows float32 near 3e-39 and the loss is NaN
  TORCH_CHECK(temperature >= kMinTemperature && temperature <= kMaxTemperature,
              "temperature: expected a number in [1e-3, 1e6], got ", temperature);
  TORCH_CHECK(negatives == kAll || negatives == kCross || negatives == kSelf,
              "negatives: expected 0 (all), 1 (cross) or 2 (self), got ", negatives);
  const int64_t n = z.size(0) / 2;
  // offset <= n - count, not offset + count <= n: the sum wraps around for huge int64 arguments
  TORCH_CHECK(count >= 1 && count <= n && offset >= 0 && offset <= n - count,
              "anchor_offset/anchor_count: expected 0 <= offset and 1 <= count with offset + "
              "count <= N = ",
              n, ", got offset ", offset, " and count ", count);
}

// The dtype of loss, lse and grad_loss for a given z.
inline at::ScalarType acc_dtype(const at::Tensor& z) {
  return z.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_backward_args(const at::Tensor& grad_loss, const at::Tensor& z,
                                const at::Tensor& lse, double temperature, int64_t negatives,
                                int64_t offset, int64_t count) {
  check_args(z, temperature, negatives, offset, count);
  check_vector(grad_loss, "grad_loss", 2 * count, acc_dtype(z));
  check_vector(lse, "lse", 2 * count, acc_dtype(z));
  check_same_device(grad_loss, "grad_loss", z, "z");
  check_same_device(lse, "lse", z, "z");
}

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& z, double temperature,
                                               int64_t negatives, int64_t offset,
                                               int64_t count);
at::Tensor backward_cpu(const at::Tensor& grad_loss, const at::Tensor& z, const at::Tensor& lse,
                        double temperature, int64_t negatives, int64_t offset, int64_t count);

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& z, double temperature,
                                                int64_t negatives, int64_t offset,
                                                int64_t count);
at::Tensor backward_cuda(const at::Tensor& grad_loss, const at::Tensor& z, const at::Tensor& lse,
                         double temperature, int64_t negatives, int64_t offset, int64_t count);
#endif

}  // namespace pyclr::ntxent
