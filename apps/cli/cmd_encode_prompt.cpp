// diffuse encode-prompt: writes the text encoder's conditioning for a prompt.
#include <cstdio>
#include <memory>

#include "apps/cli/command.h"
#include "apps/cli/common.h"
#include "io/safetensors.h"

namespace diffuse::cli {
namespace {

struct EncodeArgs {
  std::string model, config, prompt, negative, out;
  int64_t clip_skip = 0;
  bool has_negative = false;
};

Command encode_cmd(
    "encode-prompt", "Encode a prompt (and negative prompt) with the model's text encoder",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<EncodeArgs>();
      add_model_options(sub, a->model, a->config, true);
      sub.add_option("-p,--prompt", a->prompt, "The prompt")->required();
      auto* neg = sub.add_option("-n,--negative-prompt", a->negative, "The negative prompt");
      sub.add_option("--clip-skip", a->clip_skip,
                     "Use the K-th block from the end of the text encoder as published "
                     "(SD1: 12 blocks, default 1; SD2: 24 blocks, default 2), then the final norm")
          ->check(CLI::PositiveNumber);
      sub.add_option("-o,--output", a->out, "Output .safetensors file")->required();
      sub.footer(
          "Writes prompt_embeds (and negative_prompt_embeds), f32 [1, 77, D].\n"
          "Example: diffuse encode-prompt -m v1-5.safetensors -p \"a cat\" -n \"\" -o emb.safetensors");
      return [a, neg]() {
        auto bundle = open_model(a->model, a->config);
        const int64_t skip = a->clip_skip > 0 ? a->clip_skip : bundle->default_clip_skip();
        io::TensorMap out;
        out["prompt_embeds"] = bundle->encode_prompt(a->prompt, skip);
        if (neg->count() > 0) out["negative_prompt_embeds"] = bundle->encode_prompt(a->negative, skip);
        io::save_safetensors(a->out, out, {{"clip_skip", std::to_string(skip)}});
        std::fprintf(stderr, "wrote %s (%s, clip skip %lld)\n", a->out.c_str(),
                     out["prompt_embeds"].desc().c_str(), static_cast<long long>(skip));
        return 0;
      };
    });

}  // namespace
}  // namespace diffuse::cli
