#include "train/checkpoint.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/mmap_file.h"
#include "io/safetensors.h"

namespace diffuse::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "diffuse-training-state-1";

int64_t meta_int(const io::Metadata& m, const std::string& key, const std::string& path) {
  auto it = m.find(key);
  DF_CHECK(it != m.end(), path, ": training state has no '", key, "' entry");
  try {
    return std::stoll(it->second);
  } catch (const std::exception&) {
    DF_FAIL(path, ": training state entry '", key, "' is not an integer: ", it->second);
  }
}

const Tensor& need(const io::TensorMap& t, const std::string& name, const std::string& path) {
  auto it = t.find(name);
  DF_CHECK(it != t.end(), path, ": training state lacks tensor ", name,
           " (saved from a different model?)");
  return it->second;
}

// checkpoint-N -> N, or -1.
int64_t checkpoint_step(const fs::path& p) {
  const std::string n = p.filename().string(), pre = "checkpoint-";
  if (n.rfind(pre, 0) != 0 || n.size() == pre.size()) return -1;
  for (size_t i = pre.size(); i < n.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(n[i]))) return -1;
  return std::stoll(n.substr(pre.size()));
}

std::vector<std::pair<int64_t, fs::path>> checkpoints(const std::string& output) {
  std::vector<std::pair<int64_t, fs::path>> out;
  if (!fs::is_directory(output)) return out;
  for (auto& e : fs::directory_iterator(output)) {
    const int64_t s = e.is_directory() ? checkpoint_step(e.path()) : -1;
    if (s >= 0) out.emplace_back(s, e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

void save_training_state(const std::string& path, const std::vector<nn::Module::ParamRef>& params,
                         Optimization& optim, const RunPosition& pos, const std::string& options) {
  io::TensorMap t;
  const AdamW& opt = optim.optimizer();
  const Ema* ema = optim.ema();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& n = params[i].name;
    t.emplace("param." + n, *params[i].tensor);
    t.emplace("adamw.exp_avg." + n, opt.exp_avg()[i]);
    t.emplace("adamw.exp_avg_sq." + n, opt.exp_avg_sq()[i]);
    if (ema) t.emplace("ema." + n, ema->shadow()[i]);
  }
  io::Metadata m{{"format", kFormat},
                 {"step", std::to_string(pos.step)},
                 {"samples", std::to_string(pos.samples)},
                 {"epoch", std::to_string(pos.epoch)},
                 {"seconds", std::to_string(pos.seconds)},
                 {"adamw.steps", std::to_string(opt.steps())},
                 {"options", options}};
  if (ema) m["ema.steps"] = std::to_string(ema->steps());
  io::save_safetensors(path, t, m);
}

RunPosition load_training_state(const std::string& path,
                                const std::vector<nn::Module::ParamRef>& params,
                                Optimization& optim, std::string* saved_options) {
  io::Metadata m;
  const io::TensorMap t = io::load_safetensors(path, &m);
  DF_CHECK(m.count("format") && m.at("format") == kFormat, path,
           ": not a diffuse training state (metadata 'format' is not ", kFormat, ")");
  if (saved_options) *saved_options = m.count("options") ? m.at("options") : "";
  std::vector<Tensor> ea, eas, shadow;
  Ema* ema = optim.ema();
  for (const auto& p : params) {
    const Tensor& w = need(t, "param." + p.name, path);
    DF_CHECK(w.shape() == p.tensor->shape(), path, ": ", p.name, " is ", w.desc(),
             " but the model's is ", p.tensor->desc());
    p.tensor->copy_from(w.to(DType::F32));
    ea.push_back(need(t, "adamw.exp_avg." + p.name, path));
    eas.push_back(need(t, "adamw.exp_avg_sq." + p.name, path));
    if (ema) shadow.push_back(need(t, "ema." + p.name, path));
  }
  optim.optimizer().load_state(ea, eas, meta_int(m, "adamw.steps", path));
  if (ema) ema->load_state(shadow, meta_int(m, "ema.steps", path));
  RunPosition pos{meta_int(m, "step", path), meta_int(m, "samples", path),
                  meta_int(m, "epoch", path)};
  if (m.count("seconds")) pos.seconds = std::atof(m.at("seconds").c_str());
  return pos;
}

std::string write_checkpoint(const std::string& output, int64_t step, int keep,
                             const std::function<void(const std::string& dir)>& fill) {
  fs::create_directories(output);
  const fs::path final_dir = fs::path(output) / ("checkpoint-" + std::to_string(step));
  const fs::path tmp = fs::path(output) / (".checkpoint-" + std::to_string(step) + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  fill(tmp.string());
  fs::remove_all(final_dir);  // a re-run of the same step replaces it
  fs::rename(tmp, final_dir);
  {
    const std::string name = final_dir.filename().string() + "\n";
    io::AtomicWriter w((fs::path(output) / "last").string());
    w.write(name.data(), name.size());
    w.commit();
  }
  if (keep > 0) {
    auto all = checkpoints(output);
    for (size_t i = 0; i + size_t(keep) < all.size(); ++i) fs::remove_all(all[i].second);
  }
  return final_dir.string();
}

std::string latest_checkpoint(const std::string& output) {
  // The highest complete checkpoint (a folder appears only by rename, so any is complete).
  auto all = checkpoints(output);
  return all.empty() ? std::string() : all.back().second.string();
}

void link_or_copy(const std::string& from, const std::string& to) {
  if (fs::is_directory(from)) {
    fs::create_directories(to);
    for (auto& e : fs::directory_iterator(from))
      link_or_copy(e.path().string(), (fs::path(to) / e.path().filename()).string());
    return;
  }
  std::error_code ec;
  fs::create_hard_link(fs::canonical(from), to, ec);
  if (ec) fs::copy_file(from, to, fs::copy_options::overwrite_existing);
}

}  // namespace diffuse::train
