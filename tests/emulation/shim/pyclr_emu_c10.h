// The c10::cuda names pyclr's host code uses, for the CPU emulation (pyclr_emu.h): one device
// (index 0), one stream (null), and checks that report a failed runtime call.
#pragma once

#include <c10/core/Device.h>
#include <c10/util/Exception.h>

#include "pyclr_emu.h"

namespace c10::cuda {

struct CUDAStream {
  operator cudaStream_t() const { return nullptr; }
  cudaStream_t stream() const { return nullptr; }
};

inline CUDAStream getCurrentCUDAStream(c10::DeviceIndex = -1) { return {}; }
inline c10::DeviceIndex current_device() { return 0; }

struct CUDAGuard {
  explicit CUDAGuard(c10::Device) {}
  explicit CUDAGuard(c10::DeviceIndex) {}
};

}  // namespace c10::cuda

namespace at::cuda {
using c10::cuda::CUDAGuard;
using c10::cuda::CUDAStream;
using c10::cuda::getCurrentCUDAStream;
}  // namespace at::cuda

#define C10_CUDA_CHECK(EXPR)                                                        \
  do {                                                                              \
    const cudaError_t pyclr_emu_status = (EXPR);                                    \
    TORCH_CHECK(pyclr_emu_status == cudaSuccess, "CUDA runtime call failed (emulated): ", \
                #EXPR, " returned ", static_cast<int>(pyclr_emu_status));            \
  } while (0)
#define C10_CUDA_KERNEL_LAUNCH_CHECK() \
  do {                                 \
  } while (0)
