// cub::DeviceSegmentedSort for the CPU emulation (pyclr_emu.h): each segment sorted by a stable
// sort on CUB's radix order of float keys (-NaN < -inf < ... < -0 < +0 < ... < +inf < +NaN).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "../../pyclr_emu.h"

namespace cub {

struct DeviceSegmentedSort {
  static uint32_t radix_key(float v) {
    const uint32_t bits = std::bit_cast<uint32_t>(v);
    return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
  }

  template <typename Value, typename Offsets>
  static cudaError_t sort(void* temp, size_t& temp_bytes, const float* keys_in, float* keys_out,
                          const Value* values_in, Value* values_out, int num_segments,
                          Offsets begin, Offsets end) {
    if (temp == nullptr) {
      temp_bytes = 256;
      return cudaSuccess;
    }
    if (temp_bytes < 256) return cudaErrorInvalidValue;
    for (int s = 0; s < num_segments; ++s) {
      const int lo = begin[s], hi = end[s];
      std::vector<int> order(hi - lo);
      std::iota(order.begin(), order.end(), lo);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return radix_key(keys_in[a]) < radix_key(keys_in[b]);
      });
      for (int i = lo; i < hi; ++i) {
        keys_out[i] = keys_in[order[i - lo]];
        if (values_out) values_out[i] = values_in[order[i - lo]];
      }
    }
    return cudaSuccess;
  }

  template <typename Value, typename Offsets>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const float* keys_in,
                               float* keys_out, const Value* values_in, Value* values_out,
                               int /*num_items*/, int num_segments, Offsets begin, Offsets end,
                               cudaStream_t = nullptr) {
    return sort(temp, temp_bytes, keys_in, keys_out, values_in, values_out, num_segments, begin,
                end);
  }

  template <typename Offsets>
  static cudaError_t SortKeys(void* temp, size_t& temp_bytes, const float* keys_in,
                              float* keys_out, int /*num_items*/, int num_segments,
                              Offsets begin, Offsets end, cudaStream_t = nullptr) {
    return sort<int>(temp, temp_bytes, keys_in, keys_out, nullptr, nullptr, num_segments, begin,
                     end);
  }
};

}  // namespace cub
