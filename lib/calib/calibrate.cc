// esa calibrate; see calibrate.h.
#include "calib/calibrate.h"

#include <fmt/format.h>
#include <omp.h>

#include <chrono>
#include <algorithm>
#include <cmath>

#include "attention/policy.h"
#include "attention/projection_file.h"
#include "core/atomic_output.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/progress.h"
#include "io/hdf5.h"
#include "io/provenance.h"

namespace esa::calib {
namespace {

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// What calibrate needs from qk.h5, validated up front.
struct QkInfo {
  int64_t tokens = 0, n_layers = 0, n_kv_heads = 0, head_dim = 0, w = 0;
  std::string score_space;
  std::vector<int64_t> layers;
  std::vector<int64_t> seq_begin, seq_end;  // from /positions
};

QkInfo read_qk_info(const io::H5File& f) {
  io::check_format(f, "esa-qk");
  QkInfo q;
  q.tokens = f.attr_int("/", "n_tokens");
  q.n_layers = f.attr_int("/", "n_layers");
  q.n_kv_heads = f.attr_int("/", "n_kv_heads");
  q.head_dim = f.attr_int("/", "head_dim");
  q.w = f.attr_int("/", "w");
  q.score_space = f.attr_string("/", "score_space");
  q.layers = f.attr_ints("/", "layers");
  ESA_CHECK(q.tokens > 0 && q.n_kv_heads > 0 && q.head_dim > 0 && !q.layers.empty(),
            "{}: bad geometry in the attributes (n_tokens {}, n_kv_heads {}, head_dim {}, {} layers)", f.path(),
            q.tokens, q.n_kv_heads, q.head_dim, q.layers.size());
  const std::vector<int64_t> positions = f.read_ints("/positions");
  ESA_CHECK(int64_t(positions.size()) == q.tokens, "{}: /positions has {} rows, n_tokens says {} (truncated?)",
            f.path(), positions.size(), q.tokens);
  for (int64_t i = 0; i < q.tokens; ++i) {
    const int64_t p = positions[size_t(i)];
    if (p == 0) {
      if (i > 0) q.seq_end.push_back(i);
      q.seq_begin.push_back(i);
    } else {
      ESA_CHECK(i > 0 && p == positions[size_t(i - 1)] + 1, "{}: /positions is not a run of sequences at row {}",
                f.path(), i);
    }
  }
  q.seq_end.push_back(q.tokens);
  for (int64_t l : q.layers) {
    ESA_CHECK(l >= 0 && l < q.n_layers, "{}: layer {} listed, but the model has {} layers", f.path(), l, q.n_layers);
    for (const char* name : {"q_folded", "k"}) {
      const std::string ds = attention::layer_group(l) + "/" + name;
      ESA_CHECK(f.exists(ds), "{}: missing {} (truncated dump?)", f.path(), ds);
      const std::vector<int64_t> shape = f.shape(ds);
      ESA_CHECK(shape == (std::vector<int64_t>{q.tokens, q.n_kv_heads, q.head_dim}),
                "{}: {} has shape [{}], expected [{}, {}, {}] (truncated dump?)", f.path(), ds, fmt::join(shape, ", "),
                q.tokens, q.n_kv_heads, q.head_dim);
    }
  }
  return q;
}

struct LayerData {
  int64_t layer = 0;
  std::vector<float> q, k;  // [tokens, in_dim]
};

// Rows of the given sequences, concatenated, with their sequence bounds.
RowSet subset(const LayerData& d, const QkInfo& info, size_t first, size_t last, int64_t in_dim, int64_t skip,
              std::vector<float>& q, std::vector<float>& k) {
  RowSet rows;
  rows.in_dim = in_dim;
  rows.skip = skip;
  q.clear();
  k.clear();
  for (size_t s = first; s < last; ++s) {
    const int64_t b = info.seq_begin[s], e = info.seq_end[s];
    rows.begin.push_back(int64_t(q.size()) / in_dim);
    q.insert(q.end(), d.q.begin() + b * in_dim, d.q.begin() + e * in_dim);
    k.insert(k.end(), d.k.begin() + b * in_dim, d.k.begin() + e * in_dim);
    rows.end.push_back(int64_t(q.size()) / in_dim);
  }
  rows.q = q.data();
  rows.k = k.data();
  return rows;
}

// Second moments over the rows at positions >= skip (the tokens inference scores).
void add_scored_rows(SecondMoments& m, const float* data, const RowSet& rows) {
  for (size_t s = 0; s < rows.begin.size(); ++s) {
    const int64_t b = rows.begin[s] + rows.skip;
    if (b < rows.end[s]) m.add(data + b * rows.in_dim, rows.end[s] - b);
  }
}

LayerReport fit_layer(const LayerData& d, const QkInfo& info, size_t n_train, const CalibrateOptions& o,
                      attention::LayerProjection& out) {
  const int64_t in_dim = info.n_kv_heads * info.head_dim;
  std::vector<float> tq, tk, hq, hk;
  const RowSet train = subset(d, info, 0, n_train, in_dim, o.skip, tq, tk);
  const RowSet held = subset(d, info, n_train, info.seq_begin.size(), in_dim, o.skip, hq, hk);
  SecondMoments mq(in_dim), mk(in_dim);
  add_scored_rows(mq, train.q, train);
  add_scored_rows(mk, train.k, train);
  ESA_CHECK(mk.count() > 0, "calibrate: layer {}: no training token past --skip {}", d.layer, o.skip);
  LayerReport r;
  r.layer = d.layer;
  if (o.method == Method::pca) {
    out = fit_pca(mk, o.dim, o.energy).projection;
  } else {
    out = fit_closed(mq, mk, o.dim, o.energy, o.ridge).projection;
    if (o.method == Method::adam) {
      AdamOptions a = o.adam;
      a.seed = o.seed * 1000003u + uint64_t(d.layer);
      const AdamResult ar = fit_adam(out, train, a);
      out = ar.projection;
      r.loss_start = ar.loss_start;
      r.loss_end = ar.loss_end;
      r.best_epoch = ar.best_epoch;
    }
  }
  r.dim = out.dim;
  HeldoutOptions e = o.eval;
  e.seed = o.seed + uint64_t(d.layer);
  r.metrics = evaluate_heldout(out, held, e);
  return r;
}

std::string recall_name(const HeldoutOptions& e, size_t i) {
  return i < e.ks.size() ? fmt::format("recall_at_{}", e.ks[i]) : fmt::format("recall_at_{}pct", std::lround(e.fraction * 100));
}

}  // namespace

const char* method_name(Method m) {
  switch (m) {
    case Method::closed: return "closed";
    case Method::adam: return "adam";
    case Method::pca: return "pca";
  }
  return "?";
}

Method parse_method(const std::string& name) {
  if (name == "closed") return Method::closed;
  if (name == "adam") return Method::adam;
  if (name == "pca") return Method::pca;
  ESA_FAIL("unknown --method '{}' (expected closed, adam or pca)", name);
}

CalibrateReport calibrate(const CalibrateOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  ESA_CHECK(o.dim >= 0, "--dim must be >= 0, got {}", o.dim);
  ESA_CHECK(o.dim > 0 || (o.energy > 0 && o.energy <= 1), "give --dim N or --energy E with 0 < E <= 1");
  ESA_CHECK(o.holdout > 0 && o.holdout < 1, "--holdout must be in (0, 1), got {}", o.holdout);
  ESA_CHECK(o.skip >= 0, "--skip must be >= 0, got {}", o.skip);
  const io::H5File qk = io::H5File::open(o.qk_path);
  const QkInfo info = read_qk_info(qk);
  const int64_t in_dim = info.n_kv_heads * info.head_dim;
  ESA_CHECK(o.dim <= in_dim, "--dim {} is larger than the key dimension {} ({} KV heads x {})", o.dim, in_dim,
            info.n_kv_heads, info.head_dim);
  const size_t n_seq = info.seq_begin.size();
  ESA_CHECK(n_seq >= 2, "{}: {} sequence(s); calibrate needs at least 2 (one is held out): dump more --tokens or a "
            "shorter --seq-len", o.qk_path, n_seq);
  const size_t n_held = std::clamp<size_t>(size_t(std::ceil(o.holdout * double(n_seq))), 1, n_seq - 1);
  const size_t n_train = n_seq - n_held;

  AtomicOutput out(o.output, o.force);
  AtomicOutput::remove_stale(o.output);  // the temporary file of a killed earlier run
  CalibrateReport report;
  for (size_t i = 0; i < o.eval.ks.size() + 1; ++i) report.recall_names.push_back(recall_name(o.eval, i));
  report.train_tokens = info.seq_end[n_train - 1];
  report.heldout_tokens = info.tokens - report.train_tokens;
  attention::Projection projection;
  projection.in_dim = in_dim;
  std::vector<attention::LayerProjection> fitted(info.layers.size());
  report.layers.resize(info.layers.size());

  // Layers in groups of one per thread: read serially (HDF5 is not thread-safe), fit in parallel.
  const size_t group = size_t(std::max(1, omp_get_max_threads()));
  Progress progress(fmt::format("calibrate ({})", method_name(o.method)), int64_t(info.layers.size()), "layers",
                    o.progress);
  for (size_t g0 = 0; g0 < info.layers.size(); g0 += group) {
    const size_t g1 = std::min(info.layers.size(), g0 + group);
    std::vector<LayerData> data(g1 - g0);
    const auto tr = std::chrono::steady_clock::now();
    for (size_t i = g0; i < g1; ++i) {
      const std::string g = attention::layer_group(info.layers[i]);
      data[i - g0].layer = info.layers[i];
      data[i - g0].q = qk.read_floats(g + "/q_folded");
      data[i - g0].k = qk.read_floats(g + "/k");
      // One NaN would turn every fitted matrix into NaN: refuse the file instead, naming the row.
      for (const auto& [name, values] : {std::pair{"q_folded", &data[i - g0].q}, std::pair{"k", &data[i - g0].k}}) {
        const auto bad = std::find_if(values->begin(), values->end(), [](float x) { return !std::isfinite(x); });
        ESA_CHECK(bad == values->end(), "{}: {}/{} holds NaN or Inf (at value {}): the activations diverged, or the "
                  "file is corrupt", o.qk_path, g, name, bad - values->begin());
        // All-zero activations fit any projection "perfectly" (every score is 0): a fit on them
        // would report recall 1 and select nothing real.
        const bool all_zero = std::all_of(values->begin(), values->end(), [](float x) { return x == 0.0f; });
        ESA_CHECK(!all_zero, "{}: {}/{} is all zeros (degenerate activations: there is nothing to fit)", o.qk_path, g,
                  name);
      }
    }
    report.read_seconds += since(tr);
    std::vector<std::string> errors(g1 - g0);
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = g0; i < g1; ++i) {
      try {
        report.layers[i] = fit_layer(data[i - g0], info, n_train, o, fitted[i]);
      } catch (const Interrupted&) {
        // Rethrown below, once every thread is out (an exception may not leave the region).
      } catch (const std::exception& e) {
        errors[i - g0] = e.what();
      }
    }
    check_interrupt();  // SIGINT/SIGTERM first: the fits it cut short are not errors
    for (const auto& e : errors) ESA_CHECK(e.empty(), "{}", e);
    progress.advance(int64_t(g1 - g0));
  }
  progress.finish();

  {
    io::H5File f = io::H5File::create(out.temp_path());
    io::Provenance prov;
    prov.format = "esa-proj";
    prov.model = qk.attr_string("/", "model");
    prov.model_sha256 = qk.attr_string("/", "model_sha256");
    prov.seed = o.seed;
    io::write_provenance(f, prov);
    projection.layers = fitted;
    attention::write_projection(f, projection, info.layers, info.n_layers,
                                attention::parse_score_space(info.score_space), info.w);
    f.set_attr("/", "method", method_name(o.method));
    f.set_attr("/", "qk", o.qk_path);
    for (const char* a : {"text", "text_sha256"}) {
      if (qk.has_attr("/", a)) f.set_attr("/", a, qk.attr_string("/", a));
    }
    f.set_attr("/", "train_tokens", report.train_tokens);
    f.set_attr("/", "heldout_tokens", report.heldout_tokens);
    f.set_attr("/", "dim_requested", o.dim);
    f.set_attr("/", "energy", o.energy);
    f.set_attr("/", "holdout", o.holdout);
    f.set_attr("/", "skip", o.skip);
    f.set_attr("/", "ridge", o.ridge);
    f.set_attr("/", "eval_queries", o.eval.queries);
    if (o.method == Method::adam) {
      f.set_attr("/", "adam_epochs", o.adam.epochs);
      f.set_attr("/", "adam_batch", o.adam.batch);
      f.set_attr("/", "adam_keys", o.adam.keys);
      f.set_attr("/", "adam_lr", o.adam.lr);
      f.set_attr("/", "adam_loss", o.adam.loss == Loss::mse ? "mse" : "rank");
      f.set_attr("/", "adam_temperature", o.adam.temperature);
    }
    // Per layer: attributes on the group and columns under /metrics.
    const size_t nr = report.recall_names.size();
    std::vector<int64_t> layer_col, dim_col;
    std::vector<double> err_col, start_col, end_col;
    std::vector<std::vector<double>> recall_cols(nr);
    for (const LayerReport& r : report.layers) {
      const std::string g = attention::layer_group(r.layer);
      f.set_attr(g, "method", method_name(o.method));
      f.set_attr(g, "dim", r.dim);
      f.set_attr(g, "rel_err", r.metrics.rel_err);
      for (size_t i = 0; i < nr; ++i) {
        f.set_attr(g, report.recall_names[i], r.metrics.recall[i]);
        recall_cols[i].push_back(r.metrics.recall[i]);
      }
      if (o.method == Method::adam) {
        f.set_attr(g, "train_loss_start", r.loss_start);
        f.set_attr(g, "train_loss_end", r.loss_end);
      }
      layer_col.push_back(r.layer);
      dim_col.push_back(r.dim);
      err_col.push_back(r.metrics.rel_err);
      start_col.push_back(r.loss_start);
      end_col.push_back(r.loss_end);
    }
    const int64_t L = int64_t(report.layers.size());
    f.write("/metrics/layer", std::span<const int64_t>(layer_col), {L});
    f.write("/metrics/dim", std::span<const int64_t>(dim_col), {L});
    f.write("/metrics/rel_err", std::span<const double>(err_col), {L});
    for (size_t i = 0; i < nr; ++i) f.write("/metrics/" + report.recall_names[i], std::span<const double>(recall_cols[i]), {L});
    if (o.method == Method::adam) {
      f.write("/metrics/train_loss_start", std::span<const double>(start_col), {L});
      f.write("/metrics/train_loss_end", std::span<const double>(end_col), {L});
    }
    f.close();
  }
  out.commit();
  report.seconds = since(t0);
  return report;
}

}  // namespace esa::calib
