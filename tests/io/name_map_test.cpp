// Unit tests of the single-file name maps and strict name checks, on synthetic names.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "io/model_files.h"
#include "io/name_map_check.h"
#include "io/name_map_ldm.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace diffuse::io {
namespace {

namespace fs = std::filesystem;

// A minimal LDM UNet: `levels` levels of `layers` resnets, attention on the levels in `attn`.
NamedShapes tiny_unet(int levels, int layers, const std::vector<bool>& attn) {
  const std::string p = "model.diffusion_model.";
  NamedShapes t = {{p + "input_blocks.0.0.weight", {8, 4, 3, 3}},
                   {p + "time_embed.0.weight", {32, 8}},
                   {p + "time_embed.2.weight", {32, 32}},
                   {p + "out.0.weight", {8}},
                   {p + "out.2.weight", {4, 8, 3, 3}},
                   {p + "middle_block.0.in_layers.0.weight", {8}},
                   {p + "middle_block.1.norm.weight", {8}},
                   {p + "middle_block.2.out_layers.3.weight", {8, 8, 3, 3}}};
  int k = 1;
  for (int level = 0; level < levels; ++level) {
    for (int l = 0; l < layers; ++l, ++k) {
      t.push_back(
          {p + "input_blocks." + std::to_string(k) + ".0.in_layers.2.weight", {8, 8, 3, 3}});
      if (attn[level])
        t.push_back(
            {p + "input_blocks." + std::to_string(k) + ".1.transformer_blocks.0.attn2.to_k.weight",
             {8, 16}});
    }
    if (level + 1 < levels)
      t.push_back({p + "input_blocks." + std::to_string(k++) + ".0.op.weight", {8, 8, 3, 3}});
  }
  k = 0;
  for (int level = 0; level < levels; ++level) {
    const bool a = attn[levels - 1 - level];
    for (int l = 0; l <= layers; ++l, ++k) {
      const std::string b = p + "output_blocks." + std::to_string(k) + ".";
      t.push_back({b + "0.skip_connection.weight", {8, 16, 1, 1}});
      if (a) t.push_back({b + "1.proj_in.weight", {8, 8, 1, 1}});
      if (l == layers && level + 1 < levels)
        t.push_back({b + (a ? "2" : "1") + ".conv.weight", {8, 8, 3, 3}});
    }
  }
  return t;
}

std::map<std::string, std::string> source_to_target(const SingleFilePlan& plan) {
  std::map<std::string, std::string> m;
  for (const auto& t : plan.tensors) m[t.source] = t.target;
  return m;
}

TEST(NameMapUnet, InfersTheBlockStructureFromTheNames) {
  // Three levels of three layers, attention on the middle level only.
  const auto plan = plan_single_file(tiny_unet(3, 3, {false, true, false}), "test");
  const auto m = source_to_target(plan);
  const std::string p = "model.diffusion_model.";
  EXPECT_EQ(m.at(p + "input_blocks.0.0.weight"), "conv_in.weight");
  EXPECT_EQ(m.at(p + "time_embed.2.weight"), "time_embedding.linear_2.weight");
  EXPECT_EQ(m.at(p + "out.0.weight"), "conv_norm_out.weight");
  EXPECT_EQ(m.at(p + "input_blocks.3.0.in_layers.2.weight"),
            "down_blocks.0.resnets.2.conv1.weight");
  EXPECT_EQ(m.at(p + "input_blocks.4.0.op.weight"), "down_blocks.0.downsamplers.0.conv.weight");
  EXPECT_EQ(m.at(p + "input_blocks.6.1.transformer_blocks.0.attn2.to_k.weight"),
            "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight");
  EXPECT_EQ(m.at(p + "middle_block.1.norm.weight"), "mid_block.attentions.0.norm.weight");
  EXPECT_EQ(m.at(p + "middle_block.2.out_layers.3.weight"), "mid_block.resnets.1.conv2.weight");
  // Up level 0 (no attention): its upsampler is module 1 of its last block.
  EXPECT_EQ(m.at(p + "output_blocks.3.1.conv.weight"), "up_blocks.0.upsamplers.0.conv.weight");
  // Up level 1 (attention): module 2.
  EXPECT_EQ(m.at(p + "output_blocks.7.2.conv.weight"), "up_blocks.1.upsamplers.0.conv.weight");
  EXPECT_EQ(m.at(p + "output_blocks.6.1.proj_in.weight"),
            "up_blocks.1.attentions.2.proj_in.weight");
  EXPECT_EQ(m.at(p + "output_blocks.11.0.skip_connection.weight"),
            "up_blocks.2.resnets.3.conv_shortcut.weight");
  EXPECT_EQ(plan.text_layout, TextEncoderLayout::None);
}

TEST(NameMapUnet, UnknownTensorsUnderTheUnetAreAnError) {
  auto t = tiny_unet(2, 2, {true, true});
  t.push_back({"model.diffusion_model.input_blocks.1.0.in_layers.1.weight", {8}});
  t.push_back({"model.diffusion_model.mystery.weight", {8}});
  try {
    plan_single_file(t, "file.safetensors");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("file.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("2 tensor(s)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.diffusion_model.mystery.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("input_blocks.1.0.in_layers.1.weight"), std::string::npos) << msg;
  }
}

TEST(NameMapUnet, InconsistentOutputBlocksAreAnError) {
  auto t = tiny_unet(2, 2, {true, true});
  t.push_back({"model.diffusion_model.output_blocks.6.0.skip_connection.weight", {8, 16, 1, 1}});
  EXPECT_THROW(plan_single_file(t, "x"), Error);
}

TEST(NameMapLdm, NoUnetIsNotAStableDiffusionCheckpoint) {
  try {
    plan_single_file({{"down_blocks.0.resnets.0.conv1.weight", {4, 4, 3, 3}}}, "unet.safetensors");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("unet.safetensors: not a Stable Diffusion checkpoint"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("diffusers folder"), std::string::npos) << msg;
  }
}

TEST(NameMapLdm, IgnoresBookkeepingAndRejectsUnknownTextEncoderNames) {
  auto t = tiny_unet(2, 1, {true, false});
  t.push_back({"model_ema.decay", {}});
  t.push_back({"betas", {1000}});
  t.push_back({"alphas_cumprod", {1000}});
  t.push_back({"cond_stage_model.transformer.text_model.embeddings.position_ids", {1, 77}});
  t.push_back({"cond_stage_model.transformer.text_model.final_layer_norm.weight", {16}});
  const auto mapped = map_single_file_names(t);
  EXPECT_EQ(mapped.ignored.size(), 4u);
  ASSERT_EQ(mapped.text_encoder.size(), 1u);
  EXPECT_EQ(mapped.text_encoder[0].first, "text_model.final_layer_norm.weight");
  EXPECT_EQ(mapped.text_layout, TextEncoderLayout::ClipHF);

  t.push_back({"cond_stage_model.transformer.text_model.encoder.layers.0.bogus.weight", {16}});
  t.push_back({"cond_stage_model.unknown.weight", {16}});
  try {
    map_single_file_names(t);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("layers.0.bogus.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cond_stage_model.unknown.weight"), std::string::npos) << msg;
  }
}

TEST(NameMapClip, TransformersCheckpointsWithoutTextModelPrefix) {
  auto t = tiny_unet(2, 1, {true, false});
  t.push_back({"cond_stage_model.transformer.embeddings.token_embedding.weight", {100, 16}});
  t.push_back({"cond_stage_model.transformer.encoder.layers.3.mlp.fc2.bias", {16}});
  const auto mapped = map_single_file_names(t);
  std::vector<std::string> names;
  for (const auto& [n, s] : mapped.text_encoder) names.push_back(n);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"text_model.embeddings.token_embedding.weight",
                                             "text_model.encoder.layers.3.mlp.fc2.bias"}));
}

TEST(NameMapClip, OpenClipSplitsInProjAndDropsTheLastBlock) {
  auto names = tiny_unet(2, 1, {true, false});
  const std::string p = "cond_stage_model.model.";
  const int64_t d = 4;
  TensorMap file;
  std::vector<float> qkv(3 * d * d), bias(3 * d);
  for (size_t i = 0; i < qkv.size(); ++i) qkv[i] = float(i);
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = 100.0f + float(i);
  for (int n = 0; n < 2; ++n) {
    const std::string b = p + "transformer.resblocks." + std::to_string(n) + ".";
    file[b + "attn.in_proj_weight"] = Tensor::from_vector(qkv, {3 * d, d});
    file[b + "attn.in_proj_bias"] = Tensor::from_vector(bias, {3 * d});
    file[b + "ln_1.weight"] = Tensor::zeros({d});
    file[b + "mlp.c_fc.weight"] = Tensor::zeros({2 * d, d});
  }
  file[p + "positional_embedding"] = Tensor::zeros({77, d});
  file[p + "token_embedding.weight"] = Tensor::zeros({50, d});
  file[p + "ln_final.bias"] = Tensor::zeros({d});
  file[p + "text_projection"] = Tensor::zeros({d, d});
  file[p + "logit_scale"] = Tensor::zeros({});
  for (const auto& [n, t] : file) names.emplace_back(n, t.shape());

  const SingleFilePlan plan = plan_single_file(names, "sd2");
  EXPECT_EQ(plan.text_layout, TextEncoderLayout::OpenClip);
  EXPECT_EQ(plan.dropped_text_layers, 1);
  std::map<std::string, Tensor> text;
  for (const auto& m : plan.tensors)
    if (m.component == Component::TextEncoder) text[m.target] = apply_mapping(m, file.at(m.source));
  const std::string l0 = "text_model.encoder.layers.0.";
  std::vector<std::string> got;
  for (const auto& [n, t] : text) got.push_back(n);
  EXPECT_EQ(got, (std::vector<std::string>{
                     "text_model.embeddings.position_embedding.weight",
                     "text_model.embeddings.token_embedding.weight", l0 + "layer_norm1.weight",
                     l0 + "mlp.fc1.weight", l0 + "self_attn.k_proj.bias",
                     l0 + "self_attn.k_proj.weight", l0 + "self_attn.q_proj.bias",
                     l0 + "self_attn.q_proj.weight", l0 + "self_attn.v_proj.bias",
                     l0 + "self_attn.v_proj.weight", "text_model.final_layer_norm.bias"}));
  // q, k, v are the row blocks of in_proj, in that order.
  const auto k = text.at(l0 + "self_attn.k_proj.weight").to_float_vector();
  ASSERT_EQ(text.at(l0 + "self_attn.k_proj.weight").shape(), (Shape{d, d}));
  for (int64_t i = 0; i < d * d; ++i) EXPECT_EQ(k[size_t(i)], float(d * d + i));
  const auto vb = text.at(l0 + "self_attn.v_proj.bias").to_float_vector();
  for (int64_t i = 0; i < d; ++i) EXPECT_EQ(vb[size_t(i)], 100.0f + float(2 * d + i));
  EXPECT_EQ(std::count(plan.ignored.begin(), plan.ignored.end(), p + "text_projection"), 1);
  EXPECT_EQ(std::count(plan.ignored.begin(), plan.ignored.end(), p + "logit_scale"), 1);
}

// SDXL (generative-models): the base's CLIP at conditioner.embedders.0.transformer and OpenCLIP
// at .1.model, the refiner's OpenCLIP alone at .0.model; OpenCLIP keeps every block and its
// projection (transposed), the position ids and logit_scale are ignored.
TEST(NameMapSdxl, ConditionerEmbedders) {
  const int64_t d = 4, proj = 6;
  TensorMap file;
  std::vector<float> p(size_t(d * proj));
  for (size_t i = 0; i < p.size(); ++i) p[i] = float(i);
  file["conditioner.embedders.1.model.text_projection"] = Tensor::from_vector(p, {d, proj});
  file["conditioner.embedders.1.model.logit_scale"] = Tensor::zeros({});
  file["conditioner.embedders.1.model.transformer.resblocks.0.ln_1.weight"] = Tensor::zeros({d});
  file["conditioner.embedders.1.model.transformer.resblocks.1.ln_1.weight"] = Tensor::zeros({d});
  file["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"] =
      Tensor::zeros({1, 77});
  file["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"] =
      Tensor::zeros({8});
  auto names = tiny_unet(2, 1, {true, false});
  for (const auto& [n, t] : file) names.emplace_back(n, t.shape());

  const SingleFilePlan plan = plan_single_file(names, "sdxl");
  EXPECT_EQ(plan.text_layout, TextEncoderLayout::Conditioner);
  EXPECT_EQ(plan.dropped_text_layers, 0);
  std::map<std::string, Tensor> te1, te2;
  for (const auto& m : plan.tensors) {
    if (m.component == Component::TextEncoder) te1[m.target] = apply_mapping(m, file.at(m.source));
    if (m.component == Component::TextEncoder2) te2[m.target] = apply_mapping(m, file.at(m.source));
  }
  EXPECT_EQ(te1.size(), 1u);
  EXPECT_TRUE(te1.count("text_model.final_layer_norm.weight"));
  EXPECT_EQ(te2.size(), 3u);
  EXPECT_TRUE(te2.count("text_model.encoder.layers.1.layer_norm1.weight"));  // nothing dropped
  const Tensor& w = te2.at("text_projection.weight");
  ASSERT_EQ(w.shape(), (Shape{proj, d}));
  const auto v = w.to_float_vector();  // w[j][i] = P[i][j]
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < proj; ++j) EXPECT_EQ(v[size_t(j * d + i)], float(i * proj + j));
  EXPECT_EQ(plan.ignored.size(), 2u);

  // The refiner: OpenCLIP as the first embedder.
  NamedShapes refiner = tiny_unet(2, 1, {true, false});
  refiner.push_back({"conditioner.embedders.0.model.ln_final.weight", {d}});
  const MappedNames r = map_single_file_names(refiner);
  EXPECT_TRUE(r.text_encoder.empty());
  ASSERT_EQ(r.text_encoder_2.size(), 1u);
  EXPECT_EQ(r.text_encoder_2[0].first, "text_model.final_layer_norm.weight");

  // Two OpenCLIP embedders, unknown embedder names, SD1 and SDXL encoders together: errors.
  auto error_of = [](NamedShapes n) {
    try {
      map_single_file_names(n);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  NamedShapes two = refiner;
  two.push_back({"conditioner.embedders.1.model.ln_final.weight", {d}});
  EXPECT_NE(error_of(two).find("two text encoders"), std::string::npos) << error_of(two);
  NamedShapes unknown = refiner;
  unknown.push_back({"conditioner.embedders.2.vision.proj", {d}});
  EXPECT_NE(error_of(unknown).find("conditioner.embedders.2.vision.proj"), std::string::npos);
  NamedShapes mixed = refiner;
  mixed.push_back({"cond_stage_model.transformer.text_model.final_layer_norm.weight", {d}});
  EXPECT_NE(error_of(mixed).find("conditioner.embedders"), std::string::npos) << error_of(mixed);
}

TEST(NameMapVae, MapsLevelsAndReversesTheDecoder) {
  auto names = tiny_unet(2, 1, {true, false});
  const std::string p = "first_stage_model.";
  for (const char* n :
       {"encoder.down.0.block.1.nin_shortcut.weight", "encoder.down.1.downsample.conv.bias",
        "decoder.up.0.block.2.conv1.weight", "decoder.up.2.upsample.conv.weight",
        "decoder.mid.block_2.norm1.bias", "encoder.norm_out.weight", "post_quant_conv.weight"})
    names.push_back({p + n, {8}});
  names.push_back({p + "decoder.mid.attn_1.q.weight", {8, 8, 1, 1}});
  names.push_back({p + "decoder.mid.attn_1.norm.weight", {8}});
  const auto mapped = map_single_file_names(names);
  const std::map<std::string, Shape> vae(mapped.vae.begin(), mapped.vae.end());
  const std::map<std::string, Shape> want = {
      {"encoder.down_blocks.0.resnets.1.conv_shortcut.weight", {8}},
      {"encoder.down_blocks.1.downsamplers.0.conv.bias", {8}},
      {"decoder.up_blocks.2.resnets.2.conv1.weight", {8}},
      {"decoder.up_blocks.0.upsamplers.0.conv.weight", {8}},
      {"decoder.mid_block.resnets.1.norm1.bias", {8}},
      {"encoder.conv_norm_out.weight", {8}},
      {"post_quant_conv.weight", {8}},
      {"decoder.mid_block.attentions.0.to_q.weight", {8, 8}},
      {"decoder.mid_block.attentions.0.group_norm.weight", {8}}};
  EXPECT_EQ(vae, want);

  names.push_back({p + "decoder.mid.attn_1.bogus.weight", {8}});
  EXPECT_THROW(map_single_file_names(names), Error);
}

TEST(NameMapVae, LegacyFolderNames) {
  EXPECT_EQ(modern_vae_name("decoder.mid_block.attentions.0.query.weight"),
            "decoder.mid_block.attentions.0.to_q.weight");
  EXPECT_EQ(modern_vae_name("encoder.mid_block.attentions.0.proj_attn.bias"),
            "encoder.mid_block.attentions.0.to_out.0.bias");
  EXPECT_EQ(modern_vae_name("encoder.mid_block.attentions.0.to_k.bias"),
            "encoder.mid_block.attentions.0.to_k.bias");
}

TEST(NameMapApply, Conv1x1ToLinearKeepsTheValues) {
  const TensorMapping m{"q", Component::Vae, "to_q.weight", TensorOp::Conv1x1ToLinear};
  const Tensor src = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {3, 2, 1, 1});
  const Tensor out = apply_mapping(m, src);
  EXPECT_EQ(out.shape(), (Shape{3, 2}));
  EXPECT_EQ(out.to_float_vector(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_THROW(apply_mapping(m, Tensor::zeros({3, 2, 3, 3})), Error);
}

TEST(CheckTensorNames, ListsMissingUnexpectedAndMismatched) {
  TensorMap got;
  got["a.weight"] = Tensor::zeros({2, 3});
  got["b.weight"] = Tensor::zeros({4});
  got["extra.bias"] = Tensor::zeros({1});
  const NamedShapes expected = {{"a.weight", {2, 3}}, {"b.weight", {5}}, {"c.weight", {7}}};
  try {
    check_tensor_names(got, expected, "unet of x.safetensors");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("unet of x.safetensors", 0), 0u) << msg;
    EXPECT_NE(msg.find("1 missing, 1 unexpected, 1 with the wrong shape"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("c.weight [7]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("extra.bias [1]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("b.weight: expected [5], got [4]"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("a.weight"), std::string::npos) << msg;
  }
  got.erase("extra.bias");
  got["b.weight"] = Tensor::zeros({5});
  got["c.weight"] = Tensor::zeros({7});
  EXPECT_NO_THROW(check_tensor_names(got, expected, "x"));
}

std::string error_of(const std::string& path) {
  try {
    open_model(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(OpenModel, ClearErrors) {
  const fs::path dir = test::temp_dir();
  const std::string missing = (dir / "nope.safetensors").string();
  EXPECT_NE(error_of(missing).find("does not exist"), std::string::npos) << error_of(missing);
  EXPECT_NE(error_of(missing).find(missing), std::string::npos);

  const fs::path folder = dir / "not_diffusers";
  fs::create_directories(folder / "unet");
  EXPECT_NE(error_of(folder.string()).find("without model_index.json"), std::string::npos)
      << error_of(folder.string());

  const std::string not_sd = (dir / "other.safetensors").string();
  save_safetensors(not_sd, {{"encoder.layer.0.weight", Tensor::zeros({2, 2})}});
  EXPECT_NE(error_of(not_sd).find("not a Stable Diffusion checkpoint"), std::string::npos)
      << error_of(not_sd);

  // A diffusers folder whose unet has a config but no weights.
  const fs::path half = dir / "half";
  fs::create_directories(half / "unet");
  std::ofstream(half / "model_index.json") << R"({"unet": ["diffusers", "UNet2DConditionModel"]})";
  std::ofstream(half / "unet" / "config.json") << "{}";
  const std::string msg = error_of(half.string());
  EXPECT_NE(msg.find("no weights file"), std::string::npos) << msg;
  EXPECT_NE(msg.find("diffusion_pytorch_model.safetensors"), std::string::npos) << msg;
}

TEST(OpenModel, FolderPadTokenObjectAndFp16Variant) {
  const fs::path dir = fs::path(test::temp_dir()) / "folder_variant";
  fs::create_directories(dir / "unet");
  fs::create_directories(dir / "tokenizer");
  std::ofstream(dir / "model_index.json") << R"({"unet": ["diffusers", "UNet2DConditionModel"]})";
  std::ofstream(dir / "unet" / "config.json") << R"({"in_channels": 4})";
  save_safetensors((dir / "unet" / "diffusion_pytorch_model.fp16.safetensors").string(),
                   {{"conv_in.weight", Tensor::zeros({8, 4, 3, 3}).to(DType::F16)}});
  std::ofstream(dir / "tokenizer" / "special_tokens_map.json")
      << R"({"pad_token": {"content": "!", "lstrip": false}})";
  std::ofstream(dir / "tokenizer" / "tokenizer_config.json") << R"({"pad_token": "<|endoftext|>"})";
  const ModelFiles m = open_model(dir.string());
  EXPECT_EQ(m.layout, ModelLayout::DiffusersFolder);
  EXPECT_EQ(m.tokenizer_pad_token, "!");
  ASSERT_EQ(m.unet.count("conv_in.weight"), 1u);
  EXPECT_EQ(m.unet.at("conv_in.weight").shape(), (Shape{8, 4, 3, 3}));
  EXPECT_EQ(m.unet_config.at("in_channels"), 4);
  EXPECT_TRUE(m.vae.empty());
  EXPECT_TRUE(m.vae_config.is_null());
}

TEST(OpenModel, ShardedTextEncoderAndLegacyNames) {
  const fs::path dir = fs::path(test::temp_dir()) / "folder_sharded";
  fs::create_directories(dir / "unet");
  fs::create_directories(dir / "vae");
  fs::create_directories(dir / "text_encoder");
  std::ofstream(dir / "model_index.json") << "{}";
  for (const char* c : {"unet", "vae", "text_encoder"})
    std::ofstream(dir / c / "config.json") << "{}";
  save_safetensors((dir / "unet" / "diffusion_pytorch_model.safetensors").string(),
                   {{"conv_in.weight", Tensor::zeros({8, 4, 3, 3})}});
  // An older diffusers VAE: query/proj_attn names, here with 1x1-convolution weights.
  save_safetensors((dir / "vae" / "diffusion_pytorch_model.safetensors").string(),
                   {{"decoder.mid_block.attentions.0.query.weight",
                     Tensor::from_vector({1, 2, 3, 4}, {2, 2, 1, 1})},
                    {"decoder.mid_block.attentions.0.proj_attn.bias", Tensor::zeros({2})}});
  const std::string te = "text_model.embeddings.";
  save_safetensors((dir / "text_encoder" / "model-00001-of-00002.safetensors").string(),
                   {{te + "token_embedding.weight", Tensor::full({10, 4}, 1.5f)},
                    {te + "position_ids", Tensor::from_i64({0, 1, 2}, {1, 3})}});
  save_safetensors((dir / "text_encoder" / "model-00002-of-00002.safetensors").string(),
                   {{te + "position_embedding.weight", Tensor::zeros({3, 4})}});
  std::ofstream(dir / "text_encoder" / "model.safetensors.index.json") << R"({"weight_map": {
      "text_model.embeddings.token_embedding.weight": "model-00001-of-00002.safetensors",
      "text_model.embeddings.position_ids": "model-00001-of-00002.safetensors",
      "text_model.embeddings.position_embedding.weight": "model-00002-of-00002.safetensors"}})";
  const ModelFiles m = open_model(dir.string());
  std::vector<std::string> text;
  for (const auto& [n, t] : m.text_encoder) text.push_back(n);
  EXPECT_EQ(text, (std::vector<std::string>{te + "position_embedding.weight",
                                            te + "token_embedding.weight"}));
  EXPECT_EQ(m.text_encoder.at(te + "token_embedding.weight").to_float_vector()[7], 1.5f);
  EXPECT_EQ(m.ignored, (std::vector<std::string>{"text_encoder/" + te + "position_ids"}));
  ASSERT_EQ(m.vae.count("decoder.mid_block.attentions.0.to_q.weight"), 1u);
  const Tensor q = m.vae.at("decoder.mid_block.attentions.0.to_q.weight");
  EXPECT_EQ(q.shape(), (Shape{2, 2}));
  EXPECT_EQ(q.to_float_vector(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(m.vae.count("decoder.mid_block.attentions.0.to_out.0.bias"), 1u);

  // A shard that lacks a tensor its index promises.
  std::ofstream(dir / "text_encoder" / "model.safetensors.index.json")
      << R"({"weight_map": {"text_model.x": "model-00002-of-00002.safetensors"}})";
  EXPECT_THROW(open_model(dir.string()), Error);
}

}  // namespace
}  // namespace diffuse::io
