// The ggml tensor types a GGUF file can hold: ids, block sizes and byte sizes, and which ones
// esa can dequantise. Ids follow ggml's enum; unknown ids are rejected by the GGUF reader.
#pragma once

#include <cstdint>
#include <string>

namespace esa::io {

enum class GgmlType : uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
  q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
  iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22,
  iq4_xs = 23, i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30,
  tq1_0 = 34, tq2_0 = 35, mxfp4 = 39,
};

struct GgmlTypeInfo {
  const char* name;     // as ggml prints it: "Q4_K", "F16"
  int64_t block_size;   // elements per block
  int64_t type_size;    // bytes per block
  bool dequantizable;   // esa::ops::dequantize supports it
};

/// Info for a raw type id, or nullptr when the id is not a known ggml type.
const GgmlTypeInfo* ggml_type_info(uint32_t type_id);
inline const GgmlTypeInfo& ggml_type_info(GgmlType type) { return *ggml_type_info(static_cast<uint32_t>(type)); }
inline const char* ggml_type_name(GgmlType type) { return ggml_type_info(type).name; }

}  // namespace esa::io
