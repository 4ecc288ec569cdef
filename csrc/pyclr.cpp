// Every pyclr operator is declared here, once, with its schema. Backends register their
// kernels with TORCH_LIBRARY_IMPL in csrc/<family>/<op>_{cpu.cpp,cuda.cu}; the autograd
// link and the fake (meta) kernels are registered in Python (pyclr/_ops.py and the losses).
#include <vector>

#include <torch/library.h>

namespace pyclr {
#ifdef WITH_CUDA
std::vector<int64_t> cuda_build_info();  // {CUDART_VERSION, arch, arch, ...}
#endif

// What the CUDA half of this build was compiled for; empty when it was not compiled.
std::vector<int64_t> build_info_cuda() {
#ifdef WITH_CUDA
  return cuda_build_info();
#else
  return {};
#endif
}
// Why the CUDA operators were not built: {why, nvcc's CUDA major, torch's}, setup.py's codes
// (PYCLR_CUDA_SKIPPED), which pyclr/_ops.py puts into words; {0, 0, 0} when no reason was
// recorded (the CMake build); empty when they were built.
std::vector<int64_t> cuda_skipped() {
#if defined(WITH_CUDA)
  return {};
#elif defined(PYCLR_CUDA_SKIPPED)
  return {PYCLR_CUDA_SKIPPED};
#else
  return {0, 0, 0};
#endif
}
// Whether the CPU kernels were compiled for AVX2 (setup.py: PYCLR_CPU_AVX2); pyclr._ops
// does not run them on a CPU without it.
bool built_for_avx2() {
#ifdef PYCLR_CPU_AVX2
  return true;
#else
  return false;
#endif
}
}  // namespace pyclr

TORCH_LIBRARY(pyclr, m) {
  m.def("_cuda_build_info() -> int[]", &pyclr::build_info_cuda);
  m.def("_cuda_skipped() -> int[]", &pyclr::cuda_skipped);
  m.def("_cpu_avx2() -> bool", &pyclr::built_for_avx2);

  // NT-Xent (SPEC.md section 1); the contract is written out in csrc/ntxent/ntxent.h.
  m.def(
      "nt_xent_forward(Tensor z, float temperature, int negatives, int anchor_offset, "
      "int anchor_count) -> (Tensor, Tensor)");
  m.def(
      "nt_xent_backward(Tensor grad_loss, Tensor z, Tensor lse, float temperature, "
      "int negatives, int anchor_offset, int anchor_count) -> Tensor");

  // Squared sliced 2-Wasserstein distance (SPEC.md section 2); contract in csrc/swd/swd.h.
  // Returns (loss, residual): loss is the fp32 scalar, residual the (M, L) fp32 matrix
  // R[i, l] = x_il - y_(rank of x_il in column l), l, so that dloss/dh = 2 R W^T / (M L).
  m.def("swd_forward(Tensor h, Tensor prior_samples, Tensor projections) -> (Tensor, Tensor)");

  // One Lloyd iteration of K-Means for B independent problems (SPEC.md section 3); contract
  // in csrc/kmeans/kmeans.h. x (B, n, C), centroids (B, k, C) -> labels (B, n) int64, the
  // squared distance of each point to its centroid (B, n), and the new centroid sums
  // (B, k, C) and counts (B, k), all in one pass: no (n, k) matrix is stored.
  m.def("kmeans_step(Tensor x, Tensor centroids) -> (Tensor, Tensor, Tensor, Tensor)");
}

// `import pyclr._C` loads this library, which runs the registrations above. The module
// itself is empty: every entry point is a torch operator (torch.ops.pyclr.*). The CMake
// build (C++ tests, IDEs) defines PYCLR_NO_PYTHON and links no Python.
#ifndef PYCLR_NO_PYTHON
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
#endif
