#include "test_util.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

namespace diffuse::test {

namespace fs = std::filesystem;

std::string reference_dir() {
  if (const char* e = std::getenv("DIFFUSE_REFERENCE_DIR"); e && *e) return e;
  return (fs::path(DIFFUSE_SOURCE_DIR) / ".." / "shared" / "reference").lexically_normal().string();
}

bool reference_kind_supported(const std::string& kind) {
  // The families of pipeline::ModelBundle. SDXL and ControlNet folders join as they land.
  for (const char* k : {"sd1", "sd2", "sd1-inpaint"})
    if (kind == k) return true;
  return false;
}

namespace {
std::string reference_kind(const fs::path& folder) {
  std::ifstream in(folder / "reference.json");
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  return j.is_object() ? j.value("kind", "") : "";
}
}  // namespace

std::vector<std::string> reference_folders_of_kind(const std::vector<std::string>& kinds) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(reference_dir(), ec)) {
    if (!e.is_directory() || !fs::exists(e.path() / "reference.json") ||
        !fs::exists(e.path() / "reference.safetensors"))
      continue;
    if (std::find(kinds.begin(), kinds.end(), reference_kind(e.path())) != kinds.end())
      out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> reference_model_folders() {
  static const std::vector<std::string> folders = [] {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(reference_dir(), ec)) {
      const fs::path ref = e.path() / "reference.json";
      if (!e.is_directory() || !fs::exists(ref)) continue;
      const std::string name = e.path().filename().string();
      const std::string kind = reference_kind(e.path());
      if (kind.empty()) {
        std::fprintf(stderr, "[reference] skipping %s: not a model folder (its reference.json names no kind)\n",
                     name.c_str());
      } else if (kind == "sdxl" || kind == "sdxl-refiner") {
        std::fprintf(stderr,
                     "[reference] %s (kind '%s'): its reference.json has SDXL's layout (runs, "
                     "two encoders): checked by the SDXL tests (reference_folders_of_kind), "
                     "not by these\n",
                     name.c_str(), kind.c_str());
      } else if (!reference_kind_supported(kind)) {
        std::fprintf(stderr, "[reference] skipping %s: model kind '%s' is not supported yet\n",
                     name.c_str(), kind.c_str());
      } else if (fs::exists(e.path() / "reference.safetensors")) {
        out.push_back(name);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }();
  return folders;
}

std::string reference_path(const std::string& rel) {
  fs::path p = fs::path(reference_dir()) / rel;
  return fs::exists(p) ? p.string() : std::string();
}

std::string source_dir() { return DIFFUSE_SOURCE_DIR; }
std::string data_dir() { return DIFFUSE_DATA_DIR; }
std::string cli_path() { return DIFFUSE_CLI_PATH; }

std::string temp_dir() {
  static std::string dir;
  if (dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "diffuse-test-XXXXXX").string();
    char* d = mkdtemp(tmpl.data());
    if (!d) throw std::runtime_error("mkdtemp failed");
    dir = d;
    static struct Cleanup {
      ~Cleanup() {
        std::error_code ec;
        fs::remove_all(dir, ec);
      }
    } cleanup;
  }
  return dir;
}

double rel_error(const Tensor& a, const Tensor& b) {
  auto va = a.to_float_vector();
  auto vb = b.to_float_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    double d = double(va[i]) - double(vb[i]);
    num += d * d;
    den += double(vb[i]) * double(vb[i]);
  }
  if (std::isnan(num)) return INFINITY;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

int run_command(const std::string& cmd, std::string* out) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0)
    if (out) out->append(buf.data(), n);
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int diffusers_default_side(const std::string& dir) {
  std::ifstream unet(dir + "/unet/config.json"), vae(dir + "/vae/config.json");
  const auto uc = nlohmann::json::parse(unet), vc = nlohmann::json::parse(vae);
  return uc["sample_size"].get<int>() << (vc["block_out_channels"].size() - 1);
}

std::string shell_quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

int run_diffuse(const std::string& args, std::string* out) {
  out->clear();
  return run_command(shell_quote(cli_path()) + " " + args + " 2>&1", out);
}

}  // namespace diffuse::test
