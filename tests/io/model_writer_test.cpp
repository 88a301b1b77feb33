// save_model: every reference model form written as a diffusers folder and as a single file
// must read back to the same canonical tensors (bit for bit) and configs; the single-file
// names of the full-size manifests must come back exactly; a failed write leaves nothing behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "io/mmap_file.h"
#include "io/model_writer.h"
#include "io/name_map_inverse.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "manifests.h"
#include "model_forms.h"
#include "pipeline/model_export.h"
#include "tensor_maps_testing.h"
#include "test_util.h"
#include "tokenizer/clip_tokenizer.h"

namespace diffuse::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using test::expect_same_components;
using test::expect_same_tensors;
using test::fresh_dir;
using test::same_bits;

std::set<std::string> entries(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    out.insert(fs::relative(e.path(), dir).string());
  return out;
}

class ModelWriterForms : public ::testing::TestWithParam<test::ModelForm> {};

// open -> diffusers folder -> open: the same tensors, bit for bit, and the same configs.
TEST_P(ModelWriterForms, DiffusersFolderRoundTrip) {
  const test::ModelForm& f = GetParam();
  auto bundle = test::open_form(f);
  const ModelFiles files = pipeline::files_for_export(*bundle, f.config_dir);
  const std::string out = fresh_dir("diffusers-" + test::form_test_name(f)) + "/model";
  save_model(files, out, ModelLayout::DiffusersFolder);

  const ModelFiles back = open_model(out);
  EXPECT_EQ(back.layout, ModelLayout::DiffusersFolder);
  expect_same_components(back, files);
  EXPECT_EQ(back.unet_config, files.unet_config);
  EXPECT_EQ(back.vae_config, files.vae_config);
  EXPECT_EQ(back.text_encoder_config, files.text_encoder_config);
  EXPECT_EQ(back.scheduler_config, files.scheduler_config);
  EXPECT_EQ(back.tokenizer_vocab, files.tokenizer_vocab);
  EXPECT_EQ(back.tokenizer_merges, files.tokenizer_merges);
  EXPECT_EQ(back.tokenizer_pad_token, files.tokenizer_pad_token);
  EXPECT_FALSE(back.tokenizer_pad_token.empty());
  // The folder carries its vocabulary (other tools load it whole), which tokenizes as the
  // bundle does.
  EXPECT_FALSE(back.tokenizer_vocab.empty());
  EXPECT_FALSE(back.tokenizer_merges.empty());
  const auto written =
      tokenizer::ClipTokenizer::from_pretrained_dir(out + "/tokenizer", test::data_dir());
  EXPECT_EQ(written.vocab_size(), bundle->tokenizer().vocab_size());
  for (const char* p : {"a photograph of an astronaut riding a horse", "world!!! don't 123",
                        "Caf\u00e9 \u00fcber \u6771\u4eac <|endoftext|> x"})
    EXPECT_EQ(written.encode_padded(p), bundle->tokenizer().encode_padded(p)) << p;
  if (f.kind == "diffusers") {  // the folder's own configs are written as they were
    const ModelFiles orig = open_model(f.path);
    EXPECT_EQ(back.unet_config, orig.unet_config);
    EXPECT_EQ(back.text_encoder_config, orig.text_encoder_config);
    EXPECT_EQ(back.model_index, orig.model_index);
  }
  // The bundle resolves the same model from the written folder.
  auto again = pipeline::ModelBundle::open(out);
  EXPECT_EQ(again->family().id, bundle->family().id);
  EXPECT_EQ(again->inpaint, bundle->inpaint);
  EXPECT_EQ(again->prediction_type, bundle->prediction_type);
  EXPECT_EQ(again->unet_config.to_json(), bundle->unet_config.to_json());
  EXPECT_EQ(again->vae_config.to_json(), bundle->vae_config.to_json());
  EXPECT_EQ(again->text_config.to_json(), bundle->text_config.to_json());
  EXPECT_EQ(again->text_config.published_layers(), bundle->text_config.published_layers());
}

// open -> single file -> open: the same canonical tensors. A single file written from a single
// file holds the source's tensors (those the loader does not ignore) with the same bytes.
TEST_P(ModelWriterForms, SingleFileRoundTrip) {
  const test::ModelForm& f = GetParam();
  const ModelFiles files = open_model(f.path);
  const std::string out = fresh_dir("single-" + test::form_test_name(f)) + "/model.safetensors";
  save_model(files, out, ModelLayout::SingleFile);

  const ModelFiles back = open_model(out);
  EXPECT_EQ(back.layout, ModelLayout::SingleFile);
  expect_same_components(back, files);
  EXPECT_TRUE(back.ignored.empty());
  const bool sd2 = f.model.find("sd2") != std::string::npos;
  EXPECT_EQ(back.text_layout, sd2 ? TextEncoderLayout::OpenClip : TextEncoderLayout::ClipHF);
  EXPECT_EQ(back.dropped_text_layers, sd2 ? 1 : 0);

  Metadata meta;
  const TensorMap written = load_safetensors(out, &meta);
  EXPECT_EQ(meta["format"], "pt");
  if (f.kind == "diffusers") return;
  const TensorMap source = load_weights(f.path);
  const std::set<std::string> ignored(files.ignored.begin(), files.ignored.end());
  const LdmLayoutPlan plan =
      plan_ldm_layout(names_and_shapes(files.unet), names_and_shapes(files.vae),
                      names_and_shapes(files.text_encoder), back.text_layout);
  EXPECT_EQ(plan.padding.size() > 0, sd2);
  std::set<std::string> padding;
  for (const auto& [name, shape] : plan.padding) padding.insert(name);
  size_t compared = 0;
  for (const auto& [name, t] : source) {
    if (ignored.count(name)) continue;
    auto it = written.find(name);
    ASSERT_NE(it, written.end()) << name << " was not written back";
    ++compared;
    // The unused OpenCLIP block is written as zeros; the rest is the source, bit for bit.
    if (!padding.count(name)) {
      EXPECT_TRUE(same_bits(it->second, t)) << name;
      continue;
    }
    EXPECT_EQ(it->second.shape(), t.shape()) << name;
    for (float v : it->second.to_float_vector()) ASSERT_EQ(v, 0.0f) << name;
  }
  EXPECT_EQ(compared, written.size()) << "the written file holds tensors the source did not";
}

INSTANTIATE_TEST_SUITE_P(Forms, ModelWriterForms, ::testing::ValuesIn(test::all_model_forms()),
                         [](const auto& info) { return test::form_test_name(info.param); });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ModelWriterForms);

// The full-size manifests' single-file names, mapped to the canonical ones and written back,
// are the manifest's names (and shapes) exactly, less the tensors the loader ignores.
TEST(ModelWriter, FullSizeManifestNamesComeBack) {
  DF_REQUIRE_REF(path, "manifests/manifests.json");
  const std::map<std::string, NamedShapes> singles =
      single_file_manifests(json::parse(read_text_file(path)));
  ASSERT_FALSE(singles.empty()) << "no single_file manifests";
  for (const auto& [model, names] : singles) {
    SCOPED_TRACE(model);
    const MappedNames mapped = map_single_file_names(names, model);
    // No weights: every canonical tensor views one shared f16 buffer of the largest size.
    int64_t largest = 0;
    for (const auto& [name, shape] : names) largest = std::max(largest, shape_numel(shape));
    const Tensor buffer = Tensor::zeros({largest}, DType::F16);
    auto fake = [&](const NamedShapes& canonical) {
      TensorMap out;
      for (const auto& [name, shape] : canonical)
        out[name] = Tensor::from_blob(buffer.raw_data(), shape, DType::F16, buffer.storage());
      return out;
    };
    ModelFiles files;
    files.unet = fake(mapped.unet);
    files.vae = fake(mapped.vae);
    files.text_encoder = fake(mapped.text_encoder);
    files.text_encoder_2 = fake(mapped.text_encoder_2);
    files.text_layout = mapped.text_layout;
    TensorMap written;
    ASSERT_NO_THROW(written = single_file_tensors(files, single_file_text_layout(files)));
    std::map<std::string, Shape> got;
    for (const auto& [name, t] : written) got[name] = t.shape();
    const LdmLayoutPlan plan = plan_ldm_layout(mapped.unet, mapped.vae, mapped.text_encoder,
                                               mapped.text_layout, mapped.text_encoder_2);
    const std::set<std::string> ignored(mapped.ignored.begin(), mapped.ignored.end());
    std::map<std::string, Shape> want;
    for (const auto& [name, shape] : names)
      if (!ignored.count(name)) want[name] = shape;
    for (const auto& [name, shape] : want) {
      auto it = got.find(name);
      if (it == got.end())
        ADD_FAILURE() << name << " is not written";
      else
        EXPECT_EQ(it->second, shape) << name;
    }
    for (const auto& [name, shape] : got) EXPECT_TRUE(want.count(name)) << name << " is extra";
    // Only the unused OpenCLIP block is padding.
    EXPECT_EQ(plan.padding.empty(), mapped.dropped_text_layers == 0);
    for (const auto& [name, shape] : plan.padding)
      EXPECT_NE(name.find("resblocks."), std::string::npos) << name;
  }
}

// The zero-filled OpenCLIP block written for SD2 is the identity: a 4-block encoder read from
// the written file (nothing dropped) gives the 3-block encoder's output exactly.
TEST(ModelWriter, OpenClipPaddingBlockIsTheIdentity) {
  const std::vector<test::ModelForm> forms = test::all_model_forms();
  const auto f = std::find_if(forms.begin(), forms.end(), [](const test::ModelForm& x) {
    return x.kind == "diffusers" &&
           open_model(x.path).text_encoder_config.value("hidden_act", "") == "gelu";
  });
  if (f == forms.end()) GTEST_SKIP() << "no diffusers folder of an OpenCLIP (SD2) model";
  const ModelFiles files = open_model(f->path);
  const std::string out = fresh_dir("padding") + "/sd2.safetensors";
  save_model(files, out, ModelLayout::SingleFile);

  const std::string prefix = "cond_stage_model.model.";
  const TensorMap all = load_weights(out);
  NamedShapes text;
  for (const auto& [name, t] : all)
    if (name.starts_with(prefix)) text.emplace_back(name.substr(prefix.size()), t.shape());
  std::vector<TensorMapping> maps;
  std::vector<std::string> unmapped;
  map_open_clip(text, /*drop_last=*/0, maps, unmapped);
  ASSERT_TRUE(unmapped.empty());
  TensorMap every_block;
  for (const TensorMapping& m : maps)
    every_block[m.target] = apply_mapping(m, all.at(prefix + m.source)).to(DType::F32);
  TensorMap kept;
  for (const auto& [name, t] : files.text_encoder) kept[name] = t.to(DType::F32);

  const models::ClipTextConfig config =
      models::ClipTextConfig::from_json(files.text_encoder_config);
  models::ClipTextConfig padded = config;
  padded.num_hidden_layers += 1;
  models::ClipTextModel published(config), with_padding(padded);
  published.load_state_dict(kept, "text encoder");
  with_padding.load_state_dict(every_block, "padded text encoder");
  std::vector<int64_t> ids(size_t(config.max_position_embeddings));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int64_t(i * 7919 % config.vocab_size);
  const Tensor tokens = Tensor::from_i64(ids, {1, int64_t(ids.size())});
  const Tensor want = published.forward(tokens).last_hidden_state;
  const Tensor got = with_padding.forward(tokens).last_hidden_state;
  EXPECT_EQ(test::rel_error(got, want), 0.0);
}

// ---- writing safely ----

// A small model that any diffusers writer accepts: canonical names need no mapping there.
ModelFiles small_folder_model() {
  ModelFiles m;
  m.unet["conv_in.weight"] = Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4, 1, 1});
  m.unet["conv_in.bias"] = Tensor::from_vector({0.5f, -0.5f}, {2});
  m.unet_config = {{"_class_name", "UNet2DConditionModel"}, {"in_channels", 4}};
  return m;
}

TEST(ModelWriter, LoneComponentFolder) {
  const std::string out = fresh_dir("lone") + "/unet-only";
  save_model(small_folder_model(), out, ModelLayout::DiffusersFolder);
  EXPECT_EQ(entries(out), (std::set<std::string>{"model_index.json", "unet", "unet/config.json",
                                                 "unet/diffusion_pytorch_model.safetensors"}));
  const ModelFiles back = open_model(out);
  expect_same_tensors(back.unet, small_folder_model().unet, "unet");
  EXPECT_TRUE(back.vae.empty());
  EXPECT_TRUE(back.model_index["vae"][0].is_null());
  EXPECT_TRUE(back.model_index["text_encoder"][0].is_null());
  EXPECT_EQ(back.model_index["unet"], json({"diffusers", "UNet2DConditionModel"}));

  // A source index's components that are not written are listed as absent.
  ModelFiles m = small_folder_model();
  m.model_index = {{"_class_name", "StableDiffusionPipeline"},
                   {"safety_checker", {"stable_diffusion", "StableDiffusionSafetyChecker"}},
                   {"unet", {"diffusers", "UNet2DConditionModel"}},
                   {"requires_safety_checker", true}};
  save_model(m, out, ModelLayout::DiffusersFolder);
  const json index = open_model(out).model_index;
  EXPECT_TRUE(index["safety_checker"][0].is_null());
  EXPECT_EQ(index["unet"], json({"diffusers", "UNet2DConditionModel"}));
  EXPECT_EQ(index["requires_safety_checker"], true);
}

TEST(ModelWriter, FailedWriteLeavesTheTargetAsItWas) {
  const std::string dir = fresh_dir("atomic");
  const std::string out = dir + "/model";
  save_model(small_folder_model(), out, ModelLayout::DiffusersFolder);
  const std::set<std::string> before = entries(out);
  const std::string index_before = read_text_file(out + "/model_index.json");

  // The UNet is written, then the VAE fails (an undefined tensor).
  ModelFiles bad = small_folder_model();
  bad.unet["conv_in.bias"] = Tensor::from_vector({9, 9}, {2});
  bad.vae["decoder.conv_in.weight"] = Tensor();
  bad.vae_config = json::object();
  EXPECT_THROW(save_model(bad, out, ModelLayout::DiffusersFolder), Error);
  EXPECT_EQ(entries(out), before);
  EXPECT_EQ(read_text_file(out + "/model_index.json"), index_before);
  EXPECT_TRUE(same_bits(open_model(out).unet.at("conv_in.bias"),
                        small_folder_model().unet.at("conv_in.bias")));
  // No temporary folder or file is left beside it.
  EXPECT_EQ(entries(dir).size(), before.size() + 1);
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "model");

  // A single file whose tensors have no place in the LDM layout: nothing is written.
  ModelFiles stray = small_folder_model();
  stray.unet["not_a_unet_tensor.weight"] = Tensor::from_vector({1}, {1});
  EXPECT_THROW(save_model(stray, dir + "/x.safetensors", ModelLayout::SingleFile), Error);
  EXPECT_FALSE(fs::exists(dir + "/x.safetensors"));
  // A component without its config.
  ModelFiles no_config = small_folder_model();
  no_config.unet_config = json();
  EXPECT_THROW(save_model(no_config, dir + "/y", ModelLayout::DiffusersFolder), Error);
  EXPECT_FALSE(fs::exists(dir + "/y"));
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "model");
}

TEST(ModelWriter, ReplacesOnlyModelFolders) {
  const std::string dir = fresh_dir("replace");
  // An existing model folder is replaced as a whole (its stray files go too).
  save_model(small_folder_model(), dir + "/model", ModelLayout::DiffusersFolder);
  std::ofstream(dir + "/model/stale.txt") << "old";
  ModelFiles next = small_folder_model();
  next.unet["conv_in.bias"] = Tensor::from_vector({7, 8}, {2});
  save_model(next, dir + "/model/", ModelLayout::DiffusersFolder);
  EXPECT_FALSE(fs::exists(dir + "/model/stale.txt"));
  EXPECT_EQ(open_model(dir + "/model").unet.at("conv_in.bias").to_float_vector(),
            (std::vector<float>{7, 8}));

  // Anything else is refused and left alone.
  fs::create_directories(dir + "/photos");
  std::ofstream(dir + "/photos/cat.png") << "not a model";
  try {
    save_model(next, dir + "/photos", ModelLayout::DiffusersFolder);
    ADD_FAILURE() << "replaced a folder that is not a model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a diffusers model folder"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(fs::exists(dir + "/photos/cat.png"));
  EXPECT_THROW(save_model(next, dir + "/photos", ModelLayout::SingleFile), Error);
  EXPECT_TRUE(fs::exists(dir + "/photos/cat.png"));
  EXPECT_THROW(save_model(next, dir + "/missing/sub/model", ModelLayout::DiffusersFolder), Error);
  EXPECT_FALSE(fs::exists(dir + "/missing"));
}

TEST(ModelWriter, DtypeConversion) {
  ModelFiles m = small_folder_model();
  m.unet["ids"] = Tensor::from_i64({1, 2, 3}, {3});
  m.unet_config["torch_dtype"] = "float32";
  for (DType dt : {DType::F16, DType::BF16, DType::F32}) {
    SCOPED_TRACE(dtype_name(dt));
    SaveOptions o;
    o.dtype = dt;
    o.metadata["note"] = "converted";
    const std::string out = fresh_dir(str("dtype-", dtype_name(dt))) + "/m";
    save_model(m, out, ModelLayout::DiffusersFolder, o);
    Metadata meta;
    const TensorMap back =
        load_safetensors(out + "/unet/diffusion_pytorch_model.safetensors", &meta);
    EXPECT_EQ(meta["note"], "converted");
    EXPECT_EQ(meta["format"], "pt");
    for (const char* name : {"conv_in.weight", "conv_in.bias"}) {
      EXPECT_EQ(back.at(name).dtype(), dt) << name;
      EXPECT_TRUE(same_bits(back.at(name), m.unet.at(name).to(dt))) << name;
    }
    EXPECT_EQ(back.at("ids").dtype(), DType::I64);  // integers are never converted
    EXPECT_EQ(open_model(out).unet_config["torch_dtype"], dt == DType::F16    ? "float16"
                                                          : dt == DType::BF16 ? "bfloat16"
                                                                              : "float32");
  }
  EXPECT_EQ(parse_save_dtype("fp16"), DType::F16);
  EXPECT_EQ(parse_save_dtype("bf16"), DType::BF16);
  EXPECT_EQ(parse_save_dtype("float32"), DType::F32);
  EXPECT_THROW(parse_save_dtype("int8"), Error);
  SaveOptions bad;
  bad.dtype = DType::I64;
  EXPECT_THROW(save_model(m, fresh_dir("dtype-bad") + "/m", ModelLayout::DiffusersFolder, bad),
               Error);
}

// f16 single file -> f32 diffusers folder: the values are kept exactly.
TEST(ModelWriter, SingleFileToF32Folder) {
  for (const test::ModelForm& f : test::all_model_forms()) {
    if (f.kind != "safetensors") continue;
    auto bundle = test::open_form(f);
    SaveOptions o;
    o.dtype = DType::F32;
    const std::string out = fresh_dir("f32-" + test::form_test_name(f)) + "/m";
    save_model(pipeline::files_for_export(*bundle, f.config_dir), out, ModelLayout::DiffusersFolder,
               o);
    const ModelFiles back = open_model(out);
    for (const auto& [name, t] : bundle->files.unet) {
      ASSERT_EQ(back.unet.at(name).dtype(), DType::F32) << name;
      EXPECT_EQ(back.unet.at(name).to_float_vector(), t.to_float_vector()) << name;
    }
    return;
  }
  GTEST_SKIP() << "no single-file model in the reference dir";
}

// ---- configs ----

// Each field to_json writes that the published config also has carries the published value,
// and from_json(to_json()) gives the config back.
TEST(ConfigJson, MatchesThePublishedFieldsAndRoundTrips) {
  int checked = 0;
  for (const std::string& model : test::reference_models()) {
    const fs::path dir = fs::path(test::reference_dir()) / model / "diffusers";
    if (!fs::exists(dir / "model_index.json")) continue;
    SCOPED_TRACE(model);
    auto compare = [&](const json& published, const json& ours) {
      for (const auto& [key, value] : ours.items())
        if (published.contains(key)) {
          EXPECT_EQ(value, published[key]) << key;
        }
    };
    const json unet = json::parse(read_text_file((dir / "unet" / "config.json").string()));
    const json vae = json::parse(read_text_file((dir / "vae" / "config.json").string()));
    const json text = json::parse(read_text_file((dir / "text_encoder" / "config.json").string()));
    const json u = models::UNetConfig::from_json(unet).to_json();
    const json v = models::VaeConfig::from_json(vae).to_json();
    const json t = models::ClipTextConfig::from_json(text).to_json();
    compare(unet, u);
    compare(vae, v);
    compare(text, t);
    EXPECT_EQ(models::UNetConfig::from_json(u).to_json(), u);
    EXPECT_EQ(models::VaeConfig::from_json(v).to_json(), v);
    EXPECT_EQ(models::ClipTextConfig::from_json(t).to_json(), t);
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no diffusers folder in the reference dir";
}

TEST(ConfigJson, NonDefaultFieldsRoundTrip) {
  models::UNetConfig u;
  u.in_channels = 9;
  u.block_out_channels = {32, 64, 96};
  u.down_has_attention = {true, false, true};
  u.up_has_attention = {false, true, false};
  u.layers_per_block = 3;
  u.transformer_layers_per_block = {2, 1, 3};
  u.reverse_transformer_layers_per_block = {{3, 3, 2, 1}, {1, 1, 1, 1}, {2, 2, 2, 2}};
  u.mid_block_has_attention = false;
  u.addition_embed_type = "text_time";
  u.addition_time_embed_dim = 8;
  u.projection_class_embeddings_input_dim = 48 + 6 * 8;
  u.heads = {1, 3, 5};
  u.cross_attention_dim = 48;
  u.use_linear_projection = true;
  u.upcast_attention = true;
  u.norm_num_groups = 16;
  u.norm_eps = 1e-6f;
  u.freq_shift = 1;
  const models::UNetConfig u2 = models::UNetConfig::from_json(u.to_json());
  EXPECT_EQ(u2.to_json(), u.to_json());
  EXPECT_EQ(u2.heads, u.heads);
  EXPECT_EQ(u2.down_has_attention, u.down_has_attention);
  EXPECT_EQ(u2.up_has_attention, u.up_has_attention);
  EXPECT_EQ(u2.norm_eps, u.norm_eps);
  EXPECT_EQ(u2.freq_shift, u.freq_shift);
  EXPECT_EQ(u2.transformer_layers_per_block, u.transformer_layers_per_block);
  EXPECT_EQ(u2.reverse_transformer_layers_per_block, u.reverse_transformer_layers_per_block);
  EXPECT_EQ(u2.mid_block_has_attention, false);
  EXPECT_EQ(u2.addition_time_embed_dim, 8);
  EXPECT_EQ(u2.projection_class_embeddings_input_dim, u.projection_class_embeddings_input_dim);
  EXPECT_EQ(u.to_json()["norm_eps"].dump(), "1e-06");

  models::VaeConfig v;
  v.block_out_channels = {16, 32};
  v.latent_channels = 8;
  v.scaling_factor = 0.13025f;
  v.use_quant_conv = false;
  const models::VaeConfig v2 = models::VaeConfig::from_json(v.to_json());
  EXPECT_EQ(v2.to_json(), v.to_json());
  EXPECT_EQ(v2.scaling_factor, v.scaling_factor);
  EXPECT_EQ(v2.use_quant_conv, false);
  EXPECT_EQ(v.to_json()["scaling_factor"].dump(), "0.13025");

  models::ClipTextConfig c;
  c.hidden_size = 1024;
  c.num_hidden_layers = 23;
  c.num_attention_heads = 16;
  c.hidden_act = "gelu";
  const models::ClipTextConfig c2 = models::ClipTextConfig::from_json(c.to_json());
  EXPECT_EQ(c2.to_json(), c.to_json());
  EXPECT_EQ(c2.num_hidden_layers, 23);
  EXPECT_EQ(c2.hidden_act, "gelu");
}

}  // namespace
}  // namespace diffuse::io
