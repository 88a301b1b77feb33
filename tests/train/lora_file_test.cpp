// kohya LoRA files: names resolved against the model (diffusers, LDM and text encoder styles),
// strict reading with clear errors, and the merger's checks.
#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "models/lora/lora_merge.h"
#include "test_util.h"
#include "train_test_util.h"

using namespace diffuse;
using models::LoraPart;

namespace {

models::ClipTextConfig small_clip() {
  models::ClipTextConfig c;
  c.vocab_size = 100;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  return c;
}

std::string resolve(const models::LoraNames& n, const std::string& name) {
  const models::LoraLayer* l = n.find(name);
  if (!l) return "(none)";
  return (l->part == LoraPart::Unet ? "unet:" : "te:") + l->module;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

Tensor ones(const Shape& s, float v = 1) {
  return Tensor::full(s, v);
}

}  // namespace

TEST(LoraNames, ResolveDiffusersLdmAndTextEncoderNames) {
  models::UNet2DConditionModel unet(test::small_unet_config());
  models::ClipTextModel te(small_clip());
  models::LoraNames n(&unet, &te);
  const std::pair<const char*, const char*> cases[] = {
      {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
       "unet:down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"},
      {"lora_unet_up_blocks_1_attentions_1_transformer_blocks_0_attn2_to_out_0",
       "unet:up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_out.0"},
      {"lora_unet_mid_block_attentions_0_proj_in", "unet:mid_block.attentions.0.proj_in"},
      {"lora_unet_down_blocks_0_resnets_0_conv1", "unet:down_blocks.0.resnets.0.conv1"},
      // LDM: one level = layers (1) + a resampler block; input_blocks.0 is conv_in
      {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q",
       "unet:down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"},
      {"lora_unet_input_blocks_1_1_proj_in", "unet:down_blocks.0.attentions.0.proj_in"},
      {"lora_unet_input_blocks_2_0_op", "unet:down_blocks.0.downsamplers.0.conv"},
      {"lora_unet_input_blocks_3_0_in_layers_2", "unet:down_blocks.1.resnets.0.conv1"},
      {"lora_unet_input_blocks_0_0", "unet:conv_in"},
      {"lora_unet_middle_block_1_transformer_blocks_0_ff_net_2",
       "unet:mid_block.attentions.0.transformer_blocks.0.ff.net.2"},
      {"lora_unet_middle_block_2_emb_layers_1", "unet:mid_block.resnets.1.time_emb_proj"},
      {"lora_unet_output_blocks_1_1_conv", "unet:up_blocks.0.upsamplers.0.conv"},
      {"lora_unet_output_blocks_3_1_transformer_blocks_0_attn2_to_k",
       "unet:up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k"},
      {"lora_unet_output_blocks_3_0_skip_connection", "unet:up_blocks.1.resnets.1.conv_shortcut"},
      {"lora_unet_time_embed_0", "unet:time_embedding.linear_1"},
      // every convolution a LoCon changes, in both styles
      {"lora_unet_conv_in", "unet:conv_in"},
      {"lora_unet_conv_out", "unet:conv_out"},
      {"lora_unet_out_2", "unet:conv_out"},
      {"lora_unet_input_blocks_1_0_in_layers_2", "unet:down_blocks.0.resnets.0.conv1"},
      {"lora_unet_input_blocks_1_0_out_layers_3", "unet:down_blocks.0.resnets.0.conv2"},
      {"lora_unet_down_blocks_0_resnets_0_conv2", "unet:down_blocks.0.resnets.0.conv2"},
      {"lora_unet_down_blocks_0_downsamplers_0_conv", "unet:down_blocks.0.downsamplers.0.conv"},
      {"lora_unet_up_blocks_0_upsamplers_0_conv", "unet:up_blocks.0.upsamplers.0.conv"},
      {"lora_unet_up_blocks_1_resnets_1_conv2", "unet:up_blocks.1.resnets.1.conv2"},
      {"lora_unet_output_blocks_3_0_out_layers_3", "unet:up_blocks.1.resnets.1.conv2"},
      {"lora_unet_mid_block_resnets_1_conv1", "unet:mid_block.resnets.1.conv1"},
      {"lora_unet_middle_block_2_in_layers_2", "unet:mid_block.resnets.1.conv1"},
      {"lora_unet_down_blocks_0_attentions_0_proj_out", "unet:down_blocks.0.attentions.0.proj_out"},
      {"lora_unet_input_blocks_1_1_proj_out", "unet:down_blocks.0.attentions.0.proj_out"},
      {"lora_te_text_model_encoder_layers_1_self_attn_q_proj",
       "te:text_model.encoder.layers.1.self_attn.q_proj"},
      {"lora_te1_text_model_encoder_layers_0_mlp_fc2", "te:text_model.encoder.layers.0.mlp.fc2"},
      // not layers: norms, embedding tables, unknown or misspelt modules
      {"lora_unet_down_blocks_0_attentions_0_norm", "(none)"},
      {"lora_te_text_model_embeddings_token_embedding", "(none)"},
      {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_x", "(none)"},
      {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn3_to_q", "(none)"},
      {"lora_te2_text_model_encoder_layers_0_mlp_fc1", "(none)"},
  };
  for (auto& [name, want] : cases) EXPECT_EQ(resolve(n, name), want) << name;
  // Every Linear / Conv2d weight has a diffusers-style name, every UNet one an LDM name too.
  int unet_layers = 0, ldm_names = 0, weights = 0;
  for (auto& p : unet.named_parameters()) {
    weights += p.name.ends_with(".weight");
    unet_layers += p.name.ends_with(".weight") && p.shape.size() >= 2;
  }
  for (auto& [name, layer] : n.names())
    if (name.starts_with("lora_unet_") &&
        name != models::kohya_lora_name("lora_unet", layer.module))
      ++ldm_names;
  EXPECT_GT(unet_layers, 30);
  EXPECT_EQ(ldm_names, unet_layers);
  EXPECT_EQ(int(models::unet_ldm_module_paths(unet).size()), weights);  // norms too
}

TEST(LoraFile, ReadsStrictlyWithClearErrors) {
  const std::string dir = test::temp_dir();
  auto write = [&](const std::string& file, const io::TensorMap& t) {
    io::save_safetensors(dir + "/" + file, t);
    return dir + "/" + file;
  };
  const std::string m = "lora_unet_mid_block_attentions_0_proj_in";
  // no alpha: scale 1
  auto f = models::read_lora_file(
      write("ok.safetensors", {{m + ".lora_down.weight", ones({2, 16}).to(DType::F16)},
                               {m + ".lora_up.weight", ones({16, 2})}}));
  ASSERT_EQ(f.modules.size(), 1u);
  EXPECT_EQ(f.modules.at(m).alpha, 2.f);
  EXPECT_EQ(f.modules.at(m).scale(), 1.f);

  const std::pair<io::TensorMap, const char*> bad[] = {
      {{{m + ".hada_w1_a", ones({2, 2})}}, "LoHa"},
      {{{m + ".dora_scale", ones({2})}}, "DoRA"},
      {{{"unet.mid_block.attentions.0.proj_in.lora_A.weight", ones({2, 2})}}, "PEFT"},
      {{{m + ".lora_down.weight", ones({2, 16})}}, "no lora_up"},
      {{{m + ".lora_down.weight", ones({2, 16})}, {m + ".lora_up.weight", ones({16, 3})}},
       "do not fit together"},
      {{{m + ".lora_down.weight", ones({2, 16})},
        {m + ".lora_up.weight", ones({16, 2})},
        {"lora_unet_other.alpha", ones({})}},
       "alpha without a module"},
      {{{m + ".lora_down.weight", ones({2, 16})},
        {m + ".lora_up.weight", ones({16, 2})},
        {m + ".alpha", ones({2})}},
       "expected one"},
      {{{"x", ones({1})}}, "not a kohya LoRA"},
  };
  int i = 0;
  for (auto& [tensors, what] : bad) {
    const std::string path = write("bad" + std::to_string(i++) + ".safetensors", tensors);
    const std::string e = error_of([&] { models::read_lora_file(path); });
    EXPECT_NE(e.find(what), std::string::npos) << e;
    EXPECT_NE(e.find(path), std::string::npos) << e;
  }
  EXPECT_NE(error_of([&] { models::read_lora_file(dir + "/absent.safetensors"); }), "(no error)");
}

TEST(LoraMerger, RefusesFilesThatDoNotFitBeforeChangingAnything) {
  models::UNet2DConditionModel unet(test::small_unet_config());
  for (auto& p : unet.named_parameters()) *p.tensor = Tensor::zeros(p.shape);
  models::LoraFile f;
  const std::string q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
  f.modules[q] = {ones({2, 8}), ones({8, 2}), 4};
  f.modules["lora_unet_input_blocks_1_1_proj_in"] = {ones({1, 8, 1, 1}), ones({8, 1, 1, 1}), 1};
  models::LoraMerger merger(&unet, nullptr);
  merger.merge(f, "f", 0.5f, 1);
  // q: 0.5 * (4 / 2) * up @ down = 0.5 * 2 * 2 = 2 everywhere; proj_in (1x1 conv) 0.5
  for (auto& p : unet.named_parameters()) {
    if (p.name == "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight") {
      for (float v : p.tensor->to_float_vector()) ASSERT_EQ(v, 2.f);
    }
    if (p.name == "down_blocks.0.attentions.0.proj_in.weight") {
      for (float v : p.tensor->to_float_vector()) ASSERT_EQ(v, 0.5f);
    }
  }
  EXPECT_EQ(merger.merged_layers(), 2u);

  models::LoraFile unknown = f;
  unknown.modules["lora_unet_nothing_here"] = {ones({2, 8}), ones({8, 2}), 2};
  unknown.modules["lora_te_text_model_encoder_layers_0_mlp_fc1"] = {ones({2, 8}), ones({8, 2}), 2};
  std::string e = error_of([&] { merger.merge(unknown, "u.safetensors", 1, 1); });
  EXPECT_NE(e.find("u.safetensors: 2 of 4 LoRA modules name no layer"), std::string::npos) << e;
  EXPECT_NE(e.find("lora_unet_nothing_here"), std::string::npos) << e;
  models::LoraFile misfit;
  misfit.modules[q] = {ones({2, 16}), ones({8, 2}), 2};
  e = error_of([&] { merger.merge(misfit, "m.safetensors", 1, 1); });
  EXPECT_NE(e.find("do not fit"), std::string::npos) << e;
  EXPECT_EQ(merger.merged_layers(), 2u);  // nothing more changed
  merger.restore();
  for (auto& p : unet.named_parameters())
    for (float v : p.tensor->to_float_vector()) ASSERT_EQ(v, 0.f) << p.name;
}
