// AUTOMATIC1111's extra-network tags in prompts: <lora:NAME:WEIGHT> and its variants.
#include <gtest/gtest.h>

#include "core/error.h"
#include "tokenizer/prompt_syntax.h"

using namespace diffuse;
using tokenizer::parse_prompt_networks;

namespace {

std::string error_of(const std::string& prompt) {
  try {
    parse_prompt_networks(prompt);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(PromptSyntax, TakesLoraTagsOutOfThePrompt) {
  const auto r = parse_prompt_networks("a cat <lora:style_a:0.8>, sitting<lora:b> <lyco:c:.5> x");
  EXPECT_EQ(r.prompt, "a cat , sitting  x");  // A1111 leaves the text around a tag as it is
  ASSERT_EQ(r.loras.size(), 3u);
  EXPECT_EQ(r.loras[0].name, "style_a");
  EXPECT_FLOAT_EQ(r.loras[0].unet_weight, 0.8f);
  EXPECT_FLOAT_EQ(r.loras[0].text_encoder_weight, 0.8f);
  EXPECT_EQ(r.loras[0].text, "<lora:style_a:0.8>");
  EXPECT_EQ(r.loras[1].name, "b");
  EXPECT_FLOAT_EQ(r.loras[1].unet_weight, 1.f);
  EXPECT_EQ(r.loras[2].name, "c");
  EXPECT_FLOAT_EQ(r.loras[2].unet_weight, 0.5f);
}

TEST(PromptSyntax, WeightForms) {
  auto one = [](const std::string& p) {
    auto r = parse_prompt_networks(p);
    EXPECT_EQ(r.loras.size(), 1u) << p;
    return r.loras.empty() ? tokenizer::LoraTag{} : r.loras[0];
  };
  auto t = one("<lora:n:0.25:0.75>");  // te, unet
  EXPECT_FLOAT_EQ(t.text_encoder_weight, 0.25f);
  EXPECT_FLOAT_EQ(t.unet_weight, 0.75f);
  t = one("<lora:n:0.5:unet=2>");
  EXPECT_FLOAT_EQ(t.text_encoder_weight, 0.5f);
  EXPECT_FLOAT_EQ(t.unet_weight, 2.f);
  t = one("<lora:n:te=0>");
  EXPECT_FLOAT_EQ(t.text_encoder_weight, 0.f);
  EXPECT_FLOAT_EQ(t.unet_weight, 0.f);  // unet follows te unless given
  t = one("<lyco:n: -1e-1 >");
  EXPECT_FLOAT_EQ(t.unet_weight, -0.1f);
  t = one("<lora:my lora (v2):1>");  // names may hold spaces and brackets
  EXPECT_EQ(t.name, "my lora (v2)");
}

TEST(PromptSyntax, TextThatIsNotATagStays) {
  for (const char* p : {"a <lora:> b", "<:x>", "<a b:c>", "a < lora:x:1>", "<lora", "x > y < z",
                        "<lora:x:1", "(cat:1.2)", ""}) {
    const auto r = parse_prompt_networks(p);
    EXPECT_EQ(r.prompt, p);
    EXPECT_TRUE(r.loras.empty()) << p;
  }
  // A stray '<' before a tag stays, the tag goes.
  EXPECT_EQ(parse_prompt_networks("<<lora:x:1>>").prompt, "<>");
}

TEST(PromptSyntax, MalformedTagsAreErrors) {
  const std::pair<const char*, const char*> cases[] = {
      {"a <lora:x:abc>", "'abc' is not a number"},
      {"<lora:x:1.5.2>", "not a number"},
      {"<lora:x:>", "'' is not a number"},
      {"<lora::1>", "no LoRA name"},
      {"<lora:x:1:1:1>", "too many values"},
      {"<lora:x:1:dyn=4>", "unknown argument 'dyn'"},
      {"<hypernet:x:1>", "'hypernet' networks are not supported"},
      {"<LORA:x:1>", "'LORA' networks are not supported"},  // A1111's types are lower case
      {"<lora:x:nan>", "not a number"},
  };
  for (auto& [prompt, want] : cases) {
    const std::string e = error_of(prompt);
    EXPECT_NE(e.find(want), std::string::npos) << prompt << ": " << e;
  }
  EXPECT_NE(error_of("a <lora:x:abc> b").find("<lora:x:abc>"), std::string::npos);
}
