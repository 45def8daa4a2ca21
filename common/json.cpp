#include "json.h"

#include <algorithm>
#include <charconv>
#include <cstdint>

#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

namespace lww {

namespace {

// Numbers come as their text (kParseNumbersAsStringsFlag) and are converted
// here with std::from_chars: RapidJSON 1.1.0's full-precision conversion
// reads some numbers wrongly and indexes out of bounds on others (a SEGV
// from one number anywhere in a document; fixed upstream in 2018, never
// released). from_chars is exact and locale-independent.
constexpr unsigned kFlags = kJsonParseFlags;

// Forwards SAX events to the document, refusing to open a level past `max`.
struct DepthLimited {
    rapidjson::Document& doc;
    unsigned max;
    unsigned depth = 0;
    bool too_deep = false;
    bool out_of_range = false;

    bool open() {
        if (++depth <= max) return true;
        too_deep = true;
        return false;
    }
    bool Null() { return doc.Null(); }
    bool Bool(bool b) { return doc.Bool(b); }
    bool Int(int i) { return doc.Int(i); }
    bool Uint(unsigned i) { return doc.Uint(i); }
    bool Int64(int64_t i) { return doc.Int64(i); }
    bool Uint64(uint64_t i) { return doc.Uint64(i); }
    bool Double(double d) { return doc.Double(d); }
    bool RawNumber(const char* s, rapidjson::SizeType n, bool) { return add_json_number(doc, s, n, out_of_range); }
    bool String(const char* s, rapidjson::SizeType n, bool copy) { return doc.String(s, n, copy); }
    bool Key(const char* s, rapidjson::SizeType n, bool copy) { return doc.Key(s, n, copy); }
    bool StartObject() { return open() && doc.StartObject(); }
    bool EndObject(rapidjson::SizeType n) {
        --depth;
        return doc.EndObject(n);
    }
    bool StartArray() { return open() && doc.StartArray(); }
    bool EndArray(rapidjson::SizeType n) {
        --depth;
        return doc.EndArray(n);
    }
};

}  // namespace

// The reader has checked the JSON number grammar already.
bool read_json_number(const char* s, size_t n, JsonNumber& out) {
    const char* end = s + n;
    if (std::find_if(s, end, [](char c) { return c == '.' || c == 'e' || c == 'E'; }) == end) {
        if (s[0] == '-') {
            int64_t i = 0;
            if (std::from_chars(s, end, i).ec == std::errc()) {
                out.kind = i < 0 ? JsonNumber::Kind::negative : JsonNumber::Kind::nonnegative;  // "-0" is 0
                out.i = i;
                out.u = uint64_t(i);
                return true;
            }
        } else {
            uint64_t u = 0;
            if (std::from_chars(s, end, u).ec == std::errc()) {
                out.kind = JsonNumber::Kind::nonnegative;
                out.u = u;
                return true;
            }
        }
    }
    double d = 0;
    const auto r = std::from_chars(s, end, d);
    if (r.ec != std::errc() || r.ptr != end) return false;  // beyond a double's range, either way
    out.kind = JsonNumber::Kind::real;
    out.d = d;
    return true;
}

bool add_json_number(rapidjson::Document& doc, const char* s, size_t n, bool& out_of_range) {
    JsonNumber num;
    if (!read_json_number(s, n, num)) {
        out_of_range = true;
        return false;
    }
    switch (num.kind) {
        case JsonNumber::Kind::negative: return doc.Int64(num.i);
        case JsonNumber::Kind::nonnegative: return doc.Uint64(num.u);
        default: return doc.Double(num.d);
    }
}

std::string json_parse_error(const rapidjson::ParseResult& result, bool too_deep, bool out_of_range,
                             unsigned max_depth) {
    if (too_deep) return "JSON nested deeper than " + std::to_string(max_depth) + " levels";
    if (out_of_range)
        return "a number at offset " + std::to_string(result.Offset()) + " is out of the range of a double";
    return "malformed JSON at offset " + std::to_string(result.Offset()) + ": " +
           rapidjson::GetParseError_En(result.Code());
}

bool parse_json(rapidjson::Document& doc, std::string_view text, std::string& error, unsigned max_depth) {
    // A plain byte stream: no byte-order mark is skipped (RapidJSON's encoded
    // stream drops stray 0xEF, 0xBB, 0xBF bytes from the start of any text).
    rapidjson::MemoryStream in(text.data(), text.size());
    rapidjson::Reader reader;
    rapidjson::ParseResult result;
    bool too_deep = false, out_of_range = false;
    auto generate = [&](rapidjson::Document& d) {
        DepthLimited h{d, max_depth};
        result = reader.Parse<kFlags>(in, h);
        too_deep = h.too_deep;
        out_of_range = h.out_of_range;
        return !result.IsError();
    };
    doc.SetNull();
    doc.Populate(generate);
    if (!result.IsError()) return true;
    doc.SetNull();
    error = json_parse_error(result, too_deep, out_of_range, max_depth);
    return false;
}

}  // namespace lww
