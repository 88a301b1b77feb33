#include "models/lora/lora_file.h"

#include <cmath>
#include <set>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"

namespace diffuse::models {

namespace {

constexpr std::string_view kAlpha = "alpha";

// Each key a module's tensor may have: its type and where it goes.
struct ModuleKey {
  std::string_view suffix;
  LoraType type;
  Tensor LoraModule::*field;
};
constexpr ModuleKey kKeys[] = {
    {"lora_down.weight", LoraType::Lora, &LoraModule::down},
    {"lora_up.weight", LoraType::Lora, &LoraModule::up},
    {"lora_mid.weight", LoraType::Lora, &LoraModule::mid},
    {"hada_w1_a", LoraType::LoHa, &LoraModule::w1_a},
    {"hada_w1_b", LoraType::LoHa, &LoraModule::w1_b},
    {"hada_w2_a", LoraType::LoHa, &LoraModule::w2_a},
    {"hada_w2_b", LoraType::LoHa, &LoraModule::w2_b},
    {"hada_t1", LoraType::LoHa, &LoraModule::t1},
    {"hada_t2", LoraType::LoHa, &LoraModule::t2},
    {"lokr_w1", LoraType::LoKr, &LoraModule::w1},
    {"lokr_w1_a", LoraType::LoKr, &LoraModule::w1_a},
    {"lokr_w1_b", LoraType::LoKr, &LoraModule::w1_b},
    {"lokr_w2", LoraType::LoKr, &LoraModule::w2},
    {"lokr_w2_a", LoraType::LoKr, &LoraModule::w2_a},
    {"lokr_w2_b", LoraType::LoKr, &LoraModule::w2_b},
    {"lokr_t2", LoraType::LoKr, &LoraModule::t2},
    {"diff", LoraType::Full, &LoraModule::diff},
    {"diff_b", LoraType::Full, &LoraModule::diff_b},
};

const ModuleKey* find_key(std::string_view suffix) {
  for (auto& k : kKeys)
    if (k.suffix == suffix) return &k;
  return nullptr;
}

// The key of `field` in a module of type `type`.
std::string_view key_of(LoraType type, Tensor LoraModule::*field) {
  for (auto& k : kKeys)
    if (k.type == type && k.field == field) return k.suffix;
  return "?";
}

// "a, b, c, ... 5 more"
std::string name_list(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < 8; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > 8) s += str(", ... ", names.size() - 8, " more");
  return s;
}

std::string joined(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// A hint for keys that are no module type's: names in another format.
std::string other_format(const std::vector<std::string>& keys) {
  for (auto& k : keys)
    if (contains(k, "lora_A") || contains(k, "lora_B") || contains(k, ".lora.down"))
      return " (diffusers/PEFT LoRA names: convert the file to kohya's format)";
  return "";
}

// The keys a module of its type lacks: the factors A1111 needs to build one.
std::vector<std::string> missing_keys(const LoraModule& m) {
  std::vector<std::string> out;
  auto need = [&](Tensor LoraModule::*f) {
    if (!(m.*f).defined()) out.emplace_back(key_of(m.type, f));
  };
  // full, or both halves of the product
  auto need_factor = [&](Tensor LoraModule::*full, Tensor LoraModule::*a, Tensor LoraModule::*b) {
    if ((m.*full).defined()) return;
    if (!(m.*a).defined() && !(m.*b).defined()) {
      out.push_back(str(key_of(m.type, full), " or ", key_of(m.type, a), " + ", key_of(m.type, b)));
      return;
    }
    need(a);
    need(b);
  };
  switch (m.type) {
    case LoraType::Lora:
      need(&LoraModule::down);
      need(&LoraModule::up);
      break;
    case LoraType::LoHa:
      for (auto f : {&LoraModule::w1_a, &LoraModule::w1_b, &LoraModule::w2_a, &LoraModule::w2_b})
        need(f);
      break;
    case LoraType::LoKr:
      need_factor(&LoraModule::w1, &LoraModule::w1_a, &LoraModule::w1_b);
      need_factor(&LoraModule::w2, &LoraModule::w2_a, &LoraModule::w2_b);
      break;
    case LoraType::Full:
      need(&LoraModule::diff);
      break;
  }
  return out;
}

struct Problems {
  std::vector<std::string> dora, unknown, mixed, incomplete, inconsistent, stray_alpha;
};

// One module from its keys (suffix -> tensor); adds what is wrong to `p`.
void read_module(const std::string& name, const std::map<std::string, Tensor>& keys, LoraFile& f,
                 Problems& p) {
  std::vector<std::string> names, unknown;
  std::set<LoraType> types;
  for (auto& [suffix, t] : keys) {
    names.push_back(suffix);
    if (suffix == kAlpha) continue;
    if (const ModuleKey* k = find_key(suffix))
      types.insert(k->type);
    else
      unknown.push_back(suffix);
  }
  const std::string listed = name + " (keys " + joined(names, ", ") + ")";
  if (keys.count("dora_scale")) return p.dora.push_back(name);
  if (!unknown.empty()) return p.unknown.push_back(listed);
  if (types.empty()) return p.stray_alpha.push_back(name + ".alpha");
  if (types.size() > 1) return p.mixed.push_back(listed);
  LoraModule m;
  m.type = *types.begin();
  for (auto& [suffix, t] : keys)
    if (suffix != kAlpha) m.*(find_key(suffix)->field) = t;
  if (auto missing = missing_keys(m); !missing.empty())
    return p.incomplete.push_back(
        str(lora_type_name(m.type), " ", name, " (no ", joined(missing, ", no "), ")"));
  try {
    m.delta_shape(name);
  } catch (const Error& e) {
    return p.inconsistent.push_back(e.what());
  }
  m.alpha = float(m.dim());
  if (auto a = keys.find(std::string(kAlpha)); a != keys.end()) {
    DF_CHECK(a->second.numel() == 1, name, ".alpha has ", a->second.numel(),
             " elements, expected one");
    const float alpha = a->second.to(DType::F32).item();
    DF_CHECK(std::isfinite(alpha), name, ".alpha is not a number");
    if (m.dim() > 0) m.alpha = alpha;  // else the scale is 1 whatever alpha says
  }
  f.modules.emplace(name, std::move(m));
}

}  // namespace

LoraFile read_lora_file(const std::string& path) {
  LoraFile f;
  io::TensorMap t = io::load_safetensors(path, &f.metadata);
  std::map<std::string, std::map<std::string, Tensor>> by_module;  // name -> suffix -> tensor
  for (auto& [key, tensor] : t) {
    const size_t dot = key.find('.');
    by_module[key.substr(0, dot)][dot == std::string::npos ? "" : key.substr(dot + 1)] = tensor;
  }
  Problems p;
  try {
    for (auto& [name, keys] : by_module) read_module(name, keys, f, p);
  } catch (const Error& e) {
    DF_FAIL(path, ": ", e.what());
  }
  DF_CHECK(p.dora.empty(), path, ": DoRA is not supported (dora_scale in ", p.dora.size(),
           " module(s): ", name_list(p.dora), ")");
  std::vector<std::string> unknown_keys;
  for (auto& [name, keys] : by_module)
    for (auto& [suffix, t] : keys) unknown_keys.push_back(name + "." + suffix);
  DF_CHECK(p.unknown.empty(), path, ": not a kohya LoRA/LyCORIS file: ", p.unknown.size(),
           " module(s) of unknown type", other_format(unknown_keys), ": ", name_list(p.unknown));
  DF_CHECK(p.mixed.empty(), path, ": ", p.mixed.size(),
           " module(s) mix keys of several LoRA types: ", name_list(p.mixed));
  DF_CHECK(p.incomplete.empty(), path, ": ", p.incomplete.size(),
           " module(s) lack a factor: ", name_list(p.incomplete));
  DF_CHECK(
      p.inconsistent.empty(), path, ": ", p.inconsistent.size(),
      " module(s) with factor shapes that do not fit together: ", joined(p.inconsistent, "; "));
  DF_CHECK(p.stray_alpha.empty(), path, ": alpha without a module (", name_list(p.stray_alpha),
           ")");
  DF_CHECK(!f.modules.empty(), path, ": no LoRA modules");
  return f;
}

void write_lora_file(const std::string& path, const LoraFile& file, DType dtype) {
  DF_CHECK(dtype == DType::F16 || dtype == DType::F32 || dtype == DType::BF16,
           "write_lora_file: LoRA factors are saved as f16, bf16 or f32");
  io::TensorMap t;
  for (auto& [name, m] : file.modules) {
    m.delta_shape(name);  // complete and consistent
    for (auto& k : kKeys)
      if (k.type == m.type && (m.*k.field).defined())
        t[name + "." + std::string(k.suffix)] = (m.*k.field).to(dtype);
    if (m.dim() > 0) t[name + "." + std::string(kAlpha)] = Tensor::from_vector({m.alpha}, {});
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
