// The Unicode pieces of the tokenizer against facts of Python's str / unicodedata / html.
#include <gtest/gtest.h>

#include "tokenizer/unicode.h"

namespace diffuse::tokenizer::unicode {
namespace {

std::string lower(const std::string& s, bool final_sigma) {
  return encode_utf8(to_lower(decode_utf8(s), final_sigma));
}
std::string nfc_of(const std::string& s) {
  return encode_utf8(nfc(decode_utf8(s)));
}
std::string unescape(const std::string& s) {
  return encode_utf8(html_unescape(decode_utf8(s)));
}

TEST(Unicode, Utf8RoundTripAndInvalidBytes) {
  std::string s = "a\u00e9\u6771\U0001F600";
  std::u32string u = decode_utf8(s);
  ASSERT_EQ(u.size(), 4u);
  EXPECT_EQ(u[1], 0xE9u);
  EXPECT_EQ(u[2], 0x6771u);
  EXPECT_EQ(u[3], 0x1F600u);
  EXPECT_EQ(encode_utf8(u), s);
  // a stray continuation byte, an overlong '/', a cut sequence: each bad byte is U+FFFD
  EXPECT_EQ(decode_utf8("\x80x"), (std::u32string{0xFFFD, U'x'}));
  EXPECT_EQ(decode_utf8("\xC0\xAF"), (std::u32string{0xFFFD, 0xFFFD}));
  EXPECT_EQ(decode_utf8("\xE6\x9D"), (std::u32string{0xFFFD, 0xFFFD}));
  EXPECT_EQ(decode_utf8("\xED\xA0\x80"), (std::u32string{0xFFFD, 0xFFFD, 0xFFFD}));  // surrogate
}

TEST(Unicode, CharacterClasses) {
  for (char32_t c : {U'a', U'Z', char32_t(0xE9), char32_t(0x3B1), char32_t(0x6771),
                     char32_t(0xAC00), char32_t(0x2C6), char32_t(0x20000)}) {
    EXPECT_TRUE(is_letter(c)) << std::hex << static_cast<uint32_t>(c);
  }
  for (char32_t c : {U'1', U'_', U' ', U'\'', char32_t(0x301), char32_t(0x1F600), char32_t(0xB2)}) {
    EXPECT_FALSE(is_letter(c)) << std::hex << static_cast<uint32_t>(c);
  }
  // \p{N}: decimal digits, superscripts, fractions, Roman numerals, other scripts' digits
  for (char32_t c : {U'0', U'9', char32_t(0xB2), char32_t(0xBD), char32_t(0x2167), char32_t(0x663),
                     char32_t(0x2460)}) {
    EXPECT_TRUE(is_number(c)) << std::hex << static_cast<uint32_t>(c);
  }
  EXPECT_FALSE(is_number(U'a'));
  for (char32_t c : {U' ', U'\t', U'\n', U'\r', char32_t(0x0B), char32_t(0x85), char32_t(0xA0),
                     char32_t(0x3000), char32_t(0x2009)}) {
    EXPECT_TRUE(is_space(c)) << std::hex << static_cast<uint32_t>(c);
    EXPECT_TRUE(is_py_space(c)) << std::hex << static_cast<uint32_t>(c);
  }
  EXPECT_FALSE(is_space(0x200B));  // zero-width space is a format character, not White_Space
  EXPECT_FALSE(is_space(0x1C));
  EXPECT_TRUE(is_py_space(0x1C));  // but Python's str.isspace counts the separators
  EXPECT_EQ(combining_class(0x301), 230);
  EXPECT_EQ(combining_class(0x323), 220);
  EXPECT_EQ(combining_class(U'a'), 0);
}

TEST(Unicode, Lowercase) {
  EXPECT_EQ(lower("Hello WORLD", false), "hello world");
  EXPECT_EQ(lower("\u00c9T\u00c9 \u0100\u0102", false), "\u00e9t\u00e9 \u0101\u0103");
  EXPECT_EQ(lower("\u0391\u0392\u0393 \u0410\u0411\u0412", false),
            "\u03b1\u03b2\u03b3 \u0430\u0431\u0432");
  EXPECT_EQ(lower("\u0130", false), "i\u0307");             // one code point becomes two
  EXPECT_EQ(lower("\uff21\u2160", false), "\uff41\u2170");  // fullwidth A, Roman numeral one
  EXPECT_EQ(lower("\u6771\U0001F600 123", false), "\u6771\U0001F600 123");
  // final sigma: Python's str.lower only
  EXPECT_EQ(lower("\u039f\u0394\u039f\u03a3", true), "\u03bf\u03b4\u03bf\u03c2");
  EXPECT_EQ(lower("\u039f\u0394\u039f\u03a3", false), "\u03bf\u03b4\u03bf\u03c3");
  EXPECT_EQ(lower("\u03a3", true), "\u03c3");                          // alone: not final
  EXPECT_EQ(lower("\u039f\u03a3\u039f", true), "\u03bf\u03c3\u03bf");  // inside a word
  EXPECT_EQ(lower("\u039f\u03a3'. x", true), "\u03bf\u03c2'. x");      // ' is case-ignorable
}

TEST(Unicode, Nfc) {
  EXPECT_EQ(nfc_of("cafe\u0301"), "caf\u00e9");
  EXPECT_EQ(nfc_of("caf\u00e9"), "caf\u00e9");
  EXPECT_EQ(nfc_of("A\u030a"), "\u00c5");
  EXPECT_EQ(nfc_of("\u212b"), "\u00c5");                // a singleton decomposition
  EXPECT_EQ(nfc_of("a\u0323\u0302"), "\u1ead");         // two marks, one composite
  EXPECT_EQ(nfc_of("a\u0302\u0323"), "\u1ead");         // reordered first
  EXPECT_EQ(nfc_of("q\u0307\u0323"), "q\u0323\u0307");  // no composite: just reordered
  EXPECT_EQ(nfc_of("\u1100\u1161\u11a8"), "\uac01");    // Hangul jamo L V T
  EXPECT_EQ(nfc_of("\uac00\u11a8"), "\uac01");          // LV + T
  EXPECT_EQ(nfc_of("\u0301e"), "\u0301e");              // a leading mark stays
  EXPECT_EQ(nfc_of("\u0958"), "\u0915\u093c");          // composition exclusion
  EXPECT_EQ(nfc_of("e\u0301\u0301"), "\u00e9\u0301");   // the second mark is blocked
}

TEST(Unicode, HtmlUnescapeLikePython) {
  EXPECT_EQ(unescape("a &amp; b"), "a & b");
  EXPECT_EQ(unescape("&lt;tag&gt; &quot;x&quot; &#39;y&#x27;"), "<tag> \"x\" 'y'");
  EXPECT_EQ(unescape("&amp"), "&");        // legacy name without ';'
  EXPECT_EQ(unescape("&ampfoo"), "&foo");  // longest known prefix
  EXPECT_EQ(unescape("&notit;"), "\u00acit;");
  EXPECT_EQ(unescape("&notin;"), "\u2209");
  EXPECT_EQ(unescape("&bogus; & &;"), "&bogus; & &;");  // unknown names stay
  EXPECT_EQ(unescape("&#128512;&#x1F600"), "\U0001F600\U0001F600");
  EXPECT_EQ(unescape("&#128;&#0;&#1;x"),
            "\u20ac\ufffd"
            "x");  // C1 table, NUL, dropped
  EXPECT_EQ(unescape("&#xD800;&#99999999999;"), "\ufffd\ufffd");
  EXPECT_EQ(unescape("&#x;&#;"), "&#x;&#;");
  EXPECT_EQ(unescape("&NotNestedGreaterGreater;"), "\u2aa2\u0338");  // two code points
  EXPECT_EQ(unescape("&amp;amp;"), "&amp;");  // one pass; the tokenizer applies two
}

}  // namespace
}  // namespace diffuse::tokenizer::unicode
