// The Unicode text handling CLIP's tokenizer needs, without external libraries: UTF-8, the
// character classes of its split pattern, lowercasing, NFC and HTML unescaping. Each function
// says whose behaviour it reproduces (Python's str / unicodedata / html, the `regex` module, or
// HF tokenizers' normalizers).
#pragma once
#include <string>
#include <string_view>

namespace diffuse::tokenizer::unicode {

// UTF-8 -> code points; an invalid or truncated sequence becomes U+FFFD (one per bad byte).
std::u32string decode_utf8(std::string_view s);
std::string encode_utf8(std::u32string_view s);
void append_utf8(char32_t c, std::string& out);

bool is_letter(char32_t c);    // \p{L}
bool is_number(char32_t c);    // \p{N}
bool is_space(char32_t c);     // \s of the regex module / oniguruma: White_Space
bool is_py_space(char32_t c);  // Python's str.isspace (White_Space plus U+001C..U+001F)
int combining_class(char32_t c);

// Full lowercase mapping, code point by code point (U+0130 becomes two), as HF tokenizers'
// Lowercase normalizer does. With python_final_sigma, a capital sigma at the end of a word becomes
// the final form, as Python's str.lower() does.
std::u32string to_lower(std::u32string_view s, bool python_final_sigma);

// Unicode Normalization Form C (canonical decomposition, ordering, composition).
std::u32string nfc(std::u32string_view s);

// Python's html.unescape: named (HTML5) and numeric character references.
std::u32string html_unescape(std::u32string_view s);

}  // namespace diffuse::tokenizer::unicode
