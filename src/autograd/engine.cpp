// The tape's engine: grad mode, leaves, recording, and the backward walk.
#include <unordered_map>
#include <unordered_set>

#include "autograd/autograd.h"
#include "autograd/kernels/kernels.h"
#include "ops/ops.h"

namespace diffuse::autograd {

namespace {
thread_local bool g_grad_enabled = true;
thread_local bool g_autocast_bf16 = false;

// A leaf's gradient is owned by the leaf (a private contiguous buffer), so it can be updated in
// place (accumulation, clipping) without touching a tensor that another leaf may share.
void accumulate_leaf(AutogradMeta& m, const Tensor& g) {
  if (!m.grad.defined()) {
    m.grad = g.clone();
  } else {
    kernels::add_inplace(m.grad, g);
  }
}

void check_grad_shape(const Tensor& g, const Shape& expected, const char* from, bool leaf) {
  DF_CHECK(g.shape() == expected, "backward: node '", from, "' produced a gradient of shape ",
           shape_str(g.shape()), " for ", leaf ? "a leaf" : "a tensor", " of shape ",
           shape_str(expected), " (was a tensor that requires grad passed through a ",
           "non-differentiable operation, e.g. a view of core::Tensor instead of autograd's?)");
}
}  // namespace

bool grad_enabled() {
  return g_grad_enabled;
}

GradModeGuard::GradModeGuard(bool enabled) : prev_(g_grad_enabled) {
  g_grad_enabled = enabled;
}
GradModeGuard::~GradModeGuard() {
  g_grad_enabled = prev_;
}

bool autocast_bf16() {
  return g_autocast_bf16;
}

AutocastGuard::AutocastGuard(bool bf16) : prev_(g_autocast_bf16) {
  g_autocast_bf16 = bf16;
}
AutocastGuard::~AutocastGuard() {
  g_autocast_bf16 = prev_;
}

int64_t graph_size(const Tensor& root) {
  const auto& m = root.autograd_meta();
  if (!m || !m->grad_fn) return 0;
  std::unordered_set<Node*> seen{m->grad_fn.get()};
  std::vector<Node*> stack{m->grad_fn.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& in : n->inputs)
      if (in && in->grad_fn && n->fn && seen.insert(in->grad_fn.get()).second)
        stack.push_back(in->grad_fn.get());
  }
  int64_t live = 0;
  for (Node* n : seen) live += n->fn ? 1 : 0;
  return live;
}

void set_requires_grad(Tensor& t, bool on) {
  DF_CHECK(t.defined(), "set_requires_grad: undefined tensor");
  if (!on) {
    t.set_autograd_meta(nullptr);
    return;
  }
  DF_CHECK(t.dtype() == DType::F32, "set_requires_grad: only f32 tensors take gradients, got ",
           t.desc());
  const auto& m = t.autograd_meta();
  if (m && !m->grad_fn) {
    m->requires_grad = true;
    return;
  }
  auto meta = std::make_shared<AutogradMeta>();
  meta->requires_grad = true;
  meta->shape = t.shape();
  t.set_autograd_meta(std::move(meta));
}

bool is_leaf(const Tensor& t) {
  const auto& m = t.autograd_meta();
  return !m || !m->grad_fn;
}

Tensor grad(const Tensor& t) {
  const auto& m = t.autograd_meta();
  return m ? m->grad : Tensor();
}

Tensor& grad_slot(const Tensor& t) {
  const auto& m = t.autograd_meta();
  DF_CHECK(m && !m->grad_fn, "grad_slot: ", t.desc(), " is not a leaf that requires grad");
  return m->grad;
}

void zero_grad(const Tensor& t) {
  const auto& m = t.autograd_meta();
  if (m) m->grad = Tensor();
}

Tensor detach(const Tensor& t) {
  return plain(t);
}

Tensor record(const char* name, Tensor out, const std::vector<const Tensor*>& inputs,
              BackwardFn fn) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs.reserve(inputs.size());
  for (const Tensor* in : inputs)
    node->inputs.push_back(in && requires_grad(*in) ? in->autograd_meta() : nullptr);
  node->fn = std::move(fn);
  node->out_shape = out.shape();
  auto meta = std::make_shared<AutogradMeta>();
  meta->requires_grad = true;
  meta->grad_fn = std::move(node);
  meta->shape = out.shape();
  out.set_autograd_meta(std::move(meta));
  return out;
}

void backward(const Tensor& root, const Tensor& grad_in) {
  const auto& meta = root.autograd_meta();
  DF_CHECK(meta && meta->requires_grad, "backward: ", root.desc(),
           " does not require a gradient (nothing it depends on requires one)");
  Tensor g = plain(grad_in);
  if (!g.defined()) {
    DF_CHECK(root.numel() == 1, "backward: ", root.desc(), " is not a scalar; give its gradient");
    g = Tensor::full(root.shape(), 1.f);
  }
  DF_CHECK(g.shape() == root.shape(), "backward: gradient ", g.desc(), " for ", root.desc());
  GradModeGuard no_grad(false);
  if (!meta->grad_fn) {
    accumulate_leaf(*meta, g);
    return;
  }

  // Count, for every node reachable from the root, the edges that lead into it.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack{meta->grad_fn.get()};
  deps[meta->grad_fn.get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& in : n->inputs) {
      if (!in || !in->grad_fn) continue;
      Node* c = in->grad_fn.get();
      auto [it, fresh] = deps.emplace(c, 0);
      ++it->second;
      if (fresh) stack.push_back(c);
    }
  }

  // Run each node once all of its consumers have handed it their gradients.
  std::unordered_map<Node*, Tensor> pending;
  pending[meta->grad_fn.get()] = g;
  std::vector<std::shared_ptr<Node>> ready{meta->grad_fn};
  while (!ready.empty()) {
    std::shared_ptr<Node> n = std::move(ready.back());
    ready.pop_back();
    Tensor gn;
    if (auto it = pending.find(n.get()); it != pending.end()) {
      gn = std::move(it->second);
      pending.erase(it);
    }
    std::vector<Tensor> grads;
    if (gn.defined()) {
      DF_CHECK(n->fn, "backward: the graph through '", n->name,
               "' was already freed by an earlier backward pass");
      check_grad_shape(gn, n->out_shape, n->name, false);
      std::vector<bool> needs(n->inputs.size());
      for (size_t i = 0; i < needs.size(); ++i) needs[i] = n->inputs[i] != nullptr;
      grads = n->fn(gn, needs);
      DF_CHECK(grads.size() == n->inputs.size(), "backward: node '", n->name, "' returned ",
               grads.size(), " gradients for ", n->inputs.size(), " inputs");
    }
    n->fn = nullptr;  // frees the saved tensors
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const auto& in = n->inputs[i];
      if (!in) continue;
      const Tensor gi = i < grads.size() ? grads[i] : Tensor();
      if (in->grad_fn) {
        Node* c = in->grad_fn.get();
        if (gi.defined()) {
          check_grad_shape(gi, c->out_shape, n->name, false);
          Tensor& p = pending[c];
          p = p.defined() ? ops::add(p, gi) : gi;
        }
        if (--deps[c] == 0) ready.push_back(in->grad_fn);
      } else if (gi.defined()) {
        check_grad_shape(gi, in->shape, n->name, true);
        accumulate_leaf(*in, gi);
      }
    }
  }
}

}  // namespace diffuse::autograd
