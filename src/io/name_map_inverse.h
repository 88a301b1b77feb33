// The inverse of the single-file name maps: the original LDM names (model.diffusion_model.*,
// first_stage_model.*, cond_stage_model.* / conditioner.embedders.*) of canonical tensors, for
// writing single files.
//
// The inverse reads the same renaming tables as the forward maps (name_map_tables.h) and is
// checked by mapping its result forward with plan_single_file(): every planned name must map
// back to exactly the canonical tensor it came from, so the two directions cannot drift apart.
#pragma once
#include <string>
#include <vector>

#include "io/name_map_ldm.h"

namespace diffuse::io {

struct LdmLayoutPlan {
  // What plan_single_file() makes of `sources`: one mapping per canonical tensor (a source
  // split into row blocks appears once per block).
  std::vector<TensorMapping> tensors;
  // Every tensor of the single file with its shape, padding included, in name order.
  NamedShapes sources;
  // Tensors that no canonical tensor makes, written as zeros. OpenCLIP (SD2) files hold a last
  // text block that Stable Diffusion never runs and that the loader drops; canonical models do
  // not have it, so it is written with zero weights (a residual block of zeros is the identity:
  // both of its branches start with a zero LayerNorm and end in zero projections). The loader
  // drops it again, and tools that run all blocks get the same output as without it.
  NamedShapes padding;
};

// Plans the single-file names of canonical tensors (names without component prefix). The text
// encoder is written as transformers' CLIP (SD1) or OpenCLIP (SD2, q/k/v fused into in_proj);
// with the Conditioner layout (SDXL) text_encoder as conditioner.embedders.0.transformer.* and
// text_encoder_2 as OpenCLIP (with text_projection) at conditioner.embedders.1.model.*, or .0.
// without text_encoder (the refiner). Throws an Error listing the canonical names that have no
// place in the LDM layout.
LdmLayoutPlan plan_ldm_layout(const NamedShapes& unet, const NamedShapes& vae,
                              const NamedShapes& text_encoder, TextEncoderLayout text_layout,
                              const NamedShapes& text_encoder_2 = {});

// The source tensor of one planned name from its canonical tensors (`parts`, one per mapping
// of that name, in part order): a reshape for 1x1 convolutions, a concatenation of row blocks.
Tensor unapply_mappings(const std::vector<const TensorMapping*>& mappings,
                        const std::vector<Tensor>& parts, const Shape& source_shape);

}  // namespace diffuse::io
