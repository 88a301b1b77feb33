// The full-size SDXL base (manifests.json: sdxl/single_file, every tensor of the published
// sd_xl_base_1.0.safetensors) through the single-file name maps: its published parameter counts
// per component, and the modules built from the configs inferred from its shapes hold exactly
// its tensors (names and shapes; modules allocate no weights until loaded).
#include <gtest/gtest.h>

#include "io/mmap_file.h"
#include "io/name_map_ldm.h"
#include "models/clip/clip_text_model.h"
#include "models/unet/unet_2d_condition.h"
#include "models/vae/autoencoder_kl.h"
#include "tensor_maps_testing.h"
#include "test_util.h"

using namespace diffuse;
using json = nlohmann::json;

namespace {

using test::parameter_shapes;
using test::shape_only;

io::NamedShapes entries(const json& j) {
  io::NamedShapes out;
  for (const auto& [name, shape] : j.items())
    if (shape.is_array()) out.emplace_back(name, shape.get<Shape>());
  return out;
}

int64_t elements(const io::NamedShapes& names) {
  int64_t n = 0;
  for (const auto& [name, shape] : names) {
    int64_t e = 1;
    for (int64_t d : shape) e *= d;
    n += e;
  }
  return n;
}

TEST(SdxlManifest, PublishedParameterCountsAndStrictModules) {
  DF_REQUIRE_REF(path, "manifests/manifests.json");
  const json manifests = json::parse(io::read_text_file(path));
  if (!manifests.contains("sdxl/single_file")) GTEST_SKIP() << "no sdxl/single_file manifest";
  io::MappedNames mapped;
  ASSERT_NO_THROW(mapped = io::map_single_file_names(entries(manifests["sdxl/single_file"]),
                                                     "sdxl/single_file"));
  EXPECT_EQ(mapped.text_layout, io::TextEncoderLayout::Conditioner);
  EXPECT_EQ(mapped.dropped_text_layers, 0);

  // The published counts of SDXL base 1.0, which the diffusers manifests hold too.
  const std::pair<const char*, const io::NamedShapes*> parts[] = {
      {"unet", &mapped.unet},
      {"vae", &mapped.vae},
      {"text_encoder", &mapped.text_encoder},
      {"text_encoder_2", &mapped.text_encoder_2}};
  const int64_t published[] = {2'567'463'684, 83'653'863, 123'060'480, 694'659'840};
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(parts[i].first);
    EXPECT_EQ(elements(*parts[i].second), published[i]);
    const std::string key = std::string("sdxl/diffusers/") + parts[i].first;
    if (manifests.contains(key)) {
      EXPECT_NO_THROW(io::check_tensor_names(*parts[i].second, entries(manifests[key]), key));
    }
  }

  // Modules from the shapes alone: exactly the file's tensors.
  const auto unet_config = models::UNetConfig::infer(shape_only(mapped.unet));
  EXPECT_EQ(unet_config.transformer_layers_per_block, (std::vector<int64_t>{1, 2, 10}));
  EXPECT_EQ(unet_config.heads, (std::vector<int64_t>{5, 10, 20}));
  EXPECT_EQ(unet_config.addition_time_embed_dim, 256);
  EXPECT_EQ(unet_config.cross_attention_dim, 2048);
  EXPECT_NO_THROW(io::check_tensor_names(
      parameter_shapes(models::UNet2DConditionModel(unet_config)), mapped.unet, "unet"));
  EXPECT_NO_THROW(io::check_tensor_names(
      parameter_shapes(models::AutoencoderKL(models::VaeConfig::infer(shape_only(mapped.vae)))),
      mapped.vae, "vae"));
  const auto te1 = models::ClipTextConfig::infer(shape_only(mapped.text_encoder), "quick_gelu");
  EXPECT_EQ(te1.projection_dim, 0);
  EXPECT_NO_THROW(io::check_tensor_names(parameter_shapes(models::ClipTextModel(te1)),
                                         mapped.text_encoder, "text_encoder"));
  const auto te2 = models::ClipTextConfig::infer(shape_only(mapped.text_encoder_2), "gelu");
  EXPECT_EQ(te2.projection_dim, 1280);
  EXPECT_EQ(te2.num_hidden_layers, 32);
  EXPECT_NO_THROW(io::check_tensor_names(parameter_shapes(models::ClipTextModel(te2)),
                                         mapped.text_encoder_2, "text_encoder_2"));
}

}  // namespace
