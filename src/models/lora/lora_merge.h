// Applying LoRA files at inference: each named layer's weight becomes
// W + multiplier * scale * delta (lora_module.h: LoRA, LoCon, LoHa, LoKr, full diff; a full
// diff's diff_b changes the bias too), and the original tensors can be put back (a server
// applies a different set per request).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "models/lora/lora_file.h"
#include "models/lora/lora_names.h"

namespace diffuse::models {

// A LoRA file and its multipliers (A1111's <lora:NAME:TE:UNET>; one weight sets both).
struct LoraUse {
  std::string path;
  float unet_weight = 1, text_encoder_weight = 1;
  bool operator==(const LoraUse&) const = default;
};

class LoraMerger {
 public:
  // Either model may be null: a file naming its layers is then an error.
  LoraMerger(const UNet2DConditionModel* unet, const ClipTextModel* text_encoder,
             const ClipTextModel* text_encoder_2 = nullptr);
  // Restores the original weights.
  ~LoraMerger();
  LoraMerger(const LoraMerger&) = delete;
  LoraMerger& operator=(const LoraMerger&) = delete;

  // Adds `file` (called `what` in errors) to the layers it names. Every module is resolved and
  // its shapes (and a diff_b's bias) checked first: an unknown name or a shape that does not fit
  // throws one Error listing them, before any weight changes. Merged weights are new tensors in the
  // layer's dtype (the originals, possibly read-only memory-mapped or 16-bit, are kept for
  // restore()). A part whose multiplier is 0 is left alone.
  void merge(const LoraFile& file, const std::string& what, float unet_multiplier,
             float text_encoder_multiplier);
  // Puts every changed weight back as it was.
  void restore();
  // Makes the merged weights permanent: forgets the originals (restore() and the destructor
  // then change nothing), e.g. to save a model with the LoRA in its weights.
  void keep() { originals_.clear(); }
  // Weights and biases that differ from the originals now.
  size_t merged_layers() const { return originals_.size(); }
  const LoraNames& names() const { return names_; }

 private:
  void add_to(Tensor* slot, const Tensor& delta);  // *slot += delta, in the slot's dtype
  LoraNames names_;
  std::map<Tensor*, Tensor> originals_;
};

}  // namespace diffuse::models
