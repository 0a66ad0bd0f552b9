// plan_cell; see cell.h.
#include "sweep/cell.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/sha256.h"

namespace esa::sweep {

std::string ProjectionRecipe::dump_key(const std::string& model_sha256) const {
  return sha256_hex(fmt::format("dump\n{}\n{}\n{}\n{}\n{}\n{}\n", model_sha256, sha256_file(calib_text), calib_tokens,
                                calib_seq_len, attention::score_space_name(score_space), w))
      .substr(0, 16);
}

std::string ProjectionRecipe::projection_key(const std::string& model_sha256) const {
  return sha256_hex(fmt::format("proj\n{}\n{}\n{}\n{}\n{}\n", dump_key(model_sha256), dim, method, loss, epochs))
      .substr(0, 16);
}

CellPlan plan_cell(const Cell& cell, const Defaults& d) {
  const auto& p = cell.params;
  auto get = [&](const char* key, const std::string& fallback) {
    const auto it = p.find(key);
    return it == p.end() ? fallback : it->second;
  };
  auto get_int = [&](const char* key, int64_t fallback) {
    const auto it = p.find(key);
    return it == p.end() ? fallback : std::stoll(it->second);
  };
  try {
    CellPlan c;
    c.model = get("model", d.model);
    c.suite.name = get("suite", "passkey");
    c.suite.variant = get("variant", c.suite.variant);
    c.suite.needles = get_int("needles", c.suite.needles);
    c.suite.haystack = get("haystack", d.haystack);
    const std::string chat = get("chat", "off");
    ESA_CHECK(chat == "on" || chat == "off", "chat = {}: a sweep takes on or off", chat);
    c.suite.chat = chat == "on";
    c.suite.seed = uint64_t(get_int("seed", 0));
    c.grid.lengths = tasks::parse_lengths(get("lengths", "4k,8k,16k,32k"));
    c.grid.depths = tasks::parse_depths(get("depths", "0:100:10"));
    c.grid.samples = get_int("samples", 1);
    c.max_new = get_int("max_new", 0);
    attention::PolicyOptions& o = c.policy.options;
    c.policy.label = get("policy", "full");
    o.kind = attention::parse_policy(c.policy.label);
    o.budget.init = get_int("init", o.budget.init);
    o.budget.local = get_int("local", o.budget.local);
    o.budget.select = get_int("select", o.budget.select);
    o.budget.chunk = get_int("chunk", o.budget.chunk);
    o.eps = get_int("eps", o.eps);
    o.heads = attention::parse_head_mode(get("heads", attention::head_mode_name(o.heads)));
    o.score_space = attention::parse_score_space(get("score_space", attention::score_space_name(o.score_space)));
    o.w = get_int("w", o.w);
    o.validate();
    for (const KeyInfo& k : known_keys()) {
      if (std::string(k.group) == "calibrate" && p.count(k.name) != 0) c.needs_projection = true;
    }
    c.needs_projection = c.needs_projection && o.kind == attention::PolicyKind::esa;
    ProjectionRecipe& r = c.recipe;
    r.calib_text = get("calib_text", d.calib_text);
    r.calib_tokens = get_int("calib_tokens", r.calib_tokens);
    r.calib_seq_len = get_int("calib_seq_len", r.calib_seq_len);
    r.score_space = o.score_space;
    r.w = o.query_position();
    r.dim = get_int("dim", r.dim);
    r.method = get("method", r.method);
    r.loss = get("loss", r.loss);
    r.epochs = get_int("epochs", r.epochs);
    return c;
  } catch (const Error& e) {
    ESA_FAIL("cell {} ({}): {}", cell.index, cell.id, e.what());
  }
}

}  // namespace esa::sweep
