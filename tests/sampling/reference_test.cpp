// The samplers against the reference pipelines, before any UNet exists: the timesteps each
// sampler hands the model, and the first step of every recorded trajectory. All samplers that
// start at the same timestep see the same first model output (the input is pipe.latents0 for
// all of them), so that output can be recovered from one sampler's first recorded step and must
// then reproduce the first recorded step of every other.
#include <cstdlib>
#include <filesystem>
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "reference_harness.h"
#include "test_util.h"

using namespace diffuse;
using namespace diffuse::sampling;

namespace {

Tensor zeros_like(const Tensor& x, float) {
  return Tensor::zeros(x.shape());
}

// The first step of a reference run with a given first model output (zeros afterwards).
struct FirstStep {
  Tensor input;  // the first model input
  float timestep = 0;
  Tensor latents;  // after step 0
};
FirstStep first_step(const test::ReferenceModel& m, const std::string& sampler, const Tensor& out) {
  FirstStep f;
  auto denoise = [&](const Tensor& x, float t) {
    if (f.input.defined()) return Tensor::zeros(x.shape());
    f.input = x.clone();
    f.timestep = t;
    return out;
  };
  f.latents = test::run_reference_sampler(m, sampler, denoise).steps.at(0);
  return f;
}

// (a - b) / (c - d) elementwise
Tensor solve_affine(const Tensor& target, const Tensor& y0, const Tensor& y1) {
  auto t = target.to_float_vector(), a = y0.to_float_vector(), b = y1.to_float_vector();
  std::vector<float> m(t.size());
  for (size_t k = 0; k < t.size(); ++k) m[k] = float((double(t[k]) - a[k]) / (double(b[k]) - a[k]));
  return Tensor::from_vector(m, y0.shape());
}

double min_abs_diff(const Tensor& a, const Tensor& b) {
  auto x = a.to_float_vector(), y = b.to_float_vector();
  double m = INFINITY;
  for (size_t k = 0; k < x.size(); ++k) m = std::min(m, std::abs(double(x[k]) - y[k]));
  return m;
}

}  // namespace

// Without the reference data every golden test would skip and the run would look green:
// that is a failure unless DIFFUSE_ALLOW_NO_REFERENCE=1 says the run may go without it.
TEST(ReferenceData, PresentUnlessAllowedMissing) {
  const char* allow = std::getenv("DIFFUSE_ALLOW_NO_REFERENCE");
  const bool allowed = allow && std::string(allow) == "1";
  if (!std::filesystem::is_directory(test::reference_dir())) {
    if (allowed) GTEST_SKIP() << "no reference data at " << test::reference_dir();
    FAIL() << "no reference data at " << test::reference_dir()
           << " (set DIFFUSE_REFERENCE_DIR, or DIFFUSE_ALLOW_NO_REFERENCE=1 to run without it)";
  }
  EXPECT_FALSE(test::reference_model_folders().empty())
      << "no model folder this build supports in " << test::reference_dir();
}

TEST(ReferenceSamplers, VisitTheTimestepsOfEveryReferencePipeline) {
  auto models = test::reference_model_names();
  if (models.empty()) GTEST_SKIP() << "no reference models in " << test::reference_dir();
  int checked = 0;
  for (const auto& name : models) {
    const auto m = test::load_reference_model(name);
    for (const auto& s : test::reference_samplers(m)) {
      SCOPED_TRACE(name + " " + s);
      const auto run = test::run_reference_sampler(m, s, zeros_like);
      const auto want = m.tensors.at("pipe." + s + ".timesteps").to_float_vector();
      ASSERT_EQ(run.timesteps.size(), want.size());
      for (size_t i = 0; i < want.size(); ++i)
        EXPECT_NEAR(run.timesteps[i], want[i], 1e-5 * std::max(1.0f, std::abs(want[i])))
            << "timestep " << i;
      EXPECT_EQ(int64_t(run.steps.size()), m.tensors.at("pipe." + s + ".trajectory").size(0));
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

TEST(ReferenceSamplers, FirstStepOfEveryTrajectory) {
  auto models = test::reference_model_names();
  if (models.empty()) GTEST_SKIP() << "no reference models in " << test::reference_dir();
  int cross_checked = 0;
  for (const auto& name : models) {
    const auto m = test::load_reference_model(name);
    const Tensor& latents0 = m.tensors.at("pipe.latents0");
    struct Probe {
      std::string sampler;
      float timestep;
      Tensor y0, y1, want;
    };
    std::vector<Probe> probes;
    for (const auto& s : test::reference_samplers(m)) {
      SCOPED_TRACE(name + " " + s);
      const FirstStep f0 = first_step(m, s, Tensor::zeros(latents0.shape()));
      const FirstStep f1 = first_step(m, s, Tensor::full(latents0.shape(), 1.0f));
      // Every sampler's first model input is the initial noise itself (init_noise_sigma and
      // the input scaling cancel).
      EXPECT_REL_NEAR(f0.input, latents0, 1e-6);
      const Tensor& traj = m.tensors.at("pipe." + s + ".trajectory");
      // [n, c, h, w] -> step 0 as [1, c, h, w]
      Tensor want = traj.select(0, 0).contiguous().reshape(latents0.shape());
      probes.push_back({s, f0.timestep, f0.latents, f1.latents, want});
    }
    // Group by first timestep; in each group recover the model output from the sampler whose
    // first step depends most strongly on it, then check the others.
    std::map<int64_t, std::vector<const Probe*>> groups;
    for (const auto& p : probes) groups[std::lround(p.timestep * 100)].push_back(&p);
    for (const auto& [key, group] : groups) {
      if (group.size() < 2) continue;
      const Probe* anchor = group.front();
      for (const Probe* p : group)
        if (min_abs_diff(p->y1, p->y0) > min_abs_diff(anchor->y1, anchor->y0)) anchor = p;
      const Tensor model_out = solve_affine(anchor->want, anchor->y0, anchor->y1);
      for (const Probe* p : group) {
        if (p == anchor) continue;
        SCOPED_TRACE(name + " " + p->sampler + " (model output from " + anchor->sampler + ")");
        const FirstStep f = first_step(m, p->sampler, model_out);
        EXPECT_REL_NEAR(f.latents, p->want, 1e-5);
        ++cross_checked;
      }
    }
  }
  EXPECT_GT(cross_checked, 0);
}
