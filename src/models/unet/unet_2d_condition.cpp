#include "models/unet/unet_2d_condition.h"

#include <algorithm>
#include <cmath>

#include "autograd/checkpoint.h"
#include "nn/functional.h"

namespace diffuse::models {

namespace F = nn::F;

Tensor timestep_embedding(const std::vector<float>& timesteps, int64_t dim, bool flip_sin_to_cos,
                          float freq_shift) {
  const int64_t half = dim / 2, b = int64_t(timesteps.size());
  Tensor out = Tensor::zeros({b, dim});
  float* p = out.data<float>();
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t j = 0; j < half; ++j) {
      // computed in float, as diffusers does
      float exponent = -std::log(10000.0f) * float(j) / (float(half) - freq_shift);
      float arg = timesteps[size_t(i)] * std::exp(exponent);
      float s = std::sin(arg), c = std::cos(arg);
      p[i * dim + j] = flip_sin_to_cos ? c : s;
      p[i * dim + half + j] = flip_sin_to_cos ? s : c;
    }
  }
  return out;
}

TimestepEmbedding::TimestepEmbedding(int64_t in, int64_t dim)
    : linear_1(in, dim), linear_2(dim, dim) {
  register_module("linear_1", linear_1);
  register_module("linear_2", linear_2);
}

Tensor TimestepEmbedding::forward(const Tensor& x) const {
  return linear_2.forward(F::silu(linear_1.forward(x)));
}

UNetLevel::UNetLevel() {
  register_module("resnets", resnets);
  register_module("attentions", attentions);
  register_module("downsamplers", downsamplers);
  register_module("upsamplers", upsamplers);
}

UNetMidBlock::UNetMidBlock(const UNetConfig& c) {
  const int64_t ch = c.block_out_channels.back(), temb = c.time_embed_dim();
  resnets.emplace_back(ch, ch, temb, c.norm_num_groups, c.norm_eps);
  if (c.mid_block_has_attention)
    attentions.emplace_back(ch, c.heads.back(), c.cross_attention_dim, c.mid_transformer_layers(),
                            c.use_linear_projection, c.norm_num_groups);
  resnets.emplace_back(ch, ch, temb, c.norm_num_groups, c.norm_eps);
  register_module("attentions", attentions);
  register_module("resnets", resnets);
}

Tensor UNetMidBlock::forward(const Tensor& x, const Tensor& temb, const Tensor& context) const {
  Tensor h = resnets[0].forward(x, temb);
  if (attentions.size()) h = attentions[0].forward(h, context);
  return resnets[1].forward(h, temb);
}

namespace {
const UNetConfig& checked(const UNetConfig& c) {
  const size_t n = c.block_out_channels.size();
  DF_CHECK(n > 0 && c.heads.size() == n && c.down_has_attention.size() == n &&
               c.up_has_attention.size() == n,
           "unet: inconsistent config (", n, " levels)");
  for (size_t i = 0; i < n; ++i)
    DF_CHECK(
        c.heads[i] > 0 && c.block_out_channels[i] % c.heads[i] == 0, "unet: the head count of ",
        "level ", i, " (width ", c.block_out_channels[i], ") is not in the file and differs ",
        "from the published models'; give the model's config (--config DIR of a diffusers folder)");
  DF_CHECK(c.transformer_layers_per_block.size() == n || c.transformer_layers_per_block.size() == 1,
           "unet: ", c.transformer_layers_per_block.size(), " transformer depths for ", n,
           " levels");
  DF_CHECK(c.reverse_transformer_layers_per_block.empty() ||
               c.reverse_transformer_layers_per_block.size() == n,
           "unet: ", c.reverse_transformer_layers_per_block.size(), " up-level depths for ", n,
           " levels");
  for (const auto& level : c.reverse_transformer_layers_per_block)
    DF_CHECK(int64_t(level.size()) == c.layers_per_block + 1, "unet: up-level depths list ",
             level.size(), " layers, the levels have ", c.layers_per_block + 1);
  DF_CHECK(c.addition_embed_type.empty() || c.has_text_time(), "unet: addition_embed_type '",
           c.addition_embed_type, "' is not supported");
  if (c.has_text_time())
    DF_CHECK(c.addition_time_embed_dim > 0 && c.addition_time_embed_dim % 2 == 0 &&
                 c.projection_class_embeddings_input_dim > 0,
             "unet: the width of the added time embedding (addition_time_embed_dim) is not in ",
             "the file; give the model's config (--config DIR of a diffusers folder)");
  return c;
}
}  // namespace

UNet2DConditionModel::UNet2DConditionModel(const UNetConfig& c)
    : conv_in((checked(c), c.in_channels), c.block_out_channels[0], 3, 1, 1),
      time_embedding(c.block_out_channels[0], c.time_embed_dim()),
      mid_block(c),
      conv_norm_out(c.norm_num_groups, c.block_out_channels[0], c.norm_eps),
      conv_out(c.block_out_channels[0], c.out_channels, 3, 1, 1),
      config_(c) {
  const auto& ch = c.block_out_channels;
  const size_t n = ch.size();
  const int64_t temb = c.time_embed_dim(), g = c.norm_num_groups;
  // down: level i maps ch[i-1] -> ch[i] and halves the size except at the last level
  for (size_t i = 0; i < n; ++i) {
    UNetLevel& lvl = down_blocks.emplace_back();
    const int64_t in = i == 0 ? ch[0] : ch[i - 1];
    for (int64_t j = 0; j < c.layers_per_block; ++j) {
      lvl.resnets.emplace_back(j == 0 ? in : ch[i], ch[i], temb, g, c.norm_eps);
      if (c.down_has_attention[i])
        lvl.attentions.emplace_back(ch[i], c.heads[i], c.cross_attention_dim,
                                    c.down_transformer_layers(i), c.use_linear_projection, g);
    }
    if (i + 1 < n) lvl.downsamplers.emplace_back(ch[i], c.downsample_padding);
  }
  // up: level i works at width ch[n-1-i]; each resnet also takes a skip connection
  int64_t out = ch[n - 1];
  for (size_t i = 0; i < n; ++i) {
    UNetLevel& lvl = up_blocks.emplace_back();
    const int64_t prev = out;
    out = ch[n - 1 - i];
    const int64_t in = ch[n - 1 - std::min(i + 1, n - 1)];  // width of the skips' source level
    const size_t heads_level = n - 1 - i;
    for (int64_t j = 0; j <= c.layers_per_block; ++j) {
      const int64_t skip = j == c.layers_per_block ? in : out;
      const int64_t res_in = j == 0 ? prev : out;
      lvl.resnets.emplace_back(res_in + skip, out, temb, g, c.norm_eps);
      if (c.up_has_attention[i])
        lvl.attentions.emplace_back(out, c.heads[heads_level], c.cross_attention_dim,
                                    c.up_transformer_layers(i, size_t(j)), c.use_linear_projection,
                                    g);
    }
    if (i + 1 < n) lvl.upsamplers.emplace_back(out);
  }
  register_module("conv_in", conv_in);
  register_module("time_embedding", time_embedding);
  if (c.has_text_time()) {
    add_embedding.emplace(c.projection_class_embeddings_input_dim, temb);
    register_module("add_embedding", *add_embedding);
  }
  register_module("down_blocks", down_blocks);
  register_module("mid_block", mid_block);
  register_module("up_blocks", up_blocks);
  register_module("conv_norm_out", conv_norm_out);
  register_module("conv_out", conv_out);
}

Tensor UNet2DConditionModel::added_embedding(const Tensor& text_embeds,
                                             const Tensor& time_ids) const {
  const auto& c = config_;
  DF_CHECK(add_embedding.has_value(), "unet: this model takes no added conditioning ",
           "(addition_embed_type is not text_time)");
  DF_CHECK(text_embeds.defined() && time_ids.defined(), "unet: addition_embed_type text_time ",
           "needs text_embeds and time_ids (the pooled text embedding and the time ids)");
  DF_CHECK(text_embeds.dim() == 2 && time_ids.dim() == 2 && time_ids.size(0) == text_embeds.size(0),
           "unet: text_embeds must be [B, P] and time_ids [B, n], got ", text_embeds.desc(),
           " and ", time_ids.desc());
  const int64_t b = text_embeds.size(0), ids = time_ids.size(1), d = c.addition_time_embed_dim;
  DF_CHECK(text_embeds.size(1) + ids * d == c.projection_class_embeddings_input_dim,
           "unet: text_embeds ", text_embeds.desc(), " and ", ids, " time ids of width ", d,
           " make ", text_embeds.size(1) + ids * d, " features; add_embedding takes ",
           c.projection_class_embeddings_input_dim);
  // Time ids are inputs, not parameters: their sinusoidal projection needs no gradient.
  Tensor time = timestep_embedding(time_ids.to_float_vector(), d, c.flip_sin_to_cos,
                                   c.freq_shift);  // [B * n, d]
  time = F::reshape(time, {b, ids * d});           // (b n) d -> b (n d)
  Tensor pooled = text_embeds.dtype() == DType::F32 ? text_embeds : text_embeds.to(DType::F32);
  return add_embedding->forward(F::cat({pooled, time}, 1));  // [B, P + n d] -> [B, temb]
}

Tensor UNet2DConditionModel::forward(const Tensor& sample, const std::vector<float>& timesteps,
                                     const Tensor& context, const Tensor& text_embeds,
                                     const Tensor& time_ids) const {
  const auto& c = config_;
  DF_CHECK(sample.dim() == 4 && sample.size(1) == c.in_channels, "unet: sample must be [B, ",
           c.in_channels, ", h, w], got ", sample.desc());
  const int64_t b = sample.size(0);
  DF_CHECK(int64_t(timesteps.size()) == b, "unet: ", timesteps.size(), " timesteps for batch ", b);
  DF_CHECK(context.dim() == 3 && context.size(0) == b && context.size(2) == c.cross_attention_dim,
           "unet: context must be [", b, ", S, ", c.cross_attention_dim, "], got ", context.desc());
  const int64_t levels = int64_t(c.block_out_channels.size());
  const int64_t mult = int64_t(1) << (levels - 1);
  DF_CHECK(sample.size(2) % mult == 0 && sample.size(3) % mult == 0, "unet: latent size ",
           sample.size(2), "x", sample.size(3), " must be a multiple of ", mult);

  // 1. time embedding, plus the added conditioning (SDXL)
  Tensor temb = time_embedding.forward(
      timestep_embedding(timesteps, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift));
  if (add_embedding) {
    DF_CHECK(text_embeds.defined() && text_embeds.dim() == 2 && text_embeds.size(0) == b,
             "unet: text_embeds must be [", b, ", P] for addition_embed_type text_time, got ",
             text_embeds.defined() ? text_embeds.desc() : std::string("none"));
    DF_CHECK(time_ids.defined() && time_ids.dim() == 2 && time_ids.size(0) == b,
             "unet: time_ids must be [", b, ", n] for addition_embed_type text_time, got ",
             time_ids.defined() ? time_ids.desc() : std::string("none"));
    temb = F::add(temb, added_embedding(text_embeds, time_ids));
  } else {
    DF_CHECK(!text_embeds.defined() && !time_ids.defined(),
             "unet: text_embeds / time_ids given to a model without added conditioning");
  }

  // 2. down
  Tensor h = conv_in.forward(sample);
  std::vector<Tensor> skips = {h};
  // One resnet and its transformer: in = {h, temb, context}. Checkpointed on request.
  auto unit = [this](const UNetLevel* lvl, size_t j, const std::vector<Tensor>& in) {
    auto body = [lvl, j](const std::vector<Tensor>& x) {
      Tensor y = lvl->resnets[j].forward(x[0], x[1]);
      return lvl->attentions.size() ? lvl->attentions[j].forward(y, x[2]) : y;
    };
    return checkpointing_ && autograd::grad_enabled() ? autograd::checkpoint(body, in) : body(in);
  };
  for (size_t i = 0; i < down_blocks.size(); ++i) {
    const UNetLevel& lvl = down_blocks[i];
    for (size_t j = 0; j < lvl.resnets.size(); ++j) {
      h = unit(&lvl, j, {h, temb, context});
      skips.push_back(h);
    }
    if (lvl.downsamplers.size()) {
      h = lvl.downsamplers[0].forward(h);
      skips.push_back(h);
    }
  }

  // 3. mid
  if (checkpointing_ && autograd::grad_enabled()) {
    h = autograd::checkpoint(
        [this](const std::vector<Tensor>& x) { return mid_block.forward(x[0], x[1], x[2]); },
        {h, temb, context});
  } else {
    h = mid_block.forward(h, temb, context);
  }

  // 4. up
  for (size_t i = 0; i < up_blocks.size(); ++i) {
    const UNetLevel& lvl = up_blocks[i];
    for (size_t j = 0; j < lvl.resnets.size(); ++j) {
      Tensor skip = skips.back();
      skips.pop_back();
      h = unit(&lvl, j, {F::cat({h, skip}, 1), temb, context});
    }
    if (lvl.upsamplers.size()) h = lvl.upsamplers[0].forward(h);
  }

  // 5. out
  return conv_out.forward(conv_norm_out.forward_silu(h));
}

}  // namespace diffuse::models
