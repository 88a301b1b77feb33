#include "tokenizer/prompt_syntax.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace diffuse::tokenizer {

namespace {

// A1111 reads weights with Python's float(): surrounding whitespace is allowed.
float parse_weight(const std::string& s, const std::string& tag) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  const std::string t = s.substr(b, e - b);
  char* end = nullptr;
  errno = 0;
  const float v = t.empty() ? 0.0f : std::strtof(t.c_str(), &end);
  DF_CHECK(!t.empty() && end == t.c_str() + t.size() && errno == 0 && std::isfinite(v),
           "prompt tag ", tag, ": '", s, "' is not a number");
  return v;
}

// A1111's arguments: split at ':', "key=value" items are named, the others positional.
LoraTag lora_tag(const std::string& args, const std::string& text) {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> named;
  size_t start = 0;
  while (true) {
    const size_t colon = args.find(':', start);
    const std::string item = args.substr(start, colon - start);
    const size_t eq = item.find('=');
    if (eq == std::string::npos)
      positional.push_back(item);
    else
      named.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  LoraTag t;
  t.text = text;
  DF_CHECK(!positional.empty() && !positional[0].empty(), "prompt tag ", text,
           ": no LoRA name (expected <lora:NAME:WEIGHT>)");
  DF_CHECK(positional.size() <= 3, "prompt tag ", text,
           ": too many values (expected <lora:NAME:WEIGHT> or <lora:NAME:TE:UNET>)");
  t.name = positional[0];
  if (positional.size() > 1) t.text_encoder_weight = parse_weight(positional[1], text);
  for (auto& [k, v] : named)
    if (k == "te") t.text_encoder_weight = parse_weight(v, text);
  t.unet_weight = positional.size() > 2 ? parse_weight(positional[2], text) : t.text_encoder_weight;
  for (auto& [k, v] : named) {
    if (k == "unet")
      t.unet_weight = parse_weight(v, text);
    else
      DF_CHECK(k == "te", "prompt tag ", text, ": unknown argument '", k, "' (te= or unet=)");
  }
  return t;
}

bool word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;  // Python's \w takes Unicode letters
}

}  // namespace

PromptNetworks parse_prompt_networks(const std::string& prompt) {
  PromptNetworks out;
  size_t i = 0;
  while (i < prompt.size()) {
    // A tag: '<', a type of word characters, ':', arguments without '>', then '>'.
    if (prompt[i] == '<') {
      size_t j = i + 1;
      while (j < prompt.size() && word_char(prompt[j])) ++j;
      const size_t close =
          j < prompt.size() && prompt[j] == ':' ? prompt.find('>', j) : std::string::npos;
      if (j > i + 1 && close != std::string::npos && close > j + 1) {
        const std::string type = prompt.substr(i + 1, j - i - 1);
        const std::string text = prompt.substr(i, close + 1 - i);
        DF_CHECK(type == "lora" || type == "lyco", "prompt tag ", text, ": '", type,
                 "' networks are not supported (only <lora:NAME:WEIGHT>)");
        out.loras.push_back(lora_tag(prompt.substr(j + 1, close - j - 1), text));
        i = close + 1;
        continue;
      }
    }
    out.prompt += prompt[i++];
  }
  return out;
}

}  // namespace diffuse::tokenizer
