// diffuse generate with LoRA files: --lora FILE:WEIGHT and <lora:NAME:WEIGHT> prompt tags with
// --lora-dir, on a reference model; weight 0 is the base model, tags equal the option, errors
// name the problem.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/image.h"
#include "model_forms.h"
#include "models/lora/lora_merge.h"
#include "test_util.h"
#include "train_test_util.h"

using namespace diffuse;

namespace {

std::string q(const std::string& s) {
  return test::shell_quote(s);
}

// A LoRA of rank 2 on every UNet attention projection and the first text-encoder block's q_proj,
// with random matrices.
models::LoraFile random_lora(pipeline::ModelBundle& m) {
  models::LoraNames names(&m.unet(), &m.text_encoder());
  models::LoraFile f;
  uint32_t seed = 3;
  for (auto& [name, layer] : names.names()) {
    const bool unet = name == models::kohya_lora_name("lora_unet", layer.module) &&
                      (layer.module.find(".attn1.") != std::string::npos ||
                       layer.module.find(".attn2.") != std::string::npos);
    const bool te = name == "lora_te_text_model_encoder_layers_0_self_attn_q_proj";
    if (!unet && !te) continue;
    Tensor down = test::seeded_randn({2, layer.shape[1]}, ++seed, 0.5f);
    Tensor up = test::seeded_randn({layer.shape[0], 2}, ++seed, 0.5f);
    f.modules[name] = {down, up, 1.f};
  }
  return f;
}

}  // namespace

TEST(LoraCli, GenerateAppliesLoraFilesAndPromptTags) {
  const test::ModelForm* form = test::first_diffusers_form();
  if (!form) GTEST_SKIP() << "no diffusers model in the reference";
  auto bundle = test::open_form(*form);
  const std::string dir = test::temp_dir() + "/lora_cli", loras = dir + "/loras";
  std::filesystem::create_directories(loras + "/sub");
  const models::LoraFile lora = random_lora(*bundle);
  ASSERT_GT(lora.modules.size(), 8u);
  models::write_lora_file(loras + "/sub/my_style.safetensors", lora);

  const auto& rj = form->reference_json;
  const std::string base = "generate -m " + q(form->path) + " --steps 2 -q -t 1 -s 5 -W " +
                           std::to_string(rj["width"].get<int>()) + " -H " +
                           std::to_string(rj["height"].get<int>());
  auto run = [&](const std::string& name, const std::string& args) {
    std::string out;
    EXPECT_EQ(test::run_diffuse(base + " " + args + " -o " + q(dir + "/" + name + ".png"), &out), 0)
        << args << "\n"
        << out;
    return io::load_image(dir + "/" + name + ".png").pixels;
  };
  const std::string file = loras + "/sub/my_style.safetensors";
  const auto plain = run("plain", "-p cat");
  EXPECT_EQ(run("zero", "-p cat --lora " + q(file + ":0")), plain);
  const auto with = run("with", "-p cat --lora " + q(file + ":0.8"));
  EXPECT_NE(with, plain);
  // A tag in the prompt (the file is found in a folder below --lora-dir) is the same LoRA.
  EXPECT_EQ(run("tag", "-p 'cat <lora:my_style:0.8>' --lora-dir " + q(loras)), with);
  EXPECT_EQ(run("tag0", "-p 'cat<lora:my_style:0>' --lora-dir " + q(loras)), plain);
  // The weight matters, and the text encoder's part of the file too.
  EXPECT_NE(run("half", "-p cat --lora " + q(file + ":0.4")), with);
  EXPECT_NE(run("te_only", "-p '<lora:my_style:1:0>cat' --lora-dir " + q(loras)), plain);

  // The PNG records the LoRA as A1111 does: a tag in the prompt.
  const std::string p1 = io::read_png_text(dir + "/with.png")["parameters"];
  const std::string p2 = io::read_png_text(dir + "/tag.png")["parameters"];
  EXPECT_EQ(p1.rfind("cat <lora:my_style:0.8>\n", 0), 0u) << p1;
  EXPECT_EQ(p2.rfind("cat <lora:my_style:0.8>\n", 0), 0u) << p2;
}

TEST(LoraCli, ErrorsNameTheProblem) {
  const test::ModelForm* form = test::first_diffusers_form();
  if (!form) GTEST_SKIP() << "no diffusers model in the reference";
  const std::string dir = test::temp_dir() + "/lora_errors";
  std::filesystem::create_directories(dir);
  models::LoraFile other;  // made for a model with other layer names
  other.modules["lora_unet_input_blocks_99_1_proj_in"] = {Tensor::full({2, 4}, 1),
                                                          Tensor::full({4, 2}, 1), 1};
  models::write_lora_file(dir + "/other.safetensors", other);
  const auto& rj = form->reference_json;
  const std::string base = "generate -m " + q(form->path) + " --steps 1 -q -t 1 -W " +
                           std::to_string(rj["width"].get<int>()) + " -H " +
                           std::to_string(rj["height"].get<int>()) + " -o " + q(dir + "/x.png") +
                           " ";
  const std::pair<std::string, std::string> cases[] = {
      {"-p cat --lora " + q(dir + "/absent.safetensors:1"), "absent.safetensors not found"},
      {"-p 'cat <lora:absent:1>' --lora-dir " + q(dir), "LoRA 'absent' not found"},
      {"-p 'cat <lora:other:1>'", "no LoRA folder is given"},
      {"-p 'cat <lora:other:x>' --lora-dir " + q(dir), "'x' is not a number"},
      {"-p 'cat <lora:../other:1>' --lora-dir " + q(dir), "without folders"},
      {"-p cat --lora " + q(dir + "/other.safetensors"), "name no layer of this model"},
  };
  for (auto& [args, want] : cases) {
    std::string out;
    EXPECT_NE(test::run_diffuse(base + args, &out), 0) << args;
    EXPECT_NE(out.find(want), std::string::npos) << args << "\n" << out;
    EXPECT_FALSE(std::filesystem::exists(dir + "/x.png")) << args;
  }
}
