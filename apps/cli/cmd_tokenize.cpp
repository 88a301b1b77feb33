// diffuse tokenize: prints a prompt's CLIP token ids as a JSON array.
#include <cstdio>
#include <memory>

#include "apps/cli/command.h"
#include "apps/cli/common.h"

namespace diffuse::cli {
namespace {

struct TokenizeArgs {
  std::string model, config, prompt;
  bool no_pad = false;
};

Command tokenize_cmd(
    "tokenize", "Print a prompt's CLIP token ids as a JSON array (padded to 77)",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<TokenizeArgs>();
      add_model_options(sub, a->model, a->config, false);
      sub.add_option("prompt", a->prompt, "The prompt")->required();
      sub.add_flag("--no-pad", a->no_pad, "Print BOS .. EOS, untruncated and unpadded");
      sub.footer(
          "Without -m, the published CLIP tokenizer pads with the end token (as SD1 does).\n"
          "Example: diffuse tokenize -m sd2.safetensors \"a photo of a cat\"");
      return [a]() {
        std::vector<int64_t> ids;
        if (a->model.empty()) {
          auto tok = tokenizer::ClipTokenizer::load_default(data_dir());
          ids = a->no_pad ? tok.encode(a->prompt) : tok.encode_padded(a->prompt, tok.eos_id());
        } else {
          auto bundle = open_model(a->model, a->config);
          ids = a->no_pad ? bundle->tokenizer().encode(a->prompt)
                          : bundle->tokenizer().encode_padded(
                                a->prompt, bundle->pad_token_id(),
                                int(bundle->text_config.max_position_embeddings));
        }
        std::string out = "[";
        for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
        std::printf("%s]\n", out.c_str());
        return 0;
      };
    });

}  // namespace
}  // namespace diffuse::cli
