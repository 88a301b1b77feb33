#include "autograd/checkpoint.h"

namespace diffuse::autograd {

Tensor checkpoint(const Segment& fn, const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return fn(inputs);
  std::vector<Tensor> saved;
  std::vector<const Tensor*> ptrs;
  for (const Tensor& t : inputs) {
    saved.push_back(detach(t));
    ptrs.push_back(&t);
  }
  Tensor out;
  {
    GradModeGuard off(false);
    out = fn(saved);
  }
  // Recorded even when no input requires a gradient: parameters inside fn may.
  // The recomputation runs under the forward's autocast mode, whatever the backward's is.
  return record(
      "checkpoint", plain(out), ptrs,
      [fn, saved, bf16 = autocast_bf16()](const Tensor& g, const std::vector<bool>& needs) {
        std::vector<Tensor> in = saved;
        for (size_t i = 0; i < in.size(); ++i)
          if (needs[i]) set_requires_grad(in[i]);
        Tensor y;
        {
          GradModeGuard on(true);
          AutocastGuard cast(bf16);
          y = fn(in);
        }
        if (requires_grad(y)) backward(y, g);
        std::vector<Tensor> grads(in.size());
        for (size_t i = 0; i < in.size(); ++i)
          if (needs[i]) grads[i] = grad(in[i]);
        return grads;
      });
}

}  // namespace diffuse::autograd
