#include "sampling/samplers.h"

#include <algorithm>
#include <cmath>

#include "sampling/scheduler_impl.h"

namespace diffuse::sampling {

namespace {

struct SamplerInfo {
  const char* name;
  SchedulerClass cls;
  bool karras;    // supports the karras schedule
  bool trailing;  // supports trailing spacing
  const char* algorithm_type = nullptr;
  int solver_order = 0;
};

// Each name is the diffusers class (and options) that A1111's sampler of that name maps to
// (diffusers docs, api/schedulers/overview.md).
const std::vector<SamplerInfo>& sampler_table() {
  static const std::vector<SamplerInfo> table = {
      {"pndm", SchedulerClass::PNDM, false, true},
      {"ddim", SchedulerClass::DDIM, false, true},
      {"ddpm", SchedulerClass::DDPM, false, true},
      {"euler", SchedulerClass::EulerDiscrete, true, true},
      {"euler_a", SchedulerClass::EulerAncestralDiscrete, false, true},
      {"heun", SchedulerClass::HeunDiscrete, true, true},
      {"lms", SchedulerClass::LMSDiscrete, true, true},
      {"dpm2", SchedulerClass::KDPM2Discrete, true, true},
      {"dpm2_a", SchedulerClass::KDPM2AncestralDiscrete, true, true},
      {"dpmpp_2m", SchedulerClass::DPMSolverMultistep, true, true, "dpmsolver++", 2},
      {"dpmpp_2m_sde", SchedulerClass::DPMSolverMultistep, true, true, "sde-dpmsolver++", 2},
      {"dpmpp_2s", SchedulerClass::DPMSolverSinglestep, true, false, "dpmsolver++", 2},
      {"unipc", SchedulerClass::UniPCMultistep, true, true},
      {"deis", SchedulerClass::DEISMultistep, true, true},
      {"lcm", SchedulerClass::LCM, false, false},
      {"tcd", SchedulerClass::TCD, false, false},
  };
  return table;
}

const SamplerInfo& info(const std::string& name) {
  for (const auto& s : sampler_table())
    if (name == s.name) return s;
  std::string known;
  for (const auto& s : sampler_table()) known += std::string(known.empty() ? "" : ", ") + s.name;
  DF_FAIL("unknown sampler '", name, "' (known: ", known, ")");
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The latents as a contiguous f32 tensor.
Tensor as_f32(const Tensor& t, const char* what) {
  DF_CHECK(t.defined(), what, " is undefined");
  Tensor c = t.dtype() == DType::F32 ? t : t.to(DType::F32);
  return c.is_contiguous() ? c : c.contiguous();
}

// The pipeline loop from the scheduler's begin index.
Tensor run(Scheduler& s, Tensor x, const Denoiser& denoise, Generator* gen,
           const StepCallback& on_step, int end = -1, const StepFilter& filter = {}) {
  DF_CHECK(bool(denoise), "sampler: no denoiser given");
  DF_CHECK(!s.stochastic() || gen != nullptr, "sampler: ", scheduler_class_name(s.kind()),
           " is stochastic: it needs a random generator");
  const std::vector<float>& ts = s.timesteps();
  const int begin = s.begin_index();
  if (end < 0) end = int(ts.size());
  for (int i = begin; i < end; ++i) {
    Tensor input = s.scale_model_input(x, i);
    Tensor out = denoise(input, ts[size_t(i)]);
    DF_CHECK(out.defined() && out.shape() == x.shape(), "sampler: the denoiser returned ",
             out.defined() ? out.desc() : std::string("nothing"), " for latents ", x.desc());
    x = s.step(as_f32(out, "denoiser output"), i, x, gen);
    if (filter) x = filter(s, i, x);
    if (on_step) on_step(i - begin, x);
  }
  return x;
}

}  // namespace

const std::vector<std::string>& sampler_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& s : sampler_table()) v.push_back(s.name);
    return v;
  }();
  return names;
}

SamplerOptions SamplerOptions::from_name(const std::string& name_with_schedule) {
  SamplerOptions o;
  std::string name = name_with_schedule;
  if (ends_with(name, "_karras")) {
    o.scheduler = NoiseSchedule::Karras;
    name.resize(name.size() - 7);
  } else if (ends_with(name, "_trailing")) {
    o.scheduler = NoiseSchedule::Trailing;
    name.resize(name.size() - 9);
  }
  info(name);  // validates
  o.name = name;
  return o;
}

std::string SamplerOptions::full_name() const {
  switch (scheduler) {
    case NoiseSchedule::Karras:
      return name + "_karras";
    case NoiseSchedule::Trailing:
      return name + "_trailing";
    case NoiseSchedule::Default:
      break;
  }
  return name;
}

SchedulerClass sampler_class(const SamplerOptions& options) {
  return info(options.name).cls;
}

SchedulerConfig sampler_config(const SamplerOptions& options) {
  const SamplerInfo& s = info(options.name);
  SchedulerConfig c = options.config;
  if (s.algorithm_type) c.algorithm_type = s.algorithm_type;
  if (s.solver_order) c.solver_order = s.solver_order;
  if (options.prediction_type) c.prediction_type = options.prediction_type;
  switch (options.scheduler) {
    case NoiseSchedule::Karras:
      DF_CHECK(s.karras, "sampler ", s.name, " has no karras schedule");
      c.use_karras_sigmas = true;
      break;
    case NoiseSchedule::Trailing:
      DF_CHECK(s.trailing, "sampler ", s.name, " has no trailing schedule");
      c.timestep_spacing = TimestepSpacing::Trailing;
      break;
    case NoiseSchedule::Default:
      break;
  }
  return c;
}

std::unique_ptr<Scheduler> make_scheduler(const SamplerOptions& options) {
  DF_CHECK(options.steps >= 1, "sampler: steps must be at least 1, got ", options.steps);
  auto s = make_scheduler(sampler_class(options), sampler_config(options));
  s->set_eta(options.eta);
  return s;
}

namespace {
// txt2img's first latents: unit noise times the scheduler's initial sigma.
Tensor initial_latents(const Scheduler& s, const Tensor& latents_init) {
  DF_CHECK(s.num_inference_steps() > 0, "sample: call set_timesteps on the scheduler first");
  const Tensor init = as_f32(latents_init, "initial latents");
  const float sigma = s.init_noise_sigma();
  const float* p = init.data<float>();
  return detail::map(init, [&](int64_t k) { return p[k] * sigma; });
}
}  // namespace

Tensor sample(Scheduler& s, const Tensor& latents_init, const Denoiser& denoise, Generator* gen,
              const StepCallback& on_step) {
  return run(s, initial_latents(s, latents_init), denoise, gen, on_step);
}

Tensor sample(const SamplerOptions& options, const Tensor& latents_init, const Denoiser& denoise,
              Generator* gen, const StepCallback& on_step, const StepFilter& filter) {
  auto s = make_scheduler(options);
  s->set_timesteps(options.steps);
  return run(*s, initial_latents(*s, latents_init), denoise, gen, on_step,
             denoising_end_index(*s, options.denoising_end), filter);
}

namespace {
// diffusers' discrete_timestep_cutoff: int(round(T - fraction * T)).
double timestep_cutoff(const Scheduler& s, double fraction) {
  const double t = double(s.alphas_cumprod().size());
  return std::round(t - fraction * t);
}
}  // namespace

int denoising_end_index(const Scheduler& s, double denoising_end) {
  DF_CHECK(denoising_end > 0 && denoising_end <= 1, "denoising end must be in (0, 1], got ",
           denoising_end);
  if (denoising_end >= 1) return int(s.timesteps().size());
  const double cutoff = timestep_cutoff(s, denoising_end);
  int n = 0;
  for (float t : s.timesteps()) n += double(t) >= cutoff;
  DF_CHECK(n >= 1, "denoising end ", denoising_end, " leaves no step to run");
  return n;
}

int denoising_start_index(const Scheduler& s, double denoising_start) {
  DF_CHECK(denoising_start >= 0 && denoising_start < 1, "denoising start must be in [0, 1), got ",
           denoising_start);
  const double cutoff = timestep_cutoff(s, denoising_start);
  int n = 0;
  for (float t : s.timesteps()) n += double(t) < cutoff;
  // a second-order scheduler must not start between the two calls of a step
  if (s.order() == 2 && n % 2 == 0) ++n;
  DF_CHECK(n >= 1, "denoising start ", denoising_start, " leaves no step to run");
  return int(s.timesteps().size()) - std::min(n, int(s.timesteps().size()));
}

Img2ImgPlan img2img_plan(const Scheduler& scheduler, int steps, double strength) {
  DF_CHECK(strength >= 0 && strength <= 1, "img2img strength must be in [0, 1], got ", strength);
  const int init = std::min(int(double(steps) * strength), steps);
  const int t_start = std::max(steps - init, 0);
  Img2ImgPlan plan;
  plan.begin_index = t_start * scheduler.order();
  plan.num_steps = steps - t_start;
  DF_CHECK(plan.num_steps >= 1 && plan.begin_index < int(scheduler.timesteps().size()),
           "img2img: strength ", strength, " with ", steps, " steps leaves no step to run");
  plan.timestep = scheduler.timesteps()[size_t(plan.begin_index)];
  return plan;
}

Tensor sample_img2img(Scheduler& s, double strength, const Tensor& init_latents,
                      const Tensor& noise, const Denoiser& denoise, Generator* gen,
                      const StepCallback& on_step, const StepFilter& filter) {
  DF_CHECK(s.num_inference_steps() > 0,
           "sample_img2img: call set_timesteps on the scheduler first");
  const Img2ImgPlan plan = img2img_plan(s, s.num_inference_steps(), strength);
  s.set_begin_index(plan.begin_index);
  const Tensor init = as_f32(init_latents, "img2img latents");
  Tensor n;
  if (noise.defined()) {
    n = as_f32(noise, "img2img noise");
  } else {
    DF_CHECK(gen != nullptr, "img2img: no noise and no generator to draw it from");
    n = gen->randn(init.shape());
  }
  return run(s, s.add_noise(init, n, plan.begin_index), denoise, gen, on_step, -1, filter);
}

Tensor sample_img2img(const SamplerOptions& options, const Tensor& init_latents,
                      const Tensor& noise, const Denoiser& denoise, Generator* gen,
                      const StepCallback& on_step, const StepFilter& filter) {
  auto s = make_scheduler(options);
  s->set_timesteps(options.steps);
  if (options.denoising_start <= 0)
    return sample_img2img(*s, options.strength, init_latents, noise, denoise, gen, on_step, filter);
  s->set_begin_index(denoising_start_index(*s, options.denoising_start));
  return run(*s, as_f32(init_latents, "img2img latents"), denoise, gen, on_step, -1, filter);
}

}  // namespace diffuse::sampling
