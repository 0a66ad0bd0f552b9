// See bench_attention_cuda.h. Stage times are medians of CUDA-event intervals over the steps;
// "step" is the whole step replayed from a CUDA graph (launch gaps removed, as a decoder that
// captures its step would see it). Caches are random bf16 filled on the device.
#include "bench_attention_cuda.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/device.h"
#include "core/error.h"

#ifdef ESA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "attention/selection_cuda.h"
#include "bench/random_fill.cuh"
#include "rope_rows.cuh"
#include "core/cuda_check.h"
#include "core/device_buffer.h"
#include "esa_select.cuh"
#include "flash_attention.cuh"
#include "gather_rows.cuh"
#include "gathered_attention.cuh"
#include "ops/rope.h"
#include "top_k.cuh"
#endif

namespace esa::cli {

#ifndef ESA_WITH_CUDA
void run_bench_attention_cuda(const CudaBenchAttentionOptions&) {
  ESA_FAIL("bench attention --device cuda: this esa was built without CUDA");
}
#else
namespace {

template <typename T>
using DeviceArray = cuda::Buffer<T>;

// A pageable cudaMemcpy may return before the data lands, and the benchmark's stream does not
// wait for the legacy default stream: synchronise the device.
template <typename T>
void upload(DeviceArray<T>& dst, const void* host, size_t bytes) {
  ESA_CUDA_CHECK(cudaMemcpy(dst.get(), host, bytes, cudaMemcpyHostToDevice));
  ESA_CUDA_CHECK(cudaDeviceSynchronize());
}

class Events {
 public:
  explicit Events(int n) : events_(size_t(n)) {
    for (cudaEvent_t& e : events_) ESA_CUDA_CHECK(cudaEventCreate(&e));
  }
  ~Events() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  cudaEvent_t operator[](int i) const { return events_[size_t(i)]; }
  double us(int a, int b) const {
    float ms = 0.0f;
    ESA_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[size_t(a)], events_[size_t(b)]));
    return 1000.0 * ms;
  }

 private:
  std::vector<cudaEvent_t> events_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Device-to-device copy of 1 GiB: bytes read + written per second, the streaming ceiling that
// the floors below divide by.
double copy_bandwidth_gbs(cudaStream_t stream) {
  const size_t bytes = size_t(1) << 30;
  DeviceArray<char> a(bytes), b(bytes);
  ESA_CUDA_CHECK(cudaMemsetAsync(a.get(), 1, bytes, stream));
  Events ev(2);
  for (int i = 0; i < 3; ++i) ESA_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, stream));
  ESA_CUDA_CHECK(cudaEventRecord(ev[0], stream));
  const int reps = 10;
  for (int i = 0; i < reps; ++i) ESA_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, stream));
  ESA_CUDA_CHECK(cudaEventRecord(ev[1], stream));
  ESA_CUDA_CHECK(cudaEventSynchronize(ev[1]));
  return 2.0 * double(bytes) * reps / (ev.us(0, 1) * 1e-6) / 1e9;
}

// Replays `enqueue` captured in a CUDA graph; microseconds per replay.
template <typename Fn>
double graph_us(cudaStream_t stream, Fn&& enqueue, int reps) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ESA_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  enqueue();
  ESA_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  ESA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 5; ++i) ESA_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  Events ev(2);
  ESA_CUDA_CHECK(cudaEventRecord(ev[0], stream));
  for (int i = 0; i < reps; ++i) ESA_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  ESA_CUDA_CHECK(cudaEventRecord(ev[1], stream));
  ESA_CUDA_CHECK(cudaEventSynchronize(ev[1]));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return ev.us(0, 1) / reps;
}

struct Row {
  int64_t context = 0;
  std::string policy;
  int64_t attended = 0;
  double score_us = 0, topk_us = 0, attend_us = 0, merge_us = 0, step_us = 0;
  double bytes = 0;  // what the step must read from memory at least
};

void print_row(const Row& r, double bandwidth_gbs) {
  const double floor_us = r.bytes / (bandwidth_gbs * 1e9) * 1e6;
  fmt::print("{:>8} {:<6} {:>8} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>10.1f} {:>9.2f} {:>7.2f}\n", r.context,
             r.policy, r.attended, r.score_us, r.topk_us, r.attend_us, r.merge_us, r.step_us, r.bytes / 1e6, floor_us,
             r.step_us / floor_us);
  std::fflush(stdout);
}

// One prefill chunk of C queries at the end of an n-token cache (the chunk's own keys are the
// cache's last C rows), as the GPU forward runs it: for full, the prefix's keys rotated and the
// flash kernel over [0, n) causal; for esa, the chunk's importance over the middle (two passes
// over k' when C * d' fits the chunk kernel, else 16 queries at a time), pool and top-k, the
// selected rows gathered, the local range rotated, the flash kernel over both.
struct ChunkBench {
  cublasHandle_t cublas;  // bound to the benchmark's stream
  const __nv_bfloat16 *k, *v, *kc;
  cuda::RopeTables rope;
  int64_t n, hq, hkv, d, dim;
  attention::Budget budget;
  int64_t eps;
  uint64_t seed;
  int reps;
};

void time_prefill_chunk(const ChunkBench& b, const std::string& policy, cudaStream_t stream) {
  const int64_t C = std::min(b.budget.chunk, b.n), width = b.hkv * b.d, n = b.n;
  DeviceArray<__nv_bfloat16> q16(size_t(C * b.hq * b.d)), k_range(size_t(n * width));
  DeviceArray<float> out(size_t(C * b.hq * b.d));
  ESA_CUDA_CHECK(cuda::launch_random_fill_bf16(q16.get(), C * b.hq * b.d, b.seed + 7, 1.0f, stream));
  cuda::FlashChunkParams fp;
  fp.q_long = q16.get();
  fp.q_local = q16.get();
  fp.k_range = k_range.get();
  fp.first_query = n - C;
  fp.T = int(C);
  fp.hq = int(b.hq);
  fp.hkv = int(b.hkv);
  fp.d = int(b.d);
  fp.scale = 1.0f / std::sqrt(float(b.d));
  fp.out = out.get();
  const int64_t init = std::min(b.budget.init, n - C);
  const int64_t local_begin = policy == "full" ? 0 : std::max(init, n - C - b.budget.local);
  const int64_t middle = policy == "full" ? 0 : local_begin - init;
  const int64_t select = std::min(b.budget.select, middle);
  const int64_t n_rows = policy == "full" ? 0 : init + select;
  DeviceArray<float> qc(size_t(C * b.dim)), scores(attention::importance_score_floats(C, b.dim, std::max<int64_t>(middle, 1))),
      importance(size_t(std::max<int64_t>(middle, 1)));
  DeviceArray<unsigned int> row_max(attention::importance_row_max_count(C));
  DeviceArray<__nv_bfloat16> qc16(size_t(C * b.dim));
  DeviceArray<int> rows(size_t(std::max<int64_t>(n_rows, 1)));
  DeviceArray<__nv_bfloat16> k_rows(size_t(std::max<int64_t>(n_rows, 1) * width)), v_rows(k_rows.size());
  const size_t ws = cuda::top_k_workspace_bytes(std::max<int64_t>(middle, 1));
  DeviceArray<uint8_t> workspace(ws);
  ESA_CUDA_CHECK(cudaMemset(workspace.get(), 0, ws));
  ESA_CUDA_CHECK(cuda::launch_random_fill_f32(qc.get(), C * b.dim, b.seed + 8, 1.0f, stream));
  std::vector<int> sinks(static_cast<size_t>(init));
  std::iota(sinks.begin(), sinks.end(), 0);
  if (n_rows > 0) upload(rows, sinks.data(), sinks.size() * sizeof(int));
  fp.k_rows = k_rows.get();
  fp.v_rows = v_rows.get();
  fp.n_rows = n_rows;
  fp.range_begin = local_begin;
  fp.range_len = n - local_begin;
  fp.v_range = b.v + local_begin * width;
  DeviceArray<float> partial(std::max<size_t>(cuda::flash_chunk_partial_floats(fp), 1));
  fp.partial = partial.get();
  const attention::ImportanceScratch scratch{scores.get(), qc16.get(), row_max.get()};
  auto score_and_select = [&] {
    if (middle <= 0 || select <= 0) return;
    attention::importance_cuda(b.cublas, stream, qc.get(), b.kc, b.dim, C, init, local_begin, int(b.eps), scratch,
                        importance.get());
    const cuda::TopKParams tp{importance.get(), middle, int(select), int(init), rows.get() + init, workspace.get()};
    ESA_CUDA_CHECK(cuda::launch_top_k(tp, stream));
  };
  auto attend = [&] {
    if (n_rows > 0) {
      ESA_CUDA_CHECK(cuda::launch_gather_rows(b.k, b.v, rows.get(), int(n_rows), int(width), k_rows.get(),
                                              v_rows.get(), stream));
    }
    ESA_CUDA_CHECK(cuda::launch_flash_chunk_attention(fp, stream));
  };
  // The range's keys at their positions: the forward keeps them in a rotated window (each chunk
  // turns its own new rows only, kernels/rope_rows.cuh), so the turn is outside the timing.
  ESA_CUDA_CHECK(cuda::launch_rope_rows(b.k, local_begin, n, int(b.hkv), int(b.d), b.rope, k_range.get(), stream));
  Events ev(3);
  std::vector<double> t_select, t_attend;
  for (int i = 0; i <= b.reps; ++i) {
    ESA_CUDA_CHECK(cudaEventRecord(ev[0], stream));
    score_and_select();
    ESA_CUDA_CHECK(cudaEventRecord(ev[1], stream));
    attend();
    ESA_CUDA_CHECK(cudaEventRecord(ev[2], stream));
    ESA_CUDA_CHECK(cudaEventSynchronize(ev[2]));
    if (i == 0) continue;
    t_select.push_back(ev.us(0, 1));
    t_attend.push_back(ev.us(1, 2));
  }
  const double select_ms = median(t_select) / 1e3, attend_ms = median(t_attend) / 1e3;
  // Attention FLOPs: QK^T and PV over what each query sees (the range causal).
  const double columns = double(n_rows) * double(C) + double(n - local_begin - C) * double(C) + double(C) * double(C + 1) / 2;
  const double flops = 4.0 * double(b.hq) * double(b.d) * columns;
  fmt::print("{:>8} {:<6} {:>7} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.1f}\n", n, policy, C, select_ms, attend_ms,
             select_ms + attend_ms, flops / (attend_ms * 1e-3) / 1e12);
  std::fflush(stdout);
}

}  // namespace

void run_bench_attention_cuda(const CudaBenchAttentionOptions& opt) {
  std::string why;
  const std::vector<CudaDeviceInfo> devices = cuda_devices(&why);
  ESA_CHECK(!devices.empty(), "bench attention --device cuda: no usable GPU ({})", why);
  ESA_CHECK(opt.steps >= 1, "--steps must be >= 1, got {}", opt.steps);
  ESA_CHECK(opt.dim > 0 && opt.dim % 8 == 0 && opt.dim <= 256, "--dim {}: the GPU scoring takes a multiple of 8 up to 256",
            opt.dim);
  ESA_CHECK(opt.eps >= 0 && opt.eps <= 1024, "--eps {}: the GPU max-pool takes 0 .. 1024", opt.eps);
  cudaStream_t stream;
  ESA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const double bandwidth = copy_bandwidth_gbs(stream);
  const int reps = int(opt.steps);
  fmt::print("bench attention (cuda): {} ({} GiB), shape {} ({} query heads, {} KV heads, head dim {}), bf16 cache, "
             "fp32 accumulation, d' {}, budget {} + {} + {}, eps {}; copy bandwidth {:.0f} GB/s (read + write); "
             "median of {} steps, step = CUDA graph replay\n",
             devices[0].name, devices[0].total_memory >> 30, opt.shape_name, opt.hq, opt.hkv, opt.d, opt.dim,
             opt.budget.init, opt.budget.local, opt.budget.select, opt.eps, bandwidth, reps);
  fmt::print("{:>8} {:<6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>7}\n", "context", "policy", "rows",
             "score us", "top-k us", "attend us", "merge us", "step us", "bytes MB", "floor us", "x floor");
  const int64_t hq = opt.hq, hkv = opt.hkv, d = opt.d, width = hkv * d;
  RopeConfig rope_config;
  rope_config.base = opt.rope_base;
  rope_config.dim = d;
  rope_config.style = RopeStyle::rotate_half;
  const ops::RopeTable rope_table = ops::make_rope_table(rope_config);

  std::vector<int64_t> contexts_done;
  for (const int64_t n : opt.contexts) {
    ESA_CHECK(n < (int64_t(1) << 24), "--context {}: at most 2^24 tokens on the GPU path", n);
    DeviceArray<__nv_bfloat16> k(size_t(n * width)), v(size_t(n * width)), kc(size_t(n * opt.dim));
    DeviceArray<float> q_long(size_t(hq * d)), q_local(size_t(hq * d)), qc(size_t(opt.dim));
    ESA_CUDA_CHECK(cuda::launch_random_fill_bf16(k.get(), n * width, opt.seed, 1.0f, stream));
    ESA_CUDA_CHECK(cuda::launch_random_fill_bf16(v.get(), n * width, opt.seed + 1, 1.0f, stream));
    ESA_CUDA_CHECK(cuda::launch_random_fill_bf16(kc.get(), n * opt.dim, opt.seed + 2, 1.0f, stream));
    ESA_CUDA_CHECK(cuda::launch_random_fill_f32(q_long.get(), hq * d, opt.seed + 3, 1.0f, stream));
    ESA_CUDA_CHECK(cuda::launch_random_fill_f32(q_local.get(), hq * d, opt.seed + 4, 1.0f, stream));
    ESA_CUDA_CHECK(cuda::launch_random_fill_f32(qc.get(), opt.dim, opt.seed + 5, 1.0f, stream));
    const ops::RopeSplitTables split = ops::make_rope_split_tables(rope_table, n);
    DeviceArray<float> inv_freq(split.inv_freq.size()), low(split.low.size()), high(split.high.size());
    upload(inv_freq, split.inv_freq.data(), split.inv_freq.size() * 4);
    upload(low, split.low.data(), split.low.size() * 4);
    upload(high, split.high.data(), split.high.size() * 4);

    for (const std::string& policy : opt.policies) {
      Row row;
      row.context = n;
      row.policy = policy;
      cuda::GatheredAttentionParams ap;
      ap.q_long = q_long.get();
      ap.q_local = q_local.get();
      ap.k = k.get();
      ap.v = v.get();
      ap.hq = int(hq);
      ap.hkv = int(hkv);
      ap.d = int(d);
      ap.scale = 1.0f / std::sqrt(float(d));
      if (policy == "full") {
        // Dense decode over the whole cache; keys read as stored (already rotated, as SDPA reads them).
        ap.range_begin = 0;
        ap.range_end = n;
        row.attended = n;
        DeviceArray<float> partial(cuda::gathered_attention_partial_floats(n, int(hq), int(hkv), int(d)));
        DeviceArray<float> out(size_t(hq * d));
        ap.partial = partial.get();
        ap.out = out.get();
        Events ev(3);
        std::vector<double> attend, merge;
        for (int i = 0; i <= reps; ++i) {
          ESA_CUDA_CHECK(cudaEventRecord(ev[0], stream));
          ESA_CUDA_CHECK(cuda::launch_gathered_attention_splits(ap, stream));
          ESA_CUDA_CHECK(cudaEventRecord(ev[1], stream));
          ESA_CUDA_CHECK(cuda::launch_gathered_attention_merge(ap, stream));
          ESA_CUDA_CHECK(cudaEventRecord(ev[2], stream));
          ESA_CUDA_CHECK(cudaEventSynchronize(ev[2]));
          if (i == 0) continue;
          attend.push_back(ev.us(0, 1));
          merge.push_back(ev.us(1, 2));
        }
        row.attend_us = median(attend);
        row.merge_us = median(merge);
        row.step_us = graph_us(stream, [&] { ESA_CUDA_CHECK(cuda::launch_gathered_attention(ap, stream)); }, reps);
        row.bytes = double(n) * double(width) * 2.0 * 2.0;
        print_row(row, bandwidth);
        continue;
      }
      if (policy == "topk") {
        // The selection alone: top-k of --select over n random float scores (torch.topk's task).
        const int64_t select = std::min(opt.budget.select, n);
        DeviceArray<float> values(static_cast<size_t>(n));
        DeviceArray<int> chosen(static_cast<size_t>(select));
        DeviceArray<uint8_t> workspace(cuda::top_k_workspace_bytes(n));
        ESA_CUDA_CHECK(cudaMemset(workspace.get(), 0, cuda::top_k_workspace_bytes(n)));
        ESA_CUDA_CHECK(cuda::launch_random_fill_f32(values.get(), n, opt.seed + 6, 1.0f, stream));
        const cuda::TopKParams tp{values.get(), n, int(select), 0, chosen.get(), workspace.get()};
        row.attended = select;
        Events ev(2);
        std::vector<double> t;
        for (int i = 0; i <= reps; ++i) {
          ESA_CUDA_CHECK(cudaEventRecord(ev[0], stream));
          ESA_CUDA_CHECK(cuda::launch_top_k(tp, stream));
          ESA_CUDA_CHECK(cudaEventRecord(ev[1], stream));
          ESA_CUDA_CHECK(cudaEventSynchronize(ev[1]));
          if (i > 0) t.push_back(ev.us(0, 1));
        }
        row.topk_us = median(t);
        row.step_us = graph_us(stream, [&] { ESA_CUDA_CHECK(cuda::launch_top_k(tp, stream)); }, reps);
        row.bytes = double(n) * 4.0 * 5.0;  // three radix passes and the two compaction passes
        print_row(row, bandwidth);
        continue;
      }
      ESA_CHECK(policy == "esa" || policy == "esa-rope", "--policy '{}': the GPU path times esa, esa-rope, full and topk",
                policy);
      const int64_t init = std::min(opt.budget.init, n);
      const int64_t local_begin = std::max(init, n - opt.budget.local);
      const int64_t middle = local_begin - init;
      const int64_t select = std::min(opt.budget.select, middle);
      DeviceArray<float> scores(size_t(std::max<int64_t>(middle, 1))), importance(size_t(std::max<int64_t>(middle, 1)));
      DeviceArray<unsigned int> row_max(1);
      DeviceArray<int> rows(size_t(init + select));
      DeviceArray<uint8_t> workspace(cuda::top_k_workspace_bytes(std::max<int64_t>(middle, 1)));
      ESA_CUDA_CHECK(cudaMemset(workspace.get(), 0, cuda::top_k_workspace_bytes(std::max<int64_t>(middle, 1))));
      std::vector<int> sinks(static_cast<size_t>(init));
      std::iota(sinks.begin(), sinks.end(), 0);
      upload(rows, sinks.data(), sinks.size() * sizeof(int));
      ap.rows = rows.get();
      ap.n_rows = int(init + select);
      ap.range_begin = local_begin;
      ap.range_end = n;
      ap.rope = {inv_freq.get(), reinterpret_cast<const float2*>(low.get()), reinterpret_cast<const float2*>(high.get()),
                 int(split.half), split.adjacent_pairs};
      // esa reads the local window's keys from the rotated window the forward keeps; esa-rope rotates
      // them per row and step (the kernel's path without that copy), for comparison.
      DeviceArray<__nv_bfloat16> k_rotated(policy == "esa" ? size_t(n * width) : size_t(1));
      if (policy == "esa") {
        ESA_CUDA_CHECK(cuda::launch_rope_rows(k.get(), 0, n, int(hkv), int(d), ap.rope, k_rotated.get(), stream));
        ap.k_rotated = k_rotated.get();
      }
      const int64_t total_rows = init + select + (n - local_begin);
      row.attended = total_rows;
      DeviceArray<float> partial(cuda::gathered_attention_partial_floats(total_rows, int(hq), int(hkv), int(d)));
      DeviceArray<float> out(size_t(hq * d));
      ap.partial = partial.get();
      ap.out = out.get();
      const cuda::CompressedScoreParams sp{qc.get(), kc.get(), int(opt.dim), 1, init, local_begin, scores.get(), row_max.get()};
      const cuda::ImportanceParams ip{scores.get(), row_max.get(), 1, middle, int(opt.eps), importance.get()};
      const cuda::TopKParams tp{importance.get(), middle, int(select), int(init), rows.get() + init, workspace.get()};
      auto score = [&] {
        if (middle > 0) ESA_CUDA_CHECK(cuda::launch_compressed_scores(sp, stream));
      };
      auto top_k = [&] {
        if (middle > 0 && select > 0) {
          ESA_CUDA_CHECK(cuda::launch_importance_pool(ip, stream));
          ESA_CUDA_CHECK(cuda::launch_top_k(tp, stream));
        }
      };
      Events ev(5);
      std::vector<double> t_score, t_topk, t_attend, t_merge;
      for (int i = 0; i <= reps; ++i) {
        ESA_CUDA_CHECK(cudaEventRecord(ev[0], stream));
        score();
        ESA_CUDA_CHECK(cudaEventRecord(ev[1], stream));
        top_k();
        ESA_CUDA_CHECK(cudaEventRecord(ev[2], stream));
        ESA_CUDA_CHECK(cuda::launch_gathered_attention_splits(ap, stream));
        ESA_CUDA_CHECK(cudaEventRecord(ev[3], stream));
        ESA_CUDA_CHECK(cuda::launch_gathered_attention_merge(ap, stream));
        ESA_CUDA_CHECK(cudaEventRecord(ev[4], stream));
        ESA_CUDA_CHECK(cudaEventSynchronize(ev[4]));
        if (i == 0) continue;
        t_score.push_back(ev.us(0, 1));
        t_topk.push_back(ev.us(1, 2));
        t_attend.push_back(ev.us(2, 3));
        t_merge.push_back(ev.us(3, 4));
      }
      row.score_us = median(t_score);
      row.topk_us = median(t_topk);
      row.attend_us = median(t_attend);
      row.merge_us = median(t_merge);
      row.step_us = graph_us(
          stream,
          [&] {
            score();
            top_k();
            ESA_CUDA_CHECK(cuda::launch_gathered_attention(ap, stream));
          },
          reps);
      // At least: k' once, the scores written and read back, F once per radix pass and twice in the
      // compaction (L2-resident at these sizes, counted anyway), the gathered K and V rows.
      row.bytes = double(middle) * double(opt.dim) * 2.0 + double(middle) * 4.0 * 8.0 +
                  double(total_rows) * double(width) * 2.0 * 2.0;
      print_row(row, bandwidth);
    }
    contexts_done.push_back(n);
  }

  // The prefill chunk (the forward's path), per context, for esa and full.
  cublasHandle_t cublas;
  ESA_CUBLAS_CHECK(cublasCreate(&cublas));
  ESA_CUBLAS_CHECK(cublasSetStream(cublas, stream));
  fmt::print("prefill chunk: {} queries at the end of the context (median of {}); attention TFLOP/s counts what the "
             "queries see\n", opt.budget.chunk, reps);
  fmt::print("{:>8} {:<6} {:>7} {:>10} {:>10} {:>10} {:>10}\n", "context", "policy", "queries", "select ms", "attend ms",
             "chunk ms", "TFLOP/s");
  for (const int64_t n : contexts_done) {
    DeviceArray<__nv_bfloat16> k(size_t(n * width)), v(size_t(n * width)), kc(size_t(n * opt.dim));
    ESA_CUDA_CHECK(cuda::launch_random_fill_bf16(k.get(), n * width, opt.seed, 1.0f, stream));
    ESA_CUDA_CHECK(cuda::launch_random_fill_bf16(v.get(), n * width, opt.seed + 1, 1.0f, stream));
    ESA_CUDA_CHECK(cuda::launch_random_fill_bf16(kc.get(), n * opt.dim, opt.seed + 2, 1.0f, stream));
    const ops::RopeSplitTables split = ops::make_rope_split_tables(rope_table, n);
    DeviceArray<float> inv_freq(split.inv_freq.size()), low(split.low.size()), high(split.high.size());
    upload(inv_freq, split.inv_freq.data(), split.inv_freq.size() * 4);
    upload(low, split.low.data(), split.low.size() * 4);
    upload(high, split.high.data(), split.high.size() * 4);
    const ChunkBench b{cublas, k.get(), v.get(), kc.get(),
                       {inv_freq.get(), reinterpret_cast<const float2*>(low.get()),
                        reinterpret_cast<const float2*>(high.get()), int(split.half), split.adjacent_pairs},
                       n, hq, hkv, d, opt.dim, opt.budget, opt.eps, opt.seed, std::max(3, reps / 5)};
    for (const std::string& policy : opt.policies) {
      if (policy == "esa" || policy == "full") time_prefill_chunk(b, policy, stream);
    }
  }
  cublasDestroy(cublas);
  cudaStreamDestroy(stream);
}
#endif

}  // namespace esa::cli
