// Single-file (LDM layout) dispatch: which prefix belongs to which component, what is ignored,
// and how a planned mapping turns a source tensor into a canonical one.
#include "io/name_map_ldm.h"

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

// The text tower of SD2's OpenCLIP holds one block more than SD2 uses (it conditions on the
// penultimate block); diffusers' published SD2 text encoder leaves it out.
constexpr int kOpenClipUnusedBlocks = 1;

struct Group {
  std::string_view prefix;
  NamedShapes tensors;  // names without the prefix
};

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
  }
  return "?";
}

SingleFilePlan plan_single_file(const NamedShapes& tensors, const std::string& what) {
  Group unet{kUnetPrefix, {}}, vae{kVaePrefix, {}}, clip_hf{kClipHfPrefix, {}},
      open_clip{kOpenClipPrefix, {}};
  SingleFilePlan plan;
  std::vector<std::string> unmapped;
  bool diffusers_like = false;
  for (const auto& [name, shape] : tensors) {
    bool ignored = false;
    for (std::string_view ig : kIgnoredInComponents) ignored |= detail::has_dotted_prefix(name, ig);
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
    else if (name.starts_with(kCondPrefix))
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
    NamedShapes& dst = m.component == Component::Unet  ? out.unet
                       : m.component == Component::Vae ? out.vae
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
std::string_view single_file_prefix(Component c, TextEncoderLayout text_layout) {
  if (c == Component::Unet) return kUnetPrefix;
  if (c == Component::Vae) return kVaePrefix;
  return text_layout == TextEncoderLayout::OpenClip ? kOpenClipPrefix : kClipHfPrefix;
}
}  // namespace diffuse::io::detail
