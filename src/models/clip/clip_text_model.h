// CLIP's text transformer, as transformers' CLIPTextModel (names under "text_model.") and
// CLIPTextModelWithProjection (plus "text_projection").
#pragma once
#include <optional>
#include <vector>

#include "models/clip/clip_text_config.h"
#include "nn/layers.h"

namespace diffuse::models {

class ClipAttention : public nn::Module {
 public:
  ClipAttention(int64_t dim, int64_t heads, bool causal = true);
  Tensor forward(const Tensor& x) const;  // self-attention, [B, L, D]
  nn::Linear q_proj, k_proj, v_proj, out_proj;
  int64_t heads;
  bool causal;
};

class ClipMlp : public nn::Module {
 public:
  ClipMlp(int64_t dim, int64_t hidden, std::string act);
  Tensor forward(const Tensor& x) const;
  nn::Linear fc1, fc2;
  std::string act;
};

class ClipEncoderLayer : public nn::Module {
 public:
  explicit ClipEncoderLayer(const ClipEncoderConfig& c);
  Tensor forward(const Tensor& x) const;
  ClipAttention self_attn;
  nn::LayerNorm layer_norm1;
  ClipMlp mlp;
  nn::LayerNorm layer_norm2;
};

class ClipEmbeddings : public nn::Module {
 public:
  explicit ClipEmbeddings(const ClipTextConfig& c);
  Tensor forward(const Tensor& ids) const;  // [B, L] -> [B, L, D]
  nn::Embedding token_embedding, position_embedding;
};

class ClipEncoder : public nn::Module {
 public:
  explicit ClipEncoder(const ClipEncoderConfig& c);
  Tensor forward(const Tensor& x) const;  // every layer
  nn::ModuleList<ClipEncoderLayer> layers;
};

struct ClipTextOutput {
  std::vector<Tensor> hidden_states;  // [0] = embeddings, [i] = after block i
  Tensor last_hidden_state;           // final layer norm of the last block's output
  Tensor pooler_output;               // last_hidden_state at each sequence's end token
  Tensor text_embeds;  // pooler_output through text_projection [B, P]; undefined without one
};

class ClipTextTransformer : public nn::Module {
 public:
  explicit ClipTextTransformer(const ClipTextConfig& c);
  // ids i64 [B, L]. Every hidden state, the final one normalized, and the pooled output.
  ClipTextOutput forward(const Tensor& ids) const;
  ClipEmbeddings embeddings;
  ClipEncoder encoder;
  nn::LayerNorm final_layer_norm;

 private:
  ClipTextConfig config_;
};

class ClipTextModel : public nn::Module {
 public:
  explicit ClipTextModel(const ClipTextConfig& c);

  // ids i64 [B, L]. Every hidden state, the final one normalized, the pooled output and, with
  // a projection, the projected one.
  ClipTextOutput forward(const Tensor& ids) const;

  // What Stable Diffusion conditions on: the output of the block `clip_skip` from the end of
  // the encoder as published (1 = last: hidden_states[-clip_skip]), through the final layer norm
  // when `final_layer_norm` (SD1/SD2) or as it is (SDXL: encode(ids, 2, false) is diffusers'
  // hidden_states[-2]); runs only the blocks needed. [B, L, D].
  Tensor encode(const Tensor& ids, int64_t clip_skip, bool final_layer_norm = true) const;

  const ClipTextConfig& config() const { return config_; }
  ClipTextTransformer text_model;
  std::optional<nn::Linear> text_projection;  // [projection_dim, hidden_size], no bias

 private:
  ClipTextConfig config_;
};

}  // namespace diffuse::models
