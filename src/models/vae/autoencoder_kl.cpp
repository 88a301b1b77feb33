#include "models/vae/autoencoder_kl.h"

#include <algorithm>
#include <cmath>

#include "models/config_json.h"
#include "nn/attention.h"
#include "nn/functional.h"

namespace diffuse::models {

namespace F = nn::F;

namespace {
constexpr float kEps = 1e-6f;  // every norm of the VAE
}

VaeConfig VaeConfig::from_json(const nlohmann::json& j) {
  VaeConfig c;
  try {
    auto get = [&](const char* k, auto& v) {
      if (j.contains(k) && !j[k].is_null()) j[k].get_to(v);
    };
    get("in_channels", c.in_channels);
    get("out_channels", c.out_channels);
    get("latent_channels", c.latent_channels);
    get("block_out_channels", c.block_out_channels);
    get("layers_per_block", c.layers_per_block);
    get("norm_num_groups", c.norm_num_groups);
    get("scaling_factor", c.scaling_factor);
    get("use_quant_conv", c.use_quant_conv);
    get("use_post_quant_conv", c.use_post_quant_conv);
    get("force_upcast", c.force_upcast);
    // Latent normalisations and a mid block without attention are other VAEs' (SD3, Flux).
    for (const char* k : {"shift_factor", "latents_mean", "latents_std"})
      DF_CHECK(!j.contains(k) || j[k].is_null(), "vae config.json: ", k, " = ", j[k].dump(),
               " is not supported");
    DF_CHECK(j.value("mid_block_add_attention", true),
             "vae config.json: ", "mid_block_add_attention = false is not supported");
    if (j.contains("sample_size") && j["sample_size"].is_array() && !j["sample_size"].empty())
      c.sample_size = j["sample_size"][0].get<int64_t>();
    else
      get("sample_size", c.sample_size);
  } catch (const nlohmann::json::exception& e) {
    DF_FAIL("vae config.json: ", e.what());
  }
  c.check();
  return c;
}

void VaeConfig::check() const {
  // Bounds far above any published VAE (SD: 4 levels of at most 512 channels, 2 layers per
  // block), so that a hostile config is refused before it sizes any module.
  auto in_range = [](const char* k, int64_t v, int64_t lo, int64_t hi) {
    DF_CHECK(v >= lo && v <= hi, "vae config.json: ", k, " = ", v, " is out of range [", lo, ", ",
             hi, "]");
  };
  in_range("in_channels", in_channels, 1, 64);
  in_range("out_channels", out_channels, 1, 64);
  in_range("latent_channels", latent_channels, 1, 256);
  in_range("layers_per_block", layers_per_block, 1, 64);
  in_range("norm_num_groups", norm_num_groups, 1, 1024);
  in_range("sample_size", sample_size, 1, 1 << 16);
  DF_CHECK(!block_out_channels.empty() && block_out_channels.size() <= 8,
           "vae config.json: block_out_channels has ", block_out_channels.size(),
           " entries (1 to 8 levels)");
  for (int64_t ch : block_out_channels) in_range("block_out_channels[]", ch, 1, 8192);
  DF_CHECK(std::isfinite(scaling_factor) && scaling_factor > 0, "vae config.json: scaling_factor ",
           scaling_factor, " is not a positive number");
}

nlohmann::json VaeConfig::to_json() const {
  const size_t n = block_out_channels.size();
  return {{"_class_name", "AutoencoderKL"},
          {"act_fn", "silu"},
          {"in_channels", in_channels},
          {"out_channels", out_channels},
          {"latent_channels", latent_channels},
          {"block_out_channels", block_out_channels},
          {"down_block_types", std::vector<std::string>(n, "DownEncoderBlock2D")},
          {"up_block_types", std::vector<std::string>(n, "UpDecoderBlock2D")},
          {"layers_per_block", layers_per_block},
          {"norm_num_groups", norm_num_groups},
          {"scaling_factor", json_float(scaling_factor)},
          {"use_quant_conv", use_quant_conv},
          {"use_post_quant_conv", use_post_quant_conv},
          {"force_upcast", force_upcast},
          {"sample_size", sample_size}};
}

VaeConfig VaeConfig::infer(const io::TensorMap& w) {
  auto has = [&](const std::string& k) { return w.count(k) > 0; };
  auto shape = [&](const std::string& k) -> const Shape& {
    auto it = w.find(k);
    DF_CHECK(it != w.end(), "vae: tensor ", k, " is missing");
    return it->second.shape();
  };
  VaeConfig c;
  c.in_channels = shape("encoder.conv_in.weight")[1];
  c.out_channels = shape("decoder.conv_out.weight")[0];
  c.latent_channels = shape("decoder.conv_in.weight")[1];
  c.block_out_channels.clear();
  for (int64_t i = 0; has("encoder.down_blocks." + std::to_string(i) + ".resnets.0.conv1.weight");
       ++i)
    c.block_out_channels.push_back(
        shape("encoder.down_blocks." + std::to_string(i) + ".resnets.0.conv1.weight")[0]);
  DF_CHECK(!c.block_out_channels.empty(), "vae: no encoder blocks found");
  c.layers_per_block = 0;
  while (
      has("encoder.down_blocks.0.resnets." + std::to_string(c.layers_per_block) + ".conv1.weight"))
    ++c.layers_per_block;
  c.use_quant_conv = has("quant_conv.weight");
  c.use_post_quant_conv = has("post_quant_conv.weight");
  return c;
}

VaeAttention::VaeAttention(int64_t ch, int64_t groups)
    : group_norm(groups, ch, kEps), to_q(ch, ch), to_k(ch, ch), to_v(ch, ch) {
  to_out.emplace_back(ch, ch);
  register_module("group_norm", group_norm);
  register_module("to_q", to_q);
  register_module("to_k", to_k);
  register_module("to_v", to_v);
  register_module("to_out", to_out);
}

Tensor VaeAttention::forward(const Tensor& x) const {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  // b c h w -> b (h w) c
  Tensor t = F::contiguous(F::transpose(F::view(group_norm.forward(x), {b, c, h * w}), 1, 2));
  Tensor o = nn::multi_head_attention(to_q.forward(t), to_k.forward(t), to_v.forward(t), 1, false);
  // b (h w) c -> b c h w
  o = F::view(F::contiguous(F::transpose(to_out[0].forward(o), 1, 2)), {b, c, h, w});
  return F::add(o, x);
}

VaeMidBlock::VaeMidBlock(int64_t ch, int64_t groups) {
  resnets.emplace_back(ch, ch, 0, groups, kEps);
  attentions.emplace_back(ch, groups);
  resnets.emplace_back(ch, ch, 0, groups, kEps);
  register_module("attentions", attentions);
  register_module("resnets", resnets);
}

Tensor VaeMidBlock::forward(const Tensor& x) const {
  return resnets[1].forward(attentions[0].forward(resnets[0].forward(x)));
}

VaeLevel::VaeLevel() {
  register_module("resnets", resnets);
  register_module("downsamplers", downsamplers);
  register_module("upsamplers", upsamplers);
}

VaeEncoder::VaeEncoder(const VaeConfig& c)
    : conv_in(c.in_channels, c.block_out_channels[0], 3, 1, 1),
      mid_block(c.block_out_channels.back(), c.norm_num_groups),
      conv_norm_out(c.norm_num_groups, c.block_out_channels.back(), kEps),
      conv_out(c.block_out_channels.back(), 2 * c.latent_channels, 3, 1, 1) {
  const auto& ch = c.block_out_channels;
  for (size_t i = 0; i < ch.size(); ++i) {
    VaeLevel& lvl = down_blocks.emplace_back();
    for (int64_t j = 0; j < c.layers_per_block; ++j)
      lvl.resnets.emplace_back(j == 0 ? ch[i == 0 ? 0 : i - 1] : ch[i], ch[i], 0, c.norm_num_groups,
                               kEps);
    if (i + 1 < ch.size()) lvl.downsamplers.emplace_back(ch[i], 0);
  }
  register_module("conv_in", conv_in);
  register_module("down_blocks", down_blocks);
  register_module("mid_block", mid_block);
  register_module("conv_norm_out", conv_norm_out);
  register_module("conv_out", conv_out);
}

Tensor VaeEncoder::forward(const Tensor& x) const {
  Tensor h = conv_in.forward(x);
  for (size_t i = 0; i < down_blocks.size(); ++i) {
    const VaeLevel& lvl = down_blocks[i];
    for (size_t j = 0; j < lvl.resnets.size(); ++j) h = lvl.resnets[j].forward(h);
    if (lvl.downsamplers.size()) h = lvl.downsamplers[0].forward(h);
  }
  h = mid_block.forward(h);
  return conv_out.forward(conv_norm_out.forward_silu(h));
}

VaeDecoder::VaeDecoder(const VaeConfig& c)
    : conv_in(c.latent_channels, c.block_out_channels.back(), 3, 1, 1),
      mid_block(c.block_out_channels.back(), c.norm_num_groups),
      conv_norm_out(c.norm_num_groups, c.block_out_channels[0], kEps),
      conv_out(c.block_out_channels[0], c.out_channels, 3, 1, 1) {
  const auto& ch = c.block_out_channels;
  const size_t n = ch.size();
  int64_t out = ch[n - 1];
  for (size_t i = 0; i < n; ++i) {
    VaeLevel& lvl = up_blocks.emplace_back();
    const int64_t prev = out;
    out = ch[n - 1 - i];
    for (int64_t j = 0; j <= c.layers_per_block; ++j)
      lvl.resnets.emplace_back(j == 0 ? prev : out, out, 0, c.norm_num_groups, kEps);
    if (i + 1 < n) lvl.upsamplers.emplace_back(out);
  }
  register_module("conv_in", conv_in);
  register_module("mid_block", mid_block);
  register_module("up_blocks", up_blocks);
  register_module("conv_norm_out", conv_norm_out);
  register_module("conv_out", conv_out);
}

Tensor VaeDecoder::forward(const Tensor& z) const {
  Tensor h = mid_block.forward(conv_in.forward(z));
  for (size_t i = 0; i < up_blocks.size(); ++i) {
    const VaeLevel& lvl = up_blocks[i];
    for (size_t j = 0; j < lvl.resnets.size(); ++j) h = lvl.resnets[j].forward(h);
    if (lvl.upsamplers.size()) h = lvl.upsamplers[0].forward(h);
  }
  return conv_out.forward(conv_norm_out.forward_silu(h));
}

AutoencoderKL::AutoencoderKL(const VaeConfig& c) : encoder(c), decoder(c), config_(c) {
  register_module("encoder", encoder);
  register_module("decoder", decoder);
  const int64_t l = c.latent_channels;
  if (c.use_quant_conv) {
    quant_conv.emplace(2 * l, 2 * l, 1);
    register_module("quant_conv", *quant_conv);
  }
  if (c.use_post_quant_conv) {
    post_quant_conv.emplace(l, l, 1);
    register_module("post_quant_conv", *post_quant_conv);
  }
}

LatentDistribution AutoencoderKL::encode(const Tensor& image) const {
  DF_CHECK(image.dim() == 4 && image.size(1) == config_.in_channels, "vae: image must be [B, ",
           config_.in_channels, ", H, W], got ", image.desc());
  const int64_t f = scale_factor();
  DF_CHECK(image.size(2) % f == 0 && image.size(3) % f == 0, "vae: image size ", image.size(2), "x",
           image.size(3), " must be a multiple of ", f);
  Tensor moments = encoder.forward(image);
  if (quant_conv) moments = quant_conv->forward(moments);
  const int64_t l = config_.latent_channels;
  LatentDistribution d;
  d.mean = F::contiguous(F::slice(moments, 1, 0, l));
  d.logvar = F::clamp(F::slice(moments, 1, l, 2 * l), -30.0f, 20.0f);
  return d;
}

Tensor LatentDistribution::sample(const Tensor& noise) const {
  DF_CHECK(noise.shape() == mean.shape(), "vae: noise ", noise.desc(), " does not match the ",
           "latents ", mean.desc());
  return F::add(mean, F::mul(F::exp(F::scale(logvar, 0.5f)), noise));
}

Tensor LatentDistribution::kl() const {
  Tensor t = F::sub(F::add_scalar(F::add(F::square(mean), F::exp(logvar)), -1.f), logvar);
  return F::scale(F::sum(t, {1, 2, 3}, false), 0.5f);
}

Tensor AutoencoderKL::decode(const Tensor& latents) const {
  DF_CHECK(latents.dim() == 4 && latents.size(1) == config_.latent_channels,
           "vae: latents must be [B, ", config_.latent_channels, ", h, w], got ", latents.desc());
  Tensor z = post_quant_conv ? post_quant_conv->forward(latents) : latents;
  return decoder.forward(z);
}

Tensor AutoencoderKL::decode_tiled(const Tensor& latents) const {
  DF_CHECK(latents.dim() == 4 && latents.size(1) == config_.latent_channels,
           "vae: latents must be [B, ", config_.latent_channels, ", h, w], got ", latents.desc());
  const int64_t tile_latent = config_.sample_size / scale_factor();
  DF_CHECK(tile_latent >= 4, "vae: sample_size ", config_.sample_size, " is too small to tile");
  if (latents.size(2) <= tile_latent && latents.size(3) <= tile_latent) return decode(latents);
  return tiled_decode(latents, tile_latent, config_.sample_size,
                      [this](const Tensor& tile) { return decode(tile); });
}

namespace {

// b's first rows (dim 2, vertical) or columns (dim 3) blended from a's last ones, in place:
// b = a * (1 - k / e) + b * (k / e) for k < e = min(a's, b's, extent), as diffusers' blend_v/h.
void blend(const Tensor& a, Tensor& b, int64_t extent, int dim) {
  const int64_t bc = b.size(0) * b.size(1), ha = a.size(2), wa = a.size(3), hb = b.size(2),
                wb = b.size(3);
  const int64_t e = std::min({dim == 2 ? ha : wa, dim == 2 ? hb : wb, extent});
  const float* pa = a.data<float>();
  float* pb = b.data<float>();
  for (int64_t k = 0; k < e; ++k) {
    const float wb_ = float(double(k) / double(e)), wa_ = float(1.0 - double(k) / double(e));
    for (int64_t p = 0; p < bc; ++p) {
      if (dim == 2) {
        const float* ra = pa + (p * ha + ha - e + k) * wa;
        float* rb = pb + (p * hb + k) * wb;
        for (int64_t x = 0; x < std::min(wa, wb); ++x) rb[x] = ra[x] * wa_ + rb[x] * wb_;
      } else {
        for (int64_t y = 0; y < std::min(ha, hb); ++y) {
          const float va = pa[(p * ha + y) * wa + wa - e + k];
          float& vb = pb[(p * hb + y) * wb + k];
          vb = va * wa_ + vb * wb_;
        }
      }
    }
  }
}

}  // namespace

Tensor tiled_decode(const Tensor& latents, int64_t tile_latent, int64_t tile_sample,
                    const std::function<Tensor(const Tensor&)>& decode_tile) {
  const int64_t overlap = int64_t(double(tile_latent) * (1 - 0.25));
  const int64_t extent = int64_t(double(tile_sample) * 0.25), limit = tile_sample - extent;
  const int64_t h = latents.size(2), w = latents.size(3);
  DF_CHECK(overlap > 0 && limit > 0, "vae: tiles of ", tile_latent, " latents are too small");
  std::vector<std::vector<Tensor>> rows;
  for (int64_t i = 0; i < h; i += overlap) {
    std::vector<Tensor>& row = rows.emplace_back();
    for (int64_t j = 0; j < w; j += overlap) {
      const Tensor tile = latents.slice(2, i, std::min(h, i + tile_latent))
                              .slice(3, j, std::min(w, j + tile_latent))
                              .contiguous();
      row.push_back(decode_tile(tile).contiguous());
    }
  }
  // Blend in diffusers' order (each tile with its already blended neighbours), then cut.
  int64_t out_h = 0, out_w = 0;
  for (size_t i = 0; i < rows.size(); ++i)
    for (size_t j = 0; j < rows[i].size(); ++j) {
      Tensor& t = rows[i][j];
      if (i > 0) blend(rows[i - 1][j], t, extent, 2);
      if (j > 0) blend(rows[i][j - 1], t, extent, 3);
      if (j == 0) out_h += std::min(t.size(2), limit);
      if (i == 0) out_w += std::min(t.size(3), limit);
    }
  const Tensor& first = rows[0][0];
  const int64_t bc = first.size(0) * first.size(1);
  Tensor out = Tensor::empty({first.size(0), first.size(1), out_h, out_w});
  float* po = out.data<float>();
  int64_t y0 = 0;
  for (const auto& row : rows) {
    int64_t x0 = 0;
    const int64_t th = std::min(row[0].size(2), limit);
    for (const Tensor& t : row) {
      const int64_t tw = std::min(t.size(3), limit), sh = t.size(2), sw = t.size(3);
      const float* pt = t.data<float>();
      for (int64_t p = 0; p < bc; ++p)
        for (int64_t y = 0; y < th; ++y)
          std::copy_n(pt + (p * sh + y) * sw, tw, po + (p * out_h + y0 + y) * out_w + x0);
      x0 += tw;
    }
    y0 += th;
  }
  return out;
}

}  // namespace diffuse::models
