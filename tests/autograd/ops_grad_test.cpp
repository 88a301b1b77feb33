// Every differentiable function's backward against finite differences.
#include "gradcheck.h"

using namespace diffuse;
using test::gradcheck;
using test::randu;
namespace F = diffuse::autograd;
using In = std::vector<Tensor>;

namespace {

// Values in [lo, hi) kept at least `gap` away from each of `avoid` (non-smooth points).
Tensor away_from(const Shape& s, uint32_t seed, std::vector<float> avoid, float gap) {
  Tensor t = randu(s, seed, -1.f, 1.f);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    for (float a : avoid)
      if (std::abs(p[i] - a) < gap) p[i] = a + (p[i] < a ? -gap : gap);
  return t;
}

}  // namespace

TEST(AutogradOps, BroadcastingBinaryOps) {
  gradcheck([](const In& x) { return F::add(x[0], x[1]); }, {randu({2, 3, 4}, 1), randu({3, 1}, 2)},
            {true, true});
  gradcheck([](const In& x) { return F::sub(x[0], x[1]); }, {randu({2, 3, 4}, 3), randu({4}, 4)},
            {true, true});
  gradcheck([](const In& x) { return F::mul(x[0], x[1]); },
            {randu({2, 3, 4}, 5), randu({2, 1, 4}, 6)}, {true, true});
  gradcheck([](const In& x) { return F::div(x[0], x[1]); },
            {randu({2, 3, 4}, 7), randu({1}, 8, 0.5f, 1.5f)}, {true, true});
  gradcheck([](const In& x) { return F::mul(x[1], x[0]); },  // 0-dim operand
            {randu({3, 2}, 9), Tensor::full({}, 0.7f)}, {true, true});
}

TEST(AutogradOps, ScalarOps) {
  gradcheck([](const In& x) { return F::scale(x[0], -1.5f); }, {randu({5, 3}, 10)}, {true});
  gradcheck([](const In& x) { return F::add_scalar(F::neg(x[0]), 2.f); }, {randu({7}, 11)}, {true});
}

TEST(AutogradOps, UnaryMath) {
  gradcheck([](const In& x) { return F::exp(x[0]); }, {randu({4, 5}, 12)}, {true});
  gradcheck([](const In& x) { return F::log(x[0]); }, {randu({4, 5}, 13, 0.5f, 2.f)}, {true});
  gradcheck([](const In& x) { return F::sqrt(x[0]); }, {randu({4, 5}, 14, 0.5f, 2.f)}, {true});
  gradcheck([](const In& x) { return F::square(x[0]); }, {randu({4, 5}, 15)}, {true});
  gradcheck([](const In& x) { return F::clamp(x[0], -0.5f, 0.5f); },
            {away_from({6, 7}, 16, {-0.5f, 0.5f}, 0.05f)}, {true});
}

TEST(AutogradOps, Activations) {
  const Tensor x = randu({3, 17}, 17, -3.f, 3.f);
  gradcheck([](const In& v) { return F::gelu(v[0]); }, {x}, {true});
  gradcheck([](const In& v) { return F::gelu_tanh(v[0]); }, {x}, {true});
  gradcheck([](const In& v) { return F::quick_gelu(v[0]); }, {x}, {true});
  gradcheck([](const In& v) { return F::silu(v[0]); }, {x}, {true});
  gradcheck([](const In& v) { return F::sigmoid(v[0]); }, {x}, {true});
}

TEST(AutogradOps, LinearAndMatmul) {
  gradcheck([](const In& x) { return F::linear(x[0], x[1], x[2]); },
            {randu({2, 3, 5}, 20), randu({4, 5}, 21), randu({4}, 22)}, {true, true, true});
  gradcheck([](const In& x) { return F::linear(x[0], x[1]); },
            {randu({3, 5}, 23), randu({2, 5}, 24)}, {true, true});
  gradcheck([](const In& x) { return F::matmul(x[0], x[1]); },
            {randu({2, 3, 4}, 25), randu({4, 5}, 26)}, {true, true});
  gradcheck([](const In& x) { return F::matmul(x[0], x[1]); },  // broadcast batch dims
            {randu({2, 1, 3, 4}, 27), randu({3, 4, 2}, 28)}, {true, true});
  gradcheck([](const In& x) { return F::matmul(x[0], F::transpose(x[1], 0, 1)); },
            {randu({3, 4}, 29), randu({5, 4}, 30)}, {true, true});
}

TEST(AutogradOps, Embedding) {
  const Tensor ids = Tensor::from_i64({1, 3, 1, 7, 0, 3}, {2, 3});
  gradcheck([](const In& x) { return F::embedding(x[0], x[1]); }, {randu({10, 4}, 31), ids},
            {true, false});
}

TEST(AutogradOps, Norms) {
  gradcheck([](const In& x) { return F::layer_norm(x[0], x[1], x[2], 1e-5f); },
            {randu({3, 4, 8}, 40), randu({8}, 41), randu({8}, 42)}, {true, true, true});
  gradcheck([](const In& x) { return F::group_norm(x[0], 3, x[1], x[2], 1e-5f); },
            {randu({2, 6, 3, 3}, 43), randu({6}, 44), randu({6}, 45)}, {true, true, true});
  gradcheck([](const In& x) { return F::group_norm_silu(x[0], 2, x[1], x[2], 1e-6f); },
            {randu({2, 4, 2, 5}, 46), randu({4}, 47), randu({4}, 48)}, {true, true, true});
  gradcheck([](const In& x) { return F::group_norm(x[0], 2, Tensor(), Tensor(), 1e-5f); },
            {randu({1, 4, 3, 2}, 49)}, {true});
}

TEST(AutogradOps, Softmax) {
  gradcheck([](const In& x) { return F::softmax(x[0]); }, {randu({3, 7}, 50, -2.f, 2.f)}, {true});
  gradcheck([](const In& x) { return F::log_softmax(x[0]); }, {randu({3, 7}, 51, -2.f, 2.f)},
            {true});
}

TEST(AutogradOps, Attention) {
  gradcheck([](const In& x) { return F::attention(x[0], x[1], x[2], 0.5f, false); },
            {randu({2, 2, 5, 4}, 60), randu({2, 2, 6, 4}, 61), randu({2, 2, 6, 3}, 62)},
            {true, true, true});
  gradcheck([](const In& x) { return F::attention(x[0], x[1], x[2], 0.7f, true); },
            {randu({1, 2, 5, 4}, 63), randu({1, 2, 5, 4}, 64), randu({1, 2, 5, 4}, 65)},
            {true, true, true});
  // strided views: b l h d -> b h l d
  gradcheck(
      [](const In& x) {
        auto heads = [](const Tensor& t) { return F::permute(t, {0, 2, 1, 3}); };
        return F::attention(heads(x[0]), heads(x[1]), heads(x[2]), 0.5f, false);
      },
      {randu({2, 5, 2, 4}, 66), randu({2, 3, 2, 4}, 67), randu({2, 3, 2, 4}, 68)},
      {true, true, true});
}

TEST(AutogradOps, Conv2d) {
  gradcheck([](const In& x) { return F::conv2d(x[0], x[1], x[2], 1, 1); },
            {randu({2, 3, 6, 6}, 70), randu({4, 3, 3, 3}, 71), randu({4}, 72)}, {true, true, true});
  // the VAE's downsampling: stride 2, padding (0, 1, 0, 1)
  gradcheck([](const In& x) { return F::conv2d(x[0], x[1], x[2], 2, 0, 1, 0, 1); },
            {randu({1, 2, 6, 6}, 73), randu({3, 2, 3, 3}, 74), randu({3}, 75)}, {true, true, true});
  gradcheck([](const In& x) { return F::conv2d(x[0], x[1], Tensor(), 1, 0); },
            {randu({2, 4, 3, 3}, 76), randu({5, 4, 1, 1}, 77)}, {true, true});
  gradcheck([](const In& x) { return F::conv2d(x[0], x[1], Tensor(), 4, 0); },  // patches
            {randu({1, 3, 8, 8}, 78), randu({6, 3, 4, 4}, 79)}, {true, true});
  gradcheck([](const In& x) { return F::conv2d(x[0], x[1], x[2], 1, 1); },  // only the bias
            {randu({1, 2, 4, 4}, 80), randu({3, 2, 3, 3}, 81), randu({3}, 82)},
            {false, false, true});
}

TEST(AutogradOps, PadAndUpsample) {
  gradcheck([](const In& x) { return F::pad2d(x[0], 1, 2, 0, 1); }, {randu({1, 2, 3, 4}, 90)},
            {true});
  gradcheck([](const In& x) { return F::upsample_nearest2x(x[0]); }, {randu({2, 2, 3, 3}, 91)},
            {true});
}

TEST(AutogradOps, Views) {
  gradcheck(
      [](const In& x) {
        Tensor t = F::permute(x[0], {2, 0, 1});                        // [4, 2, 3]
        t = F::slice(t, 2, 1, 3);                                      // [4, 2, 2]
        t = F::reshape(t, {8, 2});                                     // copies (not contiguous)
        t = F::unsqueeze(F::select(F::view(t, {2, 4, 2}), 1, -1), 0);  // [1, 2, 2]
        return F::mul(F::transpose(t, 1, 2), F::contiguous(F::transpose(t, 1, 2)));
      },
      {randu({2, 3, 4}, 100)}, {true});
  gradcheck(
      [](const In& x) {
        return F::cat({x[0], F::scale(x[1], 2.f), x[0]}, 1);
      },
      {randu({2, 1, 3}, 101), randu({2, 2, 3}, 102)}, {true, true});
}

TEST(AutogradOps, Reductions) {
  gradcheck([](const In& x) { return F::sum(x[0]); }, {randu({2, 3, 4}, 110)}, {true});
  gradcheck(
      [](const In& x) {
        return F::sum(x[0], {0, 2}, false);
      },
      {randu({2, 3, 4}, 111)}, {true});
  gradcheck([](const In& x) { return F::mean(x[0], {-1}, true); }, {randu({2, 3, 4}, 112)}, {true});
  gradcheck([](const In& x) { return F::sum_to(x[0], {3, 1}); }, {randu({2, 3, 4}, 113)}, {true});
  gradcheck([](const In& x) { return F::mean(F::square(x[0])); }, {randu({5, 2}, 114)}, {true});
}

TEST(AutogradOps, Losses) {
  gradcheck([](const In& x) { return F::mse_loss(x[0], x[1]); },
            {randu({2, 3, 4}, 120), randu({2, 3, 4}, 121)}, {true, true});
  const Tensor targets = Tensor::from_i64({2, 0, 4, 2}, {4});
  gradcheck([](const In& x) { return F::cross_entropy(x[0], x[1]); },
            {randu({4, 5}, 122, -2.f, 2.f), targets}, {true, false});
}

TEST(AutogradOps, ReductionValues) {
  // sum_to against plain loops, both inner layouts (summed inner run, kept inner run)
  const Tensor x = randu({3, 4, 70}, 130);
  const std::vector<float> v = x.to_float_vector();
  const Tensor a = F::sum_to(x, {4, 1}), b = F::sum_to(x, {1, 70});
  for (int64_t j = 0; j < 4; ++j) {
    double s = 0;
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t k = 0; k < 70; ++k) s += v[size_t((i * 4 + j) * 70 + k)];
    EXPECT_NEAR(a.to_float_vector()[size_t(j)], s, 1e-4);
  }
  for (int64_t k = 0; k < 70; ++k) {
    double s = 0;
    for (int64_t i = 0; i < 12; ++i) s += v[size_t(i * 70 + k)];
    EXPECT_NEAR(b.to_float_vector()[size_t(k)], s, 1e-5);
  }
  EXPECT_NEAR(F::mean(x).item(), F::sum(x).item() / 840.0, 1e-6);
}
