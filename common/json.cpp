#include "json.h"

#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

namespace lww {

namespace {

constexpr unsigned kFlags =
    rapidjson::kParseFullPrecisionFlag | rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag;

// Forwards SAX events to the document, refusing to open a level past `max`.
struct DepthLimited {
    rapidjson::Document& doc;
    unsigned max;
    unsigned depth = 0;
    bool too_deep = false;

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
    bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) { return doc.RawNumber(s, n, copy); }
    bool String(const char* s, rapidjson::SizeType n, bool copy) { return doc.String(s, n, copy); }
    bool Key(const char* s, rapidjson::SizeType n, bool copy) { return doc.Key(s, n, copy); }
    bool StartObject() { return open() && doc.StartObject(); }
    bool EndObject(rapidjson::SizeType n) { --depth; return doc.EndObject(n); }
    bool StartArray() { return open() && doc.StartArray(); }
    bool EndArray(rapidjson::SizeType n) { --depth; return doc.EndArray(n); }
};

}  // namespace

bool parse_json(rapidjson::Document& doc, std::string_view text, std::string& error, unsigned max_depth) {
    rapidjson::MemoryStream ms(text.data(), text.size());
    rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(ms);
    rapidjson::Reader reader;
    rapidjson::ParseResult result;
    bool too_deep = false;
    auto generate = [&](rapidjson::Document& d) {
        DepthLimited h{d, max_depth};
        result = reader.Parse<kFlags>(in, h);
        too_deep = h.too_deep;
        return !result.IsError();
    };
    doc.SetNull();
    doc.Populate(generate);
    if (!result.IsError()) return true;
    doc.SetNull();
    error = too_deep ? "JSON nested deeper than " + std::to_string(max_depth) + " levels"
                     : "malformed JSON at offset " + std::to_string(result.Offset()) + ": " +
                           rapidjson::GetParseError_En(result.Code());
    return false;
}

}  // namespace lww
