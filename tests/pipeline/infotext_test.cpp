// A1111's infotext read back: our own texts round-trip field for field, A1111's texts (written
// here by hand in its format) apply to a request, and malformed or foreign values are one clear
// error (or, where A1111 tolerates them, prompt text).
#include <gtest/gtest.h>

#include "pipeline/infotext.h"
#include "pipeline/parameters.h"

using namespace diffuse;
using namespace diffuse::pipeline;

namespace {

const char* kA1111 =
    "masterpiece, (a cat:1.2), [blurry]\n"
    "on two lines\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567, Size: "
    "512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Clip "
    "skip: 2, Hires upscale: 1.5, Hires steps: 12, Hires upscaler: Latent (bicubic antialiased), "
    "Lora hashes: \"lcm: 3d18b05e4f11, x: 1\", Version: v1.10.1";

TEST(Infotext, ReadsA1111sText) {
  const Infotext info = parse_infotext(kA1111);
  EXPECT_EQ(info.prompt, "masterpiece, (a cat:1.2), [blurry]\non two lines");
  EXPECT_EQ(info.negative_prompt, "lowres, bad anatomy");
  ASSERT_NE(info.find("Lora hashes"), nullptr);
  EXPECT_EQ(*info.find("Lora hashes"), "lcm: 3d18b05e4f11, x: 1");
  EXPECT_EQ(*info.find("Version"), "v1.10.1");
  GenerateRequest req;
  const InfotextModels m = apply_infotext(info, &req);
  EXPECT_EQ(m.model, "v1-5-pruned-emaonly");
  EXPECT_EQ(req.steps, 25);
  EXPECT_EQ(req.sampler, "dpmpp_2m");
  EXPECT_EQ(req.scheduler, "karras");
  EXPECT_FLOAT_EQ(req.cfg_scale, 6.5f);
  EXPECT_EQ(req.seed, 1234567);
  EXPECT_EQ(req.width, 512);
  EXPECT_EQ(req.height, 768);
  EXPECT_EQ(req.clip_skip, 2);
  EXPECT_EQ(req.rng, "cuda") << "no RNG field: A1111's default, the GPU generator";
  EXPECT_TRUE(req.hires.enabled);
  EXPECT_DOUBLE_EQ(req.hires.scale, 1.5);
  EXPECT_EQ(req.hires.steps, 12);
  EXPECT_EQ(req.hires.upscaler, "latent-bicubic-antialiased");
  EXPECT_DOUBLE_EQ(req.hires.strength, 0.45);
}

TEST(Infotext, OurTextRoundTrips) {
  GenerateRequest req;
  req.prompt = "a \"quoted\" cat, Steps: 3, x: y\nsecond line";
  req.negative_prompt = "dark";
  req.steps = 7;
  req.sampler = "euler_a";
  req.scheduler = "trailing";
  req.cfg_scale = 3.25f;
  req.width = 96;
  req.height = 64;
  req.rng = "cpu";
  req.clip_skip = 2;
  req.hires.enabled = true;
  req.hires.width = 192;
  req.hires.height = 128;
  req.hires.steps = 4;
  req.hires.strength = 0.3;
  req.hires.upscaler = "lanczos";
  req.hires.sampler = "dpmpp_2m";
  req.hires.prompt = "a cat, \"sharp\": detailed";
  ImageParameters p = image_parameters(req, "tiny", 2);
  p.seed = 42;
  GenerateRequest back;
  const InfotextModels m = apply_infotext(parse_infotext(format_parameters(p)), &back);
  EXPECT_EQ(m.model, "tiny");
  EXPECT_EQ(back.prompt, req.prompt);
  EXPECT_EQ(back.negative_prompt, req.negative_prompt);
  EXPECT_EQ(back.steps, 7);
  EXPECT_EQ(back.sampler, "euler_a");
  EXPECT_EQ(back.scheduler, "trailing");
  EXPECT_FLOAT_EQ(back.cfg_scale, 3.25f);
  EXPECT_EQ(back.seed, 42);
  EXPECT_EQ(back.width, 96);
  EXPECT_EQ(back.height, 64);
  EXPECT_EQ(back.rng, "cpu");
  EXPECT_EQ(back.clip_skip, 2);
  EXPECT_TRUE(back.hires.enabled);
  EXPECT_EQ(back.hires.width, 192);
  EXPECT_EQ(back.hires.height, 128);
  EXPECT_EQ(back.hires.steps, 4);
  EXPECT_DOUBLE_EQ(back.hires.strength, 0.3);
  EXPECT_EQ(back.hires.upscaler, "lanczos");
  EXPECT_EQ(back.hires.sampler, "dpmpp_2m");
  EXPECT_EQ(back.hires.prompt, req.hires.prompt);
}

TEST(Infotext, TextWithoutFieldsIsPrompt) {
  const Infotext a = parse_infotext("a cat: cute, b: c");  // two pairs only
  EXPECT_EQ(a.prompt, "a cat: cute, b: c");
  EXPECT_TRUE(a.fields.empty());
  const Infotext b = parse_infotext("");
  EXPECT_EQ(b.prompt, "");
  // a megabyte of near-fields parses in one pass, without a crash
  std::string big;
  for (int i = 0; i < 150000; ++i) big += "ab: \"c, ";
  const Infotext c = parse_infotext("x\n" + big);
  EXPECT_TRUE(c.prompt == "x") << c.prompt.size() << " bytes of prompt";
  EXPECT_EQ(c.fields.size(), 150000u);
  // an unclosed quote takes the rest of the line (as A1111's pattern does)
  const Infotext d = parse_infotext("x\nab: \"c, de: f, gh: i");
  ASSERT_EQ(d.fields.size(), 3u);
  EXPECT_EQ(d.fields[0].second, "\"c");
}

TEST(Infotext, ForeignValuesAreOneClearError) {
  const std::pair<const char*, const char*> cases[] = {
      {"Steps: many, Sampler: Euler, Seed: 1", "'Steps': 'many' is not a number"},
      {"Steps: 20, Sampler: Restart, Seed: 1", "sampler 'Restart' is not one diffuse has"},
      {"Steps: 20, Sampler: Euler, Schedule type: Exponential", "'Exponential' is not a schedule"},
      {"Steps: 20, Sampler: Euler, RNG: NV", "'NV' is not a generator"},
      {"Steps: 20, Sampler: Euler, Size: 512", "'512' is not a size"},
      {"Steps: 20, Hires upscale: 2, Hires upscaler: R-ESRGAN 4x+", "unknown hires upscaler"},
      {"Steps: 2.5, Sampler: Euler, Seed: 1", "not a whole number"},
  };
  for (auto& [text, words] : cases) {
    GenerateRequest req;
    try {
      apply_infotext(parse_infotext(std::string("p\n") + text), &req);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  }
}

}  // namespace
