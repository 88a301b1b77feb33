// AUTOMATIC1111's infotext (the PNG "parameters" text, pipeline/parameters.h) read back, as
// A1111's parse_generation_parameters reads it, and applied to a request: what
// `diffuse generate --from-png` and the server's /sdapi/v1/png-info use.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "pipeline/generate.h"

namespace diffuse::pipeline {

struct Infotext {
  std::string prompt, negative_prompt;
  // The "Key: value" fields of the last line, in order; quoted values unquoted.
  std::vector<std::pair<std::string, std::string>> fields;
  // The value of `key`, or null.
  const std::string* find(const std::string& key) const;
};

// The last line holds the fields when at least three "Key: value" pairs are found in it (else it
// is part of the prompt); lines before "Negative prompt:" are the prompt, the rest the negative
// prompt. Never fails: text without fields is all prompt.
Infotext parse_infotext(const std::string& text);

// What an infotext names besides the request: the model and refiner by name (file names without
// folders and extension; "" when absent).
struct InfotextModels {
  std::string model, refiner;
};

// Sets the fields the infotext records on `req` (prompt, negative prompt, steps, sampler and
// schedule, CFG scale, seed, size, clip skip, RNG, denoising strength, the refiner switch and
// the hires fix); fields it doesn't know are ignored, as A1111 ignores them. A field diffuse
// cannot honour (a sampler, schedule, RNG or hires upscaler it lacks) or a value that is not a
// number where one is needed is an Error naming the field. An infotext without RNG is A1111's
// default, the GPU generator (`cuda`).
InfotextModels apply_infotext(const Infotext& info, GenerateRequest* req);

}  // namespace diffuse::pipeline
