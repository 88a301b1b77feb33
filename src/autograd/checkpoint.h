// Gradient checkpointing: trade compute for memory by not keeping a segment's activations.
#pragma once
#include <functional>
#include <vector>

#include "autograd/autograd.h"

namespace diffuse::autograd {

using Segment = std::function<Tensor(const std::vector<Tensor>& inputs)>;

// Runs `fn(inputs)` without recording the graph inside it; in backward, runs it again with
// recording and back-propagates the output's gradient through the recomputation (as
// torch.utils.checkpoint, reentrant). `inputs` must hold every non-parameter tensor fn reads
// that may need a gradient; parameters (leaves) may be read directly and get their gradients
// during the recomputation. fn must be deterministic. Outside grad mode it just calls fn.
Tensor checkpoint(const Segment& fn, const std::vector<Tensor>& inputs);

}  // namespace diffuse::autograd
