// proj.h5 reading and writing; see projection_file.h.
#include "attention/projection_file.h"

#include <fmt/format.h>

#include <cmath>

#include "core/error.h"

namespace esa::attention {

std::string layer_group(int64_t layer) { return fmt::format("/layer_{:02}", layer); }

void write_projection(io::H5File& file, const Projection& projection, const std::vector<int64_t>& layer_ids,
                      int64_t n_layers, ScoreSpace score_space, int64_t w) {
  projection.validate();
  ESA_CHECK(layer_ids.size() == projection.layers.size(), "write_projection: {} layer ids for {} layers",
            layer_ids.size(), projection.layers.size());
  std::vector<int64_t> dims;
  for (size_t i = 0; i < layer_ids.size(); ++i) {
    const LayerProjection& p = projection.layers[i];
    ESA_CHECK(layer_ids[i] >= 0 && layer_ids[i] < n_layers, "write_projection: layer {} of {}", layer_ids[i], n_layers);
    const std::string g = layer_group(layer_ids[i]);
    file.write(g + "/Wq", p.wq, {p.dim, projection.in_dim});
    file.write(g + "/bq", p.bq, {p.dim});
    file.write(g + "/Wk", p.wk, {p.dim, projection.in_dim});
    file.write(g + "/bk", p.bk, {p.dim});
    dims.push_back(p.dim);
  }
  file.set_attr("/", "in_dim", projection.in_dim);
  file.set_attr("/", "n_layers", n_layers);
  file.set_attr("/", "layers", std::span<const int64_t>(layer_ids));
  file.set_attr("/", "dims", std::span<const int64_t>(dims));
  file.set_attr("/", "score_space", score_space_name(score_space));
  file.set_attr("/", "w", w);
}

namespace {

std::vector<float> read_finite(const io::H5File& f, const std::string& name, const std::vector<int64_t>& shape) {
  const std::vector<int64_t> got = f.shape(name);
  ESA_CHECK(got == shape, "{}: {} has shape [{}], expected [{}]", f.path(), name, fmt::join(got, ", "),
            fmt::join(shape, ", "));
  std::vector<float> v = f.read_floats(name);
  for (float x : v) ESA_CHECK(std::isfinite(x), "{}: {} holds NaN or Inf", f.path(), name);
  return v;
}

}  // namespace

Projection read_projection(const std::string& path, const ModelConfig& config, const PolicyOptions& options) {
  const io::H5File f = io::H5File::open(path);
  if (f.has_attr("/", "format")) {
    const std::string format = f.attr_string("/", "format");
    ESA_CHECK(format == "esa-proj", "{}: not a projection file (format attribute is '{}', expected 'esa-proj')", path,
              format);
  }
  const int64_t in_dim = config.n_kv_heads * config.head_dim;
  if (f.has_attr("/", "in_dim")) {
    const int64_t got = f.attr_int("/", "in_dim");
    ESA_CHECK(got == in_dim,
              "{}: fitted for key dimension {}, but this model has {} KV heads x {} = {} (a projection of another "
              "model?)",
              path, got, config.n_kv_heads, config.head_dim, in_dim);
  }
  if (f.has_attr("/", "n_layers")) {
    const int64_t got = f.attr_int("/", "n_layers");
    ESA_CHECK(got == config.n_layers, "{}: has {} layers, this model has {} (a projection of another model?)", path, got,
              config.n_layers);
  }
  if (f.has_attr("/", "score_space")) {
    const std::string got = f.attr_string("/", "score_space");
    ESA_CHECK(got == score_space_name(options.score_space),
              "{}: fitted in score space '{}', but this run scores in '{}' (pass --score-space {} or refit)", path, got,
              score_space_name(options.score_space), got);
  }
  if (options.score_space == ScoreSpace::rotated && f.has_attr("/", "w")) {
    const int64_t got = f.attr_int("/", "w");
    ESA_CHECK(got == options.query_position(),
              "{}: fitted with queries rotated to w = {}, but this run uses w = {} (pass --w {} or refit)", path, got,
              options.query_position(), got);
  }
  Projection p;
  p.in_dim = in_dim;
  for (int64_t l = 0; l < config.n_layers; ++l) {
    const std::string g = layer_group(l);
    ESA_CHECK(f.exists(g + "/Wq"), "{}: missing {}/Wq (the model has {} layers)", path, g, config.n_layers);
    const std::vector<int64_t> shape = f.shape(g + "/Wq");
    ESA_CHECK(shape.size() == 2 && shape[1] == in_dim && shape[0] >= 1 && shape[0] <= in_dim,
              "{}: {}/Wq has shape [{}], expected [d', {}] with 1 <= d' <= {}", path, g, fmt::join(shape, ", "), in_dim,
              in_dim);
    LayerProjection lp;
    lp.dim = shape[0];
    lp.wq = read_finite(f, g + "/Wq", {lp.dim, in_dim});
    lp.bq = read_finite(f, g + "/bq", {lp.dim});
    lp.wk = read_finite(f, g + "/Wk", {lp.dim, in_dim});
    lp.bk = read_finite(f, g + "/bk", {lp.dim});
    p.layers.push_back(std::move(lp));
  }
  const std::string extra = layer_group(config.n_layers);
  ESA_CHECK(!f.exists(extra), "{}: has a group {} but this model has only {} layers (a projection of another model?)",
            path, extra, config.n_layers);
  return p;
}

}  // namespace esa::attention
