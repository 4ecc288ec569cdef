// A CPU emulation of the part of the CUDA execution model that pyclr's kernels use, so that
// the kernels in csrc/*/*_cuda.cu can run, unchanged, on a machine without a GPU.
//
// tests/emulation/build.py rewrites each .cu file in three mechanical ways (kernel launches,
// __shared__ declarations, the dispatch registration) and compiles it as C++ against this
// header and the other headers beside it. What is emulated:
// - A launch runs its blocks one at a time (in the order PYCLR_EMU_BLOCK_ORDER names:
//   forward, reverse or shuffle), each block as blockDim fibers that take turns on the calling
//   thread and switch only at barriers: a thread runs until it waits, in the order
//   PYCLR_EMU_THREAD_ORDER names (forward or reverse). A thread that returns leaves every
//   barrier, as an exited CUDA thread does.
// - __syncthreads is a barrier of the block's live threads, __syncwarp one of the warp's, and
//   __shfl_xor_sync exchanges values through the warp's slots at a warp barrier; it needs all 32
//   lanes. Threads that wait where no thread can release them (divergent barriers, a lane
//   that returned early) fail the launch as a deadlock, and so do lanes of one warp meeting at a
//   __syncwarp and a shuffle at once.
// - Shared memory, static and dynamic, is fresh for every block and filled with 0xff bytes
//   (NaN as float or double, -1 as an integer), so reading what no thread wrote shows. Its size
//   is checked as an sm_90 launch would be: 48 KB static, 48 KB dynamic unless
//   cudaFuncAttributeMaxDynamicSharedMemorySize allows more, 227 KB in all (or, to stand in
//   for a smaller device, the bytes PYCLR_EMU_SHARED_OPTIN names: 101376 is sm_86/89's 99 KB,
//   166912 an A100's 163 KB; the device attributes report it too).
// - Launch shapes are checked (threads per block a multiple of 32 and at most 1024, grid.y and
//   grid.z at most 65535, no empty grid).
// - wmma fragments hold the whole tile in every lane (see mma.h); atomics are std::atomic_ref.
// What is not: timing, occupancy, registers, memory coalescing, caches, concurrency between
// blocks, bank conflicts, and the exact rounding of tensor-core sums and of the device's
// math library (exp2f and friends come from the host's libm).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __align__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// build.py rewrites every __shared__ declaration; one it missed fails to compile here.
#define __shared__ PYCLR_EMU_SHARED_DECLARATION_NOT_REWRITTEN
#ifndef __CUDA_ARCH_LIST__
#define __CUDA_ARCH_LIST__ 900
#endif

namespace pyclr_emu {

// Limits of an sm_90 device.
constexpr size_t kStaticSharedLimit = 48 * 1024;
constexpr size_t kDefaultDynamicSharedLimit = 48 * 1024;
constexpr size_t kSharedOptinLimit = 232448;  // 227 KB

// The per-block shared memory limit of the emulated device: sm_90's, or PYCLR_EMU_SHARED_OPTIN.
inline size_t shared_optin_limit() {
  const char* v = std::getenv("PYCLR_EMU_SHARED_OPTIN");
  if (!v || !*v) return kSharedOptinLimit;
  char* end = nullptr;
  const unsigned long bytes = std::strtoul(v, &end, 10);
  if (*end != '\0' || bytes < kDefaultDynamicSharedLimit || bytes > kSharedOptinLimit)
    throw std::runtime_error("PYCLR_EMU_SHARED_OPTIN: expected bytes in [49152, 232448], got " +
                             std::string(v));
  return bytes;
}
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxGridYZ = 65535;

// ---------------------------------------------------------------------------------------------
// Fibers: every emulated thread of a block runs on its own stack, and all of them take turns on
// the launching thread, switching only at barriers. The switch is a few instructions on x86-64
// (pyclr_emu_runtime.cpp); elsewhere it is ucontext's.

#if defined(__x86_64__)
extern "C" void pyclr_emu_switch(void** save_sp, void* load_sp);
extern "C" void pyclr_emu_trampoline();
struct Context {
  void* sp = nullptr;
  const void* stack = nullptr;  // lowest address and size (AddressSanitizer's fiber switches)
  size_t stack_size = 0;
  void* fake_stack = nullptr;
};
inline void raw_switch(Context& from, Context& to) { pyclr_emu_switch(&from.sp, to.sp); }
// The stack as pyclr_emu_switch leaves it: control words, r15..r12, rbx, rbp, return address.
// The trampoline calls rbx(r12).
inline void make_context(Context& c, unsigned char* stack, size_t size, void (*entry)(void*),
                         void* arg) {
  auto top = reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t{15};
  auto* frame = reinterpret_cast<uint64_t*>(top - 64);
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  frame[0] = mxcsr | (uint64_t{fpucw} << 32);
  frame[1] = frame[2] = frame[3] = 0;                    // r15, r14, r13
  frame[4] = reinterpret_cast<uint64_t>(arg);            // r12
  frame[5] = reinterpret_cast<uint64_t>(entry);          // rbx
  frame[6] = 0;                                          // rbp
  frame[7] = reinterpret_cast<uint64_t>(&pyclr_emu_trampoline);
  c.sp = frame;
  c.stack = stack;
  c.stack_size = size;
}
#else
}  // namespace pyclr_emu
#include <ucontext.h>
namespace pyclr_emu {
struct Context {
  ucontext_t uc;
  const void* stack = nullptr;
  size_t stack_size = 0;
  void* fake_stack = nullptr;
};
inline void raw_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
inline void make_context(Context& c, unsigned char* stack, size_t size, void (*entry)(void*),
                         void* arg) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  // makecontext passes int arguments: the pointer goes in two halves.
  const auto bits = reinterpret_cast<uintptr_t>(arg);
  static void (*target)(void*) = nullptr;
  target = entry;
  makecontext(&c.uc,
              reinterpret_cast<void (*)()>(+[](unsigned hi, unsigned lo) {
                target(reinterpret_cast<void*>((uintptr_t{hi} << 32) | lo));
              }),
              2, static_cast<unsigned>(bits >> 32), static_cast<unsigned>(bits));
  c.stack = stack;
  c.stack_size = size;
}
#endif

// Built with -fsanitize=address (PYCLR_EMU_SANITIZE=address), every switch tells the sanitizer
// which stack is live, so that it checks the fibers' stacks as it checks threads'.
#if defined(__SANITIZE_ADDRESS__)
}  // namespace pyclr_emu
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
namespace pyclr_emu {
// A fiber's first code: completes the switch that started it and returns the stack it came
// from (the scheduler's, whose extent only the sanitizer knows).
inline void started_fiber(Context& scheduler) {
  __sanitizer_finish_switch_fiber(nullptr, &scheduler.stack, &scheduler.stack_size);
}
// from_finishes: the fiber switching away never resumes (its fake stack is released).
inline void switch_context(Context& from, Context& to, bool from_finishes = false) {
  __sanitizer_start_switch_fiber(from_finishes ? nullptr : &from.fake_stack, to.stack,
                                 to.stack_size);
  raw_switch(from, to);
  __sanitizer_finish_switch_fiber(from.fake_stack, nullptr, nullptr);
}
#else
inline void started_fiber(Context&) {}
inline void switch_context(Context& from, Context& to, bool = false) { raw_switch(from, to); }
#endif

// Thrown through a fiber whose block has already failed; carries no message of its own.
struct Abandoned {};

class Block;

struct ThreadState {
  dim3 thread_idx, block_idx, block_dim, grid_dim;
  Block* block = nullptr;
  unsigned warp = 0, lane = 0;
  uint64_t shuffles = 0;  // shuffles this thread has made: their double buffer's parity
  uint64_t collectives = 0;  // warp-collective operations (mma_sync) this thread has made
};

inline thread_local ThreadState* current = nullptr;

inline ThreadState& state() {
  if (!current) throw std::logic_error("pyclr_emu: device code called outside a kernel launch");
  return *current;
}

// What a thread is waiting at: lanes of one warp meeting at a __syncwarp and at a shuffle is a
// divergence the emulator reports.
enum class Sync { kSyncthreads, kSyncwarp, kShuffle };

inline const char* sync_name(Sync s) {
  return s == Sync::kSyncthreads ? "__syncthreads" : s == Sync::kSyncwarp ? "__syncwarp"
                                                                           : "__shfl_xor_sync";
}

// A barrier over a count of threads that shrinks as threads exit.
class Barrier {
 public:
  Barrier(int count, Block* block) : expected_(count), block_(block) {}
  void wait(Sync kind);
  void drop();
  int expected() const { return expected_; }
  int arrived() const { return arrived_; }
  Sync kind() const { return kind_; }

 private:
  void release();
  int expected_;
  int arrived_ = 0;
  Sync kind_ = Sync::kSyncthreads;
  std::vector<unsigned> waiters_;
  Block* block_;
};

// The result of the n-th warp-collective operation of a warp, computed by the first lane to
// reach it and copied by the other 31, which must bring the same operands.
struct Collective {
  std::vector<unsigned char> operands, result;
  int lanes = 0;
};

struct Fiber {
  Context context;
  ThreadState state;
  bool done = false;
  const Barrier* waiting_at = nullptr;
};

class Block {
 public:
  Block(dim3 index, unsigned threads, size_t dynamic_bytes)
      : index(index), threads(threads), dynamic_bytes(dynamic_bytes),
        all(static_cast<int>(threads), this), fibers(threads) {
    for (unsigned w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<Barrier>(32, this));
    exchange.resize(threads / 32);
    dynamic = allocate(dynamic_bytes);
  }

  void fail(const std::string& why) {
    if (error.empty()) error = why;
    failed = true;
  }

  // size bytes of shared memory, 128-byte aligned, filled with 0xff.
  static std::shared_ptr<unsigned char> allocate(size_t size) {
    auto* p = static_cast<unsigned char*>(::operator new(std::max<size_t>(size, 1),
                                                         std::align_val_t(128)));
    std::memset(p, 0xff, size);
    return std::shared_ptr<unsigned char>(
        p, [](unsigned char* q) { ::operator delete(q, std::align_val_t(128)); });
  }

  template <typename T>
  T& shared_var(const void* key) {
    auto& slot = statics[key];
    if (!slot) {
      static_bytes += sizeof(T);
      if (static_bytes > kStaticSharedLimit)
        fail("static shared memory exceeds 48 KB (" + std::to_string(static_bytes) + " bytes)");
      if (static_bytes + dynamic_bytes > shared_optin_limit())
        fail("shared memory exceeds the device's " + std::to_string(shared_optin_limit()) +
             " bytes per block");
      slot = allocate(sizeof(T));
    }
    return *reinterpret_cast<T*>(slot.get());
  }

  // The running fiber gives way until a barrier releases it.
  void suspend() { switch_context(fibers[running].context, scheduler); }

  const dim3 index;
  const unsigned threads;
  const size_t dynamic_bytes;
  bool failed = false;
  std::string error;
  Barrier all;
  std::vector<std::unique_ptr<Barrier>> warps;
  // Per warp, two banks of one slot per lane: shuffle s uses bank s % 2, so a lane that has
  // moved on to the next shuffle never overwrites a value another lane has yet to read.
  std::vector<std::array<std::array<uint64_t, 32>, 2>> exchange;
  std::shared_ptr<unsigned char> dynamic;
  std::map<const void*, std::shared_ptr<unsigned char>> statics;
  size_t static_bytes = 0;
  std::vector<Fiber> fibers;
  std::deque<unsigned> runnable;
  unsigned running = 0;
  std::vector<std::map<uint64_t, Collective>> collectives{threads / 32};
  Context scheduler;
};

inline void Barrier::release() {
  for (unsigned f : waiters_) {
    Fiber& fiber = block_->fibers[f];
    if (fiber.waiting_at != this) continue;  // already woken to abandon a failed block
    fiber.waiting_at = nullptr;
    block_->runnable.push_back(f);
  }
  waiters_.clear();
  arrived_ = 0;
}

inline void Barrier::wait(Sync kind) {
  if (block_->failed) throw Abandoned{};
  if (arrived_ > 0 && kind != kind_) {
    block_->fail(std::string("divergent synchronisation: threads of one barrier at ") +
                 sync_name(kind_) + " and at " + sync_name(kind) + " (thread " +
                 std::to_string(state().thread_idx.x) + ")");
    throw Abandoned{};
  }
  kind_ = kind;
  if (++arrived_ == expected_) {
    release();  // the last to arrive goes on; the others resume in the order they arrived
    return;
  }
  waiters_.push_back(block_->running);
  block_->fibers[block_->running].waiting_at = this;
  block_->suspend();
  if (block_->failed) throw Abandoned{};
}

inline void Barrier::drop() {
  --expected_;
  if (arrived_ > 0 && arrived_ == expected_) release();
}

inline unsigned char* dynamic_shared() { return state().block->dynamic.get(); }

template <typename T>
T& shared_var(const void* key) {
  return state().block->shared_var<T>(key);
}

[[noreturn]] inline void fail_here(const std::string& why) {
  ThreadState& s = state();
  s.block->fail(why + " (thread " + std::to_string(s.thread_idx.x) + ")");
  throw Abandoned{};
}

// A warp-collective operation: every lane holds the same operands and gets the same result, so
// the first lane computes it (compute(result)) and the others copy; a lane that brings other
// operands fails the launch.
template <typename Compute>
void warp_collective(const char* what, const void* operands, size_t operand_bytes, void* result,
                     size_t result_bytes, const Compute& compute) {
  ThreadState& s = state();
  auto& pending = s.block->collectives[s.warp];
  const uint64_t n = s.collectives++;
  const auto* in = static_cast<const unsigned char*>(operands);
  auto it = pending.find(n);
  if (it == pending.end()) {
    compute(result);
    Collective& c = pending[n];
    c.operands.assign(in, in + operand_bytes);
    c.result.assign(static_cast<unsigned char*>(result),
                    static_cast<unsigned char*>(result) + result_bytes);
    c.lanes = 1;
    return;
  }
  Collective& c = it->second;
  if (c.operands.size() != operand_bytes || std::memcmp(c.operands.data(), in, operand_bytes) != 0)
    fail_here(std::string("lanes of warp ") + std::to_string(s.warp) + " brought different operands to " + what);
  std::memcpy(result, c.result.data(), result_bytes);
  if (++c.lanes == s.block->warps[s.warp]->expected()) pending.erase(it);
}

inline void syncthreads() { state().block->all.wait(Sync::kSyncthreads); }

inline void syncwarp(unsigned mask) {
  if (mask != 0xffffffffu) fail_here("__syncwarp with a partial mask is not emulated");
  ThreadState& s = state();
  s.block->warps[s.warp]->wait(Sync::kSyncwarp);
}

template <typename T>
T shfl_xor(unsigned mask, T value, int lane_mask) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "a 32- or 64-bit value");
  if (mask != 0xffffffffu) fail_here("__shfl_xor_sync with a partial mask is not emulated");
  ThreadState& s = state();
  Barrier& warp = *s.block->warps[s.warp];
  if (warp.expected() != 32) fail_here("__shfl_xor_sync over a full mask after lanes exited");
  auto& bank = s.block->exchange[s.warp][s.shuffles++ % 2];
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bank[s.lane] = bits;
  warp.wait(Sync::kShuffle);
  const uint64_t other = bank[(s.lane ^ static_cast<unsigned>(lane_mask)) & 31u];
  T out;
  std::memcpy(&out, &other, sizeof(T));
  return out;
}

// Dynamic shared memory a kernel may use, as cudaFuncSetAttribute set it.
inline std::mutex attributes_mutex;
inline std::map<const void*, int> max_dynamic_shared;

inline void check_launch(const void* kernel, dim3 grid, dim3 block, size_t smem) {
  const unsigned threads = block.x * block.y * block.z;
  if (threads == 0 || threads > kMaxThreadsPerBlock || threads % 32 != 0 || block.y != 1 ||
      block.z != 1)
    throw std::runtime_error("emulated launch: block of " + std::to_string(threads) +
                             " threads (the emulator takes 1-D blocks of a multiple of 32, "
                             "at most 1024)");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > kMaxGridYZ || grid.z > kMaxGridYZ ||
      grid.x > 2147483647u)
    throw std::runtime_error("emulated launch: invalid grid (" + std::to_string(grid.x) + ", " +
                             std::to_string(grid.y) + ", " + std::to_string(grid.z) + ")");
  size_t allowed = kDefaultDynamicSharedLimit;
  {
    std::lock_guard<std::mutex> lock(attributes_mutex);
    const auto it = max_dynamic_shared.find(kernel);
    if (it != max_dynamic_shared.end()) allowed = static_cast<size_t>(it->second);
  }
  if (smem > allowed)
    throw std::runtime_error("emulated launch: " + std::to_string(smem) +
                             " bytes of dynamic shared memory, more than the kernel's limit of " +
                             std::to_string(allowed));
}

inline std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// The order of the blocks of a grid (PYCLR_EMU_BLOCK_ORDER) and of the threads of a block
// (PYCLR_EMU_THREAD_ORDER): forward, reverse, or (blocks only) shuffle. The first thread to run
// runs until its first barrier before the next starts, so a thread that reads what another
// writes, without a barrier between, reads the 0xff poison in one of the two thread orders.
template <typename T>
void arrange(std::vector<T>& items, const char* variable, bool allow_shuffle) {
  const std::string mode = env_or(variable, "forward");
  if (mode == "reverse") {
    std::reverse(items.begin(), items.end());
  } else if (mode == "shuffle" && allow_shuffle) {
    std::mt19937 rng(12345);
    std::shuffle(items.begin(), items.end(), rng);
  } else if (mode != "forward") {
    throw std::runtime_error(std::string(variable) + ": expected forward, reverse" +
                             (allow_shuffle ? " or shuffle" : "") + ", got " + mode);
  }
}

// Fiber stacks, with an inaccessible page below each so that an overflow faults.
class Stacks {
 public:
  Stacks(unsigned count, size_t size) : size_(size), count_(count) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    size_ = (size_ + page - 1) / page * page;
    stride_ = size_ + page;
    base_ = static_cast<unsigned char*>(mmap(nullptr, stride_ * count, PROT_READ | PROT_WRITE,
                                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    if (base_ == MAP_FAILED) throw std::runtime_error("pyclr_emu: could not map fiber stacks");
    for (unsigned i = 0; i < count; ++i) mprotect(base_ + i * stride_, page, PROT_NONE);
    page_ = page;
  }
  ~Stacks() {
#if defined(__SANITIZE_ADDRESS__)
    // the fibers' frames left their redzones poisoned; the pages may next hold anything
    __asan_unpoison_memory_region(base_, stride_ * count_);
#endif
    munmap(base_, stride_ * count_);
  }
  unsigned char* stack(unsigned i) const { return base_ + i * stride_ + page_; }
  size_t size() const { return size_; }

 private:
  size_t size_, count_, stride_ = 0, page_ = 0;
  unsigned char* base_ = nullptr;
};

struct FiberStart {
  Block* block;
  unsigned index;
  const std::function<void()>* body;
};

inline void fiber_main(void* arg) {
  const FiberStart start = *static_cast<FiberStart*>(arg);
  Block& b = *start.block;
  Fiber& me = b.fibers[start.index];
  started_fiber(b.scheduler);
  try {
    (*start.body)();
  } catch (const Abandoned&) {
  } catch (const std::exception& e) {
    b.fail("thread " + std::to_string(start.index) + ": " + e.what());
  }
  me.done = true;
  b.all.drop();
  b.warps[start.index / 32]->drop();
  switch_context(me.context, b.scheduler, /*from_finishes=*/true);
  std::abort();  // a finished fiber is never resumed
}

// Runs one block to completion (or failure) on this thread.
inline void run_block(Block& b, const Stacks& stacks, dim3 grid, dim3 block_dim,
                      const std::function<void()>& body) {
  std::vector<unsigned> order(b.threads);
  std::iota(order.begin(), order.end(), 0u);
  arrange(order, "PYCLR_EMU_THREAD_ORDER", false);
  std::vector<FiberStart> starts(b.threads);
  for (unsigned t = 0; t < b.threads; ++t) {
    Fiber& f = b.fibers[t];
    f.state.thread_idx = dim3(t, 0, 0);
    f.state.block_idx = b.index;
    f.state.block_dim = block_dim;
    f.state.grid_dim = grid;
    f.state.block = &b;
    f.state.warp = t / 32;
    f.state.lane = t % 32;
    starts[t] = {&b, t, &body};
    make_context(f.context, stacks.stack(t), stacks.size(), &fiber_main, &starts[t]);
  }
  b.runnable.assign(order.begin(), order.end());
  ThreadState* const outer = current;
  while (true) {
    if (b.runnable.empty()) {
      std::vector<unsigned> waiting;
      for (unsigned t = 0; t < b.threads; ++t)
        if (!b.fibers[t].done) waiting.push_back(t);
      if (waiting.empty()) break;
      if (!b.failed) {
        const Barrier* at = b.fibers[waiting[0]].waiting_at;
        b.fail(std::string("deadlock: ") + std::to_string(waiting.size()) +
               " threads wait and none can go on (thread " + std::to_string(waiting[0]) +
               " waits at " + (at ? sync_name(at->kind()) : "?") + " with " +
               (at ? std::to_string(at->arrived()) + " of " + std::to_string(at->expected()) : "?") +
               " arrived)");
      }
      for (unsigned t : waiting) {  // they resume and abandon
        b.fibers[t].waiting_at = nullptr;
        b.runnable.push_back(t);
      }
    }
    b.running = b.runnable.front();
    b.runnable.pop_front();
    if (b.fibers[b.running].done) continue;
    current = &b.fibers[b.running].state;
    switch_context(b.scheduler, b.fibers[b.running].context);
  }
  current = outer;
}

// Runs body() as every thread of every block of the grid; throws the block's first failure.
inline void run_grid(const void* kernel, dim3 grid, dim3 block, size_t smem,
                     const std::function<void()>& body) {
  check_launch(kernel, grid, block, smem);
  const unsigned threads = block.x;
  const size_t stack_kb = std::stoul(env_or("PYCLR_EMU_STACK_KB", "256"));
  const Stacks stacks(threads, stack_kb * 1024);
  std::vector<dim3> order;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) order.emplace_back(x, y, z);
  arrange(order, "PYCLR_EMU_BLOCK_ORDER", true);
  for (const dim3 index : order) {
    Block b(index, threads, smem);
    run_block(b, stacks, grid, block, body);
    if (b.failed)
      throw std::runtime_error("emulated kernel failed in block (" + std::to_string(index.x) +
                               ", " + std::to_string(index.y) + ", " + std::to_string(index.z) +
                               "): " + b.error);
  }
}

template <typename... Params>
struct Launch {
  void (*kernel)(Params...);
  dim3 grid, block;
  size_t smem;

  template <typename... Args>
  void operator()(Args&&... args) const {
    // The arguments are converted to the parameter types once, as a launch copies them.
    const std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
    run_grid(reinterpret_cast<const void*>(kernel), grid, block, smem,
             [&] { std::apply(kernel, params); });
  }
};

template <typename... Params>
Launch<Params...> launcher(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem = 0,
                           cudaStream_t = nullptr) {
  return {kernel, grid, block, smem};
}

// cudaDeviceGetAttribute and cudaFuncSetAttribute, answered as an H100 would.
inline cudaError_t device_attribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor:
      *value = 9;
      return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor:
      *value = 0;
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(shared_optin_limit());
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor:  // 1 KB more, as on every sm_80+ part
      *value = static_cast<int>(shared_optin_limit() + 1024);
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
      *value = 132;
      return cudaSuccess;
    default:
      return cudaErrorInvalidValue;
  }
}

template <typename Kernel>
cudaError_t func_set_attribute(Kernel* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  if (value < 0 || static_cast<size_t>(value) > shared_optin_limit()) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(attributes_mutex);
  max_dynamic_shared[reinterpret_cast<const void*>(kernel)] = value;
  return cudaSuccess;
}

}  // namespace pyclr_emu

#define cudaDeviceGetAttribute ::pyclr_emu::device_attribute
#define cudaFuncSetAttribute ::pyclr_emu::func_set_attribute

#define threadIdx (::pyclr_emu::state().thread_idx)
#define blockIdx (::pyclr_emu::state().block_idx)
#define blockDim (::pyclr_emu::state().block_dim)
#define gridDim (::pyclr_emu::state().grid_dim)

inline void __syncthreads() { pyclr_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { pyclr_emu::syncwarp(mask); }
template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  if (width != 32) pyclr_emu::fail_here("__shfl_xor_sync with width != 32 is not emulated");
  return pyclr_emu::shfl_xor(mask, value, lane_mask);
}
[[noreturn]] inline void __trap() {
  pyclr_emu::fail_here("__trap()");
  throw pyclr_emu::Abandoned{};
}
template <typename T>
T __ldg(const T* p) {
  return *p;
}
inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline float __fmul_rn(float a, float b) { return a * b; }  // rounded: the host does not contract
inline int __float_as_int(float f) { return std::bit_cast<int>(f); }

template <typename T>
T atomicAdd(T* address, T value) {
  static_assert(std::is_arithmetic_v<T>, "atomicAdd on an arithmetic type");
  return std::atomic_ref<T>(*address).fetch_add(value);
}

using std::isinf;
using std::isnan;
using std::max;
using std::min;
