#include "sampling/schedule.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"
#include "core/json_file.h"

namespace diffuse::sampling {

PredictionType parse_prediction_type(const std::string& s) {
  if (s == "epsilon") return PredictionType::Epsilon;
  if (s == "v_prediction") return PredictionType::VPrediction;
  if (s == "sample") return PredictionType::Sample;
  DF_FAIL("unknown prediction_type '", s, "' (expected epsilon, v_prediction or sample)");
}

TimestepSpacing parse_timestep_spacing(const std::string& s) {
  if (s == "leading") return TimestepSpacing::Leading;
  if (s == "trailing") return TimestepSpacing::Trailing;
  if (s == "linspace") return TimestepSpacing::Linspace;
  DF_FAIL("unknown timestep_spacing '", s, "' (expected leading, trailing or linspace)");
}

BetaSchedule parse_beta_schedule(const std::string& s) {
  if (s == "linear") return BetaSchedule::Linear;
  if (s == "scaled_linear") return BetaSchedule::ScaledLinear;
  if (s == "squaredcos_cap_v2") return BetaSchedule::SquaredCosCapV2;
  DF_FAIL("unknown beta_schedule '", s, "' (expected linear, scaled_linear or squaredcos_cap_v2)");
}

const char* to_string(PredictionType p) {
  switch (p) {
    case PredictionType::Epsilon:
      return "epsilon";
    case PredictionType::VPrediction:
      return "v_prediction";
    case PredictionType::Sample:
      return "sample";
  }
  return "?";
}

const char* to_string(TimestepSpacing s) {
  switch (s) {
    case TimestepSpacing::Leading:
      return "leading";
    case TimestepSpacing::Trailing:
      return "trailing";
    case TimestepSpacing::Linspace:
      return "linspace";
  }
  return "?";
}

SchedulerConfig SchedulerConfig::stable_diffusion() {
  SchedulerConfig c;
  c.num_train_timesteps = 1000;
  c.beta_start = 0.00085;
  c.beta_end = 0.012;
  c.beta_schedule = BetaSchedule::ScaledLinear;
  c.steps_offset = 1;
  c.clip_sample = false;
  c.set_alpha_to_one = false;
  c.skip_prk_steps = true;
  c.prediction_type = PredictionType::Epsilon;
  c.timestep_spacing = TimestepSpacing::Leading;
  return c;
}

SchedulerConfig parse_scheduler_config(const std::string& json_text) {
  const nlohmann::json j = parse_json(json_text, "scheduler config");
  DF_CHECK(j.is_object(), "scheduler config: expected a JSON object");
  SchedulerConfig c;
  auto has = [&](const char* k) { return j.contains(k) && !j[k].is_null(); };
  auto get = [&](const char* k, auto& field) {
    if (!has(k)) return;
    try {
      field = j[k].get<typename std::decay_t<decltype(field)>::value_type>();
    } catch (const std::exception& e) {
      DF_FAIL("scheduler config: bad value for '", k, "': ", e.what());
    }
  };
  if (has("_class_name")) c.class_name = j["_class_name"].get<std::string>();
  get("num_train_timesteps", c.num_train_timesteps);
  get("beta_start", c.beta_start);
  get("beta_end", c.beta_end);
  if (has("beta_schedule")) c.beta_schedule = parse_beta_schedule(j["beta_schedule"]);
  get("trained_betas", c.trained_betas);
  if (has("prediction_type")) c.prediction_type = parse_prediction_type(j["prediction_type"]);
  if (has("timestep_spacing")) c.timestep_spacing = parse_timestep_spacing(j["timestep_spacing"]);
  get("steps_offset", c.steps_offset);
  get("clip_sample", c.clip_sample);
  get("clip_sample_range", c.clip_sample_range);
  get("set_alpha_to_one", c.set_alpha_to_one);
  get("skip_prk_steps", c.skip_prk_steps);
  get("rescale_betas_zero_snr", c.rescale_betas_zero_snr);
  get("use_karras_sigmas", c.use_karras_sigmas);
  get("sigma_min", c.sigma_min);
  get("sigma_max", c.sigma_max);
  get("algorithm_type", c.algorithm_type);
  get("solver_type", c.solver_type);
  get("solver_order", c.solver_order);
  get("lower_order_final", c.lower_order_final);
  get("euler_at_final", c.euler_at_final);
  get("final_sigmas_type", c.final_sigmas_type);
  get("variance_type", c.variance_type);
  get("original_inference_steps", c.original_inference_steps);
  get("timestep_scaling", c.timestep_scaling);
  get("predict_x0", c.predict_x0);
  get("disable_corrector", c.disable_corrector);
  // Options whose non-default values are not implemented.
  for (const char* k : {"thresholding", "use_exponential_sigmas", "use_beta_sigmas",
                        "use_lu_lambdas", "use_flow_sigmas", "use_dynamic_shifting"}) {
    if (has(k) && j[k].is_boolean() && j[k].get<bool>()) c.unsupported.push_back(k);
  }
  if (has("timestep_type") && j["timestep_type"] != "discrete")
    c.unsupported.push_back("timestep_type");
  if (has("interpolation_type") && j["interpolation_type"] != "linear")
    c.unsupported.push_back("interpolation_type");
  if (has("lambda_min_clipped") && j["lambda_min_clipped"].is_number())
    c.unsupported.push_back("lambda_min_clipped");
  check_scheduler_config(c);
  return c;
}

void check_scheduler_config(const SchedulerConfig& c) {
  // Every table (betas, alphas, sigmas) has num_train_timesteps entries: published schedulers
  // use 1000; 1e9 would allocate gigabytes before anything else is checked.
  const int64_t n = c.num_train_timesteps.value_or(1000);
  auto check_int = [](const char* k, const std::optional<int64_t>& v, int64_t lo, int64_t hi) {
    DF_CHECK(!v || (*v >= lo && *v <= hi), "scheduler config: ", k, " = ", *v, " is out of range [",
             lo, ", ", hi, "]");
  };
  auto check_finite = [](const char* k, const std::optional<double>& v) {
    DF_CHECK(!v || std::isfinite(*v), "scheduler config: ", k, " is not a finite number");
  };
  check_int("num_train_timesteps", c.num_train_timesteps, 1, kMaxTrainTimesteps);
  check_int("steps_offset", c.steps_offset, 0, n - 1);
  check_int("solver_order", c.solver_order, 1, 3);
  check_int("original_inference_steps", c.original_inference_steps, 1, n);
  check_finite("beta_start", c.beta_start);
  check_finite("beta_end", c.beta_end);
  check_finite("clip_sample_range", c.clip_sample_range);
  check_finite("sigma_min", c.sigma_min);
  check_finite("sigma_max", c.sigma_max);
  check_finite("timestep_scaling", c.timestep_scaling);
  if (c.trained_betas) {
    DF_CHECK(int64_t(c.trained_betas->size()) <= kMaxTrainTimesteps,
             "scheduler config: ", c.trained_betas->size(), " trained_betas, more than ",
             kMaxTrainTimesteps);
    for (float b : *c.trained_betas)
      DF_CHECK(std::isfinite(b) && b >= 0 && b < 1, "scheduler config: trained_betas holds ", b,
               ", outside [0, 1)");
  }
  if (c.disable_corrector)
    DF_CHECK(int64_t(c.disable_corrector->size()) <= kMaxTrainTimesteps,
             "scheduler config: disable_corrector has ", c.disable_corrector->size(), " entries");
}

// ---------------------------------------------------------------- betas

// torch.linspace(start, end, n, dtype=float32): the step and values in float, the second half
// counted back from the end.
static std::vector<float> torch_linspace_f32(float start, float end, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  if (n == 1) {
    v[0] = start;
    return v;
  }
  const float step = (end - start) / float(n - 1);
  const int64_t halfway = n / 2;
  for (int64_t i = 0; i < n; ++i)
    v[size_t(i)] = i < halfway ? start + step * float(i) : end - step * float(n - i - 1);
  return v;
}

static std::vector<float> rescale_zero_terminal_snr(const std::vector<float>& betas) {
  std::vector<float> s = cumprod_alphas(betas);
  for (float& a : s) a = std::sqrt(a);
  const float s0 = s.front(), sT = s.back();
  const float scale = s0 / (s0 - sT);
  for (float& a : s) a = (a - sT) * scale;
  std::vector<float> out(betas.size());
  float prev = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    float ab = s[i] * s[i];
    float alpha = i == 0 ? ab : ab / prev;
    out[i] = 1.0f - alpha;
    prev = ab;
  }
  return out;
}

std::vector<float> make_betas(BetaSchedule schedule, double beta_start, double beta_end,
                              int64_t num_train_timesteps, bool rescale_zero_snr) {
  DF_CHECK(num_train_timesteps >= 2, "num_train_timesteps must be at least 2, got ",
           num_train_timesteps);
  std::vector<float> betas;
  switch (schedule) {
    case BetaSchedule::Linear:
      betas = torch_linspace_f32(float(beta_start), float(beta_end), num_train_timesteps);
      break;
    case BetaSchedule::ScaledLinear:
      betas = torch_linspace_f32(float(std::sqrt(beta_start)), float(std::sqrt(beta_end)),
                                 num_train_timesteps);
      for (float& b : betas) b = b * b;
      break;
    case BetaSchedule::SquaredCosCapV2: {
      auto alpha_bar = [](double t) {
        double c = std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2);
        return c * c;
      };
      for (int64_t i = 0; i < num_train_timesteps; ++i) {
        double t1 = double(i) / double(num_train_timesteps);
        double t2 = double(i + 1) / double(num_train_timesteps);
        betas.push_back(float(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999)));
      }
      break;
    }
  }
  return rescale_zero_snr ? rescale_zero_terminal_snr(betas) : betas;
}

std::vector<float> cumprod_alphas(const std::vector<float>& betas) {
  std::vector<float> out(betas.size());
  double acc = 1.0;
  for (size_t i = 0; i < betas.size(); ++i) {
    acc *= double(1.0f - betas[i]);
    out[i] = float(acc);
  }
  return out;
}

std::vector<float> training_sigmas(const std::vector<float>& alphas_cumprod) {
  std::vector<float> s(alphas_cumprod.size());
  for (size_t i = 0; i < s.size(); ++i) {
    float a = alphas_cumprod[i];
    s[i] = std::sqrt((1.0f - a) / a);
  }
  return s;
}

// ---------------------------------------------------------------- numpy helpers

std::vector<double> np_linspace(double start, double stop, int64_t num, bool endpoint) {
  DF_CHECK(num >= 1, "linspace needs at least one point, got ", num);
  std::vector<double> v(static_cast<size_t>(num));
  const int64_t div = endpoint ? num - 1 : num;
  const double step = div > 0 ? (stop - start) / double(div) : 0.0;
  for (int64_t i = 0; i < num; ++i) v[size_t(i)] = double(i) * step + start;
  if (endpoint && num > 1) v.back() = stop;
  return v;
}

std::vector<double> np_arange(double start, double stop, double step) {
  DF_CHECK(step != 0, "arange step must not be zero");
  const double len = std::ceil((stop - start) / step);
  std::vector<double> v;
  if (!(len > 0)) return v;
  v.resize(size_t(len));
  v[0] = start;
  // numpy fills from the first two values: delta = (start + step) - start.
  const double delta = (start + step) - start;
  for (size_t i = 1; i < v.size(); ++i) v[i] = start + double(i) * delta;
  return v;
}

double np_round(double x) {
  return std::nearbyint(x);
}

double interp_index(double x, const std::vector<float>& fp) {
  const int64_t n = int64_t(fp.size());
  if (x <= 0) return fp.front();
  if (x >= double(n - 1)) return fp.back();
  const int64_t j = int64_t(std::floor(x));
  const double slope = double(fp[size_t(j + 1)]) - double(fp[size_t(j)]);
  return slope * (x - double(j)) + double(fp[size_t(j)]);
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t steps) {
  const double rho = 7.0;
  const double min_inv_rho = std::pow(sigma_min, 1.0 / rho);
  const double max_inv_rho = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> ramp = np_linspace(0, 1, steps);
  std::vector<double> s(ramp.size());
  for (size_t i = 0; i < s.size(); ++i)
    s[i] = std::pow(max_inv_rho + ramp[i] * (min_inv_rho - max_inv_rho), rho);
  return s;
}

std::vector<float> log_of(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = std::log(v[i]);
  return out;
}

// The last index whose log sigma is <= log_sigma (0 when none), clipped to n - 2.
template <typename T>
static int64_t low_index(T log_sigma, const std::vector<float>& log_sigmas) {
  const int64_t n = int64_t(log_sigmas.size());
  int64_t low = 0;
  for (int64_t i = 0; i < n; ++i)
    if (T(log_sigma) - T(log_sigmas[size_t(i)]) >= 0) low = i;
  return std::min(low, n - 2);
}

double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  const int64_t lo = low_index<double>(log_sigma, log_sigmas);
  const float low = log_sigmas[size_t(lo)], high = log_sigmas[size_t(lo + 1)];
  // numpy: (float32 - float64) / (float32 - float32)
  double w = (double(low) - log_sigma) / double(low - high);
  w = std::clamp(w, 0.0, 1.0);
  return (1 - w) * double(lo) + w * double(lo + 1);
}

float sigma_to_t_f32(float sigma, const std::vector<float>& log_sigmas) {
  const float log_sigma = std::log(std::max(sigma, 1e-10f));
  const int64_t lo = low_index<float>(log_sigma, log_sigmas);
  const float low = log_sigmas[size_t(lo)], high = log_sigmas[size_t(lo + 1)];
  float w = (low - log_sigma) / (low - high);
  w = std::clamp(w, 0.0f, 1.0f);
  return (1.0f - w) * float(lo) + w * float(lo + 1);
}

}  // namespace diffuse::sampling
