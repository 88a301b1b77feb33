// The tape itself: accumulation, grad mode, freed graphs, misuse, checkpointing.
#include <gtest/gtest-spi.h>

#include "autograd/checkpoint.h"
#include "gradcheck.h"
#include "test_util.h"

using namespace diffuse;
using test::randu;
namespace F = diffuse::autograd;

TEST(AutogradEngine, ReusedTensorAccumulates) {
  Tensor x = Tensor::from_vector({1.f, -2.f, 3.f}, {3});
  F::set_requires_grad(x);
  Tensor y = F::sum(F::add(F::mul(x, x), x));  // d/dx = 2x + 1
  F::backward(y);
  EXPECT_EQ(F::grad(x).to_float_vector(), (std::vector<float>{3.f, -3.f, 7.f}));
  // a second graph adds to the leaf's gradient
  F::backward(F::sum(F::scale(x, 2.f)));
  EXPECT_EQ(F::grad(x).to_float_vector(), (std::vector<float>{5.f, -1.f, 9.f}));
  F::zero_grad(x);
  EXPECT_FALSE(F::grad(x).defined());
}

TEST(AutogradEngine, NoGradRecordsNothing) {
  Tensor w = randu({4, 3}, 1);
  F::set_requires_grad(w);
  const Tensor x = randu({2, 3}, 2);
  {
    F::NoGradGuard ng;
    Tensor y = F::linear(x, w);
    EXPECT_FALSE(F::requires_grad(y));
    EXPECT_EQ(y.autograd_meta(), nullptr);
    EXPECT_EQ(F::view(w, {3, 4}).autograd_meta(), nullptr);  // views do not share w's state
  }
  EXPECT_TRUE(F::grad_enabled());
  // plain inputs: the result of the op, nothing recorded
  Tensor z = F::add(x, x);
  EXPECT_EQ(z.autograd_meta(), nullptr);
  EXPECT_TRUE(F::requires_grad(F::linear(x, w)));
}

TEST(AutogradEngine, FreedGraphIsAnError) {
  Tensor x = randu({3}, 3);
  F::set_requires_grad(x);
  Tensor y = F::sum(F::exp(x));
  F::backward(y);
  EXPECT_THROW(F::backward(y), Error);
}

TEST(AutogradEngine, NonScalarRootNeedsItsGradient) {
  Tensor x = randu({3}, 4);
  F::set_requires_grad(x);
  Tensor y = F::scale(x, 3.f);
  EXPECT_THROW(F::backward(y), Error);
  F::backward(y, Tensor::from_vector({1.f, 2.f, 3.f}, {3}));
  EXPECT_EQ(F::grad(x).to_float_vector(), (std::vector<float>{3.f, 6.f, 9.f}));
  EXPECT_THROW(F::backward(F::sum(Tensor::zeros({2}))), Error);  // nothing requires a gradient
}

TEST(AutogradEngine, CoreViewOfALeafIsCaught) {
  // core::Tensor views share the leaf's state; the shape check turns the silent error into one.
  Tensor w = randu({2, 3}, 5);
  F::set_requires_grad(w);
  Tensor v = w.view({3, 2});
  EXPECT_THROW(F::backward(F::sum(F::mul(v, v))), Error);
}

TEST(AutogradEngine, LeafGradientIsPrivate) {
  // Both inputs of add receive the same gradient tensor; their leaves must not share it.
  Tensor a = randu({4}, 6), b = randu({4}, 7);
  F::set_requires_grad(a);
  F::set_requires_grad(b);
  F::backward(F::sum(F::add(a, b)));
  F::grad_slot(a).data<float>()[0] = 100.f;
  EXPECT_EQ(F::grad(b).to_float_vector()[0], 1.f);
}

TEST(AutogradEngine, CheckpointMatchesPlainGraph) {
  Tensor w1 = randu({5, 4}, 8), w2 = randu({4, 5}, 9), x0 = randu({3, 4}, 10);
  auto segment = [&](const std::vector<Tensor>& in) {
    return F::linear(F::gelu(F::linear(in[0], w1)), w2);
  };
  auto run = [&](bool ckpt) {
    Tensor x = x0.clone();
    F::set_requires_grad(w1);
    F::set_requires_grad(w2);
    F::set_requires_grad(x);
    F::zero_grad(w1);
    F::zero_grad(w2);
    Tensor h = F::mul(x, x);
    Tensor y = ckpt ? F::checkpoint(segment, {h}) : segment({h});
    F::backward(F::sum(F::square(y)));
    return std::vector<Tensor>{F::grad(w1), F::grad(w2), F::grad(x)};
  };
  auto plain = run(false), ck = run(true);
  for (size_t i = 0; i < plain.size(); ++i) {
    ASSERT_TRUE(ck[i].defined());
    EXPECT_REL_NEAR(ck[i], plain[i], 1e-6);
  }
}

TEST(AutogradEngine, GradcheckCatchesAWrongRule) {
  // x * detach(x): the recorded gradient misses one path (x instead of 2x); the check must fail.
  EXPECT_NONFATAL_FAILURE(
      test::gradcheck([](const std::vector<Tensor>& x) { return F::mul(x[0], F::detach(x[0])); },
                      {randu({5}, 11)}, {true}),
      "relative error");
}
