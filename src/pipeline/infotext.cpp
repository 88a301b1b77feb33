#include "pipeline/infotext.h"

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "pipeline/parameters.h"
#include "sampling/samplers.h"

namespace diffuse::pipeline {

namespace {

bool word_char(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }
bool key_char(unsigned char c) { return word_char(c) || c == ' ' || c == '-' || c == '/'; }
bool space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

// A1111's quoted values are JSON strings; a value that does not parse stays as written.
std::string unquote(const std::string& v) {
  if (v.size() < 2 || v.front() != '"' || v.back() != '"') return v;
  try {
    const auto j = nlohmann::json::parse(v);
    if (j.is_string()) return j.get<std::string>();
  } catch (const nlohmann::json::exception&) {
  }
  return v;
}

// One match of A1111's field pattern \s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$) at
// `i`: the end of the match, or npos.
size_t match_field(const std::string& s, size_t i, std::string* key, std::string* value) {
  size_t p = i;
  while (p < s.size() && space(static_cast<unsigned char>(s[p]))) ++p;
  if (p >= s.size() || !word_char(static_cast<unsigned char>(s[p]))) return std::string::npos;
  const size_t k0 = p++;
  while (p < s.size() && key_char(static_cast<unsigned char>(s[p]))) ++p;
  if (p - k0 < 2 || p >= s.size() || s[p] != ':') return std::string::npos;
  *key = s.substr(k0, p - k0);
  ++p;
  while (p < s.size() && space(static_cast<unsigned char>(s[p]))) ++p;
  if (p < s.size() && s[p] == '"') {  // a quoted value, when it closes before ',' or the end
    size_t q = p + 1;
    while (q < s.size() && s[q] != '"') q += s[q] == '\\' && q + 1 < s.size() ? 2 : 1;
    if (q < s.size() && q > p + 1 && (q + 1 == s.size() || s[q + 1] == ',')) {
      *value = s.substr(p, q + 1 - p);
      return q + 1 == s.size() ? q + 1 : q + 2;
    }
  }
  const size_t comma = s.find(',', p);
  *value = s.substr(p, comma == std::string::npos ? std::string::npos : comma - p);
  return comma == std::string::npos ? s.size() : comma + 1;
}

std::vector<std::pair<std::string, std::string>> find_fields(const std::string& line) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t i = 0;
  while (i < line.size()) {
    std::string k, v;
    const size_t end = match_field(line, i, &k, &v);
    if (end == std::string::npos) {
      ++i;
      continue;
    }
    out.emplace_back(std::move(k), std::move(v));
    i = end;
  }
  return out;
}

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

double number(const Infotext& info, const char* key, double lo, double hi) {
  const std::string& v = *info.find(key);
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  DF_CHECK(!v.empty() && end == v.c_str() + v.size() && std::isfinite(d) && d >= lo && d <= hi,
           "infotext field '", key, "': '", v, "' is not a number between ", lo, " and ", hi);
  return d;
}

int64_t integer(const Infotext& info, const char* key, double lo, double hi) {
  const double d = number(info, key, lo, hi);
  DF_CHECK(d == std::floor(d), "infotext field '", key, "': '", *info.find(key),
           "' is not a whole number");
  return int64_t(d);
}

std::pair<int64_t, int64_t> size_field(const Infotext& info, const char* key) {
  const std::string& v = *info.find(key);
  long long w = 0, h = 0;
  char extra = 0;
  DF_CHECK(std::sscanf(v.c_str(), "%lldx%lld%c", &w, &h, &extra) == 2 && w > 0 && h > 0 &&
               w <= 65536 && h <= 65536,
           "infotext field '", key, "': '", v, "' is not a size WxH");
  return {w, h};
}

std::string sampler_field(const Infotext& info, const char* key, std::string* scheduler) {
  std::string sampler, sched;
  const std::string& v = *info.find(key);
  bool known = from_a1111_sampler_name(v, &sampler, &sched);
  if (known) {
    known = false;
    for (auto& s : sampling::sampler_names()) known |= s == sampler;
  }
  DF_CHECK(known, "infotext field '", key, "': sampler '", v, "' is not one diffuse has");
  if (scheduler && sched != "default") *scheduler = sched;
  return sampler;
}

}  // namespace

const std::string* Infotext::find(const std::string& key) const {
  for (auto& [k, v] : fields)
    if (k == key) return &v;
  return nullptr;
}

Infotext parse_infotext(const std::string& text) {
  std::vector<std::string> lines;
  const std::string t = trim(text);
  size_t start = 0;
  while (true) {
    const size_t nl = t.find('\n', start);
    lines.push_back(t.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  Infotext info;
  auto fields = find_fields(lines.back());
  if (fields.size() >= 3) {
    lines.pop_back();
    for (auto& [k, v] : fields) info.fields.emplace_back(k, unquote(v));
  }
  bool negative = false;
  for (std::string line : lines) {
    line = trim(line);
    if (line.rfind("Negative prompt:", 0) == 0) {
      negative = true;
      line = trim(line.substr(16));
    }
    std::string& to = negative ? info.negative_prompt : info.prompt;
    to += (to.empty() ? "" : "\n") + line;
  }
  return info;
}

InfotextModels apply_infotext(const Infotext& info, GenerateRequest* req) {
  auto has = [&](const char* k) { return info.find(k) != nullptr; };
  req->prompt = info.prompt;
  req->negative_prompt = info.negative_prompt;
  if (has("Steps")) req->steps = int(integer(info, "Steps", 1, 1000));
  if (has("Sampler")) {
    req->scheduler = "default";
    req->sampler = sampler_field(info, "Sampler", &req->scheduler);
  }
  if (const std::string* s = info.find("Schedule type")) {
    if (*s == "Karras") req->scheduler = "karras";
    else if (*s == "Trailing") req->scheduler = "trailing";
    else if (*s == "Automatic") req->scheduler = "default";
    else DF_FAIL("infotext field 'Schedule type': '", *s, "' is not a schedule diffuse has (Automatic, Karras, Trailing)");
  }
  if (has("CFG scale")) req->cfg_scale = float(number(info, "CFG scale", -100, 100));
  if (has("Seed")) req->seed = integer(info, "Seed", 0, 9007199254740992.0);
  if (has("Size")) std::tie(req->width, req->height) = size_field(info, "Size");
  if (has("Clip skip")) req->clip_skip = integer(info, "Clip skip", 1, 48);
  req->rng = "cuda";  // A1111's default when it writes no RNG field
  if (const std::string* r = info.find("RNG")) {
    DF_CHECK(*r == "CPU" || *r == "GPU", "infotext field 'RNG': '", *r,
             "' is not a generator diffuse has (CPU, GPU)");
    req->rng = *r == "CPU" ? "cpu" : "cuda";
  }
  if (has("Denoising strength")) req->strength = number(info, "Denoising strength", 0, 1);
  InfotextModels m;
  if (const std::string* v = info.find("Model")) m.model = *v;
  if (const std::string* v = info.find("Refiner")) {
    m.refiner = *v;
    if (has("Refiner switch at")) req->refiner_switch_at = number(info, "Refiner switch at", 0, 1);
  }
  auto& h = req->hires;
  h = HiresOptions();
  if (has("Hires upscale") || has("Hires resize")) {
    h.enabled = true;
    if (has("Hires resize")) std::tie(h.width, h.height) = size_field(info, "Hires resize");
    else h.scale = number(info, "Hires upscale", 1, 8);
    if (has("Hires steps")) h.steps = int(integer(info, "Hires steps", 0, 1000));
    if (const std::string* u = info.find("Hires upscaler")) h.upscaler = find_hires_upscaler(*u).name;
    if (has("Hires sampler")) h.sampler = sampler_field(info, "Hires sampler", nullptr);
    if (const std::string* p = info.find("Hires prompt")) h.prompt = *p;
    if (const std::string* p = info.find("Hires negative prompt")) h.negative_prompt = *p;
    h.strength = req->strength;
    req->strength = GenerateRequest().strength;
  }
  return m;
}

}  // namespace diffuse::pipeline
