#include "value.h"

#include <cstring>

namespace lww {

bool identical(const Value& a, const Value& b) {
    if (a.kind != b.kind) return false;
    switch (a.kind) {
        case Value::Kind::Null: return true;
        case Value::Kind::Int: return a.i == b.i;
        case Value::Kind::Real: return std::memcmp(&a.d, &b.d, sizeof(double)) == 0;
        case Value::Kind::Text:
        case Value::Kind::Bytes: return a.s == b.s;
    }
    return false;
}

const char* kind_name(Value::Kind k) {
    switch (k) {
        case Value::Kind::Null: return "null";
        case Value::Kind::Int: return "integer";
        case Value::Kind::Real: return "real";
        case Value::Kind::Text: return "text";
        case Value::Kind::Bytes: return "bytes";
    }
    return "?";
}

}  // namespace lww
