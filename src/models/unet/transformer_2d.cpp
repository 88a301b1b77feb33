#include "models/unet/transformer_2d.h"

#include "nn/attention.h"
#include "nn/functional.h"

namespace diffuse::models {

namespace F = nn::F;

CrossAttention::CrossAttention(int64_t query_dim, int64_t context_dim, int64_t heads_,
                               int64_t head_dim)
    : to_q(query_dim, heads_ * head_dim, false),
      to_k(context_dim, heads_ * head_dim, false),
      to_v(context_dim, heads_ * head_dim, false),
      heads(heads_) {
  to_out.emplace_back(heads_ * head_dim, query_dim);
  register_module("to_q", to_q);
  register_module("to_k", to_k);
  register_module("to_v", to_v);
  register_module("to_out", to_out);
}

Tensor CrossAttention::forward(const Tensor& x, const Tensor& context) const {
  const Tensor& ctx = context.defined() ? context : x;
  Tensor o = nn::multi_head_attention(to_q.forward(x), to_k.forward(ctx), to_v.forward(ctx), heads,
                                      /*causal=*/false);
  return to_out[0].forward(o);
}

FeedForward::GEGLU::GEGLU(int64_t in, int64_t out) : proj(in, out * 2) {
  register_module("proj", proj);
}

FeedForward::Net::Net(int64_t dim, int64_t inner) : geglu(dim, inner), out(inner, dim) {
  register_module("0", geglu);
  register_module("2", out);
}

FeedForward::FeedForward(int64_t dim, int64_t mult) : net(dim, dim * mult) {
  register_module("net", net);
}

Tensor FeedForward::forward(const Tensor& x) const {
  Tensor h = net.geglu.proj.forward(x);  // [..., 2 * inner]
  const int64_t inner = h.size(-1) / 2;
  Tensor value = F::slice(h, -1, 0, inner), gate = F::slice(h, -1, inner, 2 * inner);
  return net.out.forward(F::mul(value, F::gelu(gate)));
}

BasicTransformerBlock::BasicTransformerBlock(int64_t dim, int64_t context_dim, int64_t heads,
                                             int64_t head_dim)
    : norm1(dim),
      attn1(dim, dim, heads, head_dim),
      norm2(dim),
      attn2(dim, context_dim, heads, head_dim),
      norm3(dim),
      ff(dim) {
  register_module("norm1", norm1);
  register_module("attn1", attn1);
  register_module("norm2", norm2);
  register_module("attn2", attn2);
  register_module("norm3", norm3);
  register_module("ff", ff);
}

Tensor BasicTransformerBlock::forward(const Tensor& x, const Tensor& context) const {
  Tensor h = F::add(x, attn1.forward(norm1.forward(x)));
  h = F::add(h, attn2.forward(norm2.forward(h), context));
  return F::add(h, ff.forward(norm3.forward(h)));
}

Transformer2DModel::Transformer2DModel(int64_t channels, int64_t heads, int64_t context_dim,
                                       int64_t layers, bool linear_projection, int64_t groups)
    : norm(groups, channels, 1e-6f) {
  register_module("norm", norm);
  if (linear_projection) {
    proj_in_linear.emplace(channels, channels);
    register_module("proj_in", *proj_in_linear);
  } else {
    proj_in_conv.emplace(channels, channels, 1);
    register_module("proj_in", *proj_in_conv);
  }
  for (int64_t i = 0; i < layers; ++i)
    transformer_blocks.emplace_back(channels, context_dim, heads, channels / heads);
  register_module("transformer_blocks", transformer_blocks);
  if (linear_projection) {
    proj_out_linear.emplace(channels, channels);
    register_module("proj_out", *proj_out_linear);
  } else {
    proj_out_conv.emplace(channels, channels, 1);
    register_module("proj_out", *proj_out_conv);
  }
}

Tensor Transformer2DModel::forward(const Tensor& x, const Tensor& context) const {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  Tensor t = norm.forward(x);
  if (proj_in_conv) t = proj_in_conv->forward(t);
  t = F::view(F::contiguous(F::permute(t, {0, 2, 3, 1})), {b, h * w, c});  // b c h w -> b (h w) c
  if (proj_in_linear) t = proj_in_linear->forward(t);
  for (size_t i = 0; i < transformer_blocks.size(); ++i)
    t = transformer_blocks[i].forward(t, context);
  if (proj_out_linear) t = proj_out_linear->forward(t);
  t = F::contiguous(F::permute(F::view(t, {b, h, w, c}), {0, 3, 1, 2}));  // b (h w) c -> b c h w
  if (proj_out_conv) t = proj_out_conv->forward(t);
  return F::add(t, x);
}

}  // namespace diffuse::models
