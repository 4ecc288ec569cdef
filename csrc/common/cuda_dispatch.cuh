// Dtype dispatch shared by the CUDA kernels: the 16- and 32-bit float inputs they take, as the
// CUDA types the device code is written for.
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace pyclr {

template <typename T>
struct Tag {
  using type = T;
};

// Calls f(Tag<T>{}) with T = float, __nv_bfloat16 or __half for dtype; any other dtype is an
// error naming `op` (Python checks dtypes first, so only a direct op call gets here).
template <typename F>
void dispatch_float_types(at::ScalarType dtype, const char* op, F&& f) {
  switch (dtype) {
    case at::kFloat:
      return f(Tag<float>{});
    case at::kBFloat16:
      return f(Tag<__nv_bfloat16>{});
    case at::kHalf:
      return f(Tag<__half>{});
    default:
      TORCH_CHECK(false, op, " (CUDA): unsupported dtype ", dtype);
  }
}

}  // namespace pyclr
