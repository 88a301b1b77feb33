// Inference weights in f16/bf16: linear, conv2d and embedding against f32 references whose
// operands are rounded the same way (activations to bf16, weights as stored then to bf16), so
// only the summation order differs: tolerance 1e-5 of max |ref|. Also the packed-weight cache:
// reuse, a freed weight replaced at the same address, several layouts of one weight.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "ops/cpu/weight_cache.h"
#include "ops/ops.h"
#include "ops_test_util.h"

using namespace diffuse;
using diffuse::test::max_rel_error;
using diffuse::test::randn;
using diffuse::test::to_double;

namespace {

// Values as the bf16 kernels see them: rounded to bf16 (through `stored` first for weights).
Tensor as_bf16_values(const Tensor& t, DType stored = DType::F32) {
  return t.to(stored).to(DType::F32).to(DType::BF16).to(DType::F32);
}

double rel_err(const Tensor& got, const Tensor& want) {
  EXPECT_EQ(got.shape(), want.shape());
  return max_rel_error(got, to_double(want));
}

}  // namespace

TEST(OpsLowPrecision, LinearMatchesRoundedReference) {
  for (DType t : {DType::BF16, DType::F16}) {
    for (int64_t m : {1, 5, 77, 300}) {
      Tensor x = randn({2, m, 96}, 10 + uint32_t(m));
      Tensor w = randn({40, 96}, 20 + uint32_t(m), 0.2f), b = randn({40}, 30);
      Tensor got = ops::linear(x, w.to(t), b);
      Tensor want = ops::linear(as_bf16_values(x), as_bf16_values(w, t), b);
      SCOPED_TRACE(std::string(dtype_name(t)) + " m=" + std::to_string(m));
      EXPECT_EQ(got.dtype(), DType::F32);
      EXPECT_LT(rel_err(got, want), 1e-5);
      // no bias
      EXPECT_LT(
          rel_err(ops::linear(x, w.to(t)), ops::linear(as_bf16_values(x), as_bf16_values(w, t))),
          1e-5);
    }
  }
}

TEST(OpsLowPrecision, Conv2dMatchesRoundedReference) {
  struct Case {
    int64_t b, cin, h, w, cout, k, stride, pt, pb, pl, pr;
  };
  for (const Case& c :
       {Case{2, 32, 9, 7, 48, 3, 1, 1, 1, 1, 1}, Case{1, 16, 8, 8, 32, 1, 1, 0, 0, 0, 0},
        Case{1, 24, 10, 10, 24, 3, 2, 0, 1, 0, 1}, Case{2, 3, 16, 16, 64, 3, 1, 1, 1, 1, 1}}) {
    for (DType t : {DType::BF16, DType::F16}) {
      Tensor x = randn({c.b, c.cin, c.h, c.w}, 40);
      Tensor w = randn({c.cout, c.cin, c.k, c.k}, 41, 0.2f), b = randn({c.cout}, 42);
      Tensor got = ops::conv2d(x, w.to(t), b, c.stride, c.pt, c.pb, c.pl, c.pr);
      Tensor want =
          ops::conv2d(as_bf16_values(x), as_bf16_values(w, t), b, c.stride, c.pt, c.pb, c.pl, c.pr);
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + x.desc() + " * " + w.desc());
      EXPECT_LT(rel_err(got, want), 1e-5);
    }
  }
}

TEST(OpsLowPrecision, PackedWeightsAreReusedAndNeverStale) {
  Tensor x = randn({1, 8, 6, 6}, 50);
  Tensor w1 = randn({8, 8, 3, 3}, 51, 0.2f).to(DType::BF16);
  Tensor first = ops::conv2d(x, w1, Tensor(), 1, 1);
  const size_t bytes = ops::cpu::packed_weights_bytes();
  EXPECT_GT(bytes, 0u);
  Tensor again = ops::conv2d(x, w1, Tensor(), 1, 1);
  EXPECT_EQ(first.to_float_vector(), again.to_float_vector());
  EXPECT_EQ(ops::cpu::packed_weights_bytes(), bytes);  // packed once
  // A freed weight whose memory is reused for another one must not answer from the cache.
  const void* addr = w1.raw_data();
  w1 = Tensor();
  int same_address = 0;
  for (int i = 0; i < 4; ++i) {
    Tensor w2 = randn({8, 8, 3, 3}, 60 + uint32_t(i), 0.2f).to(DType::BF16);
    Tensor got = ops::conv2d(x, w2, Tensor(), 1, 1);
    Tensor want = ops::conv2d(as_bf16_values(x), w2.to(DType::F32), Tensor(), 1, 1);
    SCOPED_TRACE("reuse " + std::to_string(i) + (w2.raw_data() == addr ? " (same address)" : ""));
    EXPECT_LT(rel_err(got, want), 1e-5);
    same_address += w2.raw_data() == addr;
  }
  std::printf("weights reallocated at a freed weight's address: %d of 4\n", same_address);
  // Weights changed in place are repacked after clear_weight_cache().
  Tensor w4 = randn({8, 8, 3, 3}, 65, 0.2f).to(DType::BF16);
  Tensor before = ops::conv2d(x, w4, Tensor(), 1, 1);
  w4.copy_from(randn({8, 8, 3, 3}, 66, 0.2f));
  EXPECT_EQ(ops::conv2d(x, w4, Tensor(), 1, 1).to_float_vector(), before.to_float_vector());
  ops::clear_weight_cache();
  EXPECT_EQ(ops::cpu::packed_weights_bytes(), 0u);
  Tensor after = ops::conv2d(x, w4, Tensor(), 1, 1);
  EXPECT_LT(rel_err(after, ops::conv2d(as_bf16_values(x), w4.to(DType::F32), Tensor(), 1, 1)),
            1e-5);
  // One weight used at several input sizes (the primitive may want other layouts).
  Tensor w3 = randn({64, 64, 3, 3}, 70, 0.1f).to(DType::BF16);
  for (int64_t hw : {4, 16, 33}) {
    for (int64_t b : {1, 2}) {
      Tensor xi = randn({b, 64, hw, hw}, 71);
      Tensor got = ops::conv2d(xi, w3, Tensor(), 1, 1);
      Tensor want = ops::conv2d(as_bf16_values(xi), w3.to(DType::F32), Tensor(), 1, 1);
      EXPECT_LT(rel_err(got, want), 1e-5) << "b=" << b << " hw=" << hw;
    }
  }
}

TEST(OpsLowPrecision, EmbeddingWidensRows) {
  Tensor table = randn({10, 6}, 80);
  Tensor ids = Tensor::from_i64({3, 0, 9, 3}, {2, 2});
  for (DType t : {DType::BF16, DType::F16}) {
    Tensor got = ops::embedding(table.to(t), ids);
    Tensor want = ops::embedding(table.to(t).to(DType::F32), ids);
    EXPECT_EQ(got.shape(), (Shape{2, 2, 6}));
    EXPECT_EQ(got.to_float_vector(), want.to_float_vector());
  }
}

// bf16 attention (PrecisionScope) against f32 attention of bf16-rounded inputs: the
// probabilities are rounded to bf16 too, so the tolerance is 1e-2 of max |ref|.
TEST(OpsLowPrecision, AttentionInBf16Scope) {
  struct Case {
    int64_t b, h, lq, lk, d;
  };
  for (const Case& c : {Case{2, 3, 70, 77, 16}, Case{1, 2, 300, 300, 40}, Case{1, 1, 5, 600, 8}}) {
    for (bool causal : {false, true}) {
      if (causal && c.lq != c.lk) continue;
      // [B, L, H, D] projections viewed as [B, H, L, D], as the models call it
      Tensor q = randn({c.b, c.lq, c.h, c.d}, 100).permute({0, 2, 1, 3});
      Tensor k = randn({c.b, c.lk, c.h, c.d}, 101).permute({0, 2, 1, 3});
      Tensor v = randn({c.b, c.lk, c.h, c.d}, 102).permute({0, 2, 1, 3});
      const float scale = 1.f / std::sqrt(float(c.d));
      Tensor want =
          ops::attention(as_bf16_values(q), as_bf16_values(k), as_bf16_values(v), scale, causal);
      EXPECT_EQ(ops::compute_precision(), ops::ComputePrecision::F32);
      Tensor got;
      {
        ops::PrecisionScope scope(ops::ComputePrecision::BF16);
        got = ops::attention(q, k, v, scale, causal);
      }
      EXPECT_EQ(ops::compute_precision(), ops::ComputePrecision::F32);
      const double err = rel_err(got, want);
      EXPECT_LT(err, 1e-2) << q.desc() << " causal " << causal;
      EXPECT_GT(err, 0.0);  // the scope took effect: the probabilities were rounded
    }
  }
}

TEST(OpsLowPrecision, Errors) {
  Tensor x = randn({2, 8}, 90);
  EXPECT_THROW(ops::linear(x, Tensor::from_i64({1, 2}, {1, 2})), Error);
  EXPECT_THROW(ops::linear(x, randn({4, 7}, 91).to(DType::BF16)), Error);  // in 7 != 8
  EXPECT_THROW(ops::linear(x.to(DType::BF16), randn({4, 8}, 92).to(DType::BF16)), Error);
}

// release_pages is a hint that never loses data: heap memory is left alone, and the pages of
// a memory-mapped file read back the same after they are handed back.
TEST(OpsLowPrecision, ReleasePagesKeepsData) {
  Tensor heap = randn({1 << 16}, 110);
  const auto before = heap.to_float_vector();
  ops::release_pages(heap);
  EXPECT_EQ(heap.to_float_vector(), before);

  const std::string path = ::testing::TempDir() + "/release_pages_test.bin";
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(before.data(), sizeof(float), before.size(), f), before.size());
    std::fclose(f);
  }
  const int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  const size_t bytes = before.size() * sizeof(float);
  void* p = mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  ASSERT_NE(p, MAP_FAILED);
  Tensor mapped = Tensor::from_blob(p, {int64_t(before.size())}, DType::F32);
  EXPECT_EQ(mapped.to_float_vector(), before);
  ops::release_pages(mapped);
  EXPECT_EQ(mapped.to_float_vector(), before);
  munmap(p, bytes);
  std::remove(path.c_str());
}
