// Single-file (LDM layout) dispatch: which prefix belongs to which component, what is ignored,
// and how a planned mapping turns a source tensor into a canonical one.
#include "io/name_map_ldm.h"

#include <optional>
#include <set>

#include "io/name_map_tables.h"
#include "io/name_map_util.h"

namespace diffuse::io {
namespace {

constexpr std::string_view kUnetPrefix = "model.diffusion_model.";
constexpr std::string_view kVaePrefix = "first_stage_model.";
constexpr std::string_view kClipHfPrefix = "cond_stage_model.transformer.";
constexpr std::string_view kOpenClipPrefix = "cond_stage_model.model.";
constexpr std::string_view kCondPrefix = "cond_stage_model.";
// SDXL: conditioner.embedders.N.transformer.* (transformers CLIP) / .model.* (OpenCLIP).
constexpr std::string_view kConditionerPrefix = "conditioner.embedders.";

// Tensors under a component prefix that no model uses: training losses, buffers, the
// contrastive head of the text tower.
constexpr std::string_view kIgnoredInComponents[] = {
    "first_stage_model.loss",  // the VAE's LPIPS / discriminator training loss
    "cond_stage_model.transformer.text_model.embeddings.position_ids",
    "cond_stage_model.transformer.embeddings.position_ids",
    "cond_stage_model.model.text_projection",
    "cond_stage_model.model.logit_scale",
    "cond_stage_model.model.attn_mask",
};

// The same inside an SDXL embedder (names without its prefix).
constexpr std::string_view kIgnoredInEmbedders[] = {
    "text_model.embeddings.position_ids",
    "embeddings.position_ids",
    "logit_scale",
    "attn_mask",
};

// The text tower of SD2's OpenCLIP holds one block more than SD2 uses (it conditions on the
// penultimate block); diffusers' published SD2 text encoder leaves it out.
constexpr int kOpenClipUnusedBlocks = 1;

struct Group {
  std::string prefix;
  NamedShapes tensors;  // names without the prefix
};

// An SDXL embedder's prefix ("conditioner.embedders.1.model.") and whether it is the
// transformers CLIP ("transformer") or OpenCLIP ("model"); nullopt for other names.
struct Embedder {
  std::string prefix;
  bool open_clip = false;
};
std::optional<Embedder> embedder_of(const std::string& name) {
  if (!name.starts_with(kConditionerPrefix)) return std::nullopt;
  const auto p = detail::split_name(name);
  if (p.size() < 5 || detail::parse_index(p[2]) < 0 || (p[3] != "transformer" && p[3] != "model"))
    return std::nullopt;
  return Embedder{detail::join_name(p, 0, 4) + ".", p[3] == "model"};
}

void strip_into(Group& g, const std::string& name, const Shape& shape) {
  g.tensors.emplace_back(name.substr(g.prefix.size()), shape);
}

std::string list_names(const std::vector<std::string>& names, size_t max_listed = 20) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < max_listed; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > max_listed) out += str(", ... (", names.size() - max_listed, " more)");
  return out;
}

}  // namespace

const char* component_name(Component c) {
  switch (c) {
    case Component::Unet:
      return "unet";
    case Component::Vae:
      return "vae";
    case Component::TextEncoder:
      return "text_encoder";
    case Component::TextEncoder2:
      return "text_encoder_2";
  }
  return "?";
}

SingleFilePlan plan_single_file(const NamedShapes& tensors, const std::string& what) {
  Group unet{std::string(kUnetPrefix), {}}, vae{std::string(kVaePrefix), {}},
      clip_hf{std::string(kClipHfPrefix), {}}, open_clip{std::string(kOpenClipPrefix), {}},
      sdxl_clip{"", {}}, sdxl_open_clip{"", {}};
  SingleFilePlan plan;
  std::vector<std::string> unmapped;
  bool diffusers_like = false;
  // SDXL embedders: one group per kind; a second embedder of a kind is an error.
  auto into_embedder = [&](Group& g, const Embedder& e, const std::string& name,
                           const Shape& shape) {
    DF_CHECK(g.prefix.empty() || g.prefix == e.prefix, what, ": holds two text encoders of ",
             "one kind (", g.prefix, "* and ", e.prefix, "*)");
    g.prefix = e.prefix;
    strip_into(g, name, shape);
  };
  for (const auto& [name, shape] : tensors) {
    bool ignored = false;
    for (std::string_view ig : kIgnoredInComponents) ignored |= detail::has_dotted_prefix(name, ig);
    const std::optional<Embedder> embedder = embedder_of(name);
    if (embedder)
      for (std::string_view ig : kIgnoredInEmbedders)
        ignored |= name.substr(embedder->prefix.size()) == ig;
    if (ignored)
      plan.ignored.push_back(name);
    else if (name.starts_with(kUnetPrefix))
      strip_into(unet, name, shape);
    else if (name.starts_with(kVaePrefix))
      strip_into(vae, name, shape);
    else if (name.starts_with(kClipHfPrefix))
      strip_into(clip_hf, name, shape);
    else if (name.starts_with(kOpenClipPrefix))
      strip_into(open_clip, name, shape);
    else if (embedder)
      into_embedder(embedder->open_clip ? sdxl_open_clip : sdxl_clip, *embedder, name, shape);
    else if (name.starts_with(kCondPrefix) || name.starts_with(kConditionerPrefix))
      unmapped.push_back(name);
    else
      plan.ignored.push_back(name);  // model_ema.*, betas, alphas_cumprod, ...
    diffusers_like |= name.starts_with("down_blocks.") || name.starts_with("text_model.") ||
                      name.starts_with("decoder.up_blocks.");
  }
  if (unet.tensors.empty())
    DF_FAIL(what, ": not a Stable Diffusion checkpoint (no model.diffusion_model.* tensors",
            diffusers_like ? "; it looks like one component of a diffusers folder: open the folder"
                           : "",
            ")");
  DF_CHECK(clip_hf.tensors.empty() || open_clip.tensors.empty(), what,
           ": holds both a transformers CLIP (cond_stage_model.transformer.*) and an OpenCLIP "
           "(cond_stage_model.model.*) text encoder");
  const bool sdxl = !sdxl_clip.tensors.empty() || !sdxl_open_clip.tensors.empty();
  DF_CHECK(!sdxl || (clip_hf.tensors.empty() && open_clip.tensors.empty()), what,
           ": holds both cond_stage_model.* (SD 1.x/2.x) and conditioner.embedders.* (SDXL) ",
           "text encoders");

  // Each layout's map sees names without its prefix; mappings and errors get it back.
  auto run = [&](const Group& g, auto&& map) {
    const size_t first = plan.tensors.size(), first_unmapped = unmapped.size();
    map(g.tensors, plan.tensors, unmapped);
    for (size_t i = first; i < plan.tensors.size(); ++i) plan.tensors[i].source.insert(0, g.prefix);
    for (size_t i = first_unmapped; i < unmapped.size(); ++i) unmapped[i].insert(0, g.prefix);
  };
  run(unet, map_unet_ldm);
  if (!vae.tensors.empty()) run(vae, map_vae_ldm);
  if (!clip_hf.tensors.empty()) {
    plan.text_layout = TextEncoderLayout::ClipHF;
    run(clip_hf, map_clip_hf);
  }
  if (!open_clip.tensors.empty()) {
    plan.text_layout = TextEncoderLayout::OpenClip;
    plan.dropped_text_layers = kOpenClipUnusedBlocks;
    run(open_clip, [](const NamedShapes& t, auto& out, auto& un) {
      map_open_clip(t, kOpenClipUnusedBlocks, out, un);
    });
  }
  if (sdxl) plan.text_layout = TextEncoderLayout::Conditioner;
  if (!sdxl_clip.tensors.empty()) run(sdxl_clip, map_clip_hf);
  if (!sdxl_open_clip.tensors.empty())  // SDXL uses every block of its OpenCLIP tower
    run(sdxl_open_clip, [](const NamedShapes& t, auto& out, auto& un) {
      map_open_clip(t, 0, out, un, Component::TextEncoder2);
    });
  DF_CHECK(
      unmapped.empty(), what, ": ", unmapped.size(),
      " tensor(s) of the checkpoint do not map to a known model layout: ", list_names(unmapped));

  std::set<std::pair<Component, std::string>> seen;
  for (const TensorMapping& m : plan.tensors)
    DF_CHECK(seen.emplace(m.component, m.target).second, what, ": two tensors map to ",
             component_name(m.component), " ", m.target, " (one of them is ", m.source, ")");
  return plan;
}

Shape mapped_shape(const TensorMapping& m, const Shape& source) {
  switch (m.op) {
    case TensorOp::Copy:
      return source;
    case TensorOp::Conv1x1ToLinear:
      DF_CHECK(source.size() == 4 && source[2] == 1 && source[3] == 1, m.source,
               ": expected a 1x1 convolution weight [o, i, 1, 1], got ", shape_str(source));
      return {source[0], source[1]};
    case TensorOp::SplitRows: {
      DF_CHECK(!source.empty() && source[0] % m.parts == 0, m.source, ": cannot split ",
               shape_str(source), " into ", m.parts, " equal row blocks");
      Shape s = source;
      s[0] /= m.parts;
      return s;
    }
    case TensorOp::Transpose:
      DF_CHECK(source.size() == 2, m.source, ": expected a matrix, got ", shape_str(source));
      return {source[1], source[0]};
  }
  return source;
}

Tensor apply_mapping(const TensorMapping& m, const Tensor& source) {
  const Shape shape = mapped_shape(m, source.shape());
  switch (m.op) {
    case TensorOp::Copy:
      return source;
    case TensorOp::Conv1x1ToLinear:
      return source.reshape(shape);  // o i 1 1 -> o i
    case TensorOp::SplitRows:        // (parts d) ... -> d ... (block `part`)
      return source.slice(0, m.part * shape[0], (m.part + 1) * shape[0]);
    case TensorOp::Transpose:  // a b -> b a
      return source.transpose(0, 1).contiguous();
  }
  return source;
}

MappedNames map_single_file_names(const NamedShapes& tensors, const std::string& what) {
  std::map<std::string, Shape> by_name(tensors.begin(), tensors.end());
  const SingleFilePlan plan = plan_single_file(tensors, what);
  MappedNames out;
  out.ignored = plan.ignored;
  out.text_layout = plan.text_layout;
  out.dropped_text_layers = plan.dropped_text_layers;
  for (const TensorMapping& m : plan.tensors) {
    NamedShapes& dst = m.component == Component::Unet           ? out.unet
                       : m.component == Component::Vae          ? out.vae
                       : m.component == Component::TextEncoder2 ? out.text_encoder_2
                                                                : out.text_encoder;
    dst.emplace_back(m.target, mapped_shape(m, by_name.at(m.source)));
  }
  return out;
}

}  // namespace diffuse::io

namespace diffuse::io::detail {
int open_clip_unused_blocks() {
  return kOpenClipUnusedBlocks;
}
std::string_view single_file_prefix(Component c, TextEncoderLayout text_layout,
                                    bool has_text_encoder) {
  if (c == Component::Unet) return kUnetPrefix;
  if (c == Component::Vae) return kVaePrefix;
  if (text_layout == TextEncoderLayout::Conditioner) {
    // the base: CLIP first, OpenCLIP second; the refiner: OpenCLIP only
    if (c == Component::TextEncoder) return "conditioner.embedders.0.transformer.";
    return has_text_encoder ? "conditioner.embedders.1.model." : "conditioner.embedders.0.model.";
  }
  return text_layout == TextEncoderLayout::OpenClip ? kOpenClipPrefix : kClipHfPrefix;
}
}  // namespace diffuse::io::detail
