// The oneDNN primitive caches and per-thread streams under concurrent callers: several threads
// run conv2d, linear, matmul and attention at once (same and different shapes) and must get
// the results of a serial run (up to summation order).
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "ops/ops.h"
#include "ops_test_util.h"

using namespace diffuse;
using diffuse::test::randn;

namespace {

std::vector<float> work(int variant) {
  const int64_t h = 6 + variant % 2;  // two threads share each shape
  Tensor x = randn({1, 8, h, 7}, 1 + uint32_t(variant));
  Tensor w = randn({12, 8, 3, 3}, 2);
  Tensor y = ops::conv2d(x, w, randn({12}, 3), 1, 1);  // [1, 12, h, 7]
  Tensor t = y.view({1, 12, -1}).permute({0, 2, 1});   // b c (h w) -> b (h w) c
  Tensor l = ops::linear(t, randn({16, 12}, 4), randn({16}, 5));
  Tensor q = l.view({1, -1, 2, 8}).permute({0, 2, 1, 3});  // b l (h d) -> b h l d
  Tensor a = ops::attention(q, q, q, 0.35f, variant % 3 == 0);
  return ops::matmul(a, a.transpose(2, 3)).to_float_vector();
}

}  // namespace

TEST(OpsConcurrency, ThreadsShareCaches) {
  constexpr int kThreads = 6;
  std::vector<std::vector<float>> serial(kThreads), parallel(kThreads);
  for (int i = 0; i < kThreads; ++i) serial[size_t(i)] = work(i);
  for (int round = 0; round < 3; ++round) {
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
      threads.emplace_back([&, i] { parallel[size_t(i)] = work(i); });
    for (auto& th : threads) th.join();
    for (int i = 0; i < kThreads; ++i) {
      const auto& p = parallel[size_t(i)];
      const auto& s = serial[size_t(i)];
      ASSERT_EQ(p.size(), s.size());
      for (size_t j = 0; j < p.size(); ++j)
        ASSERT_NEAR(p[j], s[j], 1e-5f * (1.f + std::abs(s[j]))) << "thread " << i << " at " << j;
    }
  }
}
