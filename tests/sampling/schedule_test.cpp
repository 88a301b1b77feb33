// Timesteps, sigmas and init_noise_sigma of every scheduler against diffusers
// (reference/schedulers.json: each entry names the class, its config and the step count).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "io/mmap_file.h"
#include "sampling/schedule.h"
#include "sampling/scheduler.h"
#include "test_util.h"

using namespace diffuse;
using namespace diffuse::sampling;

namespace {

// |a - b| <= tol * max(1, |b|)
bool close(double a, double b, double tol) {
  return std::abs(a - b) <= tol * std::max(1.0, std::abs(b));
}

}  // namespace

TEST(Schedules, MatchDiffusersForEveryEntry) {
  DF_REQUIRE_REF(path, "schedulers.json");
  const auto ref = nlohmann::json::parse(io::read_text_file(path));
  ASSERT_TRUE(ref.is_object());
  int checked = 0;
  for (const auto& [key, e] : ref.items()) {
    SCOPED_TRACE(key);
    auto s = make_scheduler(scheduler_class_from_name(e.at("class")),
                            parse_scheduler_config(e.at("config").dump()));
    s->set_timesteps(e.at("steps").get<int>());
    const auto want_t = e.at("timesteps").get<std::vector<double>>();
    ASSERT_EQ(s->timesteps().size(), want_t.size());
    // Interpolated (KDPM2) timesteps that land next to an integer are float32 rounding noise
    // away from it in torch (SIMD log/exp): 1e-5 there, exact elsewhere in practice.
    for (size_t i = 0; i < want_t.size(); ++i)
      EXPECT_TRUE(close(s->timesteps()[i], want_t[i], 1e-5))
          << "timestep " << i << ": " << s->timesteps()[i] << " vs " << want_t[i];
    EXPECT_TRUE(close(s->init_noise_sigma(), e.at("init_noise_sigma").get<double>(), 1e-6))
        << s->init_noise_sigma() << " vs " << e.at("init_noise_sigma");
    if (e.contains("sigmas")) {
      const auto want_s = e.at("sigmas").get<std::vector<double>>();
      ASSERT_EQ(s->sigmas().size(), want_s.size());
      for (size_t i = 0; i < want_s.size(); ++i)
        EXPECT_TRUE(close(s->sigmas()[i], want_s[i], 1e-6))
            << "sigma " << i << ": " << s->sigmas()[i] << " vs " << want_s[i];
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(Schedules, TrainingScheduleOfStableDiffusion) {
  // scaled_linear 0.00085..0.012 over 1000 steps: alphas_cumprod falls from 1 - 0.00085.
  auto betas = make_betas(BetaSchedule::ScaledLinear, 0.00085, 0.012, 1000, false);
  ASSERT_EQ(betas.size(), 1000u);
  EXPECT_FLOAT_EQ(betas.front(), 0.00085f);
  EXPECT_NEAR(betas.back(), 0.012f, 1e-8);
  auto ac = cumprod_alphas(betas);
  EXPECT_FLOAT_EQ(ac.front(), 1.0f - 0.00085f);
  for (size_t i = 1; i < ac.size(); ++i) ASSERT_LT(ac[i], ac[i - 1]);
  // Zero terminal SNR rescaling ends at alphas_cumprod exactly 0.
  auto rescaled =
      cumprod_alphas(make_betas(BetaSchedule::ScaledLinear, 0.00085, 0.012, 1000, true));
  EXPECT_NEAR(rescaled.back(), 0.0f, 1e-12);
}

TEST(Schedules, KarrasSigmasSpanTheRangeWithRho7) {
  auto s = karras_sigmas(0.03, 14.6, 5);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_NEAR(s.front(), 14.6, 1e-12);
  EXPECT_NEAR(s.back(), 0.03, 1e-12);
  // Evenly spaced in sigma^(1/7).
  const double d1 = std::pow(s[0], 1 / 7.0) - std::pow(s[1], 1 / 7.0);
  const double d2 = std::pow(s[3], 1 / 7.0) - std::pow(s[4], 1 / 7.0);
  EXPECT_NEAR(d1, d2, 1e-12);
}

TEST(Schedules, SigmaToTInvertsTheTrainingSigmas) {
  auto train = training_sigmas(
      cumprod_alphas(make_betas(BetaSchedule::ScaledLinear, 0.00085, 0.012, 1000, false)));
  auto logs = log_of(train);
  for (int t : {0, 1, 250, 500, 998, 999}) EXPECT_NEAR(sigma_to_t(train[size_t(t)], logs), t, 1e-3);
}

TEST(Schedules, AbsurdConfigValuesAreRefusedByName) {
  // Each would size the betas/sigmas tables or index them out of range.
  const std::pair<const char*, const char*> cases[] = {
      {R"({"num_train_timesteps": 1e9})", "num_train_timesteps"},
      {R"({"num_train_timesteps": 0})", "num_train_timesteps"},
      {R"({"num_train_timesteps": 1000, "steps_offset": 1000})", "steps_offset"},
      {R"({"solver_order": 100})", "solver_order"},
      {R"({"original_inference_steps": 5000})", "original_inference_steps"},
      {R"({"trained_betas": [0.1, 2.5]})", "trained_betas"}};
  for (const auto& [text, field] : cases) {
    try {
      parse_scheduler_config(text);
      ADD_FAILURE() << text << ": accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(parse_scheduler_config(R"({"num_train_timesteps": 10000})").num_train_timesteps,
            kMaxTrainTimesteps);
  std::string deep;
  for (int i = 0; i < 60000; ++i) deep += "{\"a\":";
  EXPECT_THROW(parse_scheduler_config(deep), Error);  // nesting, not a stack overflow
}

TEST(Schedules, ConfigParsingAndErrors) {
  auto c =
      parse_scheduler_config(R"({"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear",
      "prediction_type": "v_prediction", "timestep_spacing": "trailing", "steps_offset": 1,
      "some_future_key": 3})");
  EXPECT_EQ(c.class_name, "PNDMScheduler");
  EXPECT_EQ(c.beta_schedule, BetaSchedule::ScaledLinear);
  EXPECT_EQ(c.prediction_type, PredictionType::VPrediction);
  EXPECT_EQ(c.timestep_spacing, TimestepSpacing::Trailing);
  EXPECT_EQ(c.steps_offset, 1);
  EXPECT_FALSE(c.beta_start.has_value());
  EXPECT_THROW(parse_scheduler_config(R"({"prediction_type": "flow"})"), Error);
  EXPECT_THROW(parse_scheduler_config("not json"), Error);
  EXPECT_THROW(scheduler_class_from_name("FlowMatchEulerDiscreteScheduler"), Error);
  // Options that are not implemented are refused when a scheduler is made, naming them.
  auto t = parse_scheduler_config(R"({"thresholding": true})");
  try {
    make_scheduler(SchedulerClass::DDIM, t);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("thresholding"), std::string::npos) << e.what();
  }
}

TEST(Schedules, ClassDefaultsApplyToUnsetFields) {
  // Without timestep_spacing, Euler uses linspace (ending at 0) but DDIM leading.
  SchedulerConfig c = SchedulerConfig::stable_diffusion();
  c.timestep_spacing.reset();
  c.steps_offset.reset();
  auto euler = make_scheduler(SchedulerClass::EulerDiscrete, c);
  euler->set_timesteps(10);
  EXPECT_FLOAT_EQ(euler->timesteps().front(), 999.0f);
  EXPECT_FLOAT_EQ(euler->timesteps().back(), 0.0f);
  auto ddim = make_scheduler(SchedulerClass::DDIM, c);
  ddim->set_timesteps(10);
  EXPECT_FLOAT_EQ(ddim->timesteps().front(), 900.0f);
  EXPECT_FLOAT_EQ(ddim->timesteps().back(), 0.0f);
}
