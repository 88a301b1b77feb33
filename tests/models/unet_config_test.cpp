// UNetConfig: the diffusers fields it honours (SDXL's per-level transformer depth and added
// embeddings), the ones it refuses by name, and the structure read back from tensor shapes,
// including distilled SDXL variants (fewer transformer blocks, asymmetric up levels, a mid
// block without attention) through the single-file name maps. ClipTextConfig's projection.
#include <gtest/gtest.h>

#include "io/name_map_check.h"
#include "io/name_map_inverse.h"
#include "models/clip/clip_text_model.h"
#include "models/unet/unet_2d_condition.h"
#include "tensor_maps_testing.h"
#include "test_util.h"

using namespace diffuse;
using json = nlohmann::json;

namespace {

using test::parameter_shapes;
using test::shape_only;

// SDXL 1.0 base's published unet/config.json fields that matter here.
json sdxl_base_config() {
  return json::parse(R"({
    "_class_name": "UNet2DConditionModel", "act_fn": "silu",
    "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280], "center_input_sample": false,
    "class_embed_type": null, "class_embeddings_concat": false, "conv_in_kernel": 3,
    "conv_out_kernel": 3, "cross_attention_dim": 2048, "cross_attention_norm": null,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": false, "encoder_hid_dim": null,
    "encoder_hid_dim_type": null, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
    "layers_per_block": 2, "mid_block_only_cross_attention": null,
    "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05, "norm_num_groups": 32, "num_attention_heads": null,
    "num_class_embeds": null, "only_cross_attention": false, "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816, "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": false, "resnet_time_scale_shift": "default", "sample_size": 128,
    "time_cond_proj_dim": null, "time_embedding_act_fn": null, "time_embedding_dim": null,
    "time_embedding_type": "positional", "timestep_post_act": null,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": null, "use_linear_projection": true})");
}

void expect_same(const models::UNetConfig& a, const models::UNetConfig& b) {
  EXPECT_EQ(a.in_channels, b.in_channels);
  EXPECT_EQ(a.out_channels, b.out_channels);
  EXPECT_EQ(a.block_out_channels, b.block_out_channels);
  EXPECT_EQ(a.down_has_attention, b.down_has_attention);
  EXPECT_EQ(a.up_has_attention, b.up_has_attention);
  EXPECT_EQ(a.layers_per_block, b.layers_per_block);
  EXPECT_EQ(a.transformer_layers_per_block, b.transformer_layers_per_block);
  EXPECT_EQ(a.reverse_transformer_layers_per_block, b.reverse_transformer_layers_per_block);
  EXPECT_EQ(a.mid_block_has_attention, b.mid_block_has_attention);
  EXPECT_EQ(a.heads, b.heads);
  EXPECT_EQ(a.cross_attention_dim, b.cross_attention_dim);
  EXPECT_EQ(a.use_linear_projection, b.use_linear_projection);
  EXPECT_EQ(a.addition_embed_type, b.addition_embed_type);
  EXPECT_EQ(a.addition_time_embed_dim, b.addition_time_embed_dim);
  EXPECT_EQ(a.projection_class_embeddings_input_dim, b.projection_class_embeddings_input_dim);
}

std::string error_of(const json& j) {
  try {
    models::UNetConfig::from_json(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(UNetConfig, SdxlConfigReadsAndRoundTrips) {
  const auto c = models::UNetConfig::from_json(sdxl_base_config());
  EXPECT_EQ(c.transformer_layers_per_block, (std::vector<int64_t>{1, 2, 10}));
  EXPECT_EQ(c.mid_transformer_layers(), 10);
  EXPECT_EQ(c.up_transformer_layers(0, 2), 10);  // up levels take the depths reversed
  EXPECT_EQ(c.up_transformer_layers(1, 0), 2);
  EXPECT_EQ(c.down_has_attention, (std::vector<bool>{false, true, true}));
  EXPECT_EQ(c.heads, (std::vector<int64_t>{5, 10, 20}));
  EXPECT_TRUE(c.has_text_time());
  EXPECT_EQ(c.addition_time_embed_dim, 256);
  EXPECT_EQ(c.projection_class_embeddings_input_dim, 2816);
  const json j = c.to_json();
  EXPECT_EQ(j["transformer_layers_per_block"], json({1, 2, 10}));
  EXPECT_EQ(j["addition_embed_type"], "text_time");
  EXPECT_EQ(j["addition_time_embed_dim"], 256);
  EXPECT_EQ(j["projection_class_embeddings_input_dim"], 2816);
  expect_same(models::UNetConfig::from_json(j), c);

  // An SD1 config has none of it, and says so.
  models::UNetConfig sd1;
  const json j1 = sd1.to_json();
  EXPECT_TRUE(j1["addition_embed_type"].is_null());
  EXPECT_EQ(j1["transformer_layers_per_block"], 1);
  expect_same(models::UNetConfig::from_json(j1), sd1);
}

TEST(UNetConfig, AsymmetricDepthsRoundTrip) {
  json j = sdxl_base_config();
  j["transformer_layers_per_block"] = json::parse("[1, [2, 2], [4, 4]]");
  j["reverse_transformer_layers_per_block"] = json::parse("[[4, 4, 10], [2, 1, 1], 1]");
  j["mid_block_type"] = "UNetMidBlock2D";
  const auto c = models::UNetConfig::from_json(j);
  EXPECT_EQ(c.transformer_layers_per_block, (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(c.up_transformer_layers(0, 2), 10);
  EXPECT_EQ(c.up_transformer_layers(1, 1), 1);
  EXPECT_EQ(c.up_transformer_layers(2, 0), 1);
  EXPECT_FALSE(c.mid_block_has_attention);
  expect_same(models::UNetConfig::from_json(c.to_json()), c);
}

TEST(UNetConfig, UnsupportedFieldsAreRefusedByName) {
  const std::pair<const char*, json> cases[] = {
      {"class_embed_type", "projection"},
      {"num_class_embeds", 10},
      {"addition_embed_type", "text_image"},
      {"encoder_hid_dim_type", "text_proj"},
      {"time_embedding_type", "fourier"},
      {"mid_block_type", "UNetMidBlock2DSimpleCrossAttn"},
      {"attention_type", "gated"},
      {"dual_cross_attention", true},
      {"resnet_time_scale_shift", "scale_shift"},
      {"only_cross_attention", true},
      {"time_cond_proj_dim", 256},
      {"conv_in_kernel", 7},
      {"down_block_types",
       json({"DownBlock2D", "SimpleCrossAttnDownBlock2D", "CrossAttnDownBlock2D"})},
      {"up_block_types", json({"CrossAttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"})},
      {"layers_per_block", json({2, 3, 2})},
  };
  for (const auto& [field, value] : cases) {
    json j = sdxl_base_config();
    j[field] = value;
    const std::string msg = error_of(j);
    EXPECT_NE(msg.find(field), std::string::npos) << field << ": " << msg;
  }
  // The defaults of the same fields are accepted.
  EXPECT_NO_THROW(models::UNetConfig::from_json(sdxl_base_config()));
}

// A UNet's own parameter shapes give its config back, also for distilled layouts, also after a
// trip through the single-file (LDM) names; the module built from it has exactly those tensors.
TEST(UNetConfig, InfersDistilledStructuresFromShapes) {
  models::UNetConfig base;
  base.block_out_channels = {64, 128, 128};
  base.down_has_attention = {false, true, true};
  base.up_has_attention = {true, true, false};
  base.heads = {1, 2, 2};  // 64-wide heads, as the shapes assume
  base.cross_attention_dim = 96;
  base.use_linear_projection = true;
  base.addition_embed_type = "text_time";
  base.addition_time_embed_dim = 256;
  base.projection_class_embeddings_input_dim = 64 + 6 * 256;

  models::UNetConfig sdxl_like = base;  // per-level depth, the mid block the last
  sdxl_like.transformer_layers_per_block = {1, 2, 3};
  models::UNetConfig ssd = base;  // asymmetric up levels, fewer blocks
  ssd.transformer_layers_per_block = {1, 1, 2};
  ssd.reverse_transformer_layers_per_block = {{2, 2, 3}, {2, 1, 1}, {1, 1, 1}};
  models::UNetConfig vega = base;  // a mid block without attention, one resnet per level
  vega.layers_per_block = 1;
  vega.mid_block_has_attention = false;
  vega.transformer_layers_per_block = {1, 1, 2};

  for (const auto* c : {&sdxl_like, &ssd, &vega}) {
    SCOPED_TRACE(c->to_json().dump());
    const models::UNet2DConditionModel unet(*c);
    const io::NamedShapes shapes = parameter_shapes(unet);
    const auto inferred = models::UNetConfig::infer(shape_only(shapes));
    expect_same(inferred, *c);
    EXPECT_NO_THROW(io::check_tensor_names(parameter_shapes(models::UNet2DConditionModel(inferred)),
                                           shapes, "inferred"));
    // single file: to the LDM names and back
    const io::LdmLayoutPlan plan = io::plan_ldm_layout(shapes, {}, {}, io::TextEncoderLayout::None);
    const io::MappedNames mapped = io::map_single_file_names(plan.sources);
    expect_same(models::UNetConfig::infer(shape_only(mapped.unet)), *c);
  }
}

TEST(UNetConfig, AddedTimeWidthFromShapes) {
  models::UNetConfig c;
  c.block_out_channels = {64, 128};
  c.down_has_attention = {true, true};
  c.up_has_attention = {true, true};
  c.heads = {1, 2};
  c.transformer_layers_per_block = {1, 1};
  c.cross_attention_dim = 48;
  c.use_linear_projection = true;
  c.addition_embed_type = "text_time";
  // a refiner-like UNet: pooled width = context width, 5 ids of 8
  c.addition_time_embed_dim = 8;
  c.projection_class_embeddings_input_dim = 48 + 5 * 8;
  auto inferred =
      models::UNetConfig::infer(shape_only(parameter_shapes(models::UNet2DConditionModel(c))));
  EXPECT_EQ(inferred.addition_time_embed_dim, 8);
  // a narrow one that fits no rule: unknown, and the model asks for a config
  c.projection_class_embeddings_input_dim = 48 + 3 * 8 + 2;
  inferred =
      models::UNetConfig::infer(shape_only(parameter_shapes(models::UNet2DConditionModel(c))));
  EXPECT_EQ(inferred.addition_time_embed_dim, 0);
  EXPECT_THROW(models::UNet2DConditionModel{inferred}, Error);
}

TEST(ClipTextConfig, ProjectionFollowsTheArchitecture) {
  json j = {{"architectures", {"CLIPTextModel"}},
            {"hidden_size", 32},
            {"num_attention_heads", 4},
            {"projection_dim", 16},
            {"num_hidden_layers", 2},
            {"intermediate_size", 64}};
  EXPECT_EQ(models::ClipTextConfig::from_json(j).projection_dim, 0);
  j["architectures"] = {"CLIPTextModelWithProjection"};
  const auto c = models::ClipTextConfig::from_json(j);
  EXPECT_EQ(c.projection_dim, 16);
  EXPECT_EQ(models::ClipTextConfig::from_json(c.to_json()).projection_dim, 16);
  EXPECT_EQ(c.to_json()["architectures"][0], "CLIPTextModelWithProjection");

  const models::ClipTextModel te(c);
  const io::NamedShapes shapes = parameter_shapes(te);
  bool projection = false;
  for (const auto& [name, shape] : shapes)
    if (name == "text_projection.weight") projection = shape == Shape{16, 32};
  EXPECT_TRUE(projection);
  const auto inferred = models::ClipTextConfig::infer(shape_only(shapes), "gelu", 8);
  EXPECT_EQ(inferred.projection_dim, 16);
  EXPECT_EQ(inferred.num_attention_heads, 4);
}

}  // namespace
