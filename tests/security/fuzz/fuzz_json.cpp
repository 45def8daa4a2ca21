// libFuzzer target: lww::parse_json (common/json.h), the one reader of every
// JSON document from elsewhere, differentially: the same text is also read
// with numbers kept as text, and every number parse_json accepted must be
// exactly the number written (integers as integers, anything else the
// correctly rounded double glibc's strtod gives; never NaN or infinite).
// The nesting bound holds for whatever is accepted.
#include <rapidjson/document.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../../common/json.h"
#include "fuzz_common.h"

namespace {

// Numbers as written, in document order; the deepest nesting.
struct RawNumbers : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, RawNumbers> {
    std::vector<std::string> numbers;
    unsigned depth = 0, max_depth = 0;
    bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
        numbers.emplace_back(s, n);
        return true;
    }
    bool StartObject() { return open(); }
    bool EndObject(rapidjson::SizeType) {
        --depth;
        return true;
    }
    bool StartArray() { return open(); }
    bool EndArray(rapidjson::SizeType) {
        --depth;
        return true;
    }
    bool open() {
        if (++depth > max_depth) max_depth = depth;
        return true;
    }
};

void collect(const rapidjson::Value& v, std::vector<const rapidjson::Value*>& out) {
    if (v.IsNumber()) out.push_back(&v);
    else if (v.IsArray())
        for (const auto& e : v.GetArray()) collect(e, out);
    else if (v.IsObject())
        for (const auto& m : v.GetObject()) collect(m.value, out);
}

bool is_integer_text(const std::string& t) { return t.find_first_of(".eE") == std::string::npos; }

void check_number(const std::string& text, const rapidjson::Value& v) {
    if (is_integer_text(text)) {
        errno = 0;
        char* end = nullptr;
        if (text[0] == '-') {
            const long long x = std::strtoll(text.c_str(), &end, 10);
            if (errno == 0) {
                FUZZ_CHECK(v.IsInt64() && v.GetInt64() == x);
                return;
            }
        } else {
            const unsigned long long x = std::strtoull(text.c_str(), &end, 10);
            if (errno == 0) {
                FUZZ_CHECK(v.IsUint64() && v.GetUint64() == x);
                return;
            }
        }
        // Past 64 bits: a double, like any other number.
    }
    errno = 0;
    const double want = std::strtod(text.c_str(), nullptr);
    FUZZ_CHECK(v.IsDouble());
    const double got = v.GetDouble();
    if (!std::isfinite(got) || !std::isfinite(want) || std::memcmp(&got, &want, sizeof got) != 0) {
        std::fprintf(
            stderr, "\nnumber %s read as %.17g (bits %016llx), strtod gives %.17g\n", text.c_str(), got,
            [&] {
                unsigned long long b;
                std::memcpy(&b, &got, 8);
                return b;
            }(),
            want);
        fuzz::finding("parse_json read a number as another value", text.c_str());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // FINDING json-stray-bom-bytes: leading 0xEF, 0xBB, 0xBF bytes are each
    // dropped (any part of a UTF-8 byte order mark), not refused.
    std::string_view text = fuzz::as_text(data, size);
    rapidjson::Document doc;
    std::string error;
    bool ok = false;
    fuzz::must_not_throw("parse_json", [&] { ok = lww::parse_json(doc, text, error); });
    if (!ok) {
        FUZZ_CHECK(!error.empty() && doc.IsNull());
        return 0;
    }

    // Accepted text is JSON, after at most a whole byte order mark.
    if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
    RawNumbers raw;
    rapidjson::MemoryStream ms(text.data(), text.size());
    rapidjson::Reader reader;
    constexpr unsigned kRawFlags =
        rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag;
    FUZZ_CHECK(!reader.Parse<kRawFlags>(ms, raw).IsError());
    FUZZ_CHECK(raw.max_depth <= lww::kMaxJsonDepth);

    std::vector<const rapidjson::Value*> numbers;
    collect(doc, numbers);
    FUZZ_CHECK(numbers.size() == raw.numbers.size());
    for (size_t i = 0; i < numbers.size(); ++i) check_number(raw.numbers[i], *numbers[i]);
    return 0;
}
