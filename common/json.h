// lwwsync core: the one way JSON from elsewhere is read. RapidJSON's
// iterative parser (no recursion, so no stack to exhaust), exact doubles,
// validated UTF-8, and a bound on nesting depth checked while parsing, so a
// document of a million '[' is refused after 64 of them instead of building
// a million-level DOM. Internal to the core and the gateway (not in public
// headers).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/reader.h>

namespace lww {

// lwwsync documents nest 6 levels deep (exchange > push > tables > rows > cols > value).
constexpr unsigned kMaxJsonDepth = 32;

// Parses `text` into `doc`. False with `error` set ("malformed JSON at
// offset N: …" or "JSON nested deeper than N levels"); `doc` is then null.
bool parse_json(rapidjson::Document& doc, std::string_view text, std::string& error,
                unsigned max_depth = kMaxJsonDepth);

// A JSON number as RapidJSON's DOM types it (an integer is unsigned when it
// is not negative, whatever its text), converted exactly with from_chars.
struct JsonNumber {
    enum class Kind : uint8_t { negative, nonnegative, real } kind = Kind::nonnegative;
    int64_t i = 0;   // negative
    uint64_t u = 0;  // nonnegative
    double d = 0;    // real

    bool is_uint64() const { return kind == Kind::nonnegative; }
    bool is_uint() const { return is_uint64() && u <= UINT32_MAX; }
    bool is_int64() const { return kind == Kind::negative || (is_uint64() && u <= uint64_t(INT64_MAX)); }
    bool is_int() const { return is_int64() && get_int64() >= INT32_MIN && get_int64() <= INT32_MAX; }
    int64_t get_int64() const { return kind == Kind::negative ? i : int64_t(u); }
    double get_double() const { return kind == Kind::real ? d : kind == Kind::negative ? double(i) : double(u); }
};
// A number's text as the reader passed it (grammar checked). False when it
// is beyond a double's range.
bool read_json_number(const char* s, size_t n, JsonNumber& out);
// The same, added to a DOM being built (Document's SAX side).
bool add_json_number(rapidjson::Document& doc, const char* s, size_t n, bool& out_of_range);

// The reader flags every lwwsync parse uses (numbers as text, validated
// UTF-8, iterative), and the message of a failed parse.
constexpr unsigned kJsonParseFlags =
    rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag;
std::string json_parse_error(const rapidjson::ParseResult& result, bool too_deep, bool out_of_range,
                             unsigned max_depth);

}  // namespace lww
