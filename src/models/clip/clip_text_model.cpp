#include "models/clip/clip_text_model.h"

#include "nn/attention.h"
#include "nn/functional.h"

namespace diffuse::models {

namespace F = nn::F;

ClipAttention::ClipAttention(int64_t dim, int64_t heads_, bool causal_)
    : q_proj(dim, dim),
      k_proj(dim, dim),
      v_proj(dim, dim),
      out_proj(dim, dim),
      heads(heads_),
      causal(causal_) {
  register_module("q_proj", q_proj);
  register_module("k_proj", k_proj);
  register_module("v_proj", v_proj);
  register_module("out_proj", out_proj);
}

Tensor ClipAttention::forward(const Tensor& x) const {
  Tensor o = nn::multi_head_attention(q_proj.forward(x), k_proj.forward(x), v_proj.forward(x),
                                      heads, causal);
  return out_proj.forward(o);
}

ClipMlp::ClipMlp(int64_t dim, int64_t hidden, std::string act_)
    : fc1(dim, hidden), fc2(hidden, dim), act(std::move(act_)) {
  register_module("fc1", fc1);
  register_module("fc2", fc2);
}

Tensor ClipMlp::forward(const Tensor& x) const {
  Tensor h = fc1.forward(x);
  h = act == "gelu" ? F::gelu(h) : F::quick_gelu(h);
  return fc2.forward(h);
}

ClipEncoderLayer::ClipEncoderLayer(const ClipEncoderConfig& c)
    : self_attn(c.hidden_size, c.num_attention_heads, c.causal),
      layer_norm1(c.hidden_size, c.layer_norm_eps),
      mlp(c.hidden_size, c.intermediate_size, c.hidden_act),
      layer_norm2(c.hidden_size, c.layer_norm_eps) {
  register_module("self_attn", self_attn);
  register_module("layer_norm1", layer_norm1);
  register_module("mlp", mlp);
  register_module("layer_norm2", layer_norm2);
}

Tensor ClipEncoderLayer::forward(const Tensor& x) const {
  Tensor h = F::add(x, self_attn.forward(layer_norm1.forward(x)));
  return F::add(h, mlp.forward(layer_norm2.forward(h)));
}

ClipEmbeddings::ClipEmbeddings(const ClipTextConfig& c)
    : token_embedding(c.vocab_size, c.hidden_size),
      position_embedding(c.max_position_embeddings, c.hidden_size) {
  register_module("token_embedding", token_embedding);
  register_module("position_embedding", position_embedding);
}

Tensor ClipEmbeddings::forward(const Tensor& ids) const {
  const int64_t len = ids.size(1);
  DF_CHECK(len <= position_embedding.weight.size(0), "text encoder: ", len,
           " tokens exceed the model's ", position_embedding.weight.size(0), " positions");
  Tensor tok = token_embedding.forward(ids);                                     // [B, L, D]
  Tensor pos = F::unsqueeze(F::slice(position_embedding.weight, 0, 0, len), 0);  // [1, L, D]
  return F::add(tok, pos);
}

ClipEncoder::ClipEncoder(const ClipEncoderConfig& c) {
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers.emplace_back(c);
  register_module("layers", layers);
}

Tensor ClipEncoder::forward(const Tensor& x) const {
  Tensor h = x;
  for (size_t i = 0; i < layers.size(); ++i) h = layers[i].forward(h);
  return h;
}

ClipTextTransformer::ClipTextTransformer(const ClipTextConfig& c)
    : embeddings(c),
      encoder(c.encoder()),
      final_layer_norm(c.hidden_size, c.layer_norm_eps),
      config_(c) {
  register_module("embeddings", embeddings);
  register_module("encoder", encoder);
  register_module("final_layer_norm", final_layer_norm);
}

namespace {
const ClipTextConfig& checked(const ClipTextConfig& c) {
  DF_CHECK(c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0,
           "text encoder: the head count of a ", c.hidden_size, "-wide encoder is not in the file ",
           "and differs from the published models'; give the model's config (--config DIR of a ",
           "diffusers folder)");
  return c;
}
}  // namespace

ClipTextModel::ClipTextModel(const ClipTextConfig& c) : text_model(checked(c)), config_(c) {
  register_module("text_model", text_model);
  if (c.projection_dim > 0) {
    text_projection.emplace(c.hidden_size, c.projection_dim, /*bias=*/false);
    register_module("text_projection", *text_projection);
  }
}

namespace {
void check_ids(const Tensor& ids, int64_t vocab) {
  DF_CHECK(ids.dim() == 2 && (ids.dtype() == DType::I64 || ids.dtype() == DType::I32),
           "text encoder: token ids must be an integer [B, L] tensor, got ", ids.desc());
  (void)vocab;  // the embedding op checks the range
}
}  // namespace

ClipTextOutput ClipTextModel::forward(const Tensor& ids) const {
  check_ids(ids, config_.vocab_size);
  ClipTextOutput out = text_model.forward(ids);
  if (text_projection) out.text_embeds = text_projection->forward(out.pooler_output);  // [B, P]
  return out;
}

ClipTextOutput ClipTextTransformer::forward(const Tensor& ids) const {
  check_ids(ids, config_.vocab_size);
  ClipTextOutput out;
  Tensor h = embeddings.forward(ids);
  out.hidden_states.push_back(h);
  for (size_t i = 0; i < encoder.layers.size(); ++i) {
    h = encoder.layers[i].forward(h);
    out.hidden_states.push_back(h);
  }
  out.last_hidden_state = final_layer_norm.forward(h);
  // Pool at each sequence's end token: transformers takes the first position holding
  // eos_token_id, or (legacy configs with eos_token_id == 2) the position of the largest id.
  const int64_t b = ids.size(0), len = ids.size(1), d = config_.hidden_size;
  Tensor ids64 = ids.to(DType::I64).contiguous();
  const int64_t* p = ids64.data<int64_t>();
  std::vector<Tensor> rows;
  for (int64_t i = 0; i < b; ++i) {
    int64_t pos = 0;
    if (config_.eos_token_id == 2) {
      for (int64_t j = 1; j < len; ++j)
        if (p[i * len + j] > p[i * len + pos]) pos = j;
    } else {
      pos = len - 1;
      for (int64_t j = 0; j < len; ++j)
        if (p[i * len + j] == config_.eos_token_id) {
          pos = j;
          break;
        }
    }
    rows.push_back(F::view(F::select(F::select(out.last_hidden_state, 0, i), 0, pos), {1, d}));
  }
  out.pooler_output = F::cat(rows, 0);  // [B, D]
  return out;
}

Tensor ClipTextModel::encode(const Tensor& ids, int64_t clip_skip, bool final_layer_norm) const {
  check_ids(ids, config_.vocab_size);
  const int64_t published = config_.published_layers();
  DF_CHECK(clip_skip >= 1 && clip_skip <= published, "clip skip ", clip_skip,
           " is out of range: the text encoder has ", published, " blocks");
  const int64_t blocks = published - (clip_skip - 1);  // blocks to run
  DF_CHECK(blocks <= config_.num_hidden_layers, "clip skip ", clip_skip, " needs block ", blocks,
           " of the text encoder, which this model does not use (",
           "the smallest clip skip for it is ", config_.unused_published_layers + 1, ")");
  Tensor h = text_model.embeddings.forward(ids);
  for (int64_t i = 0; i < blocks; ++i) h = text_model.encoder.layers[size_t(i)].forward(h);
  return final_layer_norm ? text_model.final_layer_norm.forward(h) : h;
}

}  // namespace diffuse::models
