// Backward rules of the elementwise ops and activations.
#include "autograd/functions.h"
#include "autograd/kernels/kernels.h"
#include "ops/ops.h"

namespace diffuse::autograd {

namespace {

using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

// A unary op y = f(x) whose gradient is g * f'(x), computed by `dfn(x, y, g)`.
template <typename Dfn>
Tensor unary(const char* name, const Tensor& x, Tensor out, Dfn dfn) {
  if (!needs_graph(x)) return out;
  return record(name, out, {&x},
                [x = detach(x), y = detach(out), dfn](const Tensor& g, const Needs&) -> Grads {
                  return {dfn(x, y, g)};
                });
}

Tensor activation(const char* name, kernels::Act act, const Tensor& x, Tensor out) {
  return unary(name, x, std::move(out), [act](const Tensor& xs, const Tensor&, const Tensor& g) {
    return kernels::activation_backward(act, xs, g);
  });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = ops::add(a, b);
  if (!needs_graph(a, b)) return out;
  return record(
      "add", out, {&a, &b},
      [sa = a.shape(), sb = b.shape()](const Tensor& g, const Needs& n) -> Grads {
        return {n[0] ? kernels::sum_to(g, sa) : Tensor(), n[1] ? kernels::sum_to(g, sb) : Tensor()};
      });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = ops::sub(a, b);
  if (!needs_graph(a, b)) return out;
  return record("sub", out, {&a, &b},
                [sa = a.shape(), sb = b.shape()](const Tensor& g, const Needs& n) -> Grads {
                  return {n[0] ? kernels::sum_to(g, sa) : Tensor(),
                          n[1] ? kernels::sum_to(ops::scale(g, -1.f), sb) : Tensor()};
                });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = ops::mul(a, b);
  if (!needs_graph(a, b)) return out;
  return record("mul", out, {&a, &b},
                [a = detach(a), b = detach(b)](const Tensor& g, const Needs& n) -> Grads {
                  return {n[0] ? kernels::sum_to(ops::mul(g, b), a.shape()) : Tensor(),
                          n[1] ? kernels::sum_to(ops::mul(g, a), b.shape()) : Tensor()};
                });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = ops::div(a, b);
  if (!needs_graph(a, b)) return out;
  return record(
      "div", out, {&a, &b},
      [sa = a.shape(), b = detach(b), y = detach(out)](const Tensor& g, const Needs& n) -> Grads {
        const Tensor t = ops::div(g, b);  // d/da = 1/b; d/db = -a/b^2 = -(a/b)/b
        return {n[0] ? kernels::sum_to(t, sa) : Tensor(),
                n[1] ? kernels::sum_to(ops::scale(ops::mul(t, y), -1.f), b.shape()) : Tensor()};
      });
}

Tensor scale(const Tensor& x, float s) {
  Tensor out = ops::scale(x, s);
  if (!needs_graph(x)) return out;
  return record("scale", out, {&x},
                [s](const Tensor& g, const Needs&) -> Grads { return {ops::scale(g, s)}; });
}

Tensor add_scalar(const Tensor& x, float s) {
  Tensor out = ops::add_scalar(x, s);
  if (!needs_graph(x)) return out;
  return record("add_scalar", out, {&x},
                [](const Tensor& g, const Needs&) -> Grads { return {g}; });
}

Tensor neg(const Tensor& x) {
  return scale(x, -1.f);
}

Tensor gelu(const Tensor& x) {
  return activation("gelu", kernels::Act::Gelu, x, ops::gelu(x));
}
Tensor gelu_tanh(const Tensor& x) {
  return activation("gelu_tanh", kernels::Act::GeluTanh, x, ops::gelu_tanh(x));
}
Tensor quick_gelu(const Tensor& x) {
  return activation("quick_gelu", kernels::Act::QuickGelu, x, ops::quick_gelu(x));
}
Tensor silu(const Tensor& x) {
  return activation("silu", kernels::Act::Silu, x, ops::silu(x));
}
Tensor sigmoid(const Tensor& x) {
  return activation("sigmoid", kernels::Act::Sigmoid, x, ops::sigmoid(x));
}

Tensor exp(const Tensor& x) {
  return unary("exp", x, kernels::unary(kernels::Unary::Exp, x),
               [](const Tensor&, const Tensor& y, const Tensor& g) { return ops::mul(g, y); });
}

Tensor log(const Tensor& x) {
  return unary("log", x, kernels::unary(kernels::Unary::Log, x),
               [](const Tensor& xs, const Tensor&, const Tensor& g) { return ops::div(g, xs); });
}

Tensor sqrt(const Tensor& x) {
  return unary("sqrt", x, kernels::unary(kernels::Unary::Sqrt, x),
               [](const Tensor&, const Tensor& y, const Tensor& g) {
                 return ops::scale(ops::div(g, y), 0.5f);
               });
}

Tensor square(const Tensor& x) {
  return unary("square", x, kernels::unary(kernels::Unary::Square, x),
               [](const Tensor& xs, const Tensor&, const Tensor& g) {
                 return ops::scale(ops::mul(g, xs), 2.f);
               });
}

Tensor clamp(const Tensor& x, float lo, float hi) {
  DF_CHECK(x.dtype() == DType::F32, "clamp: x must be f32, got ", x.desc());
  return unary("clamp", x, kernels::clamp(x, lo, hi),
               [lo, hi](const Tensor& xs, const Tensor&, const Tensor& g) {
                 return kernels::clamp_backward(xs, lo, hi, g);
               });
}

}  // namespace diffuse::autograd
