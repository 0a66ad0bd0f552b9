#include "ops/attention.h"

#include "core/error.h"

namespace esa::ops {

void attention(const TensorView& q, const TensorView& k, const TensorView& v, const std::vector<int64_t>& q_pos,
               const std::vector<int64_t>& k_pos, const AttentionArgs& args, Tensor& out, Tensor* lse) {
  ESA_CHECK(q.shape.size() == 3 && k.shape.size() == 3 && v.shape.size() == 3,
            "attention: q {}, k {}, v {} must be [tokens, heads, head_dim]", q.shape_str(), k.shape_str(), v.shape_str());
  ESA_CHECK(k.shape == v.shape, "attention: k {} and v {} differ", k.shape_str(), v.shape_str());
  ESA_CHECK(q.shape[2] == k.shape[2], "attention: head dimensions differ: q {} k {}", q.shape_str(), k.shape_str());
  ESA_CHECK(k.shape[1] > 0 && q.shape[1] % k.shape[1] == 0, "attention: {} query heads are not a multiple of {} KV heads",
            q.shape[1], k.shape[1]);
  ESA_CHECK(int64_t(q_pos.size()) == q.shape[0] && int64_t(k_pos.size()) == k.shape[0],
            "attention: {} query positions for {} queries, {} key positions for {} keys", q_pos.size(), q.shape[0],
            k_pos.size(), k.shape[0]);
  if (out.shape() != q.shape) out = Tensor(q.shape);
  float* lse_data = nullptr;
  if (lse != nullptr) {
    if (lse->shape() != std::vector<int64_t>{q.shape[0], q.shape[1]}) *lse = Tensor({q.shape[0], q.shape[1]});
    lse_data = lse->data();
  }
  attention_cpu(q.data, k.data, v.data, q_pos.data(), k_pos.data(), q.shape[0], k.shape[0], q.shape[1], k.shape[1],
                q.shape[2], args, out.data(), lse_data);
}

}  // namespace esa::ops
