#include "sampling/scheduler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "sampling/scheduler_impl.h"

namespace diffuse::sampling {

namespace {

constexpr std::array<std::pair<SchedulerClass, const char*>, 15> kClassNames = {{
    {SchedulerClass::PNDM, "PNDMScheduler"},
    {SchedulerClass::DDIM, "DDIMScheduler"},
    {SchedulerClass::DDPM, "DDPMScheduler"},
    {SchedulerClass::EulerDiscrete, "EulerDiscreteScheduler"},
    {SchedulerClass::EulerAncestralDiscrete, "EulerAncestralDiscreteScheduler"},
    {SchedulerClass::HeunDiscrete, "HeunDiscreteScheduler"},
    {SchedulerClass::LMSDiscrete, "LMSDiscreteScheduler"},
    {SchedulerClass::KDPM2Discrete, "KDPM2DiscreteScheduler"},
    {SchedulerClass::KDPM2AncestralDiscrete, "KDPM2AncestralDiscreteScheduler"},
    {SchedulerClass::DPMSolverMultistep, "DPMSolverMultistepScheduler"},
    {SchedulerClass::DPMSolverSinglestep, "DPMSolverSinglestepScheduler"},
    {SchedulerClass::UniPCMultistep, "UniPCMultistepScheduler"},
    {SchedulerClass::DEISMultistep, "DEISMultistepScheduler"},
    {SchedulerClass::LCM, "LCMScheduler"},
    {SchedulerClass::TCD, "TCDScheduler"},
}};

}  // namespace

SchedulerClass scheduler_class_from_name(const std::string& name) {
  for (const auto& [c, n] : kClassNames)
    if (name == n) return c;
  std::string known;
  for (const auto& [c, n] : kClassNames) known += std::string(known.empty() ? "" : ", ") + n;
  DF_FAIL("unsupported scheduler class '", name, "' (supported: ", known, ")");
}

std::string scheduler_class_name(SchedulerClass c) {
  for (const auto& [k, n] : kClassNames)
    if (k == c) return n;
  return "?";
}

// ---------------------------------------------------------------- Scheduler base

void Scheduler::set_begin_index(int index) {
  DF_CHECK(index >= 0 && index <= int(timesteps_.size()), "begin index ", index,
           " outside the schedule of ", timesteps_.size(), " timesteps");
  begin_index_ = index;
  cursor_ = index;
}

Tensor Scheduler::scale_model_input(const Tensor& sample, int step_index) {
  expect_index(step_index, "scale_model_input");
  return sample;
}

void Scheduler::expect_index(int step_index, const char* what) const {
  DF_CHECK(num_inference_steps_ > 0, what, ": set_timesteps was not called");
  DF_CHECK(step_index == cursor_, what, ": steps must run in order; expected step index ", cursor_,
           ", got ", step_index);
  DF_CHECK(step_index < int(timesteps_.size()), what, ": step index ", step_index,
           " past the last of ", timesteps_.size(), " timesteps");
}

Generator& Scheduler::need_generator(Generator* gen) const {
  DF_CHECK(gen != nullptr, "this sampler is stochastic: it needs a random generator");
  return *gen;
}

std::unique_ptr<Scheduler> make_scheduler(SchedulerClass c, const SchedulerConfig& config) {
  using namespace detail;
  std::unique_ptr<Scheduler> s;
  switch (c) {
    case SchedulerClass::PNDM:
      s = make_pndm(config);
      break;
    case SchedulerClass::DDIM:
      s = make_ddim(config);
      break;
    case SchedulerClass::DDPM:
      s = make_ddpm(config);
      break;
    case SchedulerClass::EulerDiscrete:
      s = make_euler(config);
      break;
    case SchedulerClass::EulerAncestralDiscrete:
      s = make_euler_ancestral(config);
      break;
    case SchedulerClass::HeunDiscrete:
      s = make_heun(config);
      break;
    case SchedulerClass::LMSDiscrete:
      s = make_lms(config);
      break;
    case SchedulerClass::KDPM2Discrete:
      s = make_kdpm2(config, false);
      break;
    case SchedulerClass::KDPM2AncestralDiscrete:
      s = make_kdpm2(config, true);
      break;
    case SchedulerClass::DPMSolverMultistep:
      s = make_dpm_multistep(config);
      break;
    case SchedulerClass::DPMSolverSinglestep:
      s = make_dpm_singlestep(config);
      break;
    case SchedulerClass::UniPCMultistep:
      s = make_unipc(config);
      break;
    case SchedulerClass::DEISMultistep:
      s = make_deis(config);
      break;
    case SchedulerClass::LCM:
      s = make_lcm(config, false);
      break;
    case SchedulerClass::TCD:
      s = make_lcm(config, true);
      break;
  }
  DF_CHECK(s != nullptr, "unknown scheduler class");
  s->kind_ = c;
  return s;
}

// ---------------------------------------------------------------- shared helpers

namespace detail {

const float* f32(const Tensor& t, const char* what) {
  DF_CHECK(t.defined(), what, ": tensor is undefined");
  DF_CHECK(t.dtype() == DType::F32 && t.is_contiguous(), what,
           ": expected a contiguous f32 tensor, got ", t.desc());
  return t.data<float>();
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* what) {
  DF_CHECK(a.shape() == b.shape(), what, ": shapes differ: ", a.desc(), " vs ", b.desc());
}

void reject_unsupported(const SchedulerConfig& c, const char* class_name) {
  if (c.unsupported.empty()) return;
  std::string names;
  for (const auto& n : c.unsupported) names += (names.empty() ? "" : ", ") + n;
  DF_FAIL(class_name, ": scheduler config options not supported: ", names);
}

Common resolve_common(const SchedulerConfig& c, const ClassDefaults& d, const char* class_name) {
  reject_unsupported(c, class_name);
  Common r;
  r.num_train_timesteps = c.num_train_timesteps.value_or(1000);
  r.prediction = c.prediction_type.value_or(PredictionType::Epsilon);
  r.spacing = c.timestep_spacing.value_or(d.spacing);
  r.steps_offset = c.steps_offset.value_or(0);
  r.rescale_zero_snr = d.reads_rescale_zero_snr && c.rescale_betas_zero_snr.value_or(false);
  if (c.trained_betas) {
    r.betas = *c.trained_betas;
    r.num_train_timesteps = int64_t(r.betas.size());
  } else {
    r.betas =
        make_betas(c.beta_schedule.value_or(d.beta_schedule), c.beta_start.value_or(d.beta_start),
                   c.beta_end.value_or(d.beta_end), r.num_train_timesteps, r.rescale_zero_snr);
  }
  r.alphas_cumprod = cumprod_alphas(r.betas);
  return r;
}

static void check_steps(int steps, int64_t num_train) {
  DF_CHECK(steps >= 1, "number of inference steps must be at least 1, got ", steps);
  DF_CHECK(steps <= num_train, "number of inference steps (", steps,
           ") cannot exceed num_train_timesteps (", num_train, ")");
}

std::vector<int64_t> discrete_timesteps(TimestepSpacing spacing, int64_t num_train, int steps,
                                        int64_t offset) {
  check_steps(steps, num_train);
  std::vector<int64_t> t;
  switch (spacing) {
    case TimestepSpacing::Linspace:
      for (double v : np_linspace(0, double(num_train - 1), steps))
        t.push_back(int64_t(np_round(v)));
      std::reverse(t.begin(), t.end());
      break;
    case TimestepSpacing::Leading: {
      const int64_t ratio = num_train / steps;
      for (int i = steps - 1; i >= 0; --i) t.push_back(int64_t(i) * ratio + offset);
      break;
    }
    case TimestepSpacing::Trailing:
      for (double v : np_arange(double(num_train), 0, -double(num_train) / double(steps)))
        t.push_back(int64_t(np_round(v)) - 1);
      break;
  }
  return t;
}

std::vector<int64_t> solver_timesteps(TimestepSpacing spacing, int64_t num_train, int steps,
                                      int64_t offset) {
  check_steps(steps, num_train);
  std::vector<int64_t> t;
  switch (spacing) {
    case TimestepSpacing::Linspace: {
      auto v = np_linspace(0, double(num_train - 1), steps + 1);
      for (int i = steps; i >= 1; --i) t.push_back(int64_t(np_round(v[size_t(i)])));
      break;
    }
    case TimestepSpacing::Leading: {
      const int64_t ratio = num_train / (steps + 1);
      for (int i = steps; i >= 1; --i) t.push_back(int64_t(i) * ratio + offset);
      break;
    }
    case TimestepSpacing::Trailing:
      for (double v : np_arange(double(num_train), 0, -double(num_train) / double(steps)))
        t.push_back(int64_t(np_round(v)) - 1);
      break;
  }
  return t;
}

KSchedule k_schedule(const Common& c, int steps, bool karras, std::optional<double> sigma_min,
                     std::optional<double> sigma_max, bool round_karras_timesteps) {
  check_steps(steps, c.num_train_timesteps);
  const int64_t n = c.num_train_timesteps;
  KSchedule k;
  switch (c.spacing) {
    case TimestepSpacing::Linspace:
      for (double v : np_linspace(0, double(n - 1), steps)) k.timesteps.push_back(float(v));
      std::reverse(k.timesteps.begin(), k.timesteps.end());
      break;
    case TimestepSpacing::Leading: {
      const int64_t ratio = n / steps;
      for (int i = steps - 1; i >= 0; --i)
        k.timesteps.push_back(float(int64_t(i) * ratio) + float(c.steps_offset));
      break;
    }
    case TimestepSpacing::Trailing:
      for (double v : np_arange(double(n), 0, -double(n) / double(steps)))
        k.timesteps.push_back(float(np_round(v)) - 1.0f);
      break;
  }
  const std::vector<float> train = training_sigmas(c.alphas_cumprod);
  for (float t : k.timesteps) k.sigmas.push_back(interp_index(double(t), train));
  if (karras) {
    const double lo = sigma_min.value_or(k.sigmas.back());
    const double hi = sigma_max.value_or(k.sigmas.front());
    k.sigmas = karras_sigmas(lo, hi, steps);
    const std::vector<float> log_sigmas = log_of(train);
    k.timesteps.clear();
    for (double s : k.sigmas) {
      double t = sigma_to_t(s, log_sigmas);
      k.timesteps.push_back(float(round_karras_timesteps ? np_round(t) : t));
    }
  }
  return k;
}

float k_init_noise_sigma(const std::vector<float>& sigmas, TimestepSpacing spacing) {
  float m = *std::max_element(sigmas.begin(), sigmas.end());
  if (spacing == TimestepSpacing::Linspace || spacing == TimestepSpacing::Trailing) return m;
  return std::sqrt(m * m + 1.0f);
}

Tensor add_noise_ve(const Tensor& original, const Tensor& noise, float sigma) {
  check_same_shape(original, noise, "add_noise");
  const float* x = f32(original, "add_noise original");
  const float* e = f32(noise, "add_noise noise");
  return map(original, [&](int64_t i) { return x[i] + e[i] * sigma; });
}

Tensor add_noise_vp(const Tensor& original, const Tensor& noise, float alpha_cumprod) {
  check_same_shape(original, noise, "add_noise");
  const float* x = f32(original, "add_noise original");
  const float* e = f32(noise, "add_noise noise");
  const float a = std::sqrt(alpha_cumprod), b = std::sqrt(1.0f - alpha_cumprod);
  return map(original, [&](int64_t i) { return a * x[i] + b * e[i]; });
}

Tensor KDiffusionScheduler::scale_model_input(const Tensor& sample, int step_index) {
  expect_index(step_index, "scale_model_input");
  return scale_by_sigma(sample, sigmas_[size_t(step_index)]);
}

Tensor KDiffusionScheduler::scale_by_sigma(const Tensor& sample, float sigma) {
  const float* x = f32(sample, "scale_model_input");
  const float d = std::sqrt(sigma * sigma + 1.0f);
  return map(sample, [&](int64_t k) { return x[k] / d; });
}

AlphaSigma alpha_sigma(float sigma) {
  AlphaSigma r;
  r.alpha = 1.0f / std::sqrt(sigma * sigma + 1.0f);
  r.sigma = sigma * r.alpha;
  r.lambda = std::log(r.alpha) - std::log(r.sigma);
  return r;
}

void add_fresh_noise(Tensor& out, Generator& gen, float scale) {
  Tensor noise = gen.randn(out.shape());
  float* o = out.data<float>();
  const float* e = noise.data<float>();
  for (int64_t k = 0; k < out.numel(); ++k) o[k] = o[k] + scale * e[k];
}

Tensor add_noise_at_sigma(const Tensor& original, const Tensor& noise, float sigma) {
  check_same_shape(original, noise, "add_noise");
  const AlphaSigma as = alpha_sigma(sigma);
  const float* x = f32(original, "add_noise original");
  const float* e = f32(noise, "add_noise noise");
  return map(original, [&](int64_t k) { return as.alpha * x[k] + as.sigma * e[k]; });
}

}  // namespace detail
}  // namespace diffuse::sampling
