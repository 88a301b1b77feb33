// The server's hires fix: A1111's enable_hr / hr_* fields of txt2img, the image at the second
// pass's size, the infotext, and 422s for fields it cannot honour.
#include <gtest/gtest.h>

#include "apps/server/base64.h"
#include "io/image.h"
#include "server_fixture.h"

namespace diffuse::server::test_fixture {
namespace {

TEST_F(ServerTest, Txt2ImgHiresFix) {
  json req = small({{"prompt", "a red boat"}, {"seed", 3}, {"sampler_name", "Euler"},
                    {"enable_hr", true}, {"hr_scale", 2}, {"hr_second_pass_steps", 3},
                    {"denoising_strength", 0.5}, {"hr_upscaler", "Latent (nearest)"}});
  auto [st, res] = post("/sdapi/v1/txt2img", req);
  ASSERT_EQ(st, 200) << res.dump();
  const io::Image img = io::decode_image(base64_decode(res["images"][0].get<std::string>()));
  EXPECT_EQ(img.width, 128);
  EXPECT_EQ(img.height, 128);
  const json info = json::parse(res["info"].get<std::string>());
  const std::string text = info["infotexts"][0];
  EXPECT_NE(text.find("Size: 64x64"), std::string::npos) << text;
  EXPECT_NE(text.find("Hires upscale: 2, Hires steps: 3, Hires upscaler: Latent (nearest)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Denoising strength: 0.5"), std::string::npos) << text;
  EXPECT_EQ(res["parameters"]["hr_upscaler"], "Latent (nearest)");

  // one side of hr_resize: the other keeps the aspect ratio
  req.erase("hr_scale");
  req["hr_resize_x"] = 128;
  req["height"] = 128;
  auto [st2, res2] = post("/sdapi/v1/txt2img", req);
  ASSERT_EQ(st2, 200) << res2.dump();
  const io::Image img2 = io::decode_image(base64_decode(res2["images"][0].get<std::string>()));
  EXPECT_EQ(img2.width, 128);
  EXPECT_EQ(img2.height, 256);
  // enable_hr false: the first pass alone
  req["enable_hr"] = false;
  auto [st3, res3] = post("/sdapi/v1/txt2img", req);
  ASSERT_EQ(st3, 200) << res3.dump();
  EXPECT_EQ(io::decode_image(base64_decode(res3["images"][0].get<std::string>())).width, 64);
}

TEST_F(ServerTest, Txt2ImgHiresBadFieldsAre422) {
  const json base = small({{"prompt", "x"}, {"enable_hr", true}});
  const std::pair<json, std::string> cases[] = {
      {{{"hr_upscaler", "R-ESRGAN 4x+"}}, "hr_upscaler"},
      {{{"hr_scale", 8}}, "hr_scale"},  // 512 > --max-size 256
      {{{"hr_resize_x", 4096}}, "hr_resize_x"},
      {{{"denoising_strength", 0}}, "denoising_strength"},
      {{{"hr_sampler_name", "Nope"}}, "hr_sampler_name"},
      {{{"hr_second_pass_steps", -1}}, "hr_second_pass_steps"},
  };
  for (const auto& [extra, key] : cases) {
    json req = base;
    req.update(extra);
    SCOPED_TRACE(req.dump());
    auto [st, res] = post("/sdapi/v1/txt2img", req);
    EXPECT_EQ(st, 422) << res.dump();
    EXPECT_NE(res.dump().find(key), std::string::npos) << res.dump();
  }
}

}  // namespace
}  // namespace diffuse::server::test_fixture
