// diffuse info: what a model file holds.
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/cli/command.h"
#include "apps/cli/common.h"
#include "io/gguf.h"
#include "io/weights.h"

namespace diffuse::cli {
namespace {

struct InfoArgs {
  std::string model, config;
  bool json = false;
};

nlohmann::json component_json(const io::TensorMap& m) {
  int64_t params = 0;
  std::map<std::string, int64_t> dtypes;
  for (auto& [name, t] : m) {
    params += t.numel();
    dtypes[dtype_name(t.dtype())] += 1;
  }
  return {{"tensors", m.size()}, {"parameters", params}, {"dtypes", dtypes}};
}

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
  return s;
}

Command info_cmd(
    "info", "Show a model's family, components, dtypes and parameter counts",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<InfoArgs>();
      add_model_options(sub, a->model, a->config, true);
      sub.add_flag("--json", a->json, "Print one JSON object");
      return [a]() {
        auto b = open_model(a->model, a->config);
        const auto& f = b->files;
        nlohmann::json j;
        j["path"] = f.path;
        j["family"] = b->family_name();
        j["layout"] = f.layout == io::ModelLayout::DiffusersFolder ? "diffusers" : "single-file";
        j["components"] = {{"unet", component_json(f.unet)},
                           {"vae", component_json(f.vae)},
                           {"text_encoder", component_json(f.text_encoder)}};
        if (!f.text_encoder_2.empty())
          j["components"]["text_encoder_2"] = component_json(f.text_encoder_2);
        auto encoder_json = [&](const models::ClipTextConfig& tc) {
          return nlohmann::json{{"hidden_size", tc.hidden_size},
                                {"layers", tc.num_hidden_layers},
                                {"published_layers", tc.published_layers()},
                                {"heads", tc.num_attention_heads},
                                {"activation", tc.hidden_act},
                                {"default_clip_skip", b->default_clip_skip()}};
        };
        if (b->family().text_encoder) j["text_encoder"] = encoder_json(b->text_config);
        if (b->family().text_encoder_2) j["text_encoder_2"] = encoder_json(b->text_config_2);
        j["ignored_tensors"] = f.ignored.size();
        // A GGUF file's own tensor types: quantized ones are dequantized at load (the
        // components' dtypes above are those in memory).
        if (std::filesystem::is_regular_file(f.path) &&
            io::detect_weight_format(f.path) == io::WeightFormat::Gguf)
          j["gguf_tensor_types"] = io::gguf_tensor_types(f.path);
        if (a->json) {
          std::printf("%s\n", j.dump().c_str());
          return 0;
        }
        std::printf("model:   %s\n", f.path.c_str());
        std::printf("family:  %s (%s)\n", j["family"].get<std::string>().c_str(),
                    j["layout"].get<std::string>().c_str());
        for (const char* c : {"unet", "vae", "text_encoder", "text_encoder_2"}) {
          if (!j["components"].contains(c)) continue;
          const auto& cj = j["components"][c];
          std::string dts;
          for (auto& [k, v] : cj["dtypes"].items()) dts += (dts.empty() ? "" : ", ") + k;
          std::printf("%-15s %14s parameters in %4lld tensors (%s)\n", c,
                      with_commas(cj["parameters"].get<int64_t>()).c_str(),
                      static_cast<long long>(cj["tensors"].get<int64_t>()), dts.c_str());
        }
        auto print_encoder = [&](const char* what, const models::ClipTextConfig& tc) {
          const std::string heads = tc.num_attention_heads > 0
                                        ? std::to_string(tc.num_attention_heads)
                                        : std::string("unknown (give --config)");
          std::printf("%s: width %lld, %lld blocks (%lld published), heads %s, %s, "
                      "default clip skip %lld\n",
                      what, (long long)tc.hidden_size, (long long)tc.num_hidden_layers,
                      (long long)tc.published_layers(), heads.c_str(), tc.hidden_act.c_str(),
                      (long long)b->default_clip_skip());
        };
        if (b->family().text_encoder) print_encoder("text encoder", b->text_config);
        if (b->family().text_encoder_2) print_encoder("text encoder 2", b->text_config_2);
        if (j.contains("gguf_tensor_types")) {
          std::string types;
          for (auto& [k, v] : j["gguf_tensor_types"].items())
            types += (types.empty() ? "" : ", ") + k + " x " + std::to_string(v.get<int64_t>());
          std::printf("stored:  %s (quantized tensors are dequantized at load)\n", types.c_str());
        }
        if (!f.ignored.empty())
          std::printf("ignored: %zu tensors outside the three components\n", f.ignored.size());
        return 0;
      };
    });

}  // namespace
}  // namespace diffuse::cli
