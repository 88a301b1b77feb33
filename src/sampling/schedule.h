// Noise schedules as diffusers computes them: betas, alphas_cumprod, training sigmas, timestep
// spacing, Karras sigmas and the sigma -> timestep map. Precision follows diffusers: torch
// tensors are float32, numpy arrays float64; each helper says which it mirrors.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace diffuse::sampling {

enum class PredictionType { Epsilon, VPrediction, Sample };
enum class TimestepSpacing { Leading, Trailing, Linspace };
enum class BetaSchedule { Linear, ScaledLinear, SquaredCosCapV2 };

PredictionType parse_prediction_type(const std::string& s);    // epsilon | v_prediction | sample
TimestepSpacing parse_timestep_spacing(const std::string& s);  // leading | trailing | linspace
BetaSchedule parse_beta_schedule(
    const std::string& s);  // linear | scaled_linear | squaredcos_cap_v2
const char* to_string(PredictionType p);
const char* to_string(TimestepSpacing s);

// A diffusers scheduler config (scheduler_config.json). Every field is optional: an unset one
// takes the default of the scheduler class that reads it, exactly as in diffusers (e.g. an old
// SD 1.5 config without timestep_spacing gives Euler "linspace" but DDIM "leading").
struct SchedulerConfig {
  std::string class_name;  // "_class_name" when parsed from a file, else empty
  std::optional<int64_t> num_train_timesteps;
  std::optional<double> beta_start, beta_end;
  std::optional<BetaSchedule> beta_schedule;
  std::optional<std::vector<float>> trained_betas;
  std::optional<PredictionType> prediction_type;
  std::optional<TimestepSpacing> timestep_spacing;
  std::optional<int64_t> steps_offset;
  std::optional<bool> clip_sample;
  std::optional<double> clip_sample_range;
  std::optional<bool> set_alpha_to_one;
  std::optional<bool> skip_prk_steps;          // PNDM
  std::optional<bool> rescale_betas_zero_snr;  // DDIM, DDPM, Euler, EulerA, DPM, UniPC, LCM, TCD
  std::optional<bool> use_karras_sigmas;
  std::optional<double> sigma_min, sigma_max;  // Karras range (Euler, UniPC)
  std::optional<std::string> algorithm_type;   // DPM-Solver: dpmsolver++ | sde-dpmsolver++ | ...
  std::optional<std::string> solver_type;      // DPM: midpoint | heun; UniPC: bh1 | bh2
  std::optional<int64_t> solver_order;
  std::optional<bool> lower_order_final;
  std::optional<bool> euler_at_final;
  std::optional<std::string> final_sigmas_type;     // zero | sigma_min
  std::optional<std::string> variance_type;         // DDPM: fixed_small | fixed_small_log | ...
  std::optional<int64_t> original_inference_steps;  // LCM, TCD
  std::optional<double> timestep_scaling;           // LCM
  std::optional<bool> predict_x0;                   // UniPC
  std::optional<std::vector<int64_t>> disable_corrector;  // UniPC
  // Options that were set to a non-default value this implementation lacks (thresholding,
  // exponential/beta sigmas, flow sigmas, ...): creating a scheduler from it fails naming them.
  std::vector<std::string> unsupported;

  // Stable Diffusion 1.x/2.x's published config (scaled_linear 0.00085..0.012, leading spacing
  // with steps_offset 1, no clipping, set_alpha_to_one false, skip_prk_steps, epsilon).
  static SchedulerConfig stable_diffusion();
};

// The most training timesteps a scheduler config may give (published ones: 1000).
inline constexpr int64_t kMaxTrainTimesteps = 10000;

// Parses scheduler_config.json text. Unknown keys are ignored, as diffusers does. Values that
// would size tables absurdly or are not finite are refused (check_scheduler_config).
SchedulerConfig parse_scheduler_config(const std::string& json_text);
// Throws an Error naming the first field out of range: num_train_timesteps in
// [1, kMaxTrainTimesteps], steps_offset below it, finite betas and sigmas, ...
void check_scheduler_config(const SchedulerConfig& c);

// ---- building blocks (diffusers' math) ----

// Betas as float32: torch.linspace / scaled_linear / squaredcos_cap_v2 (betas_for_alpha_bar),
// then rescale_zero_terminal_snr when asked.
std::vector<float> make_betas(BetaSchedule schedule, double beta_start, double beta_end,
                              int64_t num_train_timesteps, bool rescale_zero_snr);
// torch.cumprod(1 - betas) (float32 values; torch accumulates in double on the CPU).
std::vector<float> cumprod_alphas(const std::vector<float>& betas);
// ((1 - a) / a) ** 0.5 in float32, indexed by training timestep (ascending).
std::vector<float> training_sigmas(const std::vector<float>& alphas_cumprod);

// numpy helpers, float64.
std::vector<double> np_linspace(double start, double stop, int64_t num, bool endpoint = true);
std::vector<double> np_arange(double start, double stop, double step);
double np_round(double x);  // half to even
// np.interp(x, arange(len(fp)), fp)
double interp_index(double x, const std::vector<float>& fp);

// Karras et al. (2022) sigmas, rho = 7, from sigma_max down to sigma_min (float64).
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t steps);

// diffusers' _sigma_to_t: the fractional training timestep of sigma, interpolating linearly in
// log sigma between neighbours. log_sigmas is np.log of the float32 training sigmas.
// The double version mirrors a numpy sigma, the float one a torch float32 sigma (KDPM2).
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);
float sigma_to_t_f32(float sigma, const std::vector<float>& log_sigmas);
std::vector<float> log_of(const std::vector<float>& v);  // float32 log

}  // namespace diffuse::sampling
