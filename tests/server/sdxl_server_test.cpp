// The server with SDXL models: listed, and txt2img with A1111's refiner_checkpoint and
// refiner_switch_at, recorded in the infotext; a refiner of another latent space is a 422.
#include <gtest/gtest.h>

#include "server_fixture.h"

namespace diffuse::server::test_fixture {
namespace {

// A model dir with the reference's SDXL base and refiner and an SD1 model, by folder name.
std::string sdxl_model_dir(std::string* base, std::string* refiner, std::string* sd1) {
  const fs::path d = fs::path(test::temp_dir()) / "sdxl-models";
  fs::create_directories(d);
  auto link = [&](const std::vector<std::string>& kinds, std::string* name) {
    for (const auto& m : test::reference_folders_of_kind(kinds)) {
      const fs::path src = fs::path(test::reference_dir()) / m / "diffusers";
      if (!fs::exists(src / "model_index.json")) continue;
      if (!fs::exists(d / m)) fs::create_directory_symlink(src, d / m);
      *name = m;
      return;
    }
  };
  link({"sdxl"}, base);
  link({"sdxl-refiner"}, refiner);
  link({"sd1"}, sd1);
  return d.string();
}

class SdxlServerTest : public ServerTest {
 protected:
  void customize(ServerOptions& o) override { o.model_dir = sdxl_model_dir(&base_, &refiner_, &sd1_); }
  std::string base_, refiner_, sd1_;
};

TEST_F(SdxlServerTest, Txt2ImgWithRefinerCheckpoint) {
  if (base_.empty() || refiner_.empty()) GTEST_SKIP() << "no SDXL base and refiner";
  auto [st, models] = get("/sdapi/v1/sd-models");
  ASSERT_EQ(st, 200);
  std::string names;
  for (auto& m : models) names += m.value("model_name", "") + " ";
  EXPECT_NE(names.find(base_), std::string::npos) << names;
  EXPECT_NE(names.find(refiner_), std::string::npos) << names;

  json req = small({{"prompt", "a red boat"}, {"seed", 5}, {"sampler_name", "Euler"},
                    {"width", 128}, {"height", 128}, {"steps", 4},
                    {"override_settings", {{"sd_model_checkpoint", base_}}},
                    {"refiner_checkpoint", refiner_}, {"refiner_switch_at", 0.5}});
  auto [st2, res] = post("/sdapi/v1/txt2img", req);
  ASSERT_EQ(st2, 200) << res.dump();
  const json info = json::parse(res["info"].get<std::string>());
  const std::string text = info["infotexts"][0];
  EXPECT_NE(text.find("Refiner: " + refiner_), std::string::npos) << text;
  EXPECT_NE(text.find("Refiner switch at: 0.5"), std::string::npos) << text;
  // Without the refiner the image differs.
  req.erase("refiner_checkpoint");
  auto [st3, plain] = post("/sdapi/v1/txt2img", req);
  ASSERT_EQ(st3, 200) << plain.dump();
  EXPECT_NE(plain["images"][0], res["images"][0]);
  if (!sd1_.empty()) {
    req["refiner_checkpoint"] = sd1_;
    auto [st4, bad] = post("/sdapi/v1/txt2img", req);
    EXPECT_EQ(st4, 422) << bad.dump();
  }
  req["refiner_checkpoint"] = refiner_;
  req["refiner_switch_at"] = 1.5;
  EXPECT_EQ(post("/sdapi/v1/txt2img", req).first, 422);
}

}  // namespace
}  // namespace diffuse::server::test_fixture
