// LoRA against the reference: kohya names of the full-size models (manifests) resolve to the
// right layers in both the diffusers and the LDM style, and LoRA training on a reference UNet
// lowers the loss without touching the base weights.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "autograd/functions.h"
#include "io/mmap_file.h"
#include "io/name_map_check.h"
#include "io/name_map_ldm.h"
#include "io/safetensors.h"
#include "model_forms.h"
#include "models/lora/lora_merge.h"
#include "test_util.h"
#include "train/lora.h"
#include "train/unet_trainer.h"
#include "train_test_util.h"

using namespace diffuse;
using json = nlohmann::json;

namespace {

io::NamedShapes entries(const json& j) {
  io::NamedShapes out;
  for (const auto& [name, shape] : j.items()) out.emplace_back(name, shape.get<Shape>());
  return out;
}

// Shapes without data (nothing reads it): what the config inference needs.
io::TensorMap shape_only(const io::NamedShapes& names) {
  static float dummy;
  io::TensorMap m;
  for (auto& [name, shape] : names) m[name] = Tensor::from_blob(&dummy, shape, DType::F32, nullptr);
  return m;
}

bool attention_projection(const std::string& name) {
  for (const char* p : {".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight"})
    if (name.ends_with(p) &&
        (name.find(".attn1.") != std::string::npos || name.find(".attn2.") != std::string::npos))
      return true;
  return false;
}

std::string module_of(const std::string& weight) {
  return weight.substr(0, weight.size() - 7);
}

}  // namespace

TEST(LoraGolden, FullSizeNamesResolveInBothStyles) {
  DF_REQUIRE_REF(path, "manifests/manifests.json");
  const json manifests = json::parse(io::read_text_file(path));
  int models_checked = 0;
  for (const auto& [key, unet_names] : manifests.items()) {
    if (!key.ends_with("/diffusers/unet")) continue;
    const std::string model = key.substr(0, key.find('/'));
    SCOPED_TRACE(model);
    const io::NamedShapes unet_shapes = entries(unet_names);
    std::unique_ptr<models::UNet2DConditionModel> unet;
    try {  // a UNet this project builds, with exactly the manifest's tensors
      unet = std::make_unique<models::UNet2DConditionModel>(
          models::UNetConfig::infer(shape_only(unet_shapes)));
      io::check_tensor_names(
          io::names_and_shapes(shape_only(unet_shapes)),
          [&] {
            io::NamedShapes got;
            for (auto& p : unet->named_parameters()) got.emplace_back(p.name, p.shape);
            return got;
          }(),
          key);
    } catch (const Error&) {
      continue;  // a UNet this build does not make
    }
    std::unique_ptr<models::ClipTextModel> te;
    if (manifests.contains(model + "/diffusers/text_encoder"))
      te = std::make_unique<models::ClipTextModel>(models::ClipTextConfig::infer(
          shape_only(entries(manifests[model + "/diffusers/text_encoder"])), "gelu"));
    const models::LoraNames names(unet.get(), te.get());

    // diffusers style: every attention projection
    std::set<std::string> projections;
    for (auto& [name, shape] : unet_shapes) {
      if (!attention_projection(name)) continue;
      projections.insert(module_of(name));
      const auto* l = names.find(models::kohya_lora_name("lora_unet", module_of(name)));
      ASSERT_TRUE(l) << name;
      EXPECT_EQ(l->module, module_of(name));
      EXPECT_EQ(l->shape, shape);
    }
    // attn1 + attn2, 4 each, in every transformer block (SD1/SD2: 16, SDXL: 70)
    std::set<std::string> blocks;
    for (auto& [name, shape] : unet_shapes)
      if (const size_t at = name.find(".transformer_blocks."); at != std::string::npos)
        blocks.insert(name.substr(0, name.find('.', at + 20)));
    EXPECT_GE(blocks.size(), 16u);
    EXPECT_EQ(projections.size(), 8 * blocks.size());

    // LDM style: the single file's names, mapped by io's single-file map
    std::string single = model + "/single_file";
    if (!manifests.contains(single)) single += "/unet";
    ASSERT_TRUE(manifests.contains(single));
    const io::SingleFilePlan plan = io::plan_single_file(entries(manifests[single]), single);
    std::set<std::string> resolved;
    const std::string prefix = "model.diffusion_model.";
    for (auto& m : plan.tensors) {
      if (m.component != io::Component::Unet || !attention_projection(m.target)) continue;
      ASSERT_TRUE(m.source.starts_with(prefix)) << m.source;
      const std::string ldm = module_of(m.source.substr(prefix.size()));
      const auto* l = names.find(models::kohya_lora_name("lora_unet", ldm));
      ASSERT_TRUE(l) << ldm;
      EXPECT_EQ(l->module, module_of(m.target)) << ldm;
      resolved.insert(l->module);
    }
    EXPECT_EQ(resolved, projections);  // one LDM name per projection, each resolving uniquely

    // text encoder: every attention and MLP projection
    int te_layers = 0;
    if (te) {
      for (auto& p : te->named_parameters()) {
        if (p.name.find(".self_attn.") == std::string::npos &&
            p.name.find(".mlp.") == std::string::npos)
          continue;
        if (!p.name.ends_with(".weight")) continue;
        const auto* l = names.find(models::kohya_lora_name("lora_te", module_of(p.name)));
        ASSERT_TRUE(l) << p.name;
        EXPECT_EQ(l->part, models::LoraPart::TextEncoder);
        EXPECT_EQ(l->module, module_of(p.name));
        ++te_layers;
      }
      EXPECT_EQ(te_layers, 6 * te->config().num_hidden_layers);
    }
    ++models_checked;
  }
  EXPECT_GT(models_checked, 0) << "no SD 1.x / 2.x UNet in the manifests";
}

TEST(LoraGolden, TrainingOnTheTinyUnetLowersTheLoss) {
  const test::ModelForm* form = test::first_diffusers_form();
  if (!form) GTEST_SKIP() << "no diffusers model in the reference";
  auto bundle = test::open_form(*form);
  models::UNet2DConditionModel unet(bundle->unet_config);
  unet.load_state_dict(bundle->files.unet, "UNet of " + form->path);
  std::vector<Tensor> base;
  for (auto& p : unet.named_parameters()) base.push_back(p.tensor->clone());

  const io::TensorMap ref = io::load_safetensors(form->dir + "/reference.safetensors");
  // one entry of the reference UNet call: latents and their conditioning
  const Tensor x0 = ref.at("unet.input").slice(0, 1, 2).to(DType::F32).contiguous();
  const Tensor context = ref.at("unet.context").slice(0, 1, 2).to(DType::F32).contiguous();
  const Tensor noise = test::seeded_randn(x0.shape(), 1);
  std::vector<int64_t> t;
  t.push_back(500);

  train::LoraOptions lo;
  lo.rank = 4;
  lo.alpha = 4;
  train::LoraNetwork net(unet, lo);
  train::UNetTrainOptions o;
  o.adamw.lr = 1e-2f;
  train::UNetTrainer trainer(unet, train::NoiseSchedule::stable_diffusion(), o, net.params());
  std::vector<float> losses;
  for (int i = 0; i < 6; ++i) losses.push_back(trainer.step(x0, context, noise, t).loss);
  EXPECT_LT(losses.back(), 0.95f * losses.front()) << losses.front() << " -> " << losses.back();
  size_t i = 0;
  for (auto& p : unet.named_parameters())  // the base weights are frozen
    EXPECT_TRUE(p.tensor->to_float_vector() == base[i++].to_float_vector()) << p.name;

  // The trained network saved and merged gives the adapters' output.
  const std::vector<float> tf(t.begin(), t.end());
  Tensor adapted, merged;
  {
    autograd::NoGradGuard ng;
    adapted = unet.forward(x0, tf, context);
  }
  const std::string file = test::temp_dir() + "/tiny_lora.safetensors";
  net.save_kohya(file, {}, DType::F32);
  net.remove();
  models::LoraMerger merger(&unet, nullptr);
  merger.merge(models::read_lora_file(file), file, 1, 1);
  {
    autograd::NoGradGuard ng;
    merged = unet.forward(x0, tf, context);
  }
  EXPECT_REL_NEAR(merged, adapted, 1e-5);
}
