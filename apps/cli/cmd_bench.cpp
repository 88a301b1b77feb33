// diffuse bench: times the stages of a generation (UNet step with CFG, VAE decode and encode,
// text encoding) at one or more sizes, with the process's peak memory.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "apps/cli/command.h"
#include "apps/cli/common.h"
#include "core/allocator.h"
#include "core/parallel.h"
#include "core/sysinfo.h"
#include "ops/ops.h"
#include "ops/profile.h"

namespace diffuse::cli {
namespace {

struct BenchArgs {
  std::string model, config, sizes = "256,512", precision = "auto", stages = "all";
  std::string prompt = "a photograph of an astronaut riding a horse";
  int runs = 3, threads = 0;
  bool json = false, profile = false;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  const size_t n = t.size();
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

struct Timing {
  double wall_s = 0, cpu_s = 0;  // medians: wall time, and CPU time of all threads
};

// The process's current resident memory in MiB: {total, anonymous, file-backed}, from
// /proc/self/status ({-1, -1, -1} where it is unavailable).
std::array<double, 3> rss_now_mib() {
  std::array<double, 3> r{-1, -1, -1};
  std::ifstream in("/proc/self/status");
  std::string line;
  const char* keys[3] = {"VmRSS:", "RssAnon:", "RssFile:"};
  while (std::getline(in, line))
    for (int i = 0; i < 3; ++i)
      if (line.rfind(keys[i], 0) == 0)
        r[size_t(i)] = std::stod(line.substr(std::strlen(keys[i]))) / 1024;
  return r;
}

// With --profile: where a stage's memory went (resident now, the process's peak, the caching
// allocator's live, cached and peak bytes during the stage, and its misses in the timed runs).
void print_memory(const char* stage, const HostMemoryStats& after_warmup) {
  constexpr double kMiB = 1024.0 * 1024.0;
  const auto rss = rss_now_mib();
  const HostMemoryStats m = host_memory_stats();
  std::ifstream maps("/proc/self/maps");
  const long mappings = std::count(std::istreambuf_iterator<char>(maps), {}, '\n');
  std::fprintf(stderr,
               "-- %s memory: rss %.0f MiB (anon %.0f, file %.0f), peak rss %.0f MiB; allocator "
               "live %.0f, cached %.0f, stage peak live+cached %.0f, process peak live %.0f MiB; "
               "timed runs: %zu misses, %.0f MiB handed back, %.0f MiB fresh; %ld mappings\n",
               stage, rss[0], rss[1], rss[2], peak_rss_mib(), m.live / kMiB, m.cached / kMiB,
               m.peak_total / kMiB, m.peak_live / kMiB, m.misses - after_warmup.misses,
               (m.evicted - after_warmup.evicted) / kMiB, (m.fresh - after_warmup.fresh) / kMiB,
               mappings);
}

// One untimed warm-up call (primitive creation, weight packing), then the medians of `runs`.
// With --profile, the op table of the timed runs goes to stderr under `stage`.
Timing median_time(int runs, bool profile, const char* stage, const std::function<void()>& fn) {
  host_cache_clear();  // free blocks cached by the previous stage would not fit this one's sizes
  if (profile) reset_host_peak_total();
  fn();
  const HostMemoryStats after_warmup = host_memory_stats();
  std::vector<double> wall, cpu;
  if (profile) {
    ops::profile_reset();
    ops::set_profiling(true);
  }
  for (int i = 0; i < runs; ++i) {
    const double c0 = ops::process_cpu_seconds();
    auto t0 = std::chrono::steady_clock::now();
    fn();
    wall.push_back(seconds_since(t0));
    cpu.push_back(ops::process_cpu_seconds() - c0);
  }
  if (profile) {
    ops::set_profiling(false);
    std::fprintf(stderr, "-- %s (%d runs)\n%s", stage, runs, ops::profile_table().c_str());
    print_memory(stage, after_warmup);
  }
  return {median(wall), median(cpu)};
}

Tensor random_tensor(const Shape& shape, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(size_t(shape_numel(shape)));
  for (float& x : v) x = dist(rng);
  return Tensor::from_vector(v, shape);
}

std::vector<int64_t> parse_sizes(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    DF_CHECK(!item.empty() && item.find_first_not_of("0123456789") == std::string::npos,
             "bench: --size takes comma-separated pixel sizes (e.g. 256,512), got '", s, "'");
    const int64_t v = std::stoll(item);
    DF_CHECK(v >= 64 && v % 64 == 0, "bench: size ", v, " must be a multiple of 64");
    out.push_back(v);
  }
  DF_CHECK(!out.empty(), "bench: no size given");
  std::sort(out.begin(), out.end());  // ascending: the peak memory of each size is cumulative
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool wants(const std::string& stages, const char* name) {
  if (stages == "all") return true;
  std::stringstream ss(stages);
  std::string item;
  while (std::getline(ss, item, ','))
    if (item == name) return true;
  return false;
}

std::string fmt_s(double v) {
  if (v < 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

int run_bench(const BenchArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  auto bundle = open_model(a.model, a.config, pipeline::parse_precision(a.precision));
  const pipeline::Precision prec = bundle->precision();
  const std::vector<int64_t> sizes = parse_sizes(a.sizes);
  const auto scope = bundle->compute_scope();
  const bool log = !a.json;
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  const std::string waiting = wait_policy ? wait_policy : "default (GOMP_SPINCOUNT)";
  if (log)
    std::printf(
        "model %s, precision %s, %d threads (OpenMP wait policy %s), median of %d runs after "
        "one warm-up\n",
        a.model.c_str(), pipeline::precision_name(prec), num_threads(), waiting.c_str(), a.runs);

  // The CFG conditioning, batch 2: the unconditional and the conditional prompt.
  pipeline::Conditioning context;
  nlohmann::json result = nlohmann::json::object();
  Timing text;
  auto put = [&](nlohmann::json& r, const std::string& key, const Timing& t) {
    r[key + "_s"] = t.wall_s;
    r[key + "_cpu_s"] = t.cpu_s;
  };
  for (int64_t size : sizes) {
    const int64_t f = bundle->vae_config.block_out_channels.size() > 0
                          ? int64_t(1) << (bundle->vae_config.block_out_channels.size() - 1)
                          : 8;
    const int64_t lh = size / f, lc = bundle->unet_config.in_channels;
    const int64_t latent_c = bundle->vae_config.latent_channels;
    nlohmann::json r;
    r["precision"] = pipeline::precision_name(prec);
    r["threads"] = num_threads();
    r["omp_wait_policy"] = waiting;
    if (wants(a.stages, "text") || wants(a.stages, "unet")) {
      if (!context.context.defined()) {  // text encoding does not depend on the size: timed once
        const int64_t skip = bundle->default_clip_skip();
        pipeline::Conditioning cond;
        text = median_time(a.runs, a.profile, "text encoder",
                           [&] { cond = bundle->encode(a.prompt, skip); });
        context = pipeline::Conditioning::cat(bundle->encode("", skip), cond);
      }
      // SDXL's time ids depend on the size
      const pipeline::SizeConditioning sc;
      const Tensor ids = pipeline::make_time_ids(bundle->family(), sc, size, size, false);
      context.time_ids = ids.defined() ? ops::cat({ids, ids}, 0) : Tensor();
      if (wants(a.stages, "text")) put(r, "text_encode", text);
    }
    if (wants(a.stages, "unet")) {
      Tensor sample = random_tensor({2, lc, lh, lh}, 1, -2.f, 2.f);
      const auto& unet = bundle->unet();
      const std::string stage = str(size, "px UNet step");
      Timing t = median_time(a.runs, a.profile, stage.c_str(), [&] {
        unet.forward(sample, {500.f, 500.f}, context.context, context.pooled, context.time_ids);
      });
      put(r, "unet_step", t);
      if (log) std::printf("  %s: %.3f s (cpu %.3f s)\n", stage.c_str(), t.wall_s, t.cpu_s);
    }
    if (wants(a.stages, "decode")) {
      Tensor z = random_tensor({1, latent_c, lh, lh}, 2, -3.f, 3.f);
      const auto& vae = bundle->vae();
      const std::string stage = str(size, "px VAE decode");
      Timing t = median_time(a.runs, a.profile, stage.c_str(), [&] { vae.decode(z); });
      put(r, "vae_decode", t);
      if (log) std::printf("  %s: %.3f s (cpu %.3f s)\n", stage.c_str(), t.wall_s, t.cpu_s);
    }
    if (wants(a.stages, "encode")) {
      Tensor img = random_tensor({1, bundle->vae_config.in_channels, size, size}, 3, -1.f, 1.f);
      const auto& vae = bundle->vae();
      const std::string stage = str(size, "px VAE encode");
      Timing t = median_time(a.runs, a.profile, stage.c_str(), [&] { vae.encode(img); });
      put(r, "vae_encode", t);
      if (log) std::printf("  %s: %.3f s (cpu %.3f s)\n", stage.c_str(), t.wall_s, t.cpu_s);
    }
    r["peak_rss_mb"] = peak_rss_mib();
    result[std::to_string(size)] = r;
  }

  // The table.
  auto get = [](const nlohmann::json& r, const char* k) {
    return r.contains(k) ? r[k].get<double>() : -1.0;
  };
  std::printf("%-6s %12s %12s %12s %12s %12s\n", "size", "unet_step_s", "vae_decode_s",
              "vae_encode_s", "text_enc_s", "peak_rss_mb");
  for (int64_t size : sizes) {
    const auto& r = result[std::to_string(size)];
    std::printf("%-6lld %12s %12s %12s %12s %12.0f\n", (long long)size,
                fmt_s(get(r, "unet_step_s")).c_str(), fmt_s(get(r, "vae_decode_s")).c_str(),
                fmt_s(get(r, "vae_encode_s")).c_str(), fmt_s(get(r, "text_encode_s")).c_str(),
                get(r, "peak_rss_mb"));
  }
  if (a.json) std::printf("%s\n", result.dump().c_str());
  return 0;
}

Command bench_cmd(
    "bench",
    "Time a UNet step (CFG, batch 2), VAE decode and encode and text encoding, with peak memory",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<BenchArgs>();
      add_model_options(sub, a->model, a->config, true);
      sub.add_option("--size", a->sizes, "Comma-separated image sizes in pixels (square)")
          ->capture_default_str();
      add_precision_option(sub, a->precision);
      sub.add_option("--runs", a->runs, "Timed runs per stage (after one warm-up)")
          ->check(CLI::Range(1, 100))
          ->capture_default_str();
      add_threads_option(sub, a->threads, "Threads");
      sub.add_option("--stages", a->stages,
                     "Comma-separated subset of unet,decode,encode,text (default all)")
          ->capture_default_str();
      sub.add_option("-p,--prompt", a->prompt, "Prompt for the text encoder")
          ->capture_default_str();
      sub.add_flag("--json", a->json, "Print the results as one JSON object on the last line");
      sub.add_flag("--profile", a->profile, "Print each stage's time per op to stderr");
      return [a]() { return run_bench(*a); };
    });

}  // namespace
}  // namespace diffuse::cli
