#include "models/blocks/resnet.h"

#include "nn/functional.h"

namespace diffuse::models {

namespace F = nn::F;

ResnetBlock2D::ResnetBlock2D(int64_t in, int64_t out, int64_t temb_channels, int64_t groups,
                             float eps)
    : norm1(groups, in, eps),
      conv1(in, out, 3, 1, 1),
      norm2(groups, out, eps),
      conv2(out, out, 3, 1, 1) {
  register_module("norm1", norm1);
  register_module("conv1", conv1);
  if (temb_channels > 0) {
    time_emb_proj.emplace(temb_channels, out);
    register_module("time_emb_proj", *time_emb_proj);
  }
  register_module("norm2", norm2);
  register_module("conv2", conv2);
  if (in != out) {
    conv_shortcut.emplace(in, out, 1);
    register_module("conv_shortcut", *conv_shortcut);
  }
}

Tensor ResnetBlock2D::forward(const Tensor& x, const Tensor& temb) const {
  Tensor h = conv1.forward(norm1.forward_silu(x));
  if (time_emb_proj && temb.defined()) {
    Tensor t = time_emb_proj->forward(F::silu(temb));         // [B, out]
    h = F::add(h, F::view(t, {t.size(0), t.size(1), 1, 1}));  // b c -> b c 1 1
  }
  h = conv2.forward(norm2.forward_silu(h));
  Tensor skip = conv_shortcut ? conv_shortcut->forward(x) : x;
  return F::add(skip, h);
}

Downsample2D::Downsample2D(int64_t channels, int64_t padding_)
    : conv(channels, channels, 3, 2, padding_), padding(padding_) {
  register_module("conv", conv);
}

Tensor Downsample2D::forward(const Tensor& x) const {
  if (padding == 0) return conv.forward(F::pad2d(x, 0, 1, 0, 1));
  return conv.forward(x);
}

Upsample2D::Upsample2D(int64_t channels) : conv(channels, channels, 3, 1, 1) {
  register_module("conv", conv);
}

Tensor Upsample2D::forward(const Tensor& x) const {
  return conv.forward(F::upsample_nearest2x(x));
}

}  // namespace diffuse::models
