// Input checks shared by every pyclr kernel. Python validates user-facing
// arguments first; these guard the C++ boundary so that a direct call of
// torch.ops.pyclr.* with a bad tensor raises instead of reading out of bounds.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace pyclr {

// allow_double: the CPU kernels also take float64 (for gradcheck); CUDA kernels do not.
inline void check_float_matrix(const at::Tensor& t, const char* name, bool allow_double) {
  TORCH_CHECK(t.dim() == 2, name, ": expected a 2-D tensor of shape (rows, dim), got shape ",
              t.sizes());
  TORCH_CHECK(t.size(0) > 0 && t.size(1) > 0, name,
              ": expected a non-empty matrix, got shape ", t.sizes());
  const auto st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kBFloat16 || st == at::kHalf ||
                  (allow_double && st == at::kDouble),
              name, ": expected dtype float32, bfloat16 or float16",
              allow_double ? " (or float64 on the CPU)" : "", ", got ", st);
}

inline void check_vector(const at::Tensor& t, const char* name, int64_t length,
                         at::ScalarType dtype) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == length, name, ": expected shape (", length,
              "), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, name, ": expected dtype ", dtype, ", got ",
              t.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                              const char* b_name) {
  TORCH_CHECK(a.device() == b.device(), a_name, " and ", b_name,
              " must be on the same device, got ", a.device(), " and ", b.device());
}

}  // namespace pyclr
