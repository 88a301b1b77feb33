// conv2d (oneDNN) against a direct double-precision convolution: kernels 1 and 3, stride 1
// and 2, padding 0/1 and asymmetric, with and without bias, strided input; shape errors.
// Tolerance (max error / max |ref|): 1e-5.
#include <gtest/gtest.h>

#include "ops/ops.h"
#include "ops_test_util.h"

using namespace diffuse;
using diffuse::test::randn;
using diffuse::test::to_double;

namespace {

struct ConvCase {
  int64_t b, cin, h, w, cout, k, stride, pt, pb, pl, pr;
  bool bias;
};

std::vector<double> conv_ref(const Tensor& x, const Tensor& w, const Tensor& bias,
                             const ConvCase& c, Shape* out_shape) {
  const auto xv = to_double(x), wv = to_double(w);
  const auto bv = bias.defined() ? to_double(bias) : std::vector<double>();
  const int64_t ho = (c.h + c.pt + c.pb - c.k) / c.stride + 1;
  const int64_t wo = (c.w + c.pl + c.pr - c.k) / c.stride + 1;
  *out_shape = {c.b, c.cout, ho, wo};
  std::vector<double> out(size_t(c.b * c.cout * ho * wo));
  for (int64_t n = 0; n < c.b; ++n)
    for (int64_t o = 0; o < c.cout; ++o)
      for (int64_t i = 0; i < ho; ++i)
        for (int64_t j = 0; j < wo; ++j) {
          double s = bv.empty() ? 0.0 : bv[size_t(o)];
          for (int64_t ci = 0; ci < c.cin; ++ci)
            for (int64_t ki = 0; ki < c.k; ++ki)
              for (int64_t kj = 0; kj < c.k; ++kj) {
                const int64_t y = i * c.stride + ki - c.pt, xx = j * c.stride + kj - c.pl;
                if (y < 0 || y >= c.h || xx < 0 || xx >= c.w) continue;
                s += xv[size_t(((n * c.cin + ci) * c.h + y) * c.w + xx)] *
                     wv[size_t(((o * c.cin + ci) * c.k + ki) * c.k + kj)];
              }
          out[size_t(((n * c.cout + o) * ho + i) * wo + j)] = s;
        }
  return out;
}

void check_conv(const ConvCase& c, uint32_t seed, bool strided_input = false) {
  Tensor x = randn({c.b, c.cin, c.h, c.w}, seed);
  if (strided_input)  // same values, stored as b h w c
    x = x.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
  Tensor w = randn({c.cout, c.cin, c.k, c.k}, seed + 1, 0.3f);
  Tensor b = c.bias ? randn({c.cout}, seed + 2) : Tensor();
  Shape shape;
  const auto ref = conv_ref(x, w, b, c, &shape);
  SCOPED_TRACE(x.desc() + " * " + w.desc() + " stride " + std::to_string(c.stride) + " pad " +
               std::to_string(c.pt) + std::to_string(c.pb) + std::to_string(c.pl) +
               std::to_string(c.pr));
  Tensor out = (c.pt == c.pb && c.pl == c.pr && c.pt == c.pl)
                   ? ops::conv2d(x, w, b, c.stride, c.pt)
                   : ops::conv2d(x, w, b, c.stride, c.pt, c.pb, c.pl, c.pr);
  EXPECT_MATCHES_REF(out, shape, ref, 1e-5);
}

}  // namespace

TEST(OpsConv2d, KernelsStridesPadding) {
  const std::vector<ConvCase> cases = {
      // b cin  h   w cout k s pt pb pl pr bias
      {1, 3, 7, 7, 5, 3, 1, 1, 1, 1, 1, true},     {2, 4, 9, 11, 3, 3, 2, 1, 1, 1, 1, true},
      {1, 5, 8, 8, 7, 1, 1, 0, 0, 0, 0, true},     {2, 3, 17, 13, 4, 3, 2, 0, 0, 0, 0, false},
      {1, 7, 5, 6, 16, 1, 2, 0, 0, 0, 0, false},   {1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, true},
      {1, 2, 3, 3, 3, 3, 1, 0, 0, 0, 0, true},      // output 1x1
      {1, 4, 8, 8, 4, 3, 2, 0, 1, 0, 1, true},      // the VAE encoder's asymmetric pad
      {2, 64, 12, 10, 32, 3, 1, 1, 1, 1, 1, true},  // wide enough for blocked layouts
      {1, 32, 9, 9, 48, 3, 2, 1, 1, 1, 1, true},   {1, 48, 6, 7, 17, 1, 1, 0, 0, 0, 0, true},
  };
  uint32_t seed = 1;
  for (const auto& c : cases) {
    check_conv(c, seed);
    seed += 3;
  }
}

TEST(OpsConv2d, StridedInputAndRepeat) {
  ConvCase c{2, 16, 7, 9, 8, 3, 1, 1, 1, 1, 1, true};
  check_conv(c, 100, true);
  check_conv(c, 100, false);  // same shape again: cached primitive
}

TEST(OpsConv2d, Errors) {
  Tensor x = randn({1, 3, 8, 8}, 1);
  EXPECT_THROW(ops::conv2d(x, randn({4, 2, 3, 3}, 2), Tensor(), 1, 1), Error);  // Cin
  EXPECT_THROW(ops::conv2d(randn({3, 8, 8}, 1), randn({4, 3, 3, 3}, 2), Tensor(), 1, 1), Error);
  EXPECT_THROW(ops::conv2d(x, randn({4, 3, 3, 3}, 2), randn({5}, 3), 1, 1), Error);  // bias
  EXPECT_THROW(ops::conv2d(x, randn({4, 3, 9, 9}, 2), Tensor(), 1, 0), Error);  // kernel > input
  EXPECT_THROW(ops::conv2d(x, randn({4, 3, 3, 3}, 2), Tensor(), 0, 1), Error);  // stride 0
  EXPECT_THROW(ops::conv2d(x, randn({4, 3, 3, 3}, 2), Tensor(), 1, -1), Error);
}
