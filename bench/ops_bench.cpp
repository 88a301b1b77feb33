// The heavy ops of an SD1.5 step at their real shapes (CFG batch 2, 512x512 images), in f32
// and with bf16 weights / the bf16 scope. Counters: GFLOP/s of the products.
#include <benchmark/benchmark.h>

#include <random>

#include "ops/ops.h"

using namespace diffuse;

namespace {

Tensor random(const Shape& s, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(size_t(shape_numel(s)));
  for (float& x : v) x = d(g);
  return Tensor::from_vector(v, s);
}

// args: batch, channels in, channels out, height = width, kernel, bf16 weights
void BM_Conv2d(benchmark::State& st) {
  const int64_t b = st.range(0), cin = st.range(1), cout = st.range(2), hw = st.range(3);
  const int64_t k = st.range(4);
  Tensor x = random({b, cin, hw, hw}, 1);
  Tensor w = random({cout, cin, k, k}, 2, 0.05f);
  if (st.range(5)) w = w.to(DType::BF16);
  Tensor bias = random({cout}, 3);
  for (auto _ : st) benchmark::DoNotOptimize(ops::conv2d(x, w, bias, 1, k / 2));
  st.counters["GFLOP/s"] = benchmark::Counter(2e-9 * double(b * cout * hw * hw * cin * k * k),
                                              benchmark::Counter::kIsIterationInvariantRate);
}

// args: rows, in, out, bf16 weights
void BM_Linear(benchmark::State& st) {
  const int64_t m = st.range(0), k = st.range(1), n = st.range(2);
  Tensor x = random({m, k}, 4);
  Tensor w = random({n, k}, 5, 0.05f);
  if (st.range(3)) w = w.to(DType::BF16);
  Tensor bias = random({n}, 6);
  for (auto _ : st) benchmark::DoNotOptimize(ops::linear(x, w, bias));
  st.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * double(m * n * k), benchmark::Counter::kIsIterationInvariantRate);
}

// args: batch * heads, query tokens, key tokens, head dim, bf16 scope
void BM_Attention(benchmark::State& st) {
  const int64_t bh = st.range(0), lq = st.range(1), lk = st.range(2), d = st.range(3);
  Tensor q = random({1, bh, lq, d}, 7), k = random({1, bh, lk, d}, 8),
         v = random({1, bh, lk, d}, 9);
  ops::PrecisionScope scope(st.range(4) ? ops::ComputePrecision::BF16 : ops::ComputePrecision::F32);
  for (auto _ : st) benchmark::DoNotOptimize(ops::attention(q, k, v, 0.158f, false));
  st.counters["GFLOP/s"] = benchmark::Counter(4e-9 * double(bh * lq * lk * d),
                                              benchmark::Counter::kIsIterationInvariantRate);
}

void BM_GroupNormSilu(benchmark::State& st) {
  Tensor x = random({st.range(0), st.range(1), st.range(2), st.range(2)}, 10);
  Tensor w = random({st.range(1)}, 11), b = random({st.range(1)}, 12);
  for (auto _ : st) benchmark::DoNotOptimize(ops::group_norm_silu(x, 32, w, b, 1e-5f));
}

void BM_Gelu(benchmark::State& st) {
  Tensor x = random({st.range(0), st.range(1)}, 13);
  for (auto _ : st) benchmark::DoNotOptimize(ops::gelu(x));
}

}  // namespace

BENCHMARK(BM_Conv2d)
    ->ArgNames({"b", "cin", "cout", "hw", "k", "bf16"})
    ->ArgsProduct({{2}, {320}, {320}, {64}, {3}, {0, 1}})
    ->ArgsProduct({{2}, {1280}, {1280}, {8, 16}, {3}, {0, 1}})
    ->ArgsProduct({{1}, {128}, {128}, {512}, {3}, {0, 1}})
    ->ArgsProduct({{1}, {512}, {512}, {128}, {3}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Linear)
    ->ArgNames({"m", "k", "n", "bf16"})
    ->ArgsProduct({{8192}, {320}, {320, 2560}, {0, 1}})
    ->ArgsProduct({{8192}, {1280}, {320}, {0, 1}})
    ->ArgsProduct({{154}, {768}, {768, 3072}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Attention)
    ->ArgNames({"bh", "lq", "lk", "d", "bf16"})
    ->ArgsProduct({{16}, {4096}, {4096}, {40}, {0, 1}})
    ->ArgsProduct({{16}, {4096}, {77}, {40}, {0, 1}})
    ->ArgsProduct({{16}, {1024}, {1024}, {80}, {0, 1}})
    ->ArgsProduct({{1}, {4096}, {4096}, {512}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_GroupNormSilu)
    ->Args({2, 320, 64})
    ->Args({1, 256, 512})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Gelu)->Args({8192, 2560})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
