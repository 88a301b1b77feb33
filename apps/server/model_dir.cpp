#include "apps/server/model_dir.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "apps/server/api_error.h"
#include "core/error.h"

namespace diffuse::server {

namespace fs = std::filesystem;

namespace {

// The model kind of a folder entry, or "" when it is not a model.
std::string kind_of(const fs::directory_entry& e) {
  std::error_code ec;
  const fs::path p = e.path();
  if (p.filename().string().empty() || p.filename().string()[0] == '.') return "";
  if (fs::is_directory(p, ec))
    return fs::exists(p / "model_index.json", ec) || fs::is_directory(p / "unet", ec) ? "diffusers"
                                                                                      : "";
  if (!fs::is_regular_file(p, ec)) return "";
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  if (ext == ".safetensors") return "safetensors";
  if (ext == ".ckpt") return "ckpt";
  if (ext == ".gguf") return "gguf";
  return "";
}

}  // namespace

std::string ModelEntry::stem() const {
  return kind == "diffusers" ? name : fs::path(name).stem().string();
}

bool is_safe_model_name(const std::string& name) {
  if (name.empty() || name.size() > 255 || name[0] == '.') return false;
  if (name.find_first_of(std::string("/\\\0", 3)) != std::string::npos) return false;
  if (name.find("..") != std::string::npos) return false;
  for (unsigned char c : name)
    if (c < 0x20) return false;
  return true;
}

ModelDirectory::ModelDirectory(std::string dir) : dir_(std::move(dir)) {
  std::error_code ec;
  DF_CHECK(fs::is_directory(dir_, ec), "model dir ", dir_, " is not a folder");
}

std::vector<ModelEntry> ModelDirectory::list() const {
  std::vector<ModelEntry> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    std::string kind = kind_of(e);
    if (kind.empty()) continue;
    out.push_back({e.path().filename().string(), e.path().string(), kind});
  }
  std::sort(out.begin(), out.end(),
            [](const ModelEntry& a, const ModelEntry& b) { return a.name < b.name; });
  return out;
}

ModelEntry ModelDirectory::find(const std::string& name) const {
  std::string n = name;
  // A1111 titles carry a hash: "model.safetensors [6ce0161689]".
  if (const size_t b = n.rfind(" ["); b != std::string::npos && n.back() == ']') n.resize(b);
  if (!is_safe_model_name(n))
    throw ApiError(
        400, "invalid model name",
        "'" + name + "' is not a model name: names are file or folder names in the model dir");
  const auto all = list();
  for (const auto& m : all)
    if (m.name == n) return m;
  for (const auto& m : all)
    if (m.stem() == n) return m;
  std::string names;
  for (const auto& m : all) names += (names.empty() ? "" : ", ") + m.name;
  throw ApiError(
      404, "unknown model",
      "no model named '" + name + "' (available: " + (names.empty() ? "none" : names) + ")");
}

std::vector<std::string> list_lora_files(const std::string& dir) {
  std::vector<std::string> out;
  std::set<fs::path> seen;  // canonical folders entered: a symbolic link loop ends there
  std::error_code ec;
  seen.insert(fs::weakly_canonical(dir, ec));
  fs::recursive_directory_iterator it(dir,
                                      fs::directory_options::follow_directory_symlink |
                                          fs::directory_options::skip_permission_denied,
                                      ec);
  for (const fs::recursive_directory_iterator end; !ec && it != end; it.increment(ec)) {
    std::error_code e;
    if (it->is_directory(e)) {
      const fs::path canon = fs::canonical(it->path(), e);
      if (e || it.depth() >= 15 || !seen.insert(canon).second) it.disable_recursion_pending();
    } else if (it->is_regular_file(e) && it->path().extension() == ".safetensors") {
      out.push_back(it->path().lexically_relative(dir).generic_string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace diffuse::server
