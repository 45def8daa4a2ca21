// lwwsync core: the canonical value model shared by every engine.
// null, 64-bit integer, double, UTF-8 text, bytes. Nothing else crosses the wire.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace lww {

struct Value {
    enum class Kind : uint8_t { Null = 0, Int = 1, Real = 2, Text = 3, Bytes = 4 };

    Kind kind = Kind::Null;
    int64_t i = 0;
    double d = 0;
    std::string s;  // text (UTF-8) or bytes

    static Value null() { return Value{}; }
    static Value integer(int64_t v) {
        Value x;
        x.kind = Kind::Int;
        x.i = v;
        return x;
    }
    static Value real(double v) {
        Value x;
        x.kind = Kind::Real;
        x.d = v;
        return x;
    }
    static Value text(std::string v) {
        Value x;
        x.kind = Kind::Text;
        x.s = std::move(v);
        return x;
    }
    static Value bytes(std::string v) {
        Value x;
        x.kind = Kind::Bytes;
        x.s = std::move(v);
        return x;
    }

    bool is_null() const { return kind == Kind::Null; }
};

// Byte-for-byte identity in the canonical model: same kind and same bits
// (so -0.0 != 0.0 and NaN == NaN with the same payload). This is what
// "converged" means, not SQL equality.
bool identical(const Value& a, const Value& b);

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF.
bool valid_utf8(std::string_view s);

}  // namespace lww
