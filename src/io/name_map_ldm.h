// Name maps from the original LDM single-file layout (model.diffusion_model.*,
// first_stage_model.*, cond_stage_model.* or SDXL's conditioner.embedders.*) to the canonical
// diffusers / transformers names.
//
// The maps work on names and shapes alone, so they can be checked against a manifest of a
// full-size checkpoint without its weights; apply_mapping() then turns a source tensor into
// the canonical one (a view where possible).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "io/model_files.h"
#include "io/name_map_check.h"
#include "io/tensor_map.h"

namespace diffuse::io {

enum class Component { Unet, Vae, TextEncoder, TextEncoder2 };
// "unet", "vae", "text_encoder", "text_encoder_2" (the diffusers folder names)
const char* component_name(Component c);
// The canonical tensors of one component of `m`.
TensorMap& component_tensors(ModelFiles& m, Component c);
const TensorMap& component_tensors(const ModelFiles& m, Component c);

// How one canonical tensor is made from a source tensor.
enum class TensorOp {
  Copy,             // same values, same shape
  Conv1x1ToLinear,  // [o, i, 1, 1] -> [o, i]
  SplitRows,        // rows [part*n/parts, (part+1)*n/parts) of dim 0
  Transpose,        // [a, b] -> [b, a] (OpenCLIP's text_projection is applied as x @ P)
};

struct TensorMapping {
  std::string source;  // the name in the file
  Component component = Component::Unet;
  std::string target;  // canonical name, without the component prefix
  TensorOp op = TensorOp::Copy;
  int part = 0, parts = 1;  // SplitRows only
};

struct SingleFilePlan {
  std::vector<TensorMapping> tensors;
  std::vector<std::string> ignored;  // source names that belong to no component
  TextEncoderLayout text_layout = TextEncoderLayout::None;
  int dropped_text_layers = 0;
};

// Plans the mapping of every tensor of a single file. Throws an Error when there is no
// `model.diffusion_model.` tensor ("not a Stable Diffusion checkpoint"), or listing every tensor
// under a component prefix that does not map (strict).
SingleFilePlan plan_single_file(const NamedShapes& tensors, const std::string& what);

// The canonical shape / tensor that a mapping makes from its source.
Shape mapped_shape(const TensorMapping& m, const Shape& source);
Tensor apply_mapping(const TensorMapping& m, const Tensor& source);

// The canonical names and shapes, per component, of a single file's names and shapes.
struct MappedNames {
  NamedShapes unet, vae, text_encoder, text_encoder_2;
  std::vector<std::string> ignored;
  TextEncoderLayout text_layout = TextEncoderLayout::None;
  int dropped_text_layers = 0;
};
MappedNames map_single_file_names(const NamedShapes& tensors, const std::string& what = "names");

// ---- one map per layout (names without the component prefix) ----
// Each appends its mappings to `out` and the names it cannot map to `unmapped`.

// model.diffusion_model.* -> UNet2DConditionModel. The block structure (levels, layers per
// block, which levels hold attention) is read from the names.
void map_unet_ldm(const NamedShapes& tensors, std::vector<TensorMapping>& out,
                  std::vector<std::string>& unmapped);
// first_stage_model.* -> AutoencoderKL.
void map_vae_ldm(const NamedShapes& tensors, std::vector<TensorMapping>& out,
                 std::vector<std::string>& unmapped);
// cond_stage_model.transformer.[text_model.]* -> CLIPTextModel (text_model.*).
void map_clip_hf(const NamedShapes& tensors, std::vector<TensorMapping>& out,
                 std::vector<std::string>& unmapped);
// cond_stage_model.model.* (OpenCLIP) -> CLIPTextModel; drops the last `drop_last` blocks.
// With `component` TextEncoder2 (SDXL's conditioner.embedders.N.model.*) the tower keeps its
// projection: text_projection [width, proj] -> text_projection.weight [proj, width]
// (CLIPTextModelWithProjection).
void map_open_clip(const NamedShapes& tensors, int drop_last, std::vector<TensorMapping>& out,
                   std::vector<std::string>& unmapped,
                   Component component = Component::TextEncoder);

// True when `name` (without prefix) is a canonical CLIPTextModel tensor name.
bool is_clip_text_name(const std::string& name);

// Older diffusers VAE folders name the mid-block attention query/key/value/proj_attn; returns
// the current name (to_q/to_k/to_v/to_out.0), or the name unchanged.
std::string modern_vae_name(const std::string& name);

}  // namespace diffuse::io
