// KvCache: per layer, the keys *before* RoPE and the values of every token seen so far, as
// [tokens, kv_heads, head_dim] row-major. Positions are applied when attending, so that the
// selective policies can place a cached key at any position (PAPER.md section 4).
// It also keeps, per layer, the same keys rotated to their true positions: exact causal
// attention needs exactly those, and keeping them means each step rotates only its new keys
// instead of the whole cache (a derived copy: +50% of the cache's memory). A GPU model's cache
// lives on the device (engine/llama_cuda.cc) and holds K + V only.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace esa {

/// Where a model on a GPU keeps the cache itself (engine/llama_cuda.cc); the host object keeps
/// the lengths and, only for a policy that selects on the host, a copy of the keys before RoPE.
class DeviceKvStorage {
 public:
  virtual ~DeviceKvStorage() = default;
  virtual size_t bytes_allocated() const = 0;
};

/// What the host cache holds: everything (a model on the CPU), or the lengths and at most the keys
/// before RoPE (a model on a GPU: its attention and the policies' device halves read the device
/// copy; a policy that selects on the host scores a host copy of the keys, kept on demand).
enum class KvContents { all, keys_only };

class KvCache {
 public:
  KvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, KvContents contents = KvContents::all);

  /// Appends T tokens' keys (before RoPE), the same keys rotated to their true positions, and
  /// values ([T, kv_heads*head_dim] each) to one layer. With KvContents::keys_only the last two
  /// are ignored (may be null), and null keys advance the length alone (the host copy of the keys
  /// then falls behind); keys are taken only when the copy is complete up to the layer's length.
  void append(int64_t layer, const float* keys, const float* keys_rotated, const float* values, int64_t tokens);
  /// KvContents::keys_only: rows of layer `layer`'s keys held on the host (<= length), and
  /// `tokens` more rows of them appended (brought from the device; at most up to the length).
  int64_t mirrored_rows(int64_t layer) const;
  void mirror_keys(int64_t layer, const float* keys, int64_t tokens);
  /// Tokens cached in a layer (all layers agree between forward calls).
  int64_t length(int64_t layer) const { return lengths_.at(size_t(layer)); }
  /// Tokens cached in layer 0: the position of the next token.
  int64_t size() const { return lengths_.empty() ? 0 : lengths_[0]; }
  TensorView keys(int64_t layer) const;    // [length, kv_heads, head_dim], before RoPE; refused
                                           // when the host copy is behind (keys_only)
  TensorView keys_rotated(int64_t layer) const;  // [length, kv_heads, head_dim], at true positions; KvContents::all
  TensorView values(int64_t layer) const;  // [length, kv_heads, head_dim]; KvContents::all
  KvContents contents() const { return contents_; }
  /// Keeps the first n tokens of every layer.
  void truncate(int64_t n);
  /// Reserves room for `tokens` per layer (avoids regrowth during a long prefill); refuses
  /// beforehand when that would exceed --max-memory (check_fits).
  void reserve(int64_t tokens);
  /// Throws the --max-memory error (core/memory_limit.h) unless the host part of a cache of
  /// `tokens` more tokens fits: keys, rotated keys and values (all), or at most the host copy of
  /// the keys (keys_only: a GPU model's cache, whose device memory its allocation checks).
  static void check_fits(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t tokens,
                         KvContents contents = KvContents::all);
  /// The largest reserve() asked for (a device cache allocates that much up front).
  int64_t reserved_tokens() const { return reserved_tokens_; }
  /// The device side of a GPU model's cache; null for a CPU model's.
  DeviceKvStorage* device_storage() const { return device_storage_.get(); }
  void set_device_storage(std::shared_ptr<DeviceKvStorage> storage) { device_storage_ = std::move(storage); }
  /// Bytes held (allocated capacity, the device's included) and bytes in use on the host.
  size_t bytes_allocated() const;
  size_t bytes_used() const;
  int64_t n_layers() const { return int64_t(lengths_.size()); }

 private:
  int64_t kv_heads_, head_dim_, width_;
  KvContents contents_;
  std::vector<std::vector<float>> keys_, keys_rotated_, values_;
  std::vector<int64_t> lengths_;
  int64_t reserved_tokens_ = 0;
  std::shared_ptr<DeviceKvStorage> device_storage_;
};

}  // namespace esa
