// make_policy: the one place that knows every policy kind (attention/policies.h).
#include "attention/policies.h"
#include "core/error.h"

namespace esa::attention {

std::unique_ptr<Policy> make_policy(const PolicyOptions& options, const ModelConfig& config) {
  options.validate();
  switch (options.kind) {
    case PolicyKind::full: return make_full_policy(options);
    case PolicyKind::streaming: return make_streaming_policy(options);
    case PolicyKind::oracle: return make_oracle_policy(options);
    case PolicyKind::esa: return make_esa_policy(options, config);
    case PolicyKind::infllm: return make_infllm_policy(options);
    case PolicyKind::quest: return make_quest_policy(options);
  }
  ESA_FAIL("make_policy: unknown policy kind {}", int(options.kind));
}

}  // namespace esa::attention
