// The diffuse command end to end: every sub-command on the reference models, its outputs
// checked against the reference, and its errors (one line, non-zero exit).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/image.h"
#include "io/safetensors.h"
#include "model_forms.h"
#include "ops/ops.h"
#include "test_util.h"

using namespace diffuse;

namespace {

std::string model_args(const test::ModelForm& f) {
  std::string s = "-m " + test::shell_quote(f.path);
  if (!f.config_dir.empty()) s += " --config " + test::shell_quote(f.config_dir);
  return s;
}

TEST(Cli, HelpForEveryCommand) {
  std::string out;
  EXPECT_EQ(test::run_diffuse("--help", &out), 0);
  for (const char* cmd : {"generate", "tokenize", "encode-prompt", "info"}) {
    EXPECT_NE(out.find(cmd), std::string::npos) << cmd;
    std::string sub;
    EXPECT_EQ(test::run_diffuse(std::string(cmd) + " --help", &sub), 0) << cmd;
    EXPECT_NE(sub.find("Usage"), std::string::npos) << sub;
  }
}

TEST(Cli, TokenizeMatchesReferenceIds) {
  for (auto& f : test::all_model_forms()) {
    if (f.quantized()) continue;
    SCOPED_TRACE(f.path);
    auto ref = io::load_safetensors(f.dir + "/reference.safetensors");
    std::string out;
    ASSERT_EQ(test::run_diffuse("tokenize " + model_args(f) + " " +
                                    test::shell_quote(f.reference_json["prompts"][0]),
                                &out),
              0)
        << out;
    auto ids = nlohmann::json::parse(out).get<std::vector<float>>();
    EXPECT_EQ(ids, ref.at("text.input_ids").select(0, 0).to_float_vector());
  }
  std::string out;
  ASSERT_EQ(test::run_diffuse("tokenize --no-pad 'a cat'", &out), 0) << out;
  auto ids = nlohmann::json::parse(out).get<std::vector<int64_t>>();
  EXPECT_EQ(ids.size(), 4u);  // BOS a cat EOS
}

TEST(Cli, EncodePromptMatchesReference) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no diffusers model in the reference";
  auto ref = io::load_safetensors(f->dir + "/reference.safetensors");
  std::string path = test::temp_dir() + "/emb.safetensors", out;
  ASSERT_EQ(test::run_diffuse("encode-prompt " + model_args(*f) + " -p " +
                                  test::shell_quote(f->reference_json["prompts"][0]) + " -n " +
                                  test::shell_quote(f->reference_json["prompts"][1]) + " -o " +
                                  test::shell_quote(path),
                              &out),
            0)
      << out;
  auto got = io::load_safetensors(path);
  EXPECT_REL_NEAR(got.at("prompt_embeds"), ref.at("pipe.prompt_embeds"), 1e-4);
  EXPECT_REL_NEAR(got.at("negative_prompt_embeds"), ref.at("pipe.negative_prompt_embeds"), 1e-4);
}

TEST(Cli, InfoReportsFamilyAndCounts) {
  for (auto& m : test::reference_models()) {
    for (auto& f : test::model_forms(m)) {
      SCOPED_TRACE(f.path);
      std::string out;
      ASSERT_EQ(test::run_diffuse("info --json " + model_args(f), &out), 0) << out;
      auto j = nlohmann::json::parse(out);
      std::string kind = f.reference_json.value("kind", "");
      std::string family = j["family"].get<std::string>();
      for (auto& c : family) c = char(std::tolower(static_cast<unsigned char>(c)));
      EXPECT_EQ(family, kind);
      EXPECT_GT(j["components"]["unet"]["parameters"].get<int64_t>(), 0);
      EXPECT_GT(j["components"]["vae"]["parameters"].get<int64_t>(), 0);
      EXPECT_GT(j["components"]["text_encoder"]["parameters"].get<int64_t>(), 0);
      // A GGUF file also reports its stored types (all its tensors, quantized ones among them).
      EXPECT_EQ(j.contains("gguf_tensor_types"), f.quantized());
      if (f.quantized()) {
        int64_t stored = 0;
        for (auto& [type, n] : j["gguf_tensor_types"].items()) stored += n.get<int64_t>();
        const int64_t loaded = j["components"]["unet"]["tensors"].get<int64_t>() +
                               j["components"]["vae"]["tensors"].get<int64_t>() +
                               j["components"]["text_encoder"]["tensors"].get<int64_t>() +
                               j["ignored_tensors"].get<int64_t>();
        EXPECT_EQ(stored, loaded);
        EXPECT_GT(j["gguf_tensor_types"].value("Q8_0", 0), 0);
      }
    }
  }
}

// --init-latents + --save-latents reproduce diffusers' run exactly, and the PNG carries the
// parameters in A1111's format.
TEST(Cli, GenerateReproducesReferenceRun) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no diffusers model in the reference";
  auto ref = io::load_safetensors(f->dir + "/reference.safetensors");
  if (!ref.count("pipe.euler.final_latents")) GTEST_SKIP() << "no euler run in the reference";
  const auto& rj = f->reference_json;
  std::string dir = test::temp_dir();
  io::save_safetensors(dir + "/init.safetensors", {{"x", ref.at("pipe.latents0")}});
  std::string out;
  std::string args =
      "generate --precision fp32 " + model_args(*f) + " -p " + test::shell_quote(rj["prompts"][0]) +
      " -n " + test::shell_quote(rj["prompts"][1]) + " --sampler euler --steps " +
      std::to_string(rj["steps"].get<int>()) + " --cfg-scale " +
      std::to_string(rj["guidance_scale"].get<double>()) + " -W " +
      std::to_string(rj["width"].get<int>()) + " -H " + std::to_string(rj["height"].get<int>()) +
      " -s 7 --init-latents " + test::shell_quote(dir + "/init.safetensors") + " --save-latents " +
      test::shell_quote(dir + "/out.safetensors") + " -o " + test::shell_quote(dir + "/out.png");
  ASSERT_EQ(test::run_diffuse(args, &out), 0) << out;
  auto got = io::load_safetensors(dir + "/out.safetensors");
  EXPECT_REL_NEAR(got.at("latents"), ref.at("pipe.euler.final_latents"), 1e-3);
  auto img = io::load_image(dir + "/out.png");
  EXPECT_EQ(img.width, rj["width"].get<int>());
  auto text = io::read_png_text(dir + "/out.png");
  ASSERT_TRUE(text.count("parameters"));
  const std::string& p = text["parameters"];
  EXPECT_EQ(p.rfind(rj["prompts"][0].get<std::string>() + "\n", 0), 0u) << p;
  for (const char* s : {"Steps: ", "Sampler: Euler", "CFG scale: ", "Seed: 7", "Size: "})
    EXPECT_NE(p.find(s), std::string::npos) << s << " in " << p;
}

TEST(Cli, GenerateBatchNumbersFilesAndSeeds) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no diffusers model in the reference";
  const auto& rj = f->reference_json;
  std::string dir = test::temp_dir() + "/batch";
  std::filesystem::create_directories(dir);
  std::string out;
  std::string size = " -W " + std::to_string(rj["width"].get<int>()) + " -H " +
                     std::to_string(rj["height"].get<int>());
  ASSERT_EQ(test::run_diffuse("generate " + model_args(*f) +
                                  " -p cat --steps 2 -q -s 100 --batch-size 2 --batch-count 2" +
                                  size + " -o " + test::shell_quote(dir + "/img.png"),
                              &out),
            0)
      << out;
  for (int i = 1; i <= 4; ++i) {
    std::string p = dir + "/img-" + std::to_string(i) + ".png";
    ASSERT_TRUE(std::filesystem::exists(p)) << p;
    EXPECT_NE(io::read_png_text(p)["parameters"].find("Seed: " + std::to_string(99 + i)),
              std::string::npos);
  }
  // Image 2 alone from its own seed is the same image.
  ASSERT_EQ(test::run_diffuse("generate " + model_args(*f) + " -p cat --steps 2 -q -s 101" + size +
                                  " -o " + test::shell_quote(dir + "/alone.png"),
                              &out),
            0);
  EXPECT_EQ(io::load_image(dir + "/alone.png").pixels, io::load_image(dir + "/img-2.png").pixels);
}

// generate's --precision defaults to auto: bf16 on a CPU with native bf16, else fp32.
TEST(Cli, GeneratePrecisionDefaultsToAuto) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no diffusers model in the reference";
  const std::string dir = test::temp_dir() + "/precision";
  std::filesystem::create_directories(dir);
  auto image = [&](const std::string& option) {
    const std::string png = dir + "/img" + option + ".png";
    std::string out;
    EXPECT_EQ(test::run_diffuse("generate " + model_args(*f) + " -p cat --steps 2 -q -s 5 -W 64 " +
                                    "-H 64 " + option + " -o " + test::shell_quote(png),
                                &out),
              0)
        << out;
    return io::load_image(png).pixels;
  };
  const auto by_default = image(""), fp32 = image("--precision=fp32"),
             bf16 = image("--precision=bf16");
  EXPECT_NE(fp32, bf16);
  EXPECT_EQ(by_default, ops::cpu_has_native_bf16() ? bf16 : fp32);
  std::string out;
  EXPECT_NE(test::run_diffuse("generate " + model_args(*f) + " -p cat --precision fp16 2>&1", &out),
            0);
  EXPECT_NE(out.find("fp16"), std::string::npos) << out;
}

// Without -m, generate uses $DIFFUSE_MODEL (else the shipped model); the default size is the
// UNet config's sample_size times the VAE's downsampling, as in diffusers' pipelines.
TEST(Cli, DefaultModelAndItsOwnSize) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no diffusers model in the reference";
  const std::string dir = test::temp_dir() + "/default_model";
  std::filesystem::create_directories(dir);
  std::string out;
  ASSERT_EQ(test::run_diffuse("generate " + model_args(*f) + " -p cat --steps 2 -q -s 7 -o " +
                                  test::shell_quote(dir + "/m.png"),
                              &out),
            0)
      << out;
  ASSERT_EQ(test::run_command("DIFFUSE_MODEL=" + test::shell_quote(f->path) + " " +
                                  test::shell_quote(test::cli_path()) +
                                  " generate -p cat --steps 2 -q -s 7 -o " +
                                  test::shell_quote(dir + "/env.png") + " 2>&1",
                              &out),
            0)
      << out;
  const io::Image m = io::load_image(dir + "/m.png"), env = io::load_image(dir + "/env.png");
  EXPECT_EQ(m.pixels, env.pixels);
  const int side = test::diffusers_default_side(f->path);
  EXPECT_EQ(m.width, side);
  EXPECT_EQ(m.height, side);
  EXPECT_NE(io::read_png_text(dir + "/env.png")["parameters"].find("Size: " + std::to_string(side)),
            std::string::npos);
}

TEST(Cli, ErrorsAreOneClearLine) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no diffusers model in the reference";
  const std::string m = model_args(*f);
  const std::string dir = test::temp_dir();
  io::Image small;
  small.width = small.height = 16;
  small.channels = 3;
  small.pixels.assign(16 * 16 * 3, 128);
  io::save_png(dir + "/small.png", small);
  struct Case {
    std::string args, expect;
  } cases[] = {
      {"generate " + m + " -p x -W 100 -H 128", "multiple of 8"},
      {"generate " + m + " -p x --sampler nope -W 128 -H 128", "unknown sampler"},
      {"generate " + m + " -p x -i /nonexistent/in.png", "/nonexistent/in.png"},
      {"generate " + m + " -p x -W 128 -H 128 --steps 0", "steps"},
      {"generate " + m + " -p x -W 16 -H 16 -i " + test::shell_quote(dir + "/small.png") +
           " --mask " + test::shell_quote(f->dir + "/reference.json"),
       "reference.json"},
      {"generate -m /nonexistent/model.safetensors -p x", "/nonexistent/model.safetensors"},
      {"info -m " + test::shell_quote(dir + "/small.png"), "small.png"},
  };
  for (auto& c : cases) {
    std::string out;
    EXPECT_NE(test::run_diffuse(c.args, &out), 0) << c.args;
    EXPECT_NE(out.find(c.expect), std::string::npos) << c.args << " -> " << out;
    EXPECT_EQ(out.find("terminate called"), std::string::npos) << out;
  }
}

TEST(Cli, MaskOfAnotherSizeIsRefused) {
  const test::ModelForm* f = test::first_diffusers_form();
  if (!f) GTEST_SKIP() << "no diffusers model in the reference";
  const auto& rj = f->reference_json;
  const int w = rj["width"].get<int>(), h = rj["height"].get<int>();
  std::string dir = test::temp_dir();
  io::Image img, mask;
  img.width = w, img.height = h, img.channels = 3;
  img.pixels.assign(size_t(w * h * 3), 100);
  mask.width = w / 2, mask.height = h, mask.channels = 1;
  mask.pixels.assign(size_t(w / 2 * h), 255);
  io::save_png(dir + "/img.png", img);
  io::save_png(dir + "/mask.png", mask);
  std::string out;
  EXPECT_NE(test::run_diffuse("generate " + model_args(*f) + " -p x -i " +
                                  test::shell_quote(dir + "/img.png") + " --mask " +
                                  test::shell_quote(dir + "/mask.png") + " -o " +
                                  test::shell_quote(dir + "/never.png"),
                              &out),
            0);
  EXPECT_NE(out.find("mask"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/never.png"));
  EXPECT_NE(test::run_diffuse("generate " + model_args(*f) + " -p x -i " +
                                  test::shell_quote(dir + "/img.png") + " --strength 1.5 -o " +
                                  test::shell_quote(dir + "/never.png"),
                              &out),
            0);
  EXPECT_NE(out.find("strength"), std::string::npos) << out;
}

}  // namespace
