// Reverse-mode automatic differentiation: a dynamic tape, as PyTorch's. Every differentiable
// function (functions.h) runs its op and, when grad mode is on and an input requires a gradient,
// records a Node that knows how to turn the gradient of its output into gradients of its inputs.
// backward(loss) walks the recorded graph in reverse topological order and accumulates the
// gradients of the leaves (parameters) into their AutogradMeta::grad.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace diffuse::autograd {

struct Node;

// What the tape knows about one tensor (shared by the copies of its handle).
struct AutogradMeta {
  bool requires_grad = false;
  // Leaves: the accumulated gradient (f32, contiguous, owned), undefined until a backward pass
  // reaches it.
  Tensor grad;
  // Non-leaves: the node that computed the tensor.
  std::shared_ptr<Node> grad_fn;
  // The tensor's shape, checked against every gradient that arrives for it.
  Shape shape;
};

// Gradients of a node's inputs from the gradient of its output; entry i may be undefined when
// needs[i] is false (or when the input gets no gradient).
using BackwardFn =
    std::function<std::vector<Tensor>(const Tensor& grad, const std::vector<bool>& needs)>;

struct Node {
  const char* name = "";
  // One entry per input: its autograd state, null where the input needs no gradient.
  std::vector<std::shared_ptr<AutogradMeta>> inputs;
  BackwardFn fn;  // released after it runs (it holds the saved tensors)
  Shape out_shape;
};

// ---- grad mode ----
bool grad_enabled();
// Sets grad mode for a scope (off: no graph is recorded), restoring the previous mode after.
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled);
  ~GradModeGuard();
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool prev_;
};
// torch.no_grad()
class NoGradGuard : public GradModeGuard {
 public:
  NoGradGuard() : GradModeGuard(false) {}
};

// ---- mixed precision ----
// bf16 autocast (as torch.autocast("cpu", dtype=torch.bfloat16)): inside the scope, linear and
// conv2d run their products in bf16 (weights and inputs rounded to bf16, f32 accumulation) with
// f32 outputs; every other op stays f32. Gradients reach the f32 (master) weights in f32.
bool autocast_bf16();
class AutocastGuard {
 public:
  explicit AutocastGuard(bool bf16 = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool prev_;
};

// ---- tensors ----
inline bool requires_grad(const Tensor& t) {
  const auto& m = t.autograd_meta();
  return m && m->requires_grad;
}
// Makes `t` a leaf that collects a gradient (on = true), or a plain tensor (on = false).
// A leaf must be f32.
void set_requires_grad(Tensor& t, bool on = true);
bool is_leaf(const Tensor& t);
// The gradient accumulated in a leaf (undefined if none arrived yet).
Tensor grad(const Tensor& t);
// Mutable access to a leaf's gradient slot (optimizers, clipping); throws for non-leaves.
Tensor& grad_slot(const Tensor& t);
// Drops a leaf's gradient.
void zero_grad(const Tensor& t);
// The same data without autograd state (a handle copy, no data copy).
Tensor detach(const Tensor& t);

// Computes the gradient of `root` with respect to every leaf it depends on, adding it to the
// leaves' grad. `grad` is d(objective)/d(root): ones when undefined (root must then have one
// element). The graph is freed as it is walked (saved tensors are released).
void backward(const Tensor& root, const Tensor& grad = Tensor());

// Nodes of the graph that computed `root` still to be run by a backward pass (a measure of the
// memory the graph holds; checkpointed segments count as one node).
int64_t graph_size(const Tensor& root);

// ---- recording (for the implementation of differentiable functions) ----
// True when an op over these inputs must be recorded.
template <typename... Ts>
bool needs_graph(const Ts&... inputs) {
  return grad_enabled() && (requires_grad(inputs) || ...);
}
// Gives `out` a new AutogradMeta whose grad_fn is a Node over `inputs` running `fn`.
Tensor record(const char* name, Tensor out, const std::vector<const Tensor*>& inputs,
              BackwardFn fn);
// `out` without autograd state: what a function returns when nothing is recorded (a view of an
// input would otherwise share the input's state).
inline Tensor plain(Tensor out) {
  if (out.autograd_meta()) out.set_autograd_meta(nullptr);
  return out;
}

}  // namespace diffuse::autograd
