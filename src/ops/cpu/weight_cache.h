// Inference weights (f16/bf16 tensors; f32 ones under a bf16 PrecisionScope) packed once into
// a oneDNN primitive's layout, as bf16, and kept while the weight's storage lives. A cached copy
// is found by the weight's data address, dtype, shape and strides, and is valid while the
// storage it was packed from lives; entries whose storage was freed are dropped on the next
// insertion. After packing, the source pages of a memory-mapped checkpoint are handed back to
// the OS (ops::release_pages).
#pragma once
#include "ops/cpu/dnnl_util.h"

namespace diffuse::ops::cpu {

// `plain` is the weight's logical layout for the primitive (dims and element strides, as f32)
// over w's contiguous data, e.g. a linear weight [N, K] seen as [K, N] with strides {1, K};
// `md` is the layout the primitive wants. Returns memory in `md`: the cached packing, or when
// the cached packing has another layout, a reordered copy held in `hold`.
dnnl::memory packed_weights(const Tensor& w, const dnnl::memory::desc& plain,
                            const dnnl::memory::desc& md, DnnlBuffer& hold);

// Bytes held by packed weights, and a way to drop them all.
size_t packed_weights_bytes();
void clear_packed_weights();

}  // namespace diffuse::ops::cpu
