#include "model/kv_cache.h"

#include <algorithm>

#include "core/error.h"
#include "core/memory_limit.h"

namespace esa {

KvCache::KvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, KvContents contents)
    : kv_heads_(n_kv_heads), head_dim_(head_dim), width_(n_kv_heads * head_dim), contents_(contents),
      keys_(size_t(n_layers)), keys_rotated_(size_t(n_layers)), values_(size_t(n_layers)),
      lengths_(size_t(n_layers), 0) {
  ESA_CHECK(n_layers > 0 && n_kv_heads > 0 && head_dim > 0, "KvCache: bad geometry {} layers, {} KV heads, head dim {}",
            n_layers, n_kv_heads, head_dim);
}

void KvCache::append(int64_t layer, const float* keys, const float* keys_rotated, const float* values,
                     int64_t tokens) {
  ESA_CHECK(layer >= 0 && layer < n_layers(), "KvCache: layer {} out of range", layer);
  auto& K = keys_[size_t(layer)];
  auto& R = keys_rotated_[size_t(layer)];
  auto& V = values_[size_t(layer)];
  const size_t add = size_t(tokens * width_);
  const bool all = contents_ == KvContents::all;
  if (!all && keys == nullptr) {
    lengths_[size_t(layer)] += tokens;
    return;
  }
  ESA_CHECK(int64_t(K.size()) == lengths_[size_t(layer)] * width_,
            "KvCache: keys appended to layer {} whose host copy holds {} of {} rows", layer,
            int64_t(K.size()) / width_, lengths_[size_t(layer)]);
  if (K.size() + add > K.capacity()) {
    // Grow geometrically so that token-by-token decoding appends in amortised O(1).
    const size_t cap = std::max(K.size() + add, K.capacity() * 3 / 2);
    K.reserve(cap);
    if (all) R.reserve(cap);
    if (all) V.reserve(cap);
  }
  K.insert(K.end(), keys, keys + add);
  if (all) R.insert(R.end(), keys_rotated, keys_rotated + add);
  if (all) V.insert(V.end(), values, values + add);
  lengths_[size_t(layer)] += tokens;
}

int64_t KvCache::mirrored_rows(int64_t layer) const { return int64_t(keys_.at(size_t(layer)).size()) / width_; }

void KvCache::mirror_keys(int64_t layer, const float* keys, int64_t tokens) {
  ESA_CHECK(contents_ == KvContents::keys_only && layer >= 0 && layer < n_layers() &&
                mirrored_rows(layer) + tokens <= lengths_[size_t(layer)],
            "KvCache: {} key rows mirrored into layer {} past its {} tokens", tokens, layer, lengths_.at(size_t(layer)));
  auto& K = keys_[size_t(layer)];
  K.insert(K.end(), keys, keys + tokens * width_);
}

TensorView KvCache::keys(int64_t layer) const {
  ESA_CHECK(mirrored_rows(layer) == lengths_.at(size_t(layer)),
            "KvCache: the host holds {} of layer {}'s {} keys (a GPU model's keys live on the device)",
            mirrored_rows(layer), layer, lengths_[size_t(layer)]);
  return {keys_.at(size_t(layer)).data(), {lengths_[size_t(layer)], kv_heads_, head_dim_}, DType::f32, Device::cpu};
}

TensorView KvCache::keys_rotated(int64_t layer) const {
  ESA_CHECK(contents_ == KvContents::all, "KvCache: the rotated keys of a GPU model's cache live on the device");
  return {keys_rotated_.at(size_t(layer)).data(), {lengths_[size_t(layer)], kv_heads_, head_dim_}, DType::f32,
          Device::cpu};
}

TensorView KvCache::values(int64_t layer) const {
  ESA_CHECK(contents_ == KvContents::all, "KvCache: the values of a GPU model's cache live on the device");
  return {values_.at(size_t(layer)).data(), {lengths_[size_t(layer)], kv_heads_, head_dim_}, DType::f32, Device::cpu};
}

void KvCache::truncate(int64_t n) {
  for (size_t l = 0; l < lengths_.size(); ++l) {
    if (lengths_[l] > n) {
      lengths_[l] = n;
      keys_[l].resize(std::min(keys_[l].size(), size_t(n * width_)));  // the host copy may be behind
      if (contents_ == KvContents::all) {
        keys_rotated_[l].resize(size_t(n * width_));
        values_[l].resize(size_t(n * width_));
      }
    }
  }
}

void KvCache::check_fits(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t tokens,
                         KvContents contents) {
  // keys, rotated keys and values, or the keys alone: floats per layer and cache column.
  const uint64_t tables = contents == KvContents::all ? 3 : 1;
  check_memory("the KV cache", uint64_t(tokens), tables * uint64_t(n_layers * n_kv_heads * head_dim) * sizeof(float),
               "tokens");
}

void KvCache::reserve(int64_t tokens) {
  const int64_t have = lengths_.empty() ? 0 : int64_t(keys_[0].capacity()) / std::max<int64_t>(width_, 1);
  if (tokens > have) check_fits(n_layers(), kv_heads_, head_dim_, tokens - have, contents_);
  reserved_tokens_ = std::max(reserved_tokens_, tokens);
  if (contents_ != KvContents::all) return;  // the host copy of the keys grows on demand: a device selector never needs it
  for (size_t l = 0; l < lengths_.size(); ++l) {
    keys_[l].reserve(size_t(tokens * width_));
    keys_rotated_[l].reserve(size_t(tokens * width_));
    values_[l].reserve(size_t(tokens * width_));
  }
}

size_t KvCache::bytes_allocated() const {
  size_t b = device_storage_ ? device_storage_->bytes_allocated() : 0;
  for (size_t l = 0; l < lengths_.size(); ++l) {
    b += (keys_[l].capacity() + keys_rotated_[l].capacity() + values_[l].capacity()) * sizeof(float);
  }
  return b;
}

size_t KvCache::bytes_used() const {
  size_t b = 0;
  for (size_t l = 0; l < lengths_.size(); ++l) {
    b += (keys_[l].size() + keys_rotated_[l].size() + values_[l].size()) * sizeof(float);
  }
  return b;
}

}  // namespace esa
