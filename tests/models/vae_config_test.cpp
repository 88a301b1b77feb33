// VaeConfig::from_json refuses values that would size absurd modules, naming the field.
#include <gtest/gtest.h>

#include "core/error.h"
#include "models/vae/autoencoder_kl.h"

using namespace diffuse;

namespace {

TEST(VaeConfig, AbsurdValuesAreRefusedByName) {
  const nlohmann::json ok = {
      {"block_out_channels", {32, 64}}, {"layers_per_block", 2}, {"norm_num_groups", 32},
      {"latent_channels", 4},           {"sample_size", 128},    {"scaling_factor", 0.18215}};
  EXPECT_EQ(models::VaeConfig::from_json(ok).layers_per_block, 2);
  const std::pair<const char*, nlohmann::json> cases[] = {
      {"layers_per_block", 1000000},
      {"layers_per_block", 0},
      {"block_out_channels", nlohmann::json::array()},
      {"block_out_channels", {32, 1 << 20}},
      {"latent_channels", -4},
      {"norm_num_groups", 0},
      {"scaling_factor", -1.0}};
  for (const auto& [key, value] : cases) {
    nlohmann::json j = ok;
    j[key] = value;
    try {
      models::VaeConfig::from_json(j);
      ADD_FAILURE() << key << " = " << value.dump() << ": accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(key), std::string::npos) << msg;
    }
  }
}

}  // namespace
