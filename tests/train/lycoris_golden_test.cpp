// LoRA files of every kind (LoRA, LoCon incl. 3x3 and Tucker, LoHa, LoKr full and factored, full
// diff) against AUTOMATIC1111's own merge of them (reference lycoris/): every merged weight and
// bias, and a whole txt2img run with all files merged.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/mmap_file.h"
#include "io/safetensors.h"
#include "model_forms.h"
#include "models/lora/lora_merge.h"
#include "ops/ops.h"
#include "pipeline/generate.h"
#include "test_util.h"

using namespace diffuse;
using json = nlohmann::json;

namespace {

// The reference folders of LyCORIS data: lycoris/ and its subfolders with a reference.json.
std::vector<std::string> lycoris_folders() {
  std::vector<std::string> out;
  const std::string root = test::reference_path("lycoris");
  if (root.empty()) return out;
  if (std::filesystem::exists(root + "/reference.json")) out.push_back("lycoris");
  for (auto& e : std::filesystem::directory_iterator(root))
    if (e.is_directory() && std::filesystem::exists(e.path() / "reference.json"))
      out.push_back("lycoris/" + e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// The base model's f32 form that is a diffusers folder (else its first f32 form).
std::unique_ptr<pipeline::ModelBundle> open_base(const std::string& model) {
  const auto forms = test::model_forms(model);
  const test::ModelForm* pick = nullptr;
  for (auto& f : forms)
    if (!f.quantized() && (!pick || (f.kind == "diffusers" && pick->kind != "diffusers")))
      pick = &f;
  if (!pick) return nullptr;
  return test::open_form(*pick);
}

models::LoraType type_of(const std::string& reference_type) {
  if (reference_type.starts_with("loha")) return models::LoraType::LoHa;
  if (reference_type.starts_with("lokr")) return models::LoraType::LoKr;
  if (reference_type == "full") return models::LoraType::Full;
  return models::LoraType::Lora;  // lora, lora_tucker
}

// The tensor "<component>.<module>.<weight|bias>" of the bundle's models.
Tensor* model_tensor(pipeline::ModelBundle& m, const std::string& name) {
  const size_t dot = name.find('.');
  const std::string part = name.substr(0, dot), rest = name.substr(dot + 1);
  const nn::Module* module = part == "unet"             ? static_cast<const nn::Module*>(&m.unet())
                             : part == "text_encoder"   ? &m.text_encoder()
                             : part == "text_encoder_2" ? &m.text_encoder_2()
                                                        : nullptr;
  if (!module) return nullptr;
  for (auto& p : module->named_parameters())
    if (p.name == rest) return p.tensor;
  return nullptr;
}

class LycorisGolden : public testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(LycorisGolden, MergedWeightsMatchA1111) {
  const std::string folder = GetParam();
  const std::string dir = test::reference_path(folder);
  const json rj = json::parse(io::read_text_file(dir + "/reference.json"));
  auto ref = io::load_safetensors(dir + "/reference.safetensors");
  auto model = open_base(rj.at("base_model").get<std::string>());
  ASSERT_TRUE(model) << "base model " << rj.at("base_model");
  const float mult = rj.at("multiplier").get<float>();

  // Every layer's original tensors, before the merge.
  std::map<std::string, Tensor> original;
  for (auto& [key, t] : ref) {
    if (!key.starts_with("merged.")) continue;
    Tensor* slot = model_tensor(*model, key.substr(7));
    ASSERT_TRUE(slot) << key << " is no tensor of the base model";
    original[key] = slot->to(DType::F32);
  }
  ASSERT_FALSE(original.empty());

  models::LoraMerger merger(&model->unet(),
                            model->family().text_encoder ? &model->text_encoder() : nullptr,
                            model->family().text_encoder_2 ? &model->text_encoder_2() : nullptr);
  std::map<std::string, models::LoraFile> files;
  for (auto& [file, keys] : rj.at("files").items()) {
    files[file] = models::read_lora_file(dir + "/" + file);
    for (auto& key : keys) {  // every module the reference lists was read
      const std::string k = key.get<std::string>();
      EXPECT_TRUE(files[file].modules.count(k.substr(0, k.find('.')))) << file << ": " << k;
    }
    merger.merge(files[file], file, mult, mult);
  }

  size_t changed = 0;
  for (auto& [layer, l] : rj.at("layers").items()) {
    SCOPED_TRACE(layer);
    const auto& f = files.at(l.at("file").get<std::string>());
    const auto it = f.modules.find(l.at("kohya").get<std::string>());
    ASSERT_NE(it, f.modules.end()) << "module " << l.at("kohya") << " not read";
    EXPECT_EQ(it->second.type, type_of(l.at("type").get<std::string>()));
    std::vector<std::string> parts{"weight"};
    if (l.value("bias_changed", false)) parts.push_back("bias");
    for (auto& part : parts) {
      const std::string key = "merged." + layer + "." + part;
      ASSERT_TRUE(ref.count(key)) << key;
      const Tensor got = model_tensor(*model, layer + "." + part)->to(DType::F32);
      EXPECT_GT(test::rel_error(original.at(key), ref.at(key)), 1e-3) << key << " unchanged";
      EXPECT_REL_NEAR(got, ref.at(key), 1e-6);
      ++changed;
    }
  }
  // The reference's merged tensors are exactly the layers listed, and nothing else changed.
  EXPECT_EQ(changed, original.size());
  EXPECT_EQ(merger.merged_layers(), changed);
}

// The per-module math alone, for every folder (SDXL's too): each listed layer's weight (and
// bias) read from the base model's diffusers folder, plus the module's delta, is A1111's merge.
TEST_P(LycorisGolden, EveryModuleOnTheBaseWeightsMatchesA1111) {
  const std::string dir = test::reference_path(GetParam());
  const json rj = json::parse(io::read_text_file(dir + "/reference.json"));
  auto ref = io::load_safetensors(dir + "/reference.safetensors");
  const std::string base =
      test::reference_path(rj.at("base_model").get<std::string>() + "/diffusers");
  if (base.empty()) GTEST_SKIP() << "no diffusers folder of " << rj.at("base_model");
  const float mult = rj.at("multiplier").get<float>();
  std::map<std::string, io::TensorMap> components;  // "unet" -> its tensors
  std::map<std::string, models::LoraFile> files;
  for (auto& [layer, l] : rj.at("layers").items()) {
    SCOPED_TRACE(layer);
    const std::string part = layer.substr(0, layer.find('.')),
                      module = layer.substr(part.size() + 1);
    if (!components.count(part)) {
      for (auto& e : std::filesystem::directory_iterator(base + "/" + part))
        if (e.path().extension() == ".safetensors")
          components[part] = io::load_safetensors(e.path().string());
      ASSERT_TRUE(components.count(part)) << "no weights in " << base << "/" << part;
    }
    const std::string file = l.at("file").get<std::string>();
    if (!files.count(file)) files[file] = models::read_lora_file(dir + "/" + file);
    const std::string kohya = l.at("kohya").get<std::string>();
    const models::LoraModule& m = files[file].modules.at(kohya);
    EXPECT_EQ(m.type, type_of(l.at("type").get<std::string>()));
    const Tensor w = components[part].at(module + ".weight").to(DType::F32);
    EXPECT_REL_NEAR(ops::add(w, m.delta(mult, w.shape(), kohya)),
                    ref.at("merged." + layer + ".weight"), 1e-6);
    if (l.value("bias_changed", false)) {
      const Tensor b = components[part].at(module + ".bias").to(DType::F32);
      EXPECT_REL_NEAR(ops::add(b, m.bias_delta(mult)), ref.at("merged." + layer + ".bias"), 1e-6);
    }
  }
}

TEST_P(LycorisGolden, Txt2ImgWithAllFilesMergedMatches) {
  const std::string folder = GetParam();
  const std::string dir = test::reference_path(folder);
  const json rj = json::parse(io::read_text_file(dir + "/reference.json"));
  const json& run = rj.at("run");
  if (run.at("scheduler") != "EulerDiscreteScheduler")
    GTEST_SKIP() << "run with " << run.at("scheduler") << " (only Euler's is checked here)";
  auto ref = io::load_safetensors(dir + "/reference.safetensors");
  auto model = open_base(rj.at("base_model").get<std::string>());
  ASSERT_TRUE(model);
  const float mult = rj.at("multiplier").get<float>();

  // The files through the prompt's <lora:NAME:WEIGHT> tags, as the reference's run names them.
  pipeline::GenerateRequest req;
  req.prompt = run.at("prompt").get<std::string>();
  for (auto& tag : run.at("networks")) req.prompt += " " + tag.get<std::string>();
  req.lora_dir = dir;
  req.negative_prompt = run.at("negative_prompt").get<std::string>();
  req.cfg_scale = run.at("guidance_scale").get<float>();
  req.width = run.at("width").get<int64_t>();
  req.height = run.at("height").get<int64_t>();
  req.steps = run.at("steps").get<int>();
  req.sampler = "euler";
  req.rng = "cpu";
  req.init_latents = ref.at(run.at("latents").get<std::string>());
  const pipeline::GenerateResult res = pipeline::generate(*model, req);
  ASSERT_EQ(model->loras().size(), rj.at("files").size());
  for (auto& l : model->loras()) EXPECT_EQ(l.unet_weight, mult) << l.path;
  EXPECT_REL_NEAR(res.latents, ref.at("pipe.euler.final_latents"), 1e-3);

  // Step by step, with the files still merged.
  const int64_t skip = model->default_clip_skip();
  const auto cond =
      pipeline::request_conditioning(*model, req, run.at("prompt").get<std::string>(), skip, false);
  const auto uncond = pipeline::request_conditioning(*model, req, req.negative_prompt, skip, true);
  EXPECT_REL_NEAR(cond.context, ref.at("pipe.prompt_embeds"), 1e-4);
  EXPECT_REL_NEAR(uncond.context, ref.at("pipe.negative_prompt_embeds"), 1e-4);
  std::vector<Tensor> traj;
  pipeline::sample_latents(*model, req, cond, uncond, req.init_latents, req.seed,
                           [&](int, const Tensor& x) { traj.push_back(x.clone()); });
  const Tensor& want_traj = ref.at("pipe.euler.trajectory");
  ASSERT_EQ(int64_t(traj.size()), want_traj.size(0));
  for (size_t i = 0; i < traj.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    EXPECT_REL_NEAR(traj[i], want_traj.select(0, int64_t(i)).unsqueeze(0), 1e-3);
  }

  // Without the files the run differs (the merge is what the match shows).
  model->set_loras({});
  const Tensor plain = model->encode_prompt(run.at("prompt").get<std::string>(), skip);
  EXPECT_GT(test::rel_error(plain, ref.at("pipe.prompt_embeds")), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Reference, LycorisGolden, testing::ValuesIn(lycoris_folders()),
                         [](const testing::TestParamInfo<std::string>& i) {
                           std::string s = i.param;
                           for (char& c : s)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(LycorisGolden);
