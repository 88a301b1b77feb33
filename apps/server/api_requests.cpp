#include "apps/server/api_requests.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <mutex>
#include <random>
#include <tuple>

#include "apps/server/api_error.h"
#include "apps/server/base64.h"
#include "core/error.h"
#include "io/image.h"
#include "pipeline/generate.h"
#include "pipeline/image_tensor.h"
#include "pipeline/parameters.h"
#include "sampling/samplers.h"

namespace diffuse::server {

using nlohmann::json;

namespace {

[[noreturn]] void bad_field(const std::string& key, const std::string& what) {
  throw ApiError(422, "invalid field '" + key + "'", what);
}

const json* field(const json& o, const char* key) {
  auto it = o.find(key);
  return it == o.end() || it->is_null() ? nullptr : &*it;
}

std::string get_string(const json& o, const char* key, const std::string& def) {
  const json* v = field(o, key);
  if (!v) return def;
  if (!v->is_string()) bad_field(key, std::string("expected a string, got ") + v->type_name());
  return v->get<std::string>();
}

int64_t get_int(const json& o, const char* key, int64_t def, int64_t lo, int64_t hi) {
  const json* v = field(o, key);
  if (!v) return def;
  int64_t x = 0;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > uint64_t(hi)) bad_field(key, str("must be between ", lo, " and ", hi, ", got ", u));
    x = int64_t(u);
  } else if (v->is_number_integer()) {
    x = v->get<int64_t>();
  } else if (v->is_number_float()) {
    const double d = v->get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9.0e15)
      bad_field(key, str("expected an integer, got ", v->dump()));
    x = int64_t(d);
  } else {
    bad_field(key, std::string("expected an integer, got ") + v->type_name());
  }
  if (x < lo || x > hi) bad_field(key, str("must be between ", lo, " and ", hi, ", got ", x));
  return x;
}

double get_number(const json& o, const char* key, double def, double lo, double hi) {
  const json* v = field(o, key);
  if (!v) return def;
  if (!v->is_number()) bad_field(key, std::string("expected a number, got ") + v->type_name());
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    bad_field(key, str("must be between ", lo, " and ", hi, ", got ", d));
  return d;
}

bool get_bool(const json& o, const char* key, bool def) {
  const json* v = field(o, key);
  if (!v) return def;
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_number_integer() && (v->get<int64_t>() == 0 || v->get<int64_t>() == 1))
    return v->get<int64_t>() == 1;
  bad_field(key, std::string("expected true or false, got ") + v->dump());
}

// A count of at least 1 and at most one of the server's limits (named by its option).
int get_limited(const json& o, const char* key, int64_t def, int64_t limit, const char* option) {
  const int64_t v = get_int(o, key, def, 1, std::numeric_limits<int64_t>::max());
  if (v > limit)
    bad_field(key, str(v, " is above the server's limit of ", limit, " (", option, ")"));
  return int(v);
}

// A prompt of at most max_prompt_length characters (bytes).
std::string get_prompt(const json& o, const char* key, const RequestDefaults& d) {
  std::string p = get_string(o, key, "");
  if (p.size() > d.max_prompt_length)
    bad_field(key, str("the text is ", p.size(), " characters, above the server's limit of ",
                       d.max_prompt_length, " (--max-prompt-length)"));
  return p;
}

// A width or height: a positive multiple of 8, at most max_size.
int64_t check_size(const char* key, int64_t v, int max_size) {
  if (v < 8 || v % 8 != 0) bad_field(key, str("must be a positive multiple of 8, got ", v));
  if (v > max_size)
    bad_field(key, str(v, " is above the server's limit of ", max_size, " (--max-size)"));
  return v;
}

int64_t get_size(const json& o, const char* key, int64_t def, int max_size) {
  return check_size(key,
                    get_int(o, key, def, std::numeric_limits<int64_t>::min(),
                            std::numeric_limits<int64_t>::max()),
                    max_size);
}

// seed < 0 -> a random one, as A1111 (0 .. 2^32 - 2).
int64_t resolve_seed(int64_t seed) {
  if (seed >= 0) return seed;
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> lk(mu);
  return int64_t(rng() % 4294967295ull);
}

std::string sampler_list() {
  std::string all;
  for (const auto& s : sampling::sampler_names())
    all += (all.empty() ? "" : ", ") + pipeline::a1111_sampler_name(s);
  return all;
}

// Sampler and scheduler from A1111's names ("DPM++ 2M Karras", or "DPM++ 2M" + "karras") or
// diffuse's ("dpmpp_2m").
void set_sampler(pipeline::GenerateRequest& req, const char* key, const std::string& name,
                 const std::string& scheduler) {
  std::string sampler, sched;
  bool known = pipeline::from_a1111_sampler_name(name, &sampler, &sched);
  if (known) {
    known = false;
    for (const auto& s : sampling::sampler_names()) known |= s == sampler;
  }
  if (!known) bad_field(key, "unknown sampler '" + name + "' (one of: " + sampler_list() + ")");
  req.sampler = sampler;
  req.scheduler = sched;
  if (std::string s = scheduler_from_a1111(scheduler); !s.empty()) req.scheduler = s;
}

ModelEntry resolve_model(const std::string& requested, const ModelDirectory& models,
                         const RequestDefaults& d) {
  std::string name = requested.empty() ? d.model : requested;
  if (name.empty()) {
    auto all = models.list();
    if (all.empty()) throw ApiError(404, "no model", "the model dir holds no model");
    name = all.front().name;
  }
  return models.find(name);
}

// What both A1111 requests and OpenAI's share: the model (body "model" or
// override_settings.sd_model_checkpoint), clip skip and the noise source.
ModelEntry common_settings(const json& body, pipeline::GenerateRequest& req,
                           const ModelDirectory& models, const RequestDefaults& d) {
  std::string model = get_string(body, "model", "");
  int64_t clip_skip = get_int(body, "clip_skip", d.clip_skip, 0, 48);
  std::string rng = get_string(body, "rng", "cpu");
  if (const json* o = field(body, "override_settings")) {
    if (!o->is_object())
      bad_field("override_settings", std::string("expected an object, got ") + o->type_name());
    if (model.empty()) model = get_string(*o, "sd_model_checkpoint", "");
    clip_skip = get_int(*o, "CLIP_stop_at_last_layers", clip_skip, 0, 48);
    const std::string src = get_string(*o, "randn_source", "");
    if (src == "CPU")
      rng = "cpu";
    else if (src == "GPU")
      rng = "cuda";
    else if (!src.empty())
      bad_field("randn_source", "unsupported noise source '" + src + "' (CPU or GPU)");
  }
  if (rng == "torch") rng = "cpu";
  if (rng != "cpu" && rng != "cuda") bad_field("rng", "unknown rng '" + rng + "' (cpu or cuda)");
  req.rng = rng;
  // A1111 counts 1 as "no skip": the family's default here (SD2 conditions on its penultimate
  // block).
  req.clip_skip = clip_skip <= 1 ? 0 : clip_skip;
  return resolve_model(model, models, d);
}

io::Image decode_field_image(const std::string& key, const std::string& b64, int channels,
                             int max_side) {
  std::string bytes;
  try {
    bytes = base64_decode(b64);
  } catch (const std::exception& e) {
    bad_field(key, std::string("not base64: ") + e.what());
  }
  try {
    return io::decode_image(bytes, channels, max_side);
  } catch (const std::exception& e) {
    bad_field(key, std::string("not an image: ") + e.what());
  }
}

double unix_seconds(double t) {
  return std::floor(t);
}

}  // namespace

std::string scheduler_from_a1111(const std::string& name) {
  std::string n;
  for (unsigned char c : name) n += char(std::tolower(c));
  if (n.empty() || n == "automatic") return "";
  if (n == "default" || n == "karras" || n == "trailing") return n;
  bad_field("scheduler", "unknown scheduler '" + name + "' (automatic, karras or trailing)");
}

// The deepest nesting of arrays and objects in a JSON text, counted without recursion (strings
// skipped); stops counting once above `limit`. Malformed text is left to the parser.
static size_t json_depth(const std::string& text, size_t limit) {
  size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

json parse_json_object(const std::string& body) {
  if (body.size() > kMaxJsonBody)
    throw ApiError(413, "request too large",
                   str("the body is ", body.size(), " bytes, over the limit of ", kMaxJsonBody));
  // nlohmann's copy and dump recurse: a body nested thousands deep would overflow the stack.
  if (json_depth(body, kMaxJsonDepth) > kMaxJsonDepth)
    throw ApiError(400, "malformed JSON",
                   str("the body is nested deeper than ", kMaxJsonDepth, " levels"));
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, "malformed JSON", e.what());
  }
  if (!j.is_object())
    throw ApiError(422, "invalid body",
                   std::string("expected a JSON object, got ") + j.type_name());
  return j;
}

// The server's own settings of a request, and its LoRA files: <lora:NAME:WEIGHT> prompt tags
// name files of the server's LoRA folder. Checked here, so that a bad tag or a missing file is
// answered 422 before the job queues.
static void resolve_loras(pipeline::GenerateRequest& req, const RequestDefaults& d) {
  req.vae_tiling = d.vae_tiling;
  req.lora_dir = d.lora_dir;
  try {
    pipeline::request_loras(req);
  } catch (const Error& e) {
    throw ApiError(422, "invalid field 'prompt'", e.what());
  } catch (const std::filesystem::filesystem_error& e) {
    throw ApiError(422, "invalid field 'prompt'",
                   "a <lora:NAME:WEIGHT> tag names no usable file: " + e.code().message());
  }
}

// A1111's hires fix fields of a txt2img request (enable_hr, hr_*), into req.hires; the sizes
// are checked against the server's limit here, the rest against the model when the job runs.
static void hires_settings(const json& body, pipeline::GenerateRequest& req,
                           const RequestDefaults& d, json& echo) {
  auto& h = req.hires;
  h.enabled = get_bool(body, "enable_hr", false);
  echo["enable_hr"] = h.enabled;
  if (!h.enabled) return;
  h.scale = get_number(body, "hr_scale", 2.0, 1.0, 8.0);
  const int64_t x = get_int(body, "hr_resize_x", 0, 0, d.max_size);
  const int64_t y = get_int(body, "hr_resize_y", 0, 0, d.max_size);
  // One side given: the other keeps the first pass's aspect ratio (as A1111).
  h.width = x > 0 ? x : (y > 0 ? y * req.width / req.height : 0);
  h.height = y > 0 ? y : (x > 0 ? x * req.height / req.width : 0);
  const std::string up = get_string(body, "hr_upscaler", "Latent");
  try {
    h.upscaler = pipeline::find_hires_upscaler(up).name;
  } catch (const Error& e) {
    bad_field("hr_upscaler", e.what());
  }
  h.steps = int(get_int(body, "hr_second_pass_steps", 0, 0, d.max_steps));
  h.strength = get_number(body, "denoising_strength", 0.7, 0.0, 1.0);
  if (h.strength <= 0.0) bad_field("denoising_strength", "must be in (0, 1], got 0");
  const std::string sampler = get_string(body, "hr_sampler_name", "");
  if (!sampler.empty() && sampler != "Use same sampler") {
    pipeline::GenerateRequest tmp;
    set_sampler(tmp, "hr_sampler_name", sampler, "");
    h.sampler = tmp.sampler;
  }
  h.prompt = get_prompt(body, "hr_prompt", d);
  h.negative_prompt = get_prompt(body, "hr_negative_prompt", d);
  int64_t w = 0, ht = 0;
  try {
    std::tie(w, ht) = pipeline::hires_size(h, req.width, req.height, 8);
  } catch (const Error& e) {
    bad_field(h.width > 0 ? "hr_resize_x" : "hr_scale", e.what());
  }
  check_size(h.width > 0 ? "hr_resize_x" : "hr_scale", w, d.max_size);
  check_size(h.height > 0 ? "hr_resize_y" : "hr_scale", ht, d.max_size);
  echo["hr_scale"] = h.scale;
  echo["hr_resize_x"] = x;
  echo["hr_resize_y"] = y;
  echo["hr_upscaler"] = up;
  echo["hr_second_pass_steps"] = h.steps;
  echo["denoising_strength"] = h.strength;
  echo["hr_sampler_name"] = sampler;
  echo["hr_prompt"] = h.prompt;
  echo["hr_negative_prompt"] = h.negative_prompt;
}

JobSpec a1111_job(const json& body, bool img2img, const ModelDirectory& models,
                  const RequestDefaults& d) {
  JobSpec spec;
  spec.kind = img2img ? "img2img" : "txt2img";
  auto& req = spec.req;
  spec.model = common_settings(body, req, models, d);
  req.prompt = get_prompt(body, "prompt", d);
  req.negative_prompt = get_prompt(body, "negative_prompt", d);
  const int64_t seed =
      get_int(body, "seed", -1, std::numeric_limits<int64_t>::min(), int64_t(1) << 53);
  req.seed = resolve_seed(seed);
  const char* sampler_key = field(body, "sampler_name") ? "sampler_name" : "sampler_index";
  const std::string sampler = get_string(body, sampler_key, "Euler");
  set_sampler(req, sampler_key, sampler, get_string(body, "scheduler", ""));
  req.batch_size = get_limited(body, "batch_size", 1, d.max_batch_size, "--max-batch-size");
  req.batch_count = get_limited(body, "n_iter", 1, d.max_batch_count, "--max-batch-count");
  req.steps = get_limited(body, "steps", 50, d.max_steps, "--max-steps");
  req.cfg_scale = float(get_number(body, "cfg_scale", 7.0, 0.0, 100.0));
  req.eta = float(get_number(body, "eta", 0.0, 0.0, 1.0));
  if (!img2img) {
    if (field(body, "init_images"))
      bad_field("init_images", "txt2img takes no init images (use /sdapi/v1/img2img)");
    req.width = get_size(body, "width", 512, d.max_size);
    req.height = get_size(body, "height", 512, d.max_size);
  } else {
    const json* imgs = field(body, "init_images");
    if (!imgs || !imgs->is_array() || imgs->empty() || !(*imgs)[0].is_string())
      bad_field("init_images", "expected a list of base64 images");
    const int max_side = std::max(d.max_size, 4096);
    io::Image img = decode_field_image("init_images", (*imgs)[0].get<std::string>(), 3, max_side);
    // Without a size, the image's own (rounded down to a multiple of 8).
    req.width = field(body, "width") ? get_size(body, "width", 0, d.max_size)
                                     : check_size("width", img.width / 8 * 8, d.max_size);
    req.height = field(body, "height") ? get_size(body, "height", 0, d.max_size)
                                       : check_size("height", img.height / 8 * 8, d.max_size);
    if (img.width != req.width || img.height != req.height)
      img = pipeline::resize_nearest(img, int(req.width), int(req.height));
    req.init_image = pipeline::image_to_tensor(img);
    const double s = get_number(body, "denoising_strength", 0.75, 0.0, 1.0);
    if (s <= 0.0) bad_field("denoising_strength", "must be in (0, 1], got 0");
    // img2img runs int(steps * strength) of the steps (an inpainting model at strength 1: all).
    if (int(req.steps * s) < 1 && s < 1.0)
      bad_field("denoising_strength", str("strength ", s, " with ", req.steps,
                                          " steps leaves no step to run: raise either"));
    req.strength = s;
    if (const json* m = field(body, "mask")) {
      if (!m->is_string())
        bad_field("mask", std::string("expected a base64 image, got ") + m->type_name());
      io::Image mask = decode_field_image("mask", m->get<std::string>(), 0, max_side);
      if (mask.width != req.width || mask.height != req.height)
        mask = pipeline::resize_nearest(mask, int(req.width), int(req.height));
      req.mask = pipeline::mask_to_tensor(mask);
      if (get_bool(body, "inpainting_mask_invert", false)) {
        float* p = req.mask.data<float>();
        for (int64_t i = 0, n = req.mask.numel(); i < n; ++i) p[i] = 1.0f - p[i];
      }
    }
  }

  // A1111's refiner: a checkpoint that finishes the image after refiner_switch_at of the steps.
  const std::string refiner = get_string(body, "refiner_checkpoint", "");
  if (!refiner.empty() && refiner != "None") {
    spec.refiner = models.find(refiner);
    req.refiner_switch_at = get_number(body, "refiner_switch_at", 0.8, 0.0, 1.0);
    if (req.refiner_switch_at <= 0.0 || req.refiner_switch_at >= 1.0)
      bad_field("refiner_switch_at", str("must be in (0, 1), got ", req.refiner_switch_at));
  }
  resolve_loras(req, d);
  // The request as understood, and nothing else: a job keeps it as long as the job is listed.
  json p = json::object();
  p["prompt"] = req.prompt;
  p["negative_prompt"] = req.negative_prompt;
  p["seed"] = seed;
  p["sampler_name"] = sampler;
  p["scheduler"] = get_string(body, "scheduler", "automatic");
  p["batch_size"] = req.batch_size;
  p["n_iter"] = req.batch_count;
  p["steps"] = req.steps;
  p["cfg_scale"] = req.cfg_scale;
  p["width"] = req.width;
  p["height"] = req.height;
  p["eta"] = req.eta;
  p["clip_skip"] = req.clip_skip > 0 ? req.clip_skip : 1;
  if (img2img) {
    p["denoising_strength"] = req.strength;
    p["include_init_images"] = get_bool(body, "include_init_images", false);
  }
  if (!img2img) hires_settings(body, req, d, p);
  p["model"] = spec.model.name;
  if (spec.refiner) {
    p["refiner_checkpoint"] = spec.refiner->name;
    p["refiner_switch_at"] = req.refiner_switch_at;
  }
  p["send_images"] = get_bool(body, "send_images", true);
  spec.parameters = std::move(p);
  return spec;
}

json a1111_response(const JobInfo& job, const json& body) {
  const auto& spec = *job.spec;
  const auto& req = spec.req;
  json images = json::array(), seeds = json::array(), infotexts = json::array(),
       prompts = json::array(), negatives = json::array();
  for (const auto& im : job.images) {
    if (!spec.parameters.value("send_images", true)) break;
    images.push_back(base64_encode(im.png));
  }
  for (const auto& im : job.images) {
    seeds.push_back(im.seed);
    infotexts.push_back(im.infotext);
    prompts.push_back(req.prompt);
    negatives.push_back(req.negative_prompt);
  }
  json info = {{"prompt", req.prompt},
               {"all_prompts", prompts},
               {"negative_prompt", req.negative_prompt},
               {"all_negative_prompts", negatives},
               {"seed", job.images.empty() ? req.seed : job.images.front().seed},
               {"all_seeds", seeds},
               {"subseed", -1},
               {"all_subseeds", json::array()},
               {"width", req.width},
               {"height", req.height},
               {"sampler_name", pipeline::a1111_sampler_name(req.sampler)},
               {"scheduler", req.scheduler == "default" ? "automatic" : req.scheduler},
               {"cfg_scale", req.cfg_scale},
               {"steps", req.steps},
               {"batch_size", req.batch_size},
               {"n_iter", req.batch_count},
               {"clip_skip", job.clip_skip},
               {"sd_model_name", spec.model.stem()},
               {"sd_model_checkpoint", spec.model.name},
               {"infotexts", infotexts},
               {"job_id", job.id},
               {"version", "diffuse 0.1.0"}};
  if (spec.kind == "img2img") info["denoising_strength"] = req.strength;
  json parameters = spec.parameters;
  if (spec.parameters.value("include_init_images", false))
    if (const json* imgs = field(body, "init_images")) parameters["init_images"] = *imgs;
  return {{"images", images}, {"parameters", parameters}, {"info", info.dump()}};
}

JobSpec openai_job(const json& body, const ModelDirectory& models, const RequestDefaults& d) {
  JobSpec spec;
  spec.kind = "openai";
  auto& req = spec.req;
  const json* prompt = field(body, "prompt");
  if (!prompt) bad_field("prompt", "a prompt is required");
  req.prompt = get_prompt(body, "prompt", d);
  spec.model = common_settings(body, req, models, d);
  req.batch_size = d.max_batch_size < 10
                       ? get_limited(body, "n", 1, d.max_batch_size, "--max-batch-size")
                       : int(get_int(body, "n", 1, 1, 10));
  const std::string size = get_string(body, "size", "512x512");
  const size_t x = size.find('x');
  int64_t w = 0, h = 0;
  try {
    size_t a = 0, b = 0;
    if (x == std::string::npos) throw std::invalid_argument("no x");
    w = std::stoll(size.substr(0, x), &a);
    h = std::stoll(size.substr(x + 1), &b);
    if (a != x || b != size.size() - x - 1) throw std::invalid_argument("trailing text");
  } catch (const std::exception&) {
    bad_field("size", "expected WIDTHxHEIGHT (e.g. 512x512), got '" + size + "'");
  }
  req.width = check_size("size", w, d.max_size);
  req.height = check_size("size", h, d.max_size);
  const std::string format = get_string(body, "response_format", "b64_json");
  if (format != "b64_json")
    bad_field("response_format", "only b64_json is supported, got '" + format + "'");
  req.negative_prompt = get_prompt(body, "negative_prompt", d);
  req.steps = get_limited(body, "steps", 20, d.max_steps, "--max-steps");
  req.cfg_scale = float(get_number(body, "cfg_scale", 7.0, 0.0, 100.0));
  const int64_t seed =
      get_int(body, "seed", -1, std::numeric_limits<int64_t>::min(), int64_t(1) << 53);
  req.seed = resolve_seed(seed);
  set_sampler(req, "sampler", get_string(body, "sampler", "Euler"),
              get_string(body, "scheduler", ""));
  resolve_loras(req, d);
  spec.parameters = {{"prompt", req.prompt},
                     {"negative_prompt", req.negative_prompt},
                     {"n", req.batch_size},
                     {"size", size},
                     {"steps", req.steps},
                     {"cfg_scale", req.cfg_scale},
                     {"seed", seed},
                     {"sampler", get_string(body, "sampler", "Euler")},
                     {"model", spec.model.name}};
  return spec;
}

json openai_response(const JobInfo& job) {
  json data = json::array();
  for (const auto& im : job.images)
    data.push_back({{"b64_json", base64_encode(im.png)},
                    {"revised_prompt", job.spec->req.prompt},
                    {"seed", im.seed}});
  return {{"created", int64_t(unix_seconds(job.finished))}, {"data", data}};
}

json job_json(const JobInfo& job, bool with_images) {
  const auto& spec = *job.spec;
  json j = {{"id", job.id},
            {"kind", spec.kind},
            {"state", job_state_name(job.state)},
            {"model", spec.model.name},
            {"progress", job.progress},
            {"eta", job.eta_seconds},
            {"step", job.step},
            {"steps", job.steps},
            {"seed", spec.req.seed},
            {"created", job.created},
            {"parameters", spec.parameters}};
  if (job.queue_position >= 0) j["queue_position"] = job.queue_position;
  if (job.started > 0) j["started"] = job.started;
  if (job.finished > 0) j["finished"] = job.finished;
  if (!job.error.empty()) {
    j["error"] = job.error;
    j["detail"] = job.detail;
    if (job.error_status) j["status"] = job.error_status;
  }
  if (with_images && job.state == JobState::Done) {
    json images = json::array();
    for (const auto& im : job.images)
      images.push_back(
          {{"image", base64_encode(im.png)}, {"seed", im.seed}, {"infotext", im.infotext}});
    j["images"] = images;
  }
  return j;
}

json a1111_samplers() {
  json out = json::array();
  for (const auto& s : sampling::sampler_names())
    out.push_back(
        {{"name", pipeline::a1111_sampler_name(s)}, {"aliases", {s}}, {"options", json::object()}});
  return out;
}

json a1111_schedulers() {
  auto entry = [](const char* name, const char* label, json aliases) {
    return json{{"name", name},
                {"label", label},
                {"aliases", aliases},
                {"default_rho", -1},
                {"need_inner_model", false}};
  };
  return json::array({entry("automatic", "Automatic", json::array({"default"})),
                      entry("karras", "Karras", json::array()),
                      entry("trailing", "Trailing", json::array())});
}

}  // namespace diffuse::server
