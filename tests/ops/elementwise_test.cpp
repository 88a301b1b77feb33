// Elementwise ops against double-precision references: broadcasting (row, column, both-sided,
// scalar), strided inputs, activations over a wide range, and shape errors.
// Tolerances (max error / max |ref|): arithmetic 1e-7 (one float rounding), activations 1e-6.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "ops/ops.h"
#include "ops_test_util.h"

using namespace diffuse;
using diffuse::test::randn;
using diffuse::test::scrambled;
using diffuse::test::to_double;

namespace {

// Reference of a broadcast binary op over the logical values of a and b.
std::vector<double> broadcast_ref(const Tensor& a, const Tensor& b, const Shape& out,
                                  const std::function<double(double, double)>& f) {
  const auto av = to_double(a), bv = to_double(b);
  const size_t nd = out.size();
  auto index_of = [&](const Shape& s, const Shape& idx) {
    int64_t lin = 0;
    const size_t lead = nd - s.size();
    for (size_t d = 0; d < s.size(); ++d) lin = lin * s[d] + (s[d] == 1 ? 0 : idx[lead + d]);
    return size_t(lin);
  };
  std::vector<double> ref(size_t(shape_numel(out)));
  Shape idx(nd, 0);
  for (size_t i = 0; i < ref.size(); ++i) {
    ref[i] = f(av[index_of(a.shape(), idx)], bv[index_of(b.shape(), idx)]);
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < out[d]) break;
      idx[d] = 0;
    }
  }
  return ref;
}

struct BinaryCase {
  Shape a, b, out;
};

const std::vector<BinaryCase> kBinaryCases = {
    {{3, 7, 17}, {3, 7, 17}, {3, 7, 17}},        // same shape
    {{2, 5, 77}, {77}, {2, 5, 77}},              // bias over the last dim
    {{2, 3, 5, 7}, {3, 1, 1}, {2, 3, 5, 7}},     // per-channel over NCHW
    {{1, 3, 1, 7}, {2, 1, 5, 1}, {2, 3, 5, 7}},  // both sides stretch
    {{4, 1}, {1}, {4, 1}},                       // single element
    {{17}, {}, {17}},                            // zero-dim operand
    {{1}, {3, 1}, {3, 1}},                       // fewer dims on the left
    {{2, 16, 33}, {2, 1, 33}, {2, 16, 33}},      // middle-dim broadcast
    {{100003}, {100003}, {100003}},              // long flat run (chunked)
};

void check_binary(const char* name, Tensor (*op)(const Tensor&, const Tensor&),
                  const std::function<double(double, double)>& f, bool positive_b) {
  uint32_t seed = 1;
  for (const auto& c : kBinaryCases) {
    Tensor a = randn(c.a, seed++);
    Tensor b = randn(c.b, seed++);
    if (positive_b) b = ops::add_scalar(ops::mul(b, b), 0.5f);
    SCOPED_TRACE(std::string(name) + " " + shape_str(c.a) + " with " + shape_str(c.b));
    Tensor out = op(a, b);
    EXPECT_MATCHES_REF(out, c.out, broadcast_ref(a, b, c.out, f), 1e-7);
  }
}

}  // namespace

TEST(OpsElementwise, AddBroadcasts) {
  check_binary(
      "add", ops::add, [](double x, double y) { return x + y; }, false);
}
TEST(OpsElementwise, SubBroadcasts) {
  check_binary(
      "sub", ops::sub, [](double x, double y) { return x - y; }, false);
}
TEST(OpsElementwise, MulBroadcasts) {
  check_binary(
      "mul", ops::mul, [](double x, double y) { return x * y; }, false);
}
TEST(OpsElementwise, DivBroadcasts) {
  check_binary(
      "div", ops::div, [](double x, double y) { return x / y; }, true);
}

TEST(OpsElementwise, StridedOperands) {
  // a: a permuted view; b: a slice of a wider tensor, broadcast along dim 0.
  Tensor base = randn({7, 3, 17}, 11);
  Tensor a = base.permute({1, 0, 2});  // t c w -> c t w
  Tensor wide = randn({1, 7, 40}, 12);
  Tensor b = wide.slice(2, 5, 22);  // [1, 7, 17], row stride 40
  Tensor out = ops::add(a, b);
  EXPECT_MATCHES_REF(out, (Shape{3, 7, 17}),
                     broadcast_ref(a, b, {3, 7, 17}, [](double x, double y) { return x + y; }),
                     1e-7);
  Tensor s = scrambled(randn({2, 3, 5, 7}, 13), {0, 2, 3, 1});
  Tensor bias = randn({3, 1, 1}, 14);
  Tensor out2 = ops::mul(s, bias);
  EXPECT_MATCHES_REF(out2, (Shape{2, 3, 5, 7}),
                     broadcast_ref(s, bias, {2, 3, 5, 7}, [](double x, double y) { return x * y; }),
                     1e-7);
}

TEST(OpsElementwise, ScalarOpsAndAxpby) {
  for (const Tensor& x : {randn({3, 77}, 21), randn({5, 9}, 22).transpose(0, 1)}) {
    const auto xv = to_double(x);
    std::vector<double> scaled(xv.size()), shifted(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) {
      scaled[i] = xv[i] * double(-0.37f);
      shifted[i] = xv[i] + double(2.5f);
    }
    EXPECT_MATCHES_REF(ops::scale(x, -0.37f), x.shape(), scaled, 1e-7);
    EXPECT_MATCHES_REF(ops::add_scalar(x, 2.5f), x.shape(), shifted, 1e-7);
    Tensor y = randn(x.shape(), 23);
    const auto yv = to_double(y);
    std::vector<double> ref(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) ref[i] = double(0.7f) * xv[i] + double(-1.3f) * yv[i];
    EXPECT_MATCHES_REF(ops::axpby(x, 0.7f, y, -1.3f), x.shape(), ref, 1e-6);
  }
}

TEST(OpsElementwise, Activations) {
  // Values over a wide range, including saturated tails.
  Tensor x = randn({7, 131}, 31, 4.f);
  std::vector<float> extremes = {-90.f, -30.f, -10.f, -1e-3f, 0.f, 1e-3f, 10.f, 30.f, 90.f};
  Tensor xe = Tensor::from_vector(extremes, {3, 3});
  struct Act {
    const char* name;
    Tensor (*op)(const Tensor&);
    std::function<double(double)> ref;
  };
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  const std::vector<Act> acts = {
      {"gelu", ops::gelu, [](double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }},
      {"gelu_tanh", ops::gelu_tanh,
       [](double v) {
         return 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
       }},
      {"quick_gelu", ops::quick_gelu, [sig](double v) { return v * sig(1.702 * v); }},
      {"silu", ops::silu, [sig](double v) { return v * sig(v); }},
      {"sigmoid", ops::sigmoid, sig},
  };
  for (const auto& act : acts) {
    for (const Tensor& in : {x, xe, x.transpose(0, 1)}) {
      SCOPED_TRACE(std::string(act.name) + " on " + in.desc());
      auto v = to_double(in);
      for (double& e : v) e = act.ref(e);
      Tensor out = act.op(in);
      EXPECT_MATCHES_REF(out, in.shape(), v, 1e-6);
      // Per element as well: each value within 1e-6 relative (or 1e-6 absolute near 0).
      auto o = out.to_float_vector();
      for (size_t i = 0; i < o.size(); ++i)
        ASSERT_NEAR(o[i], v[i], 1e-6 * std::max(1.0, std::abs(v[i]))) << act.name << " at " << i;
    }
  }
}

TEST(OpsElementwise, Errors) {
  Tensor a = randn({3, 4}, 1), b = randn({5}, 2), c = randn({3, 1, 4}, 3);
  EXPECT_THROW(ops::add(a, b), Error);
  EXPECT_THROW(ops::mul(randn({2, 3}, 4), randn({3, 2}, 5)), Error);
  EXPECT_NO_THROW(ops::add(a, c));  // [3, 4] + [3, 1, 4] -> [3, 3, 4]
  EXPECT_THROW(ops::axpby(a, 1.f, c, 1.f), Error);
  EXPECT_THROW(ops::add(a, Tensor()), Error);
  EXPECT_THROW(ops::gelu(Tensor::from_i64({1, 2}, {2})), Error);
  EXPECT_THROW(ops::add(a, Tensor::from_i64({1, 2, 3, 4}, {4})), Error);
}

// 16-bit operands (e.g. an embedding table held in f16) are widened to f32.
TEST(OpsElementwise, WidensHalfOperands) {
  Tensor a = randn({3, 4}, 1), b = randn({4}, 2);
  for (DType t : {DType::F16, DType::BF16}) {
    Tensor bh = b.to(t);
    Tensor got = ops::add(a, bh);
    Tensor want = ops::add(a, bh.to(DType::F32));
    EXPECT_EQ(got.dtype(), DType::F32);
    EXPECT_EQ(got.to_float_vector(), want.to_float_vector());
    EXPECT_EQ(ops::mul(bh, a).to_float_vector(), ops::mul(bh.to(DType::F32), a).to_float_vector());
  }
}

TEST(OpsElementwise, EmptyTensors) {
  Tensor e = Tensor::empty({0, 5});
  EXPECT_EQ(ops::add(e, randn({5}, 1)).shape(), (Shape{0, 5}));
  EXPECT_EQ(ops::silu(e).shape(), (Shape{0, 5}));
}
