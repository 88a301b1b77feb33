// Text encoders of single files -> transformers CLIPTextModel names (text_model.*).
//
// SD1 stores the transformers model itself (cond_stage_model.transformer.[text_model.]*); SD2
// stores OpenCLIP's text tower (cond_stage_model.model.*), whose attention keeps q, k and v in
// one in_proj matrix [3d, d] that is split into q_proj, k_proj and v_proj. SDXL stores both
// (conditioner.embedders.N.transformer.* / .model.*); its OpenCLIP tower keeps text_projection.
#include <algorithm>

#include "io/name_map_ldm.h"
#include "io/name_map_tables.h"
#include "io/name_map_util.h"

namespace diffuse::io {
namespace {

using detail::Rename;

constexpr std::string_view kClipText[] = {
    "text_model.embeddings.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight",
    "text_model.encoder.layers.#.self_attn.q_proj.$",
    "text_model.encoder.layers.#.self_attn.k_proj.$",
    "text_model.encoder.layers.#.self_attn.v_proj.$",
    "text_model.encoder.layers.#.self_attn.out_proj.$",
    "text_model.encoder.layers.#.layer_norm1.$",
    "text_model.encoder.layers.#.layer_norm2.$",
    "text_model.encoder.layers.#.mlp.fc1.$",
    "text_model.encoder.layers.#.mlp.fc2.$",
    "text_model.final_layer_norm.$",
};

// OpenCLIP modules outside the residual blocks.
constexpr Rename kOpenClipTop[] = {
    {"token_embedding", "text_model.embeddings.token_embedding"},
    {"ln_final", "text_model.final_layer_norm"},
};

// Inside transformer.resblocks.N.
constexpr Rename kOpenClipBlock[] = {
    {"ln_1", "layer_norm1"}, {"ln_2", "layer_norm2"},   {"attn.out_proj", "self_attn.out_proj"},
    {"mlp.c_fc", "mlp.fc1"}, {"mlp.c_proj", "mlp.fc2"},
};

constexpr std::string_view kQkv[] = {"q_proj", "k_proj", "v_proj"};

}  // namespace

bool is_clip_text_name(const std::string& name) {
  return detail::matches_any(name, kClipText);
}

void map_clip_hf(const NamedShapes& tensors, std::vector<TensorMapping>& out,
                 std::vector<std::string>& unmapped) {
  // (SDXL's conditioner.embedders.0.transformer.* uses the same names.)
  for (const auto& [name, shape] : tensors) {
    // Older transformers saved CLIPTextModel's text_model's children at the top.
    const std::string target = name.starts_with("text_model.") ? name : "text_model." + name;
    if (is_clip_text_name(target))
      out.push_back({name, Component::TextEncoder, target});
    else
      unmapped.push_back(name);
  }
}

void map_open_clip(const NamedShapes& tensors, int drop_last, std::vector<TensorMapping>& out,
                   std::vector<std::string>& unmapped, Component component) {
  int blocks = 0;
  for (const auto& [name, shape] : tensors) {
    const auto p = detail::split_name(name);
    if (p.size() > 2 && p[0] == "transformer" && p[1] == "resblocks")
      blocks = std::max(blocks, detail::parse_index(p[2]) + 1);
  }
  const int kept = blocks - drop_last;
  for (const auto& [name, shape] : tensors) {
    const auto p = detail::split_name(name);
    int n = -1;  // the residual block, -1 outside them
    if (p.size() > 3 && p[0] == "transformer" && p[1] == "resblocks") n = detail::parse_index(p[2]);
    if (name == "positional_embedding") {
      out.push_back({name, component, "text_model.embeddings.position_embedding.weight"});
      continue;
    }
    if (name == "text_projection" && component == Component::TextEncoder2) {
      out.push_back({name, component, "text_projection.weight", TensorOp::Transpose});
      continue;
    }
    if (auto r = detail::apply_leaf_renames(name, kOpenClipTop)) {
      out.push_back({name, component, *r});
      continue;
    }
    if (n < 0) {
      unmapped.push_back(name);
      continue;
    }
    const std::string layer = "text_model.encoder.layers." + std::to_string(n);
    const std::string sub = detail::join_name(p, 3);
    std::vector<TensorMapping> mapped;
    if (sub == "attn.in_proj_weight" || sub == "attn.in_proj_bias") {
      // [3d, ...] -> q, k, v: [d, ...] each
      const char* leaf = sub == "attn.in_proj_weight" ? "weight" : "bias";
      for (int part = 0; part < 3; ++part)
        mapped.push_back({name, component, detail::dotted({layer, "self_attn", kQkv[part], leaf}),
                          TensorOp::SplitRows, part, 3});
    } else if (auto r = detail::apply_leaf_renames(sub, kOpenClipBlock)) {
      mapped.push_back({name, component, detail::dotted({layer, *r})});
    }
    if (mapped.empty())
      unmapped.push_back(name);
    else if (n < kept)  // blocks past `kept` are valid but unused: dropped
      out.insert(out.end(), mapped.begin(), mapped.end());
  }
}

}  // namespace diffuse::io

namespace diffuse::io::detail {
std::span<const Rename> open_clip_top_renames() {
  return kOpenClipTop;
}
std::span<const Rename> open_clip_block_renames() {
  return kOpenClipBlock;
}
std::span<const std::string_view> open_clip_qkv_names() {
  return kQkv;
}
}  // namespace diffuse::io::detail
