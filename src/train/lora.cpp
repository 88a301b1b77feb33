#include "train/lora.h"

#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include "autograd/functions.h"
#include "core/error.h"
#include "models/lora/lora_merge.h"

namespace diffuse::train {

namespace F = autograd;

// x -> multiplier * scale * up(down(x)); down has the layer's kernel, stride and padding.
class LoraAdapter : public nn::LayerAdapter {
 public:
  Tensor down, up;
  float scale = 1, multiplier = 1;
  int64_t stride = 1, padding = 0;

  Tensor forward(const Tensor& x) const override {
    const Tensor h = down.dim() == 4 ? F::conv2d(F::conv2d(x, down, Tensor(), stride, padding), up,
                                                 Tensor(), 1, 0)
                                     : F::linear(F::linear(x, down), up);
    return F::scale(h, multiplier * scale);
  }
};

struct LoraNetwork::Slot {
  std::string module, name;  // canonical module path, kohya name
  std::shared_ptr<LoraAdapter> adapter;
  std::shared_ptr<const nn::LayerAdapter>* hook;  // the layer's adapter member
};

namespace {

// torch.nn.init.kaiming_uniform_(w, a=sqrt(5)) bound: gain sqrt(2 / (1 + a^2)) * sqrt(3 / fan_in)
// = 1 / sqrt(fan_in). Uniform values from a seeded mt19937 (24-bit mantissas: portable).
Tensor kaiming_uniform(const Shape& s, std::mt19937& rng) {
  const int64_t fan_in = shape_numel(s) / s[0];
  const float bound = 1.0f / std::sqrt(float(fan_in));
  std::vector<float> v(size_t(shape_numel(s)));
  for (float& x : v) x = (float(rng() >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * bound;
  return Tensor::from_vector(v, s);
}

}  // namespace

LoraNetwork::LoraNetwork(models::UNet2DConditionModel& unet, const LoraOptions& o)
    : unet_(unet), o_(o) {
  DF_CHECK(o.rank >= 1, "LoRA rank must be at least 1, got ", o.rank);
  DF_CHECK(std::isfinite(o.alpha) && o.alpha > 0, "LoRA alpha must be positive, got ", o.alpha);
  DF_CHECK(o.attention || o.projections || o.feed_forward, "LoRA: no layers chosen");
  std::map<std::string, Shape> shapes;
  for (auto& p : unet.named_parameters()) shapes[p.name] = p.shape;
  std::mt19937 rng(uint32_t(o.seed ^ (o.seed >> 32)));

  auto add = [&](std::shared_ptr<const nn::LayerAdapter>& hook, const std::string& module,
                 int64_t stride, int64_t padding) {
    auto it = shapes.find(module + ".weight");
    DF_CHECK(it != shapes.end(), "LoRA: the UNet has no layer ", module);
    DF_CHECK(!hook, "LoRA: the layer ", module, " already has an adapter");
    const Shape& w = it->second;  // [out, in] or [out, in, kh, kw]
    auto a = std::make_shared<LoraAdapter>();
    Shape down = w, up = {w[0], o.rank};
    down[0] = o.rank;
    if (w.size() == 4) up = {w[0], o.rank, 1, 1};
    a->down = kaiming_uniform(down, rng);
    a->up = Tensor::zeros(up);
    F::set_requires_grad(a->down);
    F::set_requires_grad(a->up);
    a->scale = o.alpha / float(o.rank);
    a->stride = stride;
    a->padding = padding;
    hook = a;
    slots_.push_back({module, models::kohya_lora_name("lora_unet", module), a, &hook});
  };
  auto linear = [&](nn::Linear& l, const std::string& m) { add(l.adapter, m, 1, 0); };
  auto conv = [&](nn::Conv2d& c, const std::string& m) { add(c.adapter, m, c.stride, c.padding); };
  auto transformer = [&](models::Transformer2DModel& t, const std::string& prefix) {
    if (o.projections) {
      if (t.proj_in_conv) conv(*t.proj_in_conv, prefix + ".proj_in");
      if (t.proj_in_linear) linear(*t.proj_in_linear, prefix + ".proj_in");
    }
    for (size_t b = 0; b < t.transformer_blocks.size(); ++b) {
      auto& blk = t.transformer_blocks[b];
      const std::string bp = prefix + ".transformer_blocks." + std::to_string(b);
      if (o.attention) {
        for (auto [attn, name] : {std::pair{&blk.attn1, "attn1"}, std::pair{&blk.attn2, "attn2"}}) {
          const std::string ap = bp + "." + name;
          linear(attn->to_q, ap + ".to_q");
          linear(attn->to_k, ap + ".to_k");
          linear(attn->to_v, ap + ".to_v");
          linear(attn->to_out[0], ap + ".to_out.0");
        }
      }
      if (o.feed_forward) {
        linear(blk.ff.net.geglu.proj, bp + ".ff.net.0.proj");
        linear(blk.ff.net.out, bp + ".ff.net.2");
      }
    }
    if (o.projections) {
      if (t.proj_out_conv) conv(*t.proj_out_conv, prefix + ".proj_out");
      if (t.proj_out_linear) linear(*t.proj_out_linear, prefix + ".proj_out");
    }
  };
  try {
    for (size_t i = 0; i < unet.down_blocks.size(); ++i)
      for (size_t j = 0; j < unet.down_blocks[i].attentions.size(); ++j)
        transformer(unet.down_blocks[i].attentions[j], str("down_blocks.", i, ".attentions.", j));
    for (size_t j = 0; j < unet.mid_block.attentions.size(); ++j)
      transformer(unet.mid_block.attentions[j], str("mid_block.attentions.", j));
    for (size_t i = 0; i < unet.up_blocks.size(); ++i)
      for (size_t j = 0; j < unet.up_blocks[i].attentions.size(); ++j)
        transformer(unet.up_blocks[i].attentions[j], str("up_blocks.", i, ".attentions.", j));
  } catch (...) {
    remove();
    throw;
  }
  DF_CHECK(!slots_.empty(), "LoRA: the UNet has no transformer layers to adapt");
}

std::unique_ptr<LoraNetwork> LoraNetwork::inject(models::UNet2DConditionModel& unet,
                                                 const LoraOptions& o) {
  return std::make_unique<LoraNetwork>(unet, o);
}

LoraNetwork::~LoraNetwork() {
  remove();
}

void LoraNetwork::remove() {
  for (auto& s : slots_)
    if (s.hook && *s.hook == s.adapter) s.hook->reset();
}

void LoraNetwork::merge_into_unet(float multiplier) {
  const models::LoraFile f = to_file();
  remove();
  models::LoraMerger merger(&unet_, nullptr);
  merger.merge(f, "LoRA network", multiplier, multiplier);
  merger.keep();
}

std::vector<nn::Module::ParamRef> LoraNetwork::params() const {
  std::vector<nn::Module::ParamRef> out;
  for (auto& s : slots_) {
    out.push_back({s.name + ".lora_down.weight", &s.adapter->down, s.adapter->down.shape()});
    out.push_back({s.name + ".lora_up.weight", &s.adapter->up, s.adapter->up.shape()});
  }
  return out;
}

std::vector<std::string> LoraNetwork::modules() const {
  std::vector<std::string> out;
  for (auto& s : slots_) out.push_back(s.module);
  return out;
}

void LoraNetwork::set_multiplier(float m) {
  for (auto& s : slots_) s.adapter->multiplier = m;
}

models::LoraFile LoraNetwork::to_file(const io::Metadata& metadata) const {
  models::LoraFile f;
  for (auto& s : slots_)
    f.modules[s.name] = {F::detach(s.adapter->down).clone(), F::detach(s.adapter->up).clone(),
                         o_.alpha};
  const bool v2 = unet_.config().cross_attention_dim == 1024;
  f.metadata = {
      {"ss_network_module", "networks.lora"}, {"ss_network_dim", std::to_string(o_.rank)},
      {"ss_network_alpha", str(o_.alpha)},    {"ss_base_model_version", v2 ? "sd_v2_512" : "sd_v1"},
      {"ss_v2", v2 ? "True" : "False"},
  };
  for (auto& [k, v] : metadata) f.metadata[k] = v;
  return f;
}

void LoraNetwork::save_kohya(const std::string& path, const io::Metadata& metadata,
                             DType dtype) const {
  io::Metadata m = metadata;
  if (!m.count("ss_output_name")) m["ss_output_name"] = std::filesystem::path(path).stem().string();
  models::write_lora_file(path, to_file(m), dtype);
}

void LoraNetwork::load_kohya(const std::string& path) {
  const models::LoraFile f = models::read_lora_file(path);
  const models::LoraNames names(&unet_, nullptr);
  std::map<std::string, Slot*> by_module;
  for (auto& s : slots_) by_module[s.module] = &s;
  std::vector<std::string> problems;
  std::set<std::string> found;
  for (auto& [name, m] : f.modules) {
    const models::LoraLayer* layer = names.find(name);
    auto it = layer ? by_module.find(layer->module) : by_module.end();
    if (it == by_module.end()) {
      problems.push_back(name + " (not a layer of this network)");
      continue;
    }
    const LoraAdapter& a = *it->second->adapter;
    if (m.type != models::LoraType::Lora || m.mid.defined())
      problems.push_back(str(name, " (a ", models::lora_type_name(m.type),
                             m.mid.defined() ? " Tucker" : "",
                             " module: training continues plain LoRA only)"));
    else if (m.down.shape() != a.down.shape() || m.up.shape() != a.up.shape())
      problems.push_back(name + " (rank or shape differs: down " + shape_str(m.down.shape()) +
                         ", expected " + shape_str(a.down.shape()) + ")");
    else if (std::fabs(m.alpha - o_.alpha) > 1e-3f * o_.alpha)
      problems.push_back(str(name, " (alpha ", m.alpha, ", expected ", o_.alpha, ")"));
    else
      found.insert(layer->module);
  }
  for (auto& s : slots_)
    if (!found.count(s.module) && problems.size() < 64) problems.push_back(s.name + " (missing)");
  if (!problems.empty()) {
    std::string list;
    for (size_t i = 0; i < problems.size() && i < 8; ++i) list += (i ? ", " : "") + problems[i];
    DF_FAIL(path, ": does not match the LoRA network (rank ", o_.rank, ", alpha ", o_.alpha,
            "): ", problems.size(), " problem(s): ", list, problems.size() > 8 ? ", ..." : "");
  }
  for (auto& [name, m] : f.modules) {
    LoraAdapter& a = *by_module.at(names.find(name)->module)->adapter;
    a.down = m.down.to(DType::F32).clone();
    a.up = m.up.to(DType::F32).clone();
    F::set_requires_grad(a.down);
    F::set_requires_grad(a.up);
  }
}

}  // namespace diffuse::train
