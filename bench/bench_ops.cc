// CPU op throughput at the shapes of the embedded model, and the machine's GEMM ceiling (a
// large square float32 GEMM through the same Eigen path) to read the engine's GFLOP/s against.
#include <benchmark/benchmark.h>

#include <random>

#include "ops/attention.h"
#include "ops/linear.h"

namespace {

esa::Tensor random_tensor(std::vector<int64_t> shape, uint64_t seed) {
  esa::Tensor t(std::move(shape));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = dist(rng);
  return t;
}

// y[T, out] = x[T, in] W^T: 2*T*in*out FLOPs.
void BM_linear(benchmark::State& state) {
  const int64_t T = state.range(0), in = state.range(1), out = state.range(2);
  const esa::Tensor x = random_tensor({T, in}, 1), w = random_tensor({out, in}, 2);
  esa::Tensor y;
  for (auto _ : state) {
    esa::ops::linear(x.view(), w.view(), {}, y);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(T * in * out) * double(state.iterations()),
                                                 benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
// The ceiling: a square GEMM large enough to run at the kernel's best.
BENCHMARK(BM_linear)->Args({2048, 2048, 2048})->Unit(benchmark::kMillisecond)->UseRealTime();
// SmolLM2 prefill chunk (512 tokens): Q/O [576 x 576], K/V [192 x 576], gate/up [1536 x 576], down [576 x 1536].
BENCHMARK(BM_linear)->Args({512, 576, 576})->Args({512, 576, 192})->Args({512, 576, 1536})->Args({512, 1536, 576})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
// Decode (one token): memory-bound, reported as GFLOP/s and readable as bytes (4 * in * out per call).
BENCHMARK(BM_linear)->Args({1, 576, 1536})->Args({1, 1536, 576})->Unit(benchmark::kMicrosecond)->UseRealTime();

// One 512-token causal chunk over a cache of S keys, SmolLM2 heads (9 query, 3 KV, d 64):
// 4 * 9 * 64 FLOPs per visible (query, key) pair.
void BM_attention_chunk(benchmark::State& state) {
  const int64_t T = 512, S = state.range(0), hq = 9, hkv = 3, d = 64;
  const esa::Tensor q = random_tensor({T, hq, d}, 3), k = random_tensor({S, hkv, d}, 4), v = random_tensor({S, hkv, d}, 5);
  std::vector<int64_t> q_pos(T), k_pos(S);
  for (int64_t i = 0; i < T; ++i) q_pos[i] = S - T + i;
  for (int64_t j = 0; j < S; ++j) k_pos[j] = j;
  esa::Tensor out;
  for (auto _ : state) {
    esa::ops::attention(q.view(), k.view(), v.view(), q_pos, k_pos, {0.125f, true}, out, nullptr);
    benchmark::DoNotOptimize(out.data());
  }
  const double pairs = double(T) * double(S - T) + double(T) * double(T + 1) / 2.0;
  state.counters["GFLOP/s"] = benchmark::Counter(4.0 * hq * d * pairs * double(state.iterations()),
                                                 benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_attention_chunk)->Arg(512)->Arg(2048)->Arg(4096)->Arg(8192)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
