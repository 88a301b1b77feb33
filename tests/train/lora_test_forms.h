// The reference model the LoRA golden and CLI tests run on: the first one with a diffusers folder.
#pragma once
#include "model_forms.h"

namespace diffuse::test {

inline const ModelForm* lora_test_form() {
  static const std::vector<ModelForm> forms = all_model_forms();
  for (auto& f : forms)
    if (f.kind == "diffusers") return &f;
  return nullptr;
}

}  // namespace diffuse::test
