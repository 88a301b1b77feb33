// AUTOMATIC1111's prompt syntax outside the tokenizer proper: extra-network tags.
#pragma once
#include <string>
#include <vector>

namespace diffuse::tokenizer {

// <lora:NAME:WEIGHT>: a LoRA file NAME.safetensors (from a LoRA folder) and its multipliers.
// A1111's forms: <lora:NAME> (1.0), <lora:NAME:W>, <lora:NAME:TE:UNET>, and the named
// arguments te=W and unet=W (<lora:NAME:0.5:unet=1>).
struct LoraTag {
  std::string name;
  float text_encoder_weight = 1, unet_weight = 1;
  std::string text;  // the tag as written
};

struct PromptNetworks {
  std::string prompt;  // the prompt with the tags removed (what the text encoder sees)
  std::vector<LoraTag> loras;
};

// Removes every extra-network tag <TYPE:ARGS> (TYPE made of letters, digits and '_'; ARGS one
// or more characters other than '>') from the prompt, as A1111 does (the text around it stays
// as it is), and returns the LoRA ones (TYPE lora, or lyco, A1111's older name for them).
// Text that only looks like a tag (<lora:>, <a b:c>) is left in the prompt. Throws an Error
// naming the tag for a LoRA tag without a name, a weight that is not a number, an unknown named
// argument, or another network type (hypernet: not supported). A1111 parses only the positive
// prompt; so should callers.
PromptNetworks parse_prompt_networks(const std::string& prompt);

}  // namespace diffuse::tokenizer
