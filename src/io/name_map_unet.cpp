// LDM UNet (openaimodel.UNetModel) -> diffusers UNet2DConditionModel names.
//
// The LDM UNet is a flat list of blocks: input_blocks.K (K = 0 is conv_in, then each level has
// `layers` (resnet [+ attention]) blocks and, except the last level, one downsampler block),
// middle_block (resnet, attention, resnet) and output_blocks.K (each level has layers + 1 blocks,
// the last of a level carries the upsampler). Every block is a list of modules: .0 resnet or
// downsampler `op`, .1 attention or upsampler `conv`, .2 upsampler `conv`. The structure is read
// from the names: the first downsampler's index gives layers + 1.
#include <algorithm>

#include "core/error.h"
#include "io/name_map_ldm.h"
#include "io/name_map_tables.h"
#include "io/name_map_util.h"

namespace diffuse::io {
namespace {

using detail::Rename;

// Whole modules outside the blocks.
constexpr Rename kTopLevel[] = {
    {"time_embed.0", "time_embedding.linear_1"},
    {"time_embed.2", "time_embedding.linear_2"},
    {"label_emb.0.0", "add_embedding.linear_1"},  // SDXL's pooled text + size embedding
    {"label_emb.0.2", "add_embedding.linear_2"},
    {"input_blocks.0.0", "conv_in"},
    {"out.0", "conv_norm_out"},
    {"out.2", "conv_out"},
};

// ResBlock's sequential layers -> ResnetBlock2D's named ones.
constexpr Rename kResnet[] = {
    {"in_layers.0", "norm1"},  {"in_layers.2", "conv1"},  {"emb_layers.1", "time_emb_proj"},
    {"out_layers.0", "norm2"}, {"out_layers.3", "conv2"}, {"skip_connection", "conv_shortcut"},
};

// SpatialTransformer's names are diffusers' Transformer2DModel names already.
constexpr std::string_view kAttention[] = {
    "norm.$",
    "proj_in.$",
    "proj_out.$",
    "transformer_blocks.#.norm1.$",
    "transformer_blocks.#.norm2.$",
    "transformer_blocks.#.norm3.$",
    "transformer_blocks.#.attn1.to_q.$",
    "transformer_blocks.#.attn1.to_k.$",
    "transformer_blocks.#.attn1.to_v.$",
    "transformer_blocks.#.attn1.to_out.0.$",
    "transformer_blocks.#.attn2.to_q.$",
    "transformer_blocks.#.attn2.to_k.$",
    "transformer_blocks.#.attn2.to_v.$",
    "transformer_blocks.#.attn2.to_out.0.$",
    "transformer_blocks.#.ff.net.0.proj.$",
    "transformer_blocks.#.ff.net.2.$",
};

enum class Kind { Resnet, Attention, Downsample, Upsample, Unknown };

Kind kind_of(const std::string& module_name) {
  if (module_name == "in_layers" || module_name == "out_layers" || module_name == "emb_layers" ||
      module_name == "skip_connection")
    return Kind::Resnet;
  if (module_name == "norm" || module_name == "proj_in" || module_name == "proj_out" ||
      module_name == "transformer_blocks")
    return Kind::Attention;
  if (module_name == "op") return Kind::Downsample;
  if (module_name == "conv") return Kind::Upsample;
  return Kind::Unknown;
}

// `sub` is the name inside one module (e.g. "in_layers.0.weight"); `block` the diffusers block
// ("down_blocks.1"), `layer` the module's index in it. "" when it does not map.
std::string map_module(Kind kind, const std::string& sub, const std::string& block, int layer) {
  const std::string l = std::to_string(layer);
  switch (kind) {
    case Kind::Resnet:
      if (auto r = detail::apply_leaf_renames(sub, kResnet))
        return detail::dotted({block, "resnets", l, *r});
      return "";
    case Kind::Attention:
      if (detail::matches_any(sub, kAttention))
        return detail::dotted({block, "attentions", l, sub});
      return "";
    case Kind::Downsample:
      if (detail::matches_pattern(sub, "op.$"))
        return detail::dotted({block, "downsamplers.0.conv", sub.substr(3)});
      return "";
    case Kind::Upsample:
      if (detail::matches_pattern(sub, "conv.$"))
        return detail::dotted({block, "upsamplers.0", sub});
      return "";
    case Kind::Unknown:
      return "";
  }
  return "";
}

struct Structure {
  int per_level = 0;  // layers per block + 1 (the blocks of one level)
  int levels = 0;
};

Structure infer_structure(const NamedShapes& tensors) {
  int first_down = -1, max_in = -1, max_out = -1;
  for (const auto& [name, shape] : tensors) {
    const auto p = detail::split_name(name);
    if (p.size() < 3) continue;
    const int k = detail::parse_index(p[1]);
    if (k < 0) continue;
    if (p[0] == "input_blocks") {
      max_in = std::max(max_in, k);
      if (p[2] == "0" && p.size() > 3 && p[3] == "op" && (first_down < 0 || k < first_down))
        first_down = k;
    } else if (p[0] == "output_blocks") {
      max_out = std::max(max_out, k);
    }
  }
  Structure s;
  if (max_in < 1) return s;  // no blocks at all: the caller reports the tensors
  s.per_level = first_down > 0 ? first_down : max_in + 1;
  s.levels = (max_in + 1) / s.per_level;
  DF_CHECK((max_in + 1) % s.per_level == 0 && s.per_level >= 2,
           "UNet block structure not recognised: input_blocks 0..", max_in,
           " with the first downsampler at ", first_down);
  DF_CHECK(max_out + 1 == s.levels * s.per_level, "UNet block structure not recognised: ", s.levels,
           " levels of ", s.per_level - 1, " layers need ", s.levels * s.per_level,
           " output_blocks, the file has ", max_out + 1);
  return s;
}

}  // namespace

void map_unet_ldm(const NamedShapes& tensors, std::vector<TensorMapping>& out,
                  std::vector<std::string>& unmapped) {
  const Structure s = infer_structure(tensors);
  const int layers = s.per_level - 1;
  for (const auto& [name, shape] : tensors) {
    std::string target;
    const auto p = detail::split_name(name);
    const int k = p.size() >= 3 ? detail::parse_index(p[1]) : -1;
    const int j = p.size() >= 4 ? detail::parse_index(p[2]) : -1;
    if (auto r = detail::apply_leaf_renames(name, kTopLevel)) {
      target = *r;
    } else if (p[0] == "input_blocks" && s.per_level > 0 && j >= 0 && k >= 1) {
      // input_blocks.K.J.* -> down_blocks.level.{resnets,attentions}.layer / downsamplers.0
      const int level = (k - 1) / s.per_level, layer = (k - 1) % s.per_level;
      const Kind kind = kind_of(p[3]);
      const bool placed = kind == Kind::Downsample ? (layer == layers && j == 0)
                          : kind == Kind::Resnet   ? (layer < layers && j == 0)
                                                   : (layer < layers && j == 1);
      if (placed && kind != Kind::Upsample)
        target = map_module(kind, detail::join_name(p, 3), "down_blocks." + std::to_string(level),
                            layer);
    } else if (p[0] == "middle_block" && k >= 0) {
      // middle_block.J: resnet, attention, resnet -> mid_block.resnets.0, attentions.0, resnets.1
      const int at = k;
      const Kind kind = kind_of(p[2]);
      if (kind == Kind::Resnet && at % 2 == 0)
        target = map_module(kind, detail::join_name(p, 2), "mid_block", at / 2);
      else if (kind == Kind::Attention && at % 2 == 1)
        target = map_module(kind, detail::join_name(p, 2), "mid_block", at / 2);
    } else if (p[0] == "output_blocks" && s.per_level > 0 && k >= 0 && j >= 0) {
      // output_blocks.K.J.* -> up_blocks.level.{resnets,attentions}.layer / upsamplers.0
      const int level = k / s.per_level, layer = k % s.per_level;
      const Kind kind = kind_of(p[3]);
      const bool placed = kind == Kind::Resnet      ? j == 0
                          : kind == Kind::Attention ? j == 1
                          : kind == Kind::Upsample  ? (j >= 1 && layer == layers)
                                                    : false;
      if (placed)
        target =
            map_module(kind, detail::join_name(p, 3), "up_blocks." + std::to_string(level), layer);
    }
    if (target.empty())
      unmapped.push_back(name);
    else
      out.push_back({name, Component::Unet, target});
  }
}

}  // namespace diffuse::io

namespace diffuse::io::detail {
std::span<const Rename> unet_top_level_renames() {
  return kTopLevel;
}
std::span<const Rename> unet_resnet_renames() {
  return kResnet;
}
}  // namespace diffuse::io::detail
