// The files of an opened model, completed for writing as a diffusers folder.
#pragma once
#include <string>

#include "io/model_files.h"
#include "pipeline/model_bundle.h"

namespace diffuse::pipeline {

// `b.files` with what a diffusers folder needs and a single file does not store, as the bundle
// resolved it: each component's config.json (the model's own when it has one; else the bundle's
// resolved config, over config_dir's file when given so that its other fields are kept), the
// scheduler config (the model's, config_dir's, else SD's published one with the bundle's
// prediction type), and the tokenizer (the model's, else config_dir's tokenizer/ files, else
// the family's published pad token; vocab.json and merges.txt, when neither has them, from the
// vocabulary the bundle reads). Throws naming the component when a head count is unknown
// (a single file whose shapes are not the published ones: give config_dir).
io::ModelFiles files_for_export(ModelBundle& b, const std::string& config_dir = "");

}  // namespace diffuse::pipeline
