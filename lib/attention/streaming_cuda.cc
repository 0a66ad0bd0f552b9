// The GPU halves of `full` and `streaming` (streaming.cc): no scoring, only the split. `full`
// lists no row and starts the local branch at token 0; `streaming` lists the initial tokens.
#include "attention/selection_cuda.h"

namespace esa::attention {
namespace {

class FullSelector final : public DeviceSelector {
 public:
  DeviceRows select(const DeviceLayerInputs&) override { return {}; }
};

class StreamingSelector final : public DeviceSelector {
 public:
  StreamingSelector(const DeviceContext& c, const PolicyOptions& o) : context_(c), options_(o) {}
  DeviceRows select(const DeviceLayerInputs& in) override {
    const ContextSplit split = split_context(options_.budget, in.start);
    rows_.prepare(split.init_end, split.init_end, context_.stream);
    return rows_.rows(split.init_end, split.local_begin);
  }

 private:
  DeviceContext context_;
  PolicyOptions options_;
  RowList rows_;
};

}  // namespace

std::unique_ptr<DeviceSelector> make_full_selector(const DeviceContext&) { return std::make_unique<FullSelector>(); }

std::unique_ptr<DeviceSelector> make_streaming_selector(const DeviceContext& context, const PolicyOptions& options) {
  return std::make_unique<StreamingSelector>(context, options);
}

}  // namespace esa::attention
