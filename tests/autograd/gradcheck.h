// Finite-difference checks of the backward rules: the gradient of sum(f(inputs) * R), for a fixed
// random R, against central differences of the same objective (summed in double).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "autograd/functions.h"

namespace diffuse::test {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Uniform values in [lo, hi).
inline Tensor randu(const Shape& s, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(size_t(shape_numel(s)));
  for (float& x : v) x = dist(rng);
  return Tensor::from_vector(v, s);
}

struct GradcheckOptions {
  double tol = 2e-3;    // ||analytic - numeric|| / ||numeric|| over the checked elements
  float eps = 1e-2f;    // central difference step
  int max_points = 96;  // elements checked per input (all when fewer)
};

inline double objective(const Fn& f, const std::vector<Tensor>& in, const Tensor& r) {
  autograd::NoGradGuard ng;
  const std::vector<float> y = f(in).to_float_vector();
  const std::vector<float> rv = r.to_float_vector();
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += double(y[i]) * double(rv[i]);
  return s;
}

// Checks d/d inputs[i] for every i with diff[i].
inline void gradcheck(const Fn& f, const std::vector<Tensor>& inputs, const std::vector<bool>& diff,
                      GradcheckOptions o = {}) {
  std::vector<Tensor> leaves;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor t = inputs[i].defined() ? inputs[i].clone() : Tensor();
    if (diff[i]) autograd::set_requires_grad(t);
    leaves.push_back(t);
  }
  const Tensor out = f(leaves);
  ASSERT_TRUE(autograd::requires_grad(out)) << "nothing was recorded";
  const Tensor r = randu(out.shape(), 1234);
  autograd::backward(autograd::sum(autograd::mul(out, r)));
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!diff[i]) continue;
    SCOPED_TRACE("input " + std::to_string(i));
    const Tensor g = autograd::grad(leaves[i]);
    ASSERT_TRUE(g.defined()) << "no gradient reached input " << i;
    ASSERT_EQ(g.shape(), inputs[i].shape());
    const std::vector<float> ga = g.to_float_vector();
    const int64_t n = inputs[i].numel();
    std::vector<int64_t> idx;
    if (n <= o.max_points) {
      for (int64_t j = 0; j < n; ++j) idx.push_back(j);
    } else {
      std::mt19937 rng(uint32_t(42 + i));
      for (int k = 0; k < o.max_points; ++k) idx.push_back(int64_t(rng() % uint64_t(n)));
    }
    double num2 = 0, diff2 = 0;
    for (int64_t j : idx) {
      std::vector<Tensor> in;
      for (const Tensor& t : leaves) in.push_back(autograd::detach(t));
      Tensor x = inputs[i].clone();
      in[i] = x;
      float* p = x.data<float>();
      const float v = p[j];
      p[j] = v + o.eps;
      const double fp = objective(f, in, r);
      p[j] = v - o.eps;
      const double fm = objective(f, in, r);
      const double numeric = (fp - fm) / (2.0 * double(o.eps));
      num2 += numeric * numeric;
      diff2 += (numeric - double(ga[size_t(j)])) * (numeric - double(ga[size_t(j)]));
    }
    const double err = std::sqrt(diff2) / std::max(std::sqrt(num2), 1e-6);
    EXPECT_LE(err, o.tol) << "analytic vs numeric gradient, relative error " << err;
    EXPECT_GT(num2, 0.0) << "the numeric gradient is zero: the check cannot fail";
  }
}

}  // namespace diffuse::test
