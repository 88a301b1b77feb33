#include "models/lora/lora_file.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "ops/ops.h"

namespace diffuse::models {

namespace {

constexpr std::string_view kDown = "lora_down.weight", kUp = "lora_up.weight", kAlpha = "alpha";

// "a, b, c, ... 5 more"
std::string name_list(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < 8; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > 8) s += str(", ... ", names.size() - 8, " more");
  return s;
}

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// Why a file whose keys are not all plain LoRA keys is not readable, naming its format when
// it is a known other one.
std::string other_format(const std::vector<std::string>& keys) {
  for (auto& k : keys) {
    if (contains(k, "hada_w") || contains(k, "lokr_w") || contains(k, "lora_mid"))
      return " (a LyCORIS LoHa/LoKr/LoCon-CP file: only plain LoRA is supported)";
    if (contains(k, "dora_scale")) return " (a DoRA file: only plain LoRA is supported)";
    if (contains(k, "lora_A") || contains(k, "lora_B") || contains(k, ".lora.down"))
      return " (diffusers/PEFT LoRA names: convert the file to kohya's format)";
  }
  return "";
}

}  // namespace

bool LoraModule::fits(const Shape& w) const {
  const int64_t out = up.size(0), in_k = down.numel() / rank();  // in_k: in * kh * kw
  const bool conv_lora = down.dim() == 4;
  return w.size() >= 2 && w[0] == out && shape_numel(w) == out * in_k &&
         (w.size() == 2 || !conv_lora || (w[2] == down.size(2) && w[3] == down.size(3))) &&
         (w.size() == 4 || !conv_lora || down.size(2) * down.size(3) == 1);
}

Tensor LoraModule::delta(float multiplier, const Shape& w, const std::string& name) const {
  DF_CHECK(fits(w), "LoRA module ", name, " (up ", shape_str(up.shape()), ", down ",
           shape_str(down.shape()), ") does not fit the layer's weight ", shape_str(w));
  const int64_t r = rank(), out = up.size(0), in_k = down.numel() / r;
  // up [out, r(, 1, 1)] @ down [r, in(, kh, kw)] -> [out, in * kh * kw] -> the weight's shape
  Tensor u = up.to(DType::F32).contiguous().view({out, r});
  Tensor d = down.to(DType::F32).contiguous().view({r, in_k});
  return ops::scale(ops::matmul(u, d), multiplier * scale()).view(w);
}

LoraFile read_lora_file(const std::string& path) {
  LoraFile f;
  io::TensorMap t = io::load_safetensors(path, &f.metadata);
  std::vector<std::string> bad;
  std::map<std::string, Tensor> alphas;
  for (auto& [key, tensor] : t) {
    const size_t dot = key.find('.');
    const std::string name = key.substr(0, dot);
    const std::string_view suffix =
        dot == std::string::npos ? std::string_view() : std::string_view(key).substr(dot + 1);
    if (suffix == kDown)
      f.modules[name].down = tensor;
    else if (suffix == kUp)
      f.modules[name].up = tensor;
    else if (suffix == kAlpha)
      alphas[name] = tensor;
    else
      bad.push_back(key);
  }
  DF_CHECK(bad.empty(), path, ": not a kohya LoRA file", other_format(bad), ": ", bad.size(),
           " unexpected tensor(s) (", name_list(bad), ")");
  DF_CHECK(!f.modules.empty(), path,
           ": no LoRA modules (no *.lora_down.weight / *.lora_up.weight)");
  std::vector<std::string> incomplete, misshapen;
  for (auto& [name, m] : f.modules) {
    if (!m.down.defined() || !m.up.defined()) {
      incomplete.push_back(name + (m.down.defined() ? " (no lora_up)" : " (no lora_down)"));
      continue;
    }
    const bool conv = m.down.dim() == 4;
    const bool ok = (m.down.dim() == 2 || conv) && m.up.dim() == m.down.dim() &&
                    m.up.size(1) == m.down.size(0) && m.down.size(0) > 0 &&
                    (!conv || (m.up.size(2) == 1 && m.up.size(3) == 1));
    if (!ok) {
      misshapen.push_back(name + " (down " + shape_str(m.down.shape()) + ", up " +
                          shape_str(m.up.shape()) + ")");
      continue;
    }
    m.alpha = float(m.rank());
    if (auto a = alphas.find(name); a != alphas.end()) {
      DF_CHECK(a->second.numel() == 1, path, ": ", name, ".alpha has ", a->second.numel(),
               " elements, expected one");
      m.alpha = a->second.to(DType::F32).item();
      DF_CHECK(std::isfinite(m.alpha), path, ": ", name, ".alpha is not a number");
      alphas.erase(a);
    }
  }
  DF_CHECK(incomplete.empty(), path, ": ", incomplete.size(), " LoRA module(s) lack a matrix (",
           name_list(incomplete), ")");
  DF_CHECK(misshapen.empty(), path, ": ", misshapen.size(),
           " LoRA module(s) with shapes that do not pair (", name_list(misshapen), ")");
  std::vector<std::string> stray;
  for (auto& [name, a] : alphas) stray.push_back(name + ".alpha");
  DF_CHECK(stray.empty(), path, ": alpha without a module (", name_list(stray), ")");
  return f;
}

void write_lora_file(const std::string& path, const LoraFile& file, DType dtype) {
  DF_CHECK(dtype == DType::F16 || dtype == DType::F32 || dtype == DType::BF16,
           "write_lora_file: LoRA matrices are saved as f16, bf16 or f32");
  io::TensorMap t;
  for (auto& [name, m] : file.modules) {
    DF_CHECK(m.down.defined() && m.up.defined(), "write_lora_file: module ", name,
             " lacks a matrix");
    t[name + "." + std::string(kDown)] = m.down.to(dtype);
    t[name + "." + std::string(kUp)] = m.up.to(dtype);
    t[name + "." + std::string(kAlpha)] = Tensor::from_vector({m.alpha}, {});
  }
  io::save_safetensors(path, t, file.metadata);
}

std::string kohya_lora_name(std::string_view prefix, std::string_view module_path) {
  std::string s(prefix);
  s += '_';
  for (char c : module_path) s += c == '.' ? '_' : c;
  return s;
}

}  // namespace diffuse::models
