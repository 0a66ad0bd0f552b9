// cuda::Buffer<T>: the one owner of CUDA memory in esa (the forward, the selectors, benchmarks and
// tests). Device memory, or page-locked host memory mapped into the device's address space
// (--kv-offload: kernels read it over the bus; unified addressing makes the pointer the same).
// Running out is one esa::Error naming what did not fit. Include only in CUDA-enabled
// translation units.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "core/cuda_check.h"
#include "core/error.h"

namespace esa::cuda {

enum class Memory { device, mapped_host };

/// Throws the out-of-memory error for `what` (`bytes` asked for); clears CUDA's error state.
[[noreturn]] inline void fail_allocation(const char* what, size_t bytes, Memory memory, cudaError_t status) {
  cudaGetLastError();  // a failed allocation is not sticky: clear it so later calls are unaffected
  ESA_CHECK(memory == Memory::device, "out of page-locked host memory: {} needs {:.1f} MiB ({})", what,
            double(bytes) / (1 << 20), cudaGetErrorString(status));
  size_t free_bytes = 0, total = 0;
  cudaMemGetInfo(&free_bytes, &total);
  ESA_FAIL("out of GPU memory: {} needs {:.1f} MiB, {:.1f} MiB free of {:.1f} MiB", what, double(bytes) / (1 << 20),
           double(free_bytes) / (1 << 20), double(total) / (1 << 20));
}

/// While a decode step is captured into a CUDA graph (engine/llama_cuda.cc), a Buffer that
/// reallocates may not free its old memory: graphs launched before may still read it, and cudaFree
/// would synchronise inside the capture. In a DeferFrees scope frees are queued instead (and
/// grow() does not synchronise); release_deferred_frees() frees them once the stream has passed
/// every launch that could read them. One thread's scope (the forward holds its mutex).
namespace detail {
struct FreeQueue {
  bool deferring = false;
  std::vector<std::pair<void*, Memory>> pending;
};
inline FreeQueue& free_queue() {
  static thread_local FreeQueue queue;
  return queue;
}
inline void free_now(void* p, Memory memory) {
  if (memory == Memory::device) {
    cudaFree(p);
  } else {
    cudaFreeHost(p);
  }
}
}  // namespace detail

class DeferFrees {
 public:
  DeferFrees() : previous_(std::exchange(detail::free_queue().deferring, true)) {}
  ~DeferFrees() { detail::free_queue().deferring = previous_; }
  DeferFrees(const DeferFrees&) = delete;
  DeferFrees& operator=(const DeferFrees&) = delete;

 private:
  bool previous_;
};

/// Frees the first n of what DeferFrees scopes queued (in order); the caller knows no launched
/// work reads them any more.
inline void release_deferred_frees(size_t n) {
  detail::FreeQueue& q = detail::free_queue();
  n = std::min(n, q.pending.size());
  for (size_t i = 0; i < n; ++i) detail::free_now(q.pending[i].first, q.pending[i].second);
  q.pending.erase(q.pending.begin(), q.pending.begin() + std::ptrdiff_t(n));
}
inline size_t deferred_free_count() { return detail::free_queue().pending.size(); }

template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t n, const char* what = "device memory", Memory memory = Memory::device) : memory_(memory) {
    resize(n, what);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : ptr_(o.ptr_), n_(o.n_), memory_(o.memory_) { o.ptr_ = nullptr, o.n_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(n_, o.n_);
    std::swap(memory_, o.memory_);
    return *this;
  }
  ~Buffer() { release(); }

  /// Room for n elements; reallocates (contents lost) when n exceeds the size, to max(n, 1.5x
  /// the size): scratch sized by a growing context reallocates O(log) times, not every step.
  void resize(size_t n, const char* what) {
    if (n <= n_ && ptr_ != nullptr) return;
    Buffer fresh;
    fresh.memory_ = memory_;
    fresh.allocate(ptr_ == nullptr ? n : std::max(n, n_ + n_ / 2), what);
    *this = std::move(fresh);
  }

  /// Room for n elements keeping the first `keep`: reallocates to max(n, 1.5x the size) and
  /// copies on `stream` when n exceeds the size (then synchronises it: the old memory is freed).
  void grow(size_t n, size_t keep, const char* what, cudaStream_t stream) {
    if (n <= n_ && ptr_ != nullptr) return;
    Buffer grown;
    grown.memory_ = memory_;
    grown.allocate(std::max(n, n_ * 3 / 2), what);
    keep = std::min(keep, n_);
    if (keep > 0) ESA_CUDA_CHECK(cudaMemcpyAsync(grown.ptr_, ptr_, keep * sizeof(T), cudaMemcpyDefault, stream));
    if (!detail::free_queue().deferring) ESA_CUDA_CHECK(cudaStreamSynchronize(stream));  // else freed later
    *this = std::move(grown);
  }

  /// resize(n) and the n host elements copied in on `stream`, which is then synchronised (the
  /// host memory may be pageable and short-lived).
  void upload(const T* host, size_t n, const char* what, cudaStream_t stream) {
    resize(n, what);
    if (n > 0) ESA_CUDA_CHECK(cudaMemcpyAsync(ptr_, host, n * sizeof(T), cudaMemcpyHostToDevice, stream));
    ESA_CUDA_CHECK(cudaStreamSynchronize(stream));
  }

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  bool empty() const { return ptr_ == nullptr; }

 private:
  void allocate(size_t n, const char* what) {
    const size_t bytes = std::max<size_t>(n, 1) * sizeof(T);
    void* p = nullptr;
    const cudaError_t status = memory_ == Memory::device
                                   ? cudaMalloc(&p, bytes)
                                   : cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocPortable);
    if (status != cudaSuccess) fail_allocation(what, bytes, memory_, status);
    ptr_ = static_cast<T*>(p);
    n_ = n;
  }
  void release() {
    if (ptr_ == nullptr) return;
    if (detail::free_queue().deferring) {
      detail::free_queue().pending.emplace_back(ptr_, memory_);
    } else {
      detail::free_now(ptr_, memory_);
    }
    ptr_ = nullptr;
    n_ = 0;
  }

  T* ptr_ = nullptr;
  size_t n_ = 0;
  Memory memory_ = Memory::device;
};

}  // namespace esa::cuda
