// Every reference sampler trajectory, end to end, with the reference models' own UNet under
// classifier-free guidance as the denoiser (the reference pipelines' setting).
#include <gtest/gtest.h>

#include <filesystem>

#include "pipeline/model_bundle.h"
#include "reference_harness.h"
#include "test_util.h"

using namespace diffuse;

namespace {

// uncond + g * (cond - uncond), with the negative and positive prompt embeddings as one batch.
sampling::Denoiser cfg_unet(const models::UNet2DConditionModel& unet, const Tensor& negative,
                            const Tensor& positive, float guidance) {
  return [&unet, negative, positive, guidance](const Tensor& x, float t) {
    const int64_t n = x.numel();
    Tensor batch = Tensor::empty({2, x.size(1), x.size(2), x.size(3)});
    Tensor xc = x.contiguous();
    std::copy_n(xc.data<float>(), n, batch.data<float>());
    std::copy_n(xc.data<float>(), n, batch.data<float>() + n);
    const int64_t m = negative.numel();
    Tensor context = Tensor::empty({2, negative.size(1), negative.size(2)});
    std::copy_n(negative.contiguous().data<float>(), m, context.data<float>());
    std::copy_n(positive.contiguous().data<float>(), m, context.data<float>() + m);
    Tensor out = unet.forward(batch, {t, t}, context).contiguous();
    const float* o = out.data<float>();
    Tensor r = Tensor::empty(x.shape());
    float* p = r.data<float>();
    for (int64_t k = 0; k < n; ++k) p[k] = o[k] + guidance * (o[n + k] - o[k]);
    return r;
  };
}

}  // namespace

TEST(UNetTrajectories, EverySamplerOfEveryModel) {
  int checked = 0;
  for (const auto& name : test::reference_model_names()) {
    const std::string folder = test::reference_dir() + "/" + name + "/diffusers";
    if (!std::filesystem::exists(folder)) continue;
    const auto m = test::load_reference_model(name);
    const auto samplers = test::reference_samplers(m);
    if (samplers.empty()) continue;
    pipeline::BundleOptions opt;
    opt.data_dir = test::data_dir();
    auto bundle = pipeline::ModelBundle::open(folder, opt);
    auto denoise =
        cfg_unet(bundle->unet(), m.tensors.at("pipe.negative_prompt_embeds"),
                 m.tensors.at("pipe.prompt_embeds"), m.info.at("guidance_scale").get<float>());
    for (const auto& s : samplers) {
      test::expect_reference_trajectory(m, s, denoise);
      ++checked;
    }
    test::expect_reference_img2img(m, denoise);
  }
  EXPECT_GT(checked, 0);
}
