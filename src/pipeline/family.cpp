#include "pipeline/family.h"

#include "core/error.h"

namespace diffuse::pipeline {

const std::vector<FamilyInfo>& families() {
  static const std::vector<FamilyInfo> rows = [] {
    std::vector<FamilyInfo> r;
    FamilyInfo sd1;
    sd1.id = "sd1";
    sd1.name = "SD1";
    r.push_back(sd1);

    FamilyInfo sd2;
    sd2.id = "sd2";
    sd2.name = "SD2";
    sd2.default_size_v = 768;
    sd2.prediction_type = "v_prediction";
    sd2.default_clip_skip = 2;
    sd2.pad_token = "!";
    sd2.text_activation = "gelu";
    sd2.unused_text_layers = 1;
    r.push_back(sd2);

    FamilyInfo xl;
    xl.id = "sdxl";
    xl.name = "SDXL";
    xl.default_size = xl.default_size_v = 1024;
    xl.text_encoder_2 = true;
    xl.context_final_norm = false;
    xl.default_clip_skip = 2;
    xl.time_ids = TimeIds::SizeCropTarget;
    xl.scheduler = "EulerDiscreteScheduler";
    xl.zeros_for_empty_negative = true;
    r.push_back(xl);

    FamilyInfo refiner = xl;
    refiner.id = "sdxl-refiner";
    refiner.name = "SDXL-refiner";
    refiner.text_encoder = false;
    refiner.time_ids = TimeIds::SizeCropAesthetic;
    refiner.zeros_for_empty_negative = false;
    r.push_back(refiner);
    return r;
  }();
  return rows;
}

const FamilyInfo& family_by_id(std::string_view id) {
  std::string known;
  for (const FamilyInfo& f : families()) {
    if (f.id == id) return f;
    known += (known.empty() ? "" : ", ") + std::string(f.id);
  }
  DF_FAIL("unknown model family '", std::string(id), "' (one of: ", known, ")");
}

const FamilyInfo& detect_family(const io::ModelFiles& files, std::string_view text_activation) {
  const bool added_embedding = files.unet.count("add_embedding.linear_1.weight") > 0 ||
                               (files.unet_config.is_object() &&
                                files.unet_config.value("addition_embed_type", nlohmann::json()) ==
                                    nlohmann::json("text_time"));
  if (!files.text_encoder_2.empty() || added_embedding)
    return family_by_id(files.text_encoder.empty() ? "sdxl-refiner" : "sdxl");
  const bool openclip = text_activation.empty()
                            ? files.text_layout == io::TextEncoderLayout::OpenClip
                            : text_activation == family_by_id("sd2").text_activation;
  return family_by_id(openclip ? "sd2" : "sd1");
}

std::string family_display_name(const FamilyInfo& f, bool inpaint) {
  return std::string(f.name) + (inpaint ? "-inpaint" : "");
}

}  // namespace diffuse::pipeline
