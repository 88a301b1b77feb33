// diffuse train clip: CLIP's two towers learn, contrastively, to match each image with its
// caption among the batch (symmetric cross-entropy over exp(logit_scale)-scaled cosine
// similarities; the temperature is trained too).
#include <cstdio>
#include <filesystem>

#include "apps/cli/cmd_train.h"
#include "apps/cli/common.h"
#include "autograd/autograd.h"
#include "io/model_writer.h"
#include "io/safetensors.h"
#include "models/clip/clip_vision_model.h"
#include "ops/ops.h"
#include "tokenizer/clip_tokenizer.h"
#include "train/init.h"
#include "train/losses.h"

namespace diffuse::cli {
namespace {

namespace fs = std::filesystem;

struct ClipArgs {
  TrainArgs t;
  std::string model, config;
  std::string save_dtype;  // "": as trained (f32)
};

// OpenAI CLIP's image normalization (per channel, of pixels in [0, 1]).
constexpr float kMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr float kStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

class ClipTask final : public train::TrainTask {
 public:
  ClipTask(const ClipArgs& a, const train::ImageCaptionDataset& data, int64_t total_steps)
      : a_(a), data_(data) {
    const fs::path src(a.config.empty() ? a.model : a.config);
    config_ = read_json_file(fs::is_directory(src) ? (src / "config.json").string() : src.string());
    clip_ = std::make_unique<models::ClipModel>(models::ClipModelConfig::from_json(config_));
    if (a.config.empty()) {
      const fs::path w = src / "model.safetensors";
      DF_CHECK(fs::is_regular_file(w), a.model,
               ": a CLIP folder holds config.json and model.safetensors");
      clip_->load_state_dict(io::load_safetensors(w.string()), "CLIP model " + a.model);
      tokenizer_dir_ = src.string();
    } else {
      train::init_parameters(*clip_, a.t.seed);
    }
    const bool own_vocab = !tokenizer_dir_.empty() &&
                           (fs::exists(src / "vocab.json") || fs::exists(src / "tokenizer.json"));
    tokenizer_ = std::make_unique<tokenizer::ClipTokenizer>(
        own_vocab ? tokenizer::ClipTokenizer::from_pretrained_dir(tokenizer_dir_, data_dir())
                  : tokenizer::ClipTokenizer::load_default(data_dir()));
    if (!own_vocab) tokenizer_dir_.clear();
    params_ = train::make_trainable(*clip_);
    optim_ = std::make_unique<train::Optimization>(train::slots(params_),
                                                   optimization_options(a.t, total_steps));
  }

  train::TrainStepResult micro_batch(const train::MicroBatch& b) override {
    const models::ClipModelConfig& c = clip_->config();
    const int64_t len = c.text.max_position_embeddings, size = c.vision.image_size;
    std::vector<int64_t> ids;
    std::vector<Tensor> pixels;
    for (int64_t i : b.indices) {
      // Padded with the end token: the pooled feature is taken at the first end token.
      auto t = tokenizer_->encode_padded(data_[i].caption, c.text.eos_token_id, int(len));
      for (int64_t id : t)
        DF_CHECK(id < c.text.vocab_size, "caption of ", data_[i].image_path, ": token id ", id,
                 " is outside the model's vocabulary of ", c.text.vocab_size);
      ids.insert(ids.end(), t.begin(), t.end());
      Tensor img = data_.image(i, size);  // [3, S, S] in [-1, 1]
      float* p = img.data<float>();
      for (int64_t k = 0; k < 3; ++k)
        for (int64_t j = 0; j < size * size; ++j) {
          float& v = p[k * size * size + j];
          v = ((v + 1) * 0.5f - kMean[k]) / kStd[k];
        }
      pixels.push_back(img.unsqueeze(0));  // c h w -> 1 c h w
    }
    const int64_t n = int64_t(b.indices.size());
    Tensor loss;
    {
      autograd::AutocastGuard cast(a_.t.bf16);
      const auto out = clip_->forward(Tensor::from_i64(ids, {n, len}), ops::cat(pixels, 0));
      // Under mpirun, the logits of the whole global batch, as one process would see them.
      loss = train::clip_contrastive_loss(
          train::global_clip_logits(out, clip_->logit_scale, train::world()));
    }
    return optim_->backward_and_step(loss);
  }

  train::Optimization& optimization() override { return *optim_; }
  const std::vector<nn::Module::ParamRef>& params() const override { return params_; }

  void save_model(const std::string& dir) override {
    const io::TensorMap w = trained_weights(params_, *optim_);
    std::optional<DType> dtype;
    if (!a_.save_dtype.empty()) dtype = io::parse_save_dtype(a_.save_dtype);
    const io::Metadata meta{{"format", "pt"}};  // transformers reads no file without it
    write_component(dir, config_, w, "model.safetensors", dtype, meta);
    // The parts: the text tower alone as a CLIPTextModel (a pipeline's text encoder), the rest
    // as a CLIPModel folder without it (diffuse eval's clip/, the text tower taken from the
    // pipeline's text_encoder/).
    io::TensorMap text, rest;
    for (auto& [name, t] : w) (name.starts_with("text_model.") ? text : rest).emplace(name, t);
    nlohmann::json text_config =
        config_.contains("text_config") ? config_["text_config"] : nlohmann::json::object();
    text_config.update(clip_->config().text.to_json());
    text_config["architectures"] = {"CLIPTextModel"};
    text_config["model_type"] = "clip_text_model";
    write_component((fs::path(dir) / "text_encoder").string(), text_config, text,
                    "model.safetensors", dtype, meta);
    write_component((fs::path(dir) / "vision").string(), config_, rest, "model.safetensors", dtype,
                    meta);
    if (tokenizer_dir_.empty()) return;
    for (const char* f : {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                          "special_tokens_map.json"})
      if (fs::exists(fs::path(tokenizer_dir_) / f))
        train::link_or_copy((fs::path(tokenizer_dir_) / f).string(), (fs::path(dir) / f).string());
  }

 private:
  const ClipArgs& a_;
  const train::ImageCaptionDataset& data_;
  nlohmann::json config_;
  std::string tokenizer_dir_;
  std::unique_ptr<models::ClipModel> clip_;
  std::unique_ptr<tokenizer::ClipTokenizer> tokenizer_;
  std::vector<nn::Module::ParamRef> params_;
  std::unique_ptr<train::Optimization> optim_;
};

int run_train_clip(ClipArgs& a) {
  DF_CHECK(a.model.empty() != a.config.empty(),
           "give either -m (a CLIP folder to fine-tune) or --config (a CLIPConfig json to train "
           "from scratch)");
  const fs::path src(a.config.empty() ? a.model : a.config);
  const nlohmann::json cfg =
      read_json_file(fs::is_directory(src) ? (src / "config.json").string() : src.string());
  a.t.resolution = models::ClipModelConfig::from_json(cfg).vision.image_size;
  const train::ImageCaptionDataset data = open_training_data(a.t);
  nlohmann::json s;
  s["model"] = "clip";
  s["from_config"] = !a.config.empty();
  const train::RunOptions ro = run_options(a.t, s);
  ClipTask task(a, data, train::total_steps(ro, data.size()));
  return run_task(task, data.size(), ro);
}

}  // namespace

void setup_train_clip(CLI::App& sub, std::function<int()>& action) {
  auto a = std::make_shared<ClipArgs>();
  sub.add_option("-m,--model", a->model,
                 "The CLIP model to fine-tune: a transformers CLIPModel folder (config.json, "
                 "model.safetensors, tokenizer files)");
  sub.add_option("--config", a->config,
                 "Train a new CLIP from scratch: a transformers CLIPConfig json (text_config, "
                 "vision_config, projection_dim); the published CLIP tokenizer is used");
  add_train_options(sub, a->t);
  sub.add_option("--save-dtype", a->save_dtype,
                 "dtype of the checkpoints' model files: f16, bf16 or f32 (default: as trained, "
                 "f32; the training state is always f32)")
      ->check(CLI::IsMember({"f16", "fp16", "bf16", "f32", "fp32"}));
  sub.footer(
      "Example:\n"
      "  diffuse train clip --config clip-config.json --data pairs/ -o clip-out \\\n"
      "      --batch-size 32 --lr 5e-4 --lr-scheduler cosine --warmup-steps 100 --epochs 10\n"
      "Images are resized to the vision tower's image_size (--resolution is not used). Each\n"
      "checkpoint-STEP/ is a transformers CLIPModel folder (config.json, model.safetensors)\n"
      "plus the training state, and holds the same weights in two parts: text_encoder/ (a\n"
      "CLIPTextModel folder: the text tower, as a diffusers pipeline's text encoder, e.g.\n"
      "`train unet --text-encoder`) and vision/ (a CLIPModel folder without the text tower:\n"
      "what `diffuse eval` reads as MODEL/clip/, with the text tower from MODEL/text_encoder/).\n"
      "Several processes each contrast their share of the batch.");
  action = [a]() { return run_train_clip(*a); };
}

}  // namespace diffuse::cli
