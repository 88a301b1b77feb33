// Canonical names -> original LDM single-file names, through the forward maps' own tables,
// verified by mapping the planned names forward again.
#include "io/name_map_inverse.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "io/name_map_tables.h"
#include "io/name_map_util.h"

namespace diffuse::io {
namespace {

using detail::dotted;
using detail::join_name;
using detail::parse_index;
using detail::Rename;
using detail::split_name;

// The inverse of apply_leaf_renames: the `from` of the rule whose `to` is `name`'s module,
// followed by ".weight" / ".bias"; "" when no rule makes `name`.
std::string unrename_leaf(const std::string& name, std::span<const Rename> rules) {
  for (const Rename& r : rules) {
    if (!detail::has_dotted_prefix(name, r.to)) continue;
    const std::string_view rest = std::string_view(name).substr(r.to.size());
    if (rest == ".weight" || rest == ".bias") return std::string(r.from) += rest;
  }
  return "";
}

// One canonical tensor's place in the single file.
struct Placed {
  std::string source;  // "" when it has none
  TensorOp op = TensorOp::Copy;
  int part = 0, parts = 1;
};

int max_index_under(const NamedShapes& names, std::string_view prefix, size_t at) {
  int n = -1;
  for (const auto& [name, shape] : names) {
    if (!name.starts_with(prefix)) continue;
    const auto p = split_name(name);
    if (p.size() > at) n = std::max(n, parse_index(p[at]));
  }
  return n;
}

// ---- UNet: down/mid/up blocks back to the flat input_blocks / middle_block / output_blocks ----

struct UnetPlacer {
  int layers = 0;              // resnets per down block
  std::set<int> up_attention;  // up levels that hold attentions

  explicit UnetPlacer(const NamedShapes& names) {
    layers = max_index_under(names, "down_blocks.0.resnets.", 3) + 1;
    for (const auto& [name, shape] : names) {
      const auto p = split_name(name);
      if (p.size() > 3 && p[0] == "up_blocks" && p[2] == "attentions")
        up_attention.insert(parse_index(p[1]));
    }
  }

  std::string place(const std::string& name) const {
    const auto p = split_name(name);
    const int per_level = layers + 1;
    const int level = p.size() >= 5 ? parse_index(p[1]) : -1;
    const int at = p.size() >= 5 ? parse_index(p[3]) : -1;
    const std::string rest = join_name(p, 4);
    auto resnet = [&](const std::string& block) {
      const std::string leaf = unrename_leaf(rest, detail::unet_resnet_renames());
      return leaf.empty() ? std::string() : dotted({block, leaf});
    };
    const bool conv_leaf = detail::matches_pattern(rest, "conv.$");
    if (p[0] == "down_blocks" && level >= 0 && at >= 0) {
      const auto block = [&](int layer, int module) {
        return str("input_blocks.", 1 + level * per_level + layer, ".", module);
      };
      if (p[2] == "resnets") return resnet(block(at, 0));
      if (p[2] == "attentions") return dotted({block(at, 1), rest});
      if (p[2] == "downsamplers" && at == 0 && conv_leaf)
        return dotted({block(layers, 0), "op", p.back()});
    } else if (p[0] == "mid_block" && p.size() >= 4) {
      const int i = parse_index(p[2]);
      const std::string mid_rest = join_name(p, 3);
      if (p[1] == "resnets" && i >= 0) {
        const std::string leaf = unrename_leaf(mid_rest, detail::unet_resnet_renames());
        return leaf.empty() ? std::string() : dotted({str("middle_block.", 2 * i), leaf});
      }
      if (p[1] == "attentions" && i == 0) return dotted({"middle_block.1", mid_rest});
    } else if (p[0] == "up_blocks" && level >= 0 && at >= 0) {
      const auto block = [&](int layer, int module) {
        return str("output_blocks.", level * per_level + layer, ".", module);
      };
      if (p[2] == "resnets") return resnet(block(at, 0));
      if (p[2] == "attentions") return dotted({block(at, 1), rest});
      if (p[2] == "upsamplers" && at == 0 && conv_leaf)
        return dotted({block(layers, up_attention.count(level) ? 2 : 1), rest});
    }
    return unrename_leaf(name, detail::unet_top_level_renames());
  }
};

// ---- VAE: down_blocks / up_blocks (reversed) / mid_block back to down / up / mid ----

Placed place_vae(const std::string& name, const Shape& shape, int up_levels) {
  const auto p = split_name(name);
  if (p.size() < 4 || (p[0] != "encoder" && p[0] != "decoder"))
    return {unrename_leaf(name, detail::vae_top_level_renames())};
  const std::string& coder = p[0];
  if (p[1] == "mid_block") {
    const std::string sub = join_name(p, 1);  // mid_block.resnets.N.<leaf> / .attentions.0.<leaf>
    for (const Rename& r : detail::vae_mid_renames()) {
      if (!detail::has_dotted_prefix(sub, r.to)) continue;
      const std::string leaf =
          unrename_leaf(sub.substr(r.to.size() + 1), detail::vae_resnet_renames());
      return {leaf.empty() ? "" : dotted({coder, "mid", r.from, leaf})};
    }
    if (p[2] == "attentions" && p[3] == "0") {
      const std::string leaf = unrename_leaf(join_name(p, 4), detail::vae_attention_renames());
      if (leaf.empty()) return {};
      // the projections are 1x1 convolutions in the LDM layout: [c, c] -> [c, c, 1, 1]
      const bool conv = shape.size() == 2;
      return {dotted({coder, "mid.attn_1", leaf}),
              conv ? TensorOp::Conv1x1ToLinear : TensorOp::Copy};
    }
    return {};
  }
  const bool enc = coder == "encoder";
  const int i = parse_index(p[2]), j = p.size() >= 5 ? parse_index(p[4]) : -1;
  if (p[1] != (enc ? "down_blocks" : "up_blocks") || i < 0) return {};
  const std::string level = str(enc ? "down." : "up.", enc ? i : up_levels - 1 - i);
  const std::string rest = join_name(p, 5);
  if (p[3] == "resnets" && j >= 0) {
    const std::string leaf = unrename_leaf(rest, detail::vae_resnet_renames());
    return {leaf.empty() ? "" : dotted({coder, level, "block", p[4], leaf})};
  }
  if (p[3] == (enc ? "downsamplers" : "upsamplers") && j == 0 &&
      detail::matches_pattern(rest, "conv.$"))
    return {dotted({coder, level, enc ? "downsample" : "upsample", rest})};
  return {};
}

// ---- text encoders ----

Placed place_open_clip(const std::string& name) {
  if (name == "text_model.embeddings.position_embedding.weight") return {"positional_embedding"};
  if (std::string top = unrename_leaf(name, detail::open_clip_top_renames()); !top.empty())
    return {top};
  const auto p = split_name(name);
  if (p.size() < 6 || join_name(p, 0, 3) != "text_model.encoder.layers" || parse_index(p[3]) < 0)
    return {};
  const std::string block = "transformer.resblocks." + p[3];
  const auto qkv = detail::open_clip_qkv_names();
  if (p.size() == 7 && p[4] == "self_attn" && (p[6] == "weight" || p[6] == "bias")) {
    const auto it = std::find(qkv.begin(), qkv.end(), p[5]);
    if (it != qkv.end())  // q, k, v: row blocks of in_proj [3d, ...]
      return {dotted({block, "attn.in_proj_" + p[6]}), TensorOp::SplitRows, int(it - qkv.begin()),
              int(qkv.size())};
  }
  const std::string leaf = unrename_leaf(join_name(p, 4), detail::open_clip_block_renames());
  return {leaf.empty() ? "" : dotted({block, leaf})};
}

// SDXL's text_encoder_2: OpenCLIP names, and the projection applied as x @ P.
Placed place_open_clip_with_projection(const std::string& name) {
  if (name == "text_projection.weight") return {"text_projection", TensorOp::Transpose};
  return place_open_clip(name);
}

Shape source_shape(const Placed& pl, const Shape& canonical) {
  if (pl.op == TensorOp::Transpose) return {canonical.at(1), canonical.at(0)};  // b a -> a b
  Shape s = canonical;
  if (pl.op == TensorOp::Conv1x1ToLinear) s.insert(s.end(), {1, 1});  // o i -> o i 1 1
  if (pl.op == TensorOp::SplitRows) s[0] *= pl.parts;                 // d ... -> (parts d) ...
  return s;
}

using MappingKey = std::tuple<std::string, Component, std::string, TensorOp, int, int>;
MappingKey key_of(const TensorMapping& m) {
  return {m.source,
          m.component,
          m.target,
          m.op,
          m.op == TensorOp::SplitRows ? m.part : 0,
          m.op == TensorOp::SplitRows ? m.parts : 1};
}

// Maps the planned names forward and checks that they give back exactly the planned mappings.
void verify_forward(const LdmLayoutPlan& plan, TextEncoderLayout text_layout, int padded_blocks) {
  const std::string what = "the single-file names planned for writing";
  const SingleFilePlan fwd = plan_single_file(plan.sources, what);
  auto fail = [&](const std::string& detail) {
    DF_FAIL("internal error: the single-file name inverse disagrees with the forward map: ",
            detail);
  };
  if (!fwd.ignored.empty()) fail("the forward map ignores " + fwd.ignored.front());
  if (fwd.dropped_text_layers != padded_blocks)
    fail(str("it drops ", fwd.dropped_text_layers, " text blocks, ", padded_blocks, " padded"));
  if (text_layout != TextEncoderLayout::None && fwd.text_layout != text_layout)
    fail("the text encoder layout differs");
  std::set<MappingKey> want, got;
  for (const TensorMapping& m : plan.tensors) want.insert(key_of(m));
  for (const TensorMapping& m : fwd.tensors) got.insert(key_of(m));
  for (const MappingKey& k : want)
    if (!got.count(k)) fail(std::get<0>(k) + " does not map back to " + std::get<2>(k));
  for (const MappingKey& k : got)
    if (!want.count(k)) fail(std::get<0>(k) + " maps to the unplanned " + std::get<2>(k));
}

}  // namespace

LdmLayoutPlan plan_ldm_layout(const NamedShapes& unet, const NamedShapes& vae,
                              const NamedShapes& text_encoder, TextEncoderLayout text_layout,
                              const NamedShapes& text_encoder_2) {
  DF_CHECK(!unet.empty(), "a single file needs a UNet (model.diffusion_model.*): none given");
  DF_CHECK(
      (text_encoder.empty() && text_encoder_2.empty()) || text_layout != TextEncoderLayout::None,
      "a text encoder layout (transformers CLIP or OpenCLIP) is needed to write the text "
      "encoder in a single file");
  DF_CHECK(text_encoder_2.empty() || text_layout == TextEncoderLayout::Conditioner,
           "a second text encoder (SDXL) is written only in SDXL's layout ",
           "(conditioner.embedders.*)");
  const bool has_text_encoder = !text_encoder.empty();
  LdmLayoutPlan plan;
  std::map<std::string, Shape> sources;
  std::vector<std::string> unplaced;
  auto add = [&](Component c, const std::string& name, const Shape& shape, const Placed& pl) {
    if (pl.source.empty()) {
      unplaced.push_back(str(component_name(c), " ", name));
      return;
    }
    const std::string source =
        str(detail::single_file_prefix(c, text_layout, has_text_encoder), pl.source);
    const Shape s = source_shape(pl, shape);
    auto [it, fresh] = sources.emplace(source, s);
    DF_CHECK(fresh || (pl.op == TensorOp::SplitRows && it->second == s),
             "single file: ", component_name(c), " ", name, " goes to ", source, " with shape ",
             shape_str(s), ", which already holds ", shape_str(it->second));
    plan.tensors.push_back({source, c, name, pl.op, pl.part, pl.parts});
  };

  const UnetPlacer unet_placer(unet);
  for (const auto& [name, shape] : unet)
    add(Component::Unet, name, shape, {unet_placer.place(name)});
  const int up_levels = max_index_under(vae, "decoder.up_blocks.", 2) + 1;
  for (const auto& [name, shape] : vae)
    add(Component::Vae, name, shape, place_vae(name, shape, up_levels));
  for (const auto& [name, shape] : text_encoder) {
    if (text_layout == TextEncoderLayout::OpenClip)
      add(Component::TextEncoder, name, shape, place_open_clip(name));
    else
      add(Component::TextEncoder, name, shape, {is_clip_text_name(name) ? name : ""});
  }
  for (const auto& [name, shape] : text_encoder_2)
    add(Component::TextEncoder2, name, shape, place_open_clip_with_projection(name));
  if (!unplaced.empty()) {
    std::string list;
    for (size_t i = 0; i < unplaced.size() && i < 10; ++i) list += (i ? ", " : "") + unplaced[i];
    if (unplaced.size() > 10) list += str(", ... (", unplaced.size() - 10, " more)");
    DF_FAIL(unplaced.size(), " tensor(s) have no place in the single-file (LDM) layout: ", list);
  }

  // OpenCLIP's unused last block(s), zero-filled, shaped like the last block written.
  int padded = 0;
  if (text_layout == TextEncoderLayout::OpenClip && !text_encoder.empty()) {
    const std::string prefix = str(detail::single_file_prefix(Component::TextEncoder, text_layout),
                                   "transformer.resblocks.");
    const int blocks = max_index_under(text_encoder, "text_model.encoder.layers.", 3) + 1;
    const std::string last = str(prefix, blocks - 1, ".");
    padded = detail::open_clip_unused_blocks();
    for (int b = blocks; b < blocks + padded; ++b)
      for (const auto& [name, shape] : sources)
        if (name.starts_with(last))
          plan.padding.emplace_back(str(prefix, b, ".", name.substr(last.size())), shape);
    for (const auto& [name, shape] : plan.padding) sources.emplace(name, shape);
  }
  plan.sources.assign(sources.begin(), sources.end());
  verify_forward(
      plan, text_encoder.empty() && text_encoder_2.empty() ? TextEncoderLayout::None : text_layout,
      padded);
  return plan;
}

Tensor unapply_mappings(const std::vector<const TensorMapping*>& mappings,
                        const std::vector<Tensor>& parts, const Shape& source_shape) {
  DF_CHECK(!mappings.empty() && mappings.size() == parts.size(),
           "unapply_mappings: one tensor per mapping expected");
  const TensorMapping& m = *mappings.front();
  switch (m.op) {
    case TensorOp::Copy:
      return parts.front();
    case TensorOp::Conv1x1ToLinear:
      return parts.front().reshape(source_shape);  // o i -> o i 1 1
    case TensorOp::Transpose:
      return parts.front().transpose(0, 1).contiguous();  // b a -> a b
    case TensorOp::SplitRows: {
      DF_CHECK(int(parts.size()) == m.parts, m.source, ": ", parts.size(), " of ", m.parts,
               " row blocks given");
      // parts x [d, ...] -> [(parts d), ...]
      Tensor out = Tensor::empty(source_shape, parts.front().dtype());
      const int64_t rows = source_shape[0] / m.parts;
      for (size_t i = 0; i < parts.size(); ++i) {
        const int64_t at = mappings[i]->part * rows;
        Tensor dst = out.slice(0, at, at + rows);
        DF_CHECK(dst.shape() == parts[i].shape(), m.source, ": row block ", mappings[i]->target,
                 " is ", parts[i].desc(), ", expected ", shape_str(dst.shape()));
        dst.copy_from(parts[i]);
      }
      return out;
    }
  }
  return parts.front();
}

}  // namespace diffuse::io
