// LoRA training (kohya's sd-scripts LoRA): adapters on a UNet's transformer layers, each adding
// multiplier * alpha / rank * up(down(x)) to its layer's output. lora_down starts as kohya's
// (torch's kaiming_uniform_ with a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in))), lora_up at
// zero, so a fresh network leaves the model unchanged. Only the adapters' matrices are trainable
// leaves; the base weights are left as they are (no gradient is computed for them). The network
// saves and loads kohya's file format (models/lora/lora_file.h), which `diffuse generate --lora`
// and <lora:NAME:W> prompt tags apply.
//
//   auto net = train::LoraNetwork::inject(unet, {.rank = 8, .alpha = 4});
//   train::UNetTrainer trainer(unet, schedule, options, net->params());
//   ... trainer.step(latents, context) ...
//   net->save_kohya("out.safetensors");
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/lora/lora_file.h"
#include "models/unet/unet_2d_condition.h"

namespace diffuse::train {

struct LoraOptions {
  int64_t rank = 4;
  float alpha = 1;  // kohya's default network_alpha; the scale is alpha / rank
  // Which layers of each transformer block get an adapter:
  bool attention = true;      // attn1 and attn2: to_q, to_k, to_v, to_out.0
  bool projections = false;   // the transformer's proj_in and proj_out
  bool feed_forward = false;  // ff.net.0.proj and ff.net.2
  uint64_t seed = 0;          // lora_down's initial values
};

class LoraAdapter;

class LoraNetwork {
 public:
  // Puts adapters on the UNet's chosen layers; they stay until remove() or destruction. The
  // UNet must outlive the network.
  LoraNetwork(models::UNet2DConditionModel& unet, const LoraOptions& o);
  static std::unique_ptr<LoraNetwork> inject(models::UNet2DConditionModel& unet,
                                             const LoraOptions& o);
  ~LoraNetwork();
  LoraNetwork(const LoraNetwork&) = delete;
  LoraNetwork& operator=(const LoraNetwork&) = delete;

  // The trainable matrices (f32 leaves, requires_grad), for the optimizer: per adapted layer
  // "<kohya name>.lora_down.weight" then ".lora_up.weight", in the UNet's module order.
  std::vector<nn::Module::ParamRef> params() const;
  // Module paths of the adapted layers
  // ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q").
  std::vector<std::string> modules() const;
  const LoraOptions& options() const { return o_; }

  // Multiplier of every adapter's output (1 by default; 0 gives the base model).
  void set_multiplier(float m);
  // Takes the adapters off the UNet (params() stay valid; forward is the base model's again).
  void remove();
  // Takes the adapters off and adds multiplier * alpha / rank * up @ down to the adapted layers'
  // weights for good (new tensors in each weight's dtype): the UNet then computes what the
  // adapters did, e.g. to save a merged model.
  void merge_into_unet(float multiplier = 1);

  // The network as a kohya LoRA file (copies of the matrices, f32) with kohya's metadata:
  // ss_network_module, ss_network_dim, ss_network_alpha, ss_base_model_version and ss_v2 (from
  // the UNet's cross-attention width: sd_v1 or sd_v2_512), then `metadata` on top (it may
  // override any key, e.g. ss_base_model_version = sd_v2_768_v for a v-prediction model).
  models::LoraFile to_file(const io::Metadata& metadata = {}) const;
  // Writes to_file(metadata) atomically, matrices in `dtype` (f16 as kohya, or f32: exact).
  void save_kohya(const std::string& path, const io::Metadata& metadata = {},
                  DType dtype = DType::F16) const;
  // Sets the matrices from a kohya file (to resume training). Strict: the file must hold
  // exactly this network's modules (names as save_kohya writes them, or any name that resolves
  // to the same layer), with the same shapes and alpha; otherwise one Error lists what differs.
  void load_kohya(const std::string& path);

 private:
  models::UNet2DConditionModel& unet_;
  LoraOptions o_;
  struct Slot;
  std::vector<Slot> slots_;
};

}  // namespace diffuse::train
