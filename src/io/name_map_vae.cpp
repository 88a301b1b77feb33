// LDM AutoencoderKL (first_stage_model.*) -> diffusers AutoencoderKL names.
//
// encoder.down.I.block.J / downsample and decoder.up.I.block.J / upsample become
// {encoder.down_blocks,decoder.up_blocks}.i.resnets.j / {down,up}samplers.0; the decoder's levels
// are stored in reverse order (up.(n-1-i) is up_blocks.i, n read from the names). The mid-block
// attention's 1x1 convolutions q/k/v/proj_out become the linear to_q/to_k/to_v/to_out.0.
#include <algorithm>

#include "io/name_map_ldm.h"
#include "io/name_map_tables.h"
#include "io/name_map_util.h"

namespace diffuse::io {
namespace {

using detail::Rename;

constexpr Rename kTopLevel[] = {
    {"encoder.conv_in", "encoder.conv_in"},
    {"encoder.conv_out", "encoder.conv_out"},
    {"encoder.norm_out", "encoder.conv_norm_out"},
    {"decoder.conv_in", "decoder.conv_in"},
    {"decoder.conv_out", "decoder.conv_out"},
    {"decoder.norm_out", "decoder.conv_norm_out"},
    {"quant_conv", "quant_conv"},
    {"post_quant_conv", "post_quant_conv"},
};

constexpr Rename kResnet[] = {
    {"norm1", "norm1"},
    {"conv1", "conv1"},
    {"norm2", "norm2"},
    {"conv2", "conv2"},
    {"nin_shortcut", "conv_shortcut"},
};

constexpr Rename kAttention[] = {
    {"norm", "group_norm"}, {"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"},
};

constexpr Rename kMid[] = {
    {"block_1", "mid_block.resnets.0"},
    {"block_2", "mid_block.resnets.1"},
};

// Older diffusers VAE folders (AttentionBlock before diffusers 0.14).
constexpr Rename kLegacyAttention[] = {
    {"query", "to_q"},
    {"key", "to_k"},
    {"value", "to_v"},
    {"proj_attn", "to_out.0"},
};

}  // namespace

void map_vae_ldm(const NamedShapes& tensors, std::vector<TensorMapping>& out,
                 std::vector<std::string>& unmapped) {
  int up_levels = 0;
  for (const auto& [name, shape] : tensors) {
    const auto p = detail::split_name(name);
    if (p.size() > 2 && p[0] == "decoder" && p[1] == "up")
      up_levels = std::max(up_levels, detail::parse_index(p[2]) + 1);
  }
  for (const auto& [name, shape] : tensors) {
    std::string target;
    TensorOp op = TensorOp::Copy;
    const auto p = detail::split_name(name);
    const bool coder = p.size() >= 4 && (p[0] == "encoder" || p[0] == "decoder");
    const int i = coder ? detail::parse_index(p[2]) : -1;
    const int j = coder && p.size() >= 6 ? detail::parse_index(p[4]) : -1;
    if (auto r = detail::apply_leaf_renames(name, kTopLevel)) {
      target = *r;
    } else if (coder && p[1] == "mid") {
      const std::string sub = detail::join_name(p, 2);
      if (auto r = detail::apply_renames(sub, kMid)) {
        const auto inner = detail::split_name(*r);
        // mid_block.resnets.N.<resnet leaf>
        if (auto leaf = detail::apply_leaf_renames(detail::join_name(inner, 3), kResnet))
          target = detail::dotted({p[0], detail::join_name(inner, 0, 3), *leaf});
      } else if (p[2] == "attn_1") {
        if (auto leaf = detail::apply_leaf_renames(detail::join_name(p, 3), kAttention)) {
          target = detail::dotted({p[0], "mid_block.attentions.0", *leaf});
          // [c, c, 1, 1] -> [c, c] for the projections (group_norm is 1-D)
          if (p[3] != "norm" && shape.size() == 4) op = TensorOp::Conv1x1ToLinear;
        }
      }
    } else if (coder && i >= 0 &&
               ((p[0] == "encoder" && p[1] == "down") || (p[0] == "decoder" && p[1] == "up"))) {
      const bool enc = p[0] == "encoder";
      const std::string block = enc ? "encoder.down_blocks." + std::to_string(i)
                                    : "decoder.up_blocks." + std::to_string(up_levels - 1 - i);
      if (p[3] == "block" && j >= 0) {
        if (auto leaf = detail::apply_leaf_renames(detail::join_name(p, 5), kResnet))
          target = detail::dotted({block, "resnets", p[4], *leaf});
      } else if (p[3] == (enc ? "downsample" : "upsample") &&
                 detail::matches_pattern(detail::join_name(p, 4), "conv.$")) {
        target = detail::dotted(
            {block, enc ? "downsamplers.0" : "upsamplers.0", detail::join_name(p, 4)});
      }
    }
    if (target.empty())
      unmapped.push_back(name);
    else
      out.push_back({name, Component::Vae, target, op});
  }
}

std::string modern_vae_name(const std::string& name) {
  const auto p = detail::split_name(name);
  // {encoder,decoder}.mid_block.attentions.0.<legacy>.{weight,bias}
  if (p.size() == 6 && p[1] == "mid_block" && p[2] == "attentions")
    if (auto r = detail::apply_leaf_renames(detail::join_name(p, 4), kLegacyAttention))
      return detail::dotted({detail::join_name(p, 0, 4), *r});
  return name;
}

}  // namespace diffuse::io

namespace diffuse::io::detail {
std::span<const Rename> vae_top_level_renames() {
  return kTopLevel;
}
std::span<const Rename> vae_resnet_renames() {
  return kResnet;
}
std::span<const Rename> vae_attention_renames() {
  return kAttention;
}
std::span<const Rename> vae_mid_renames() {
  return kMid;
}
}  // namespace diffuse::io::detail
