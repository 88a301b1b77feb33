#include "tokenizer/unicode.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "tokenizer/unicode_tables.h"

namespace diffuse::tokenizer::unicode {

namespace t = tables;

namespace {

constexpr char32_t kReplacement = 0xFFFD;

bool in_ranges(const t::CodeRange* r, size_t n, char32_t c) {
  const t::CodeRange* end = r + n;
  // first range whose hi >= c
  const t::CodeRange* it =
      std::lower_bound(r, end, c, [](const t::CodeRange& a, char32_t v) { return a.hi < v; });
  return it != end && it->lo <= c;
}

bool in_list(const char32_t* l, size_t n, char32_t c) {
  return std::binary_search(l, l + n, c);
}

// Hangul syllables compose and decompose algorithmically (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void decompose(char32_t c, std::u32string& out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    char32_t s = c - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const t::Decomposition* end = t::kDecompositions + t::kDecompositionsSize;
  const t::Decomposition* it = std::lower_bound(
      t::kDecompositions, end, c, [](const t::Decomposition& d, char32_t v) { return d.cp < v; });
  if (it == end || it->cp != c) {
    out.push_back(c);
    return;
  }
  decompose(it->first, out);
  if (it->second != 0) decompose(it->second, out);
}

// The primary composite of (a, b), or 0.
char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const t::Composition* end = t::kCompositions + t::kCompositionsSize;
  const t::Composition* it = std::lower_bound(
      t::kCompositions, end, std::make_pair(a, b), [](const t::Composition& x, auto v) {
        return x.first < v.first || (x.first == v.first && x.second < v.second);
      });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}

char32_t lower_one(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  const t::CaseRun* end = t::kLower + t::kLowerSize;
  // last run with lo <= c
  const t::CaseRun* it =
      std::upper_bound(t::kLower, end, c, [](char32_t v, const t::CaseRun& r) { return v < r.lo; });
  if (it == t::kLower) return c;
  --it;
  if (c > it->hi || (c - it->lo) % static_cast<char32_t>(it->stride) != 0) return c;
  return static_cast<char32_t>(static_cast<int64_t>(c) + it->delta);
}

bool is_cased(char32_t c) {
  return in_ranges(t::kCased, t::kCasedSize, c);
}
bool is_case_ignorable(char32_t c) {
  return in_ranges(t::kCaseIgnorable, t::kCaseIgnorableSize, c);
}

// Python's rule for U+03A3 at index i: final when preceded by a cased letter and not followed by
// one, skipping case-ignorable code points on both sides (unicodeobject.c, handle_capital_sigma).
bool is_final_sigma(std::u32string_view s, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(s[j - 1])) --j;
  if (j == 0 || !is_cased(s[j - 1])) return false;
  j = i + 1;
  while (j < s.size() && is_case_ignorable(s[j])) ++j;
  return j == s.size() || !is_cased(s[j]);
}

// Python's html._invalid_charrefs: numeric references that the HTML5 spec maps elsewhere.
char32_t invalid_charref(uint64_t n, bool* found) {
  static const char32_t kC1[32] = {0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                   0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D,   0x017D, 0x8F,
                                   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                   0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};
  *found = true;
  if (n == 0) return kReplacement;
  if (n == 0x0D) return U'\r';
  if (n >= 0x80 && n <= 0x9F) return kC1[n - 0x80];
  *found = false;
  return 0;
}

// Python's html._invalid_codepoints: numeric references that expand to nothing.
bool invalid_codepoint(uint64_t n) {
  return (n >= 0x1 && n <= 0x8) || n == 0xB || (n >= 0xE && n <= 0x1F) ||
         (n >= 0x7F && n <= 0x9F) || (n >= 0xFDD0 && n <= 0xFDEF) || (n & 0xFFFE) == 0xFFFE;
}

const t::HtmlEntity* find_entity(const std::string& name) {
  const t::HtmlEntity* end = t::kHtmlEntities + t::kHtmlEntitiesSize;
  const t::HtmlEntity* it = std::lower_bound(t::kHtmlEntities, end, name,
                                             [](const t::HtmlEntity& e, const std::string& v) {
                                               return std::strcmp(e.name, v.c_str()) < 0;
                                             });
  return (it != end && name == it->name) ? it : nullptr;
}

void append_entity(const t::HtmlEntity& e, std::u32string& out) {
  out.push_back(e.first);
  if (e.second != 0) out.push_back(e.second);
}

bool is_ascii_digit(char32_t c) {
  return c >= '0' && c <= '9';
}
bool is_ascii_hex(char32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
uint32_t hex_value(char32_t c) {
  return is_ascii_digit(c) ? c - '0' : (c >= 'a' ? c - 'a' + 10 : c - 'A' + 10);
}

// One reference starting at s[i] == '&'. Returns the number of code points consumed (0: none,
// the '&' stays literal) and appends the replacement. Mirrors the pattern
// &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?) and html._replace_charref.
size_t unescape_one(std::u32string_view s, size_t i, std::u32string& out) {
  size_t j = i + 1;
  if (j < s.size() && s[j] == '#') {
    size_t k = j + 1;
    bool hex = k < s.size() && (s[k] == 'x' || s[k] == 'X');
    if (hex) ++k;
    size_t digits_from = k;
    uint64_t num = 0;
    while (k < s.size() && (hex ? is_ascii_hex(s[k]) : is_ascii_digit(s[k]))) {
      num = num * (hex ? 16 : 10) + (hex ? hex_value(s[k]) : s[k] - '0');
      num = std::min<uint64_t>(num, 0x7FFFFFFF);  // saturate: anything this large is invalid
      ++k;
    }
    if (k == digits_from) return 0;
    if (k < s.size() && s[k] == ';') ++k;
    bool found = false;
    char32_t mapped = invalid_charref(num, &found);
    if (found) {
      out.push_back(mapped);
    } else if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
      out.push_back(kReplacement);
    } else if (!invalid_codepoint(num)) {
      out.push_back(static_cast<char32_t>(num));
    }
    return k - i;
  }
  auto name_char = [](char32_t c) {
    return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' && c != '#' &&
           c != ';';
  };
  size_t k = j;
  while (k < s.size() && k - j < 32 && name_char(s[k])) ++k;
  if (k == j) return 0;
  if (k < s.size() && s[k] == ';') ++k;
  std::u32string_view ref = s.substr(j, k - j);
  // Entity names are ASCII; anything else cannot match.
  std::string name;
  for (char32_t c : ref) name.push_back(c < 0x80 ? static_cast<char>(c) : '\x7f');
  if (const t::HtmlEntity* e = find_entity(name)) {
    append_entity(*e, out);
    return k - i;
  }
  for (size_t x = name.size() - 1; x > 1; --x) {  // the longest known prefix (legacy names)
    if (const t::HtmlEntity* e = find_entity(name.substr(0, x))) {
      append_entity(*e, out);
      out.append(ref.substr(x));
      return k - i;
    }
  }
  return 0;
}

}  // namespace

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    int len = (b >= 0xC2 && b <= 0xDF)   ? 2
              : (b >= 0xE0 && b <= 0xEF) ? 3
              : (b >= 0xF0 && b <= 0xF4) ? 4
                                         : 0;
    char32_t c = len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    bool ok = len != 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      auto cb = static_cast<unsigned char>(s[i + k]);
      ok = (cb & 0xC0) == 0x80;
      c = (c << 6) | (cb & 0x3F);
    }
    // overlong, surrogate or out-of-range forms are invalid
    ok = ok && !(len == 3 && c < 0x800) && !(len == 4 && (c < 0x10000 || c > 0x10FFFF)) &&
         !(c >= 0xD800 && c <= 0xDFFF);
    if (!ok) {
      out.push_back(kReplacement);
      ++i;
      continue;
    }
    out.push_back(c);
    i += len;
  }
  return out;
}

void append_utf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(c, out);
  return out;
}

bool is_letter(char32_t c) {
  if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
  return in_ranges(t::kLetters, t::kLettersSize, c);
}

bool is_number(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return in_ranges(t::kNumbers, t::kNumbersSize, c);
}

bool is_space(char32_t c) {
  return in_list(t::kSpace, t::kSpaceSize, c);
}
bool is_py_space(char32_t c) {
  return in_list(t::kPySpace, t::kPySpaceSize, c);
}

int combining_class(char32_t c) {
  if (c < 0x300) return 0;
  const t::ClassRange* end = t::kCombiningClass + t::kCombiningClassSize;
  const t::ClassRange* it = std::lower_bound(
      t::kCombiningClass, end, c, [](const t::ClassRange& r, char32_t v) { return r.hi < v; });
  return (it != end && it->lo <= c) ? it->cls : 0;
}

std::u32string to_lower(std::u32string_view s, bool python_final_sigma) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char32_t c = s[i];
    if (c == 0x130) {  // the one code point whose lowercase is two: i + combining dot above
      out.push_back(U'i');
      out.push_back(0x307);
    } else if (c == 0x3A3 && python_final_sigma && is_final_sigma(s, i)) {
      out.push_back(0x3C2);
    } else {
      out.push_back(lower_one(c));
    }
  }
  return out;
}

std::u32string nfc(std::u32string_view s) {
  // Below U+0300 every string is already in NFC: nothing there decomposes into, or composes with,
  // a combining mark on its own.
  if (std::all_of(s.begin(), s.end(), [](char32_t c) { return c < 0x300; })) {
    return std::u32string(s);
  }
  std::u32string d;
  d.reserve(s.size() + 8);
  for (char32_t c : s) decompose(c, d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j, [](char32_t a, char32_t b) {
      return combining_class(a) < combining_class(b);
    });
    i = j;
  }
  // Canonical composition: a character joins the last starter unless a character between them
  // has a class of 0 or one not lower than its own (last_class tracks the last one kept).
  std::u32string out;
  out.reserve(d.size());
  size_t starter = 0;
  int last_class = 256;  // a leading non-starter blocks everything up to the next starter
  for (char32_t c : d) {
    int cls = combining_class(c);
    if (!out.empty() && (last_class < cls || last_class == 0)) {
      if (char32_t comp = compose(out[starter], c); comp != 0) {
        out[starter] = comp;
        continue;
      }
    }
    if (cls == 0) starter = out.size();
    last_class = (out.empty() && cls != 0) ? 256 : cls;
    out.push_back(c);
  }
  return out;
}

std::u32string html_unescape(std::u32string_view s) {
  if (s.find(U'&') == std::u32string_view::npos) return std::u32string(s);
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '&') {
      if (size_t n = unescape_one(s, i, out); n > 0) {
        i += n;
        continue;
      }
    }
    out.push_back(s[i]);
    ++i;
  }
  return out;
}

}  // namespace diffuse::tokenizer::unicode
