// Squared sliced 2-Wasserstein distance (SPEC.md section 2): the contract shared by the CPU
// and CUDA kernels.
//
// h is the (M, d) stack of embeddings, prior_samples (M, d) samples of the prior, projections
// W (d, L) the projection directions (orthonormal columns: checked in Python, where the user
// gives them; the kernels need no such property). "acc" below is float32, or float64 for
// float64 h (which only the CPU kernel accepts, for gradcheck); prior_samples and W may have
// any floating dtype and are cast to acc.
//     x = h W,  y = prior_samples W                        (M, L), computed in acc
//     for each column l: perm_l = argsort(x[:, l]); y sorted along the column
//     residual[perm_l[r], l] = x[perm_l[r], l] - y_(r), l  (each row meets the prior value of
//                                                           the same rank in its column)
//     loss = (1 / (M L)) sum_{r, l} residual[r, l]^2       (a 0-dim tensor in acc)
// forward -> (loss, residual). The backward needs nothing else: residual is the derivative of
// (M L / 2) loss with respect to x, so d loss / d h = 2 residual W^T / (M L), one matrix
// product that Python's autograd formula does; no permutation is kept.
//
// Ties in a column may be broken in any order (the loss does not depend on it). NaN sorts
// last (as in torch.sort), so a NaN anywhere in h or prior_samples makes the loss NaN.
//
// residual is returned as the transpose of a contiguous (L, M) buffer, i.e. shape (M, L) with
// strides (1, M): each projection's scatter then writes one contiguous row, and the backward's
// product reads the transpose at no cost. The fake kernel (pyclr/losses/swd.py) says the same.
#pragma once

#include <tuple>

#include <ATen/core/Tensor.h>

#include "../common/checks.h"

namespace pyclr::swd {

// prior_samples and projections are cast inside the op, so any floating dtype will do.
inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), name,
              ": expected a floating-point tensor, got ", t.scalar_type());
}

inline void check_args(const at::Tensor& h, const at::Tensor& prior_samples,
                       const at::Tensor& projections) {
  check_float_matrix(h, "h", /*allow_double=*/h.device().is_cpu());
  TORCH_CHECK(prior_samples.sizes() == h.sizes(), "prior_samples: expected shape ", h.sizes(),
              " (that of h), got ", prior_samples.sizes());
  check_floating(prior_samples, "prior_samples");
  TORCH_CHECK(projections.dim() == 2 && projections.size(0) == h.size(1) &&
                  projections.size(1) > 0,
              "projections: expected shape (d, L) with d = ", h.size(1),
              " (columns of h) and L >= 1, got ", projections.sizes());
  check_floating(projections, "projections");
  check_same_device(prior_samples, "prior_samples", h, "h");
  check_same_device(projections, "projections", h, "h");
}

// The dtype of loss and residual for a given h.
inline at::ScalarType acc_dtype(const at::Tensor& h) {
  return h.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& h, const at::Tensor& prior_samples,
                                               const at::Tensor& projections);

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& h,
                                                const at::Tensor& prior_samples,
                                                const at::Tensor& projections);
#endif

}  // namespace pyclr::swd
