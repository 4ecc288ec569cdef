// Kernels that check the CPU emulator itself (tests/emulation/test_emulator.py): each shows one
// rule of the execution model the emulator must keep or one mistake it must catch. Written as
// ordinary CUDA and built through the same rewrite as csrc/*/*_cuda.cu.
#include <string>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <torch/library.h>

#include <cuda_bf16.h>
#include <mma.h>

namespace pyclr_selftest {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kThreads = 128;

// out[t] = what thread t reads of its neighbour's shared slot, with or without a barrier
// between the writes and the reads.
__global__ void neighbour_kernel(const int* in, int* out, bool barrier) {
  __shared__ int slot[kThreads];
  const int t = threadIdx.x;
  slot[t] = in[blockIdx.x * kThreads + t];
  if (barrier) __syncthreads();
  out[blockIdx.x * kThreads + t] = slot[(t + 1) % kThreads];
}

__device__ float warp_sum(float v) {
  for (int s = 16; s > 0; s /= 2) v += __shfl_xor_sync(0xffffffffu, v, s);
  return v;
}

// out[t] = the sum of in over t's warp.
__global__ void warp_sum_kernel(const float* in, float* out) {
  const int i = blockIdx.x * kThreads + threadIdx.x;
  out[i] = warp_sum(in[i]);
}

// Lane 0 waits at __syncthreads while the rest of its warp waits for it at __syncwarp.
__global__ void deadlock_kernel(float* out) {
  if (threadIdx.x == 0) {
    __syncthreads();
  } else {
    __syncwarp();
  }
  out[threadIdx.x] = 1.f;
}

// Half of warp 0 returns before the warp's shuffle.
__global__ void early_exit_shuffle_kernel(float* out) {
  if (threadIdx.x < 16) return;
  out[threadIdx.x] = warp_sum(1.f);
}

// Lanes of one warp at a __syncwarp and at a shuffle at once.
__global__ void divergent_kernel(float* out) {
  if (threadIdx.x % 2) {
    __syncwarp();
  } else {
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
  }
}

// Reads the element just past the end of in (AddressSanitizer's case).
__global__ void past_the_end_kernel(const float* in, float* out, int n) {
  out[threadIdx.x] = in[n - kThreads + 1 + threadIdx.x];
}

__global__ void trap_kernel(float* out) {
  if (threadIdx.x == 5) __trap();
  out[threadIdx.x] = 1.f;
}

// Writes the block's dynamic shared memory and copies it out (byte count in bytes).
__global__ void dynamic_shared_kernel(unsigned char* out, int bytes) {
  extern __shared__ __align__(128) unsigned char smem[];
  for (int i = threadIdx.x; i < bytes; i += kThreads) smem[i] = static_cast<unsigned char>(i);
  __syncthreads();
  for (int i = threadIdx.x; i < bytes; i += kThreads) out[i] = smem[i];
}

// c = a b for a 16 x 8 fp32 tile a and an 8 x 16 b, on tf32 tensor cores, with the operands
// rounded by __float_to_tf32 when round is set (else the tensor cores truncate them).
__global__ void mma_tf32_kernel(const float* a, const float* b, float* c, bool round) {
  if (threadIdx.x >= 32) return;
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> fc;
  wmma::load_matrix_sync(fa, a, 8);
  wmma::load_matrix_sync(fb, b, 16);
  if (round) {
    for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
    for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
  }
  wmma::fill_fragment(fc, 0.f);
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(c, fc, 16, wmma::mem_row_major);
}

// c = a b^T for 16 x 16 bf16 tiles a and b (b read as a column-major operand), plus 1.
__global__ void mma_bf16_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, float* c) {
  if (threadIdx.x >= 32) return;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::fill_fragment(fc, 1.f);
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(c, fc, 16, wmma::mem_row_major);
}

// Each lane loads a different tile into one fragment: operands the lanes do not share.
__global__ void mma_lane_operands_kernel(const float* a, float* c) {
  if (threadIdx.x >= 32) return;
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> fc;
  wmma::load_matrix_sync(fa, a + threadIdx.x, 8);
  wmma::load_matrix_sync(fb, a, 16);
  wmma::fill_fragment(fc, 0.f);
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(c, fc, 16, wmma::mem_row_major);
}

}  // namespace

at::Tensor run(const std::string& name, const at::Tensor& x) {
  TORCH_CHECK(x.is_cuda() && x.is_contiguous(), "x: a contiguous tensor");
  at::Tensor out;
  if (name == "neighbour" || name == "neighbour_barrier") {
    out = at::empty_like(x);
    neighbour_kernel<<<static_cast<unsigned>(x.numel() / kThreads), kThreads>>>(
        x.const_data_ptr<int>(), out.mutable_data_ptr<int>(), name == "neighbour_barrier");
  } else if (name == "warp_sum") {
    out = at::empty_like(x);
    warp_sum_kernel<<<static_cast<unsigned>(x.numel() / kThreads), kThreads>>>(
        x.const_data_ptr<float>(), out.mutable_data_ptr<float>());
  } else if (name == "deadlock" || name == "early_exit_shuffle" || name == "divergent" ||
             name == "trap") {
    out = at::empty({kThreads}, x.options().dtype(at::kFloat));
    float* o = out.mutable_data_ptr<float>();
    if (name == "deadlock") deadlock_kernel<<<1, kThreads>>>(o);
    if (name == "early_exit_shuffle") early_exit_shuffle_kernel<<<1, kThreads>>>(o);
    if (name == "divergent") divergent_kernel<<<1, kThreads>>>(o);
    if (name == "trap") trap_kernel<<<1, kThreads>>>(o);
  } else if (name == "past_the_end") {
    out = at::empty({kThreads}, x.options());
    past_the_end_kernel<<<1, kThreads>>>(x.const_data_ptr<float>(), out.mutable_data_ptr<float>(),
                                         static_cast<int>(x.numel()));
  } else if (name == "dynamic_shared" || name == "dynamic_shared_optin") {
    const int bytes = static_cast<int>(x.numel());
    if (name == "dynamic_shared_optin")
      C10_CUDA_CHECK(cudaFuncSetAttribute(dynamic_shared_kernel,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    out = at::empty({bytes}, x.options().dtype(at::kByte));
    dynamic_shared_kernel<<<1, kThreads, bytes>>>(out.mutable_data_ptr<unsigned char>(), bytes);
  } else if (name == "mma_tf32" || name == "mma_tf32_rounded") {
    // x: a (16 x 8) then b (8 x 16), 256 floats
    out = at::empty({16, 16}, x.options());
    mma_tf32_kernel<<<1, kThreads>>>(x.const_data_ptr<float>(), x.const_data_ptr<float>() + 128,
                                      out.mutable_data_ptr<float>(), name == "mma_tf32_rounded");
  } else if (name == "mma_bf16") {
    // x: a then b, 16 x 16 bf16 each
    out = at::empty({16, 16}, x.options().dtype(at::kFloat));
    const auto* p = static_cast<const __nv_bfloat16*>(x.const_data_ptr());
    mma_bf16_kernel<<<1, kThreads>>>(p, p + 256, out.mutable_data_ptr<float>());
  } else if (name == "mma_lane_operands") {
    out = at::empty({16, 16}, x.options());
    mma_lane_operands_kernel<<<1, kThreads>>>(x.const_data_ptr<float>(),
                                              out.mutable_data_ptr<float>());
  } else {
    TORCH_CHECK(false, "name: unknown self-test ", name);
  }
  return out;
}

}  // namespace pyclr_selftest

TORCH_LIBRARY_FRAGMENT(pyclr_emu, m) { m.def("selftest(str name, Tensor x) -> Tensor"); }

TORCH_LIBRARY_IMPL(pyclr_emu, CPU, m) { m.impl("selftest", &pyclr_selftest::run); }
