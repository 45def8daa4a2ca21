#include "node_id.h"

#include <random>

#include "error.h"

namespace lww {

NodeId NodeId::random_v4() {
    std::random_device rd;  // getrandom(2) on Linux
    NodeId id;
    for (size_t i = 0; i < id.bytes.size(); i += 4) {
        uint32_t r = rd();
        for (size_t j = 0; j < 4; ++j) id.bytes[i + j] = static_cast<uint8_t>(r >> (8 * j));
    }
    id.bytes[6] = static_cast<uint8_t>((id.bytes[6] & 0x0F) | 0x40);  // version 4
    id.bytes[8] = static_cast<uint8_t>((id.bytes[8] & 0x3F) | 0x80);  // RFC 4122 variant
    return id;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool NodeId::try_parse(std::string_view t, NodeId& out) {
    if (t.size() != 36) return false;
    size_t b = 0;
    for (size_t i = 0; i < 36;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (t[i] != '-') return false;
            ++i;
            continue;
        }
        int hi = hex_digit(t[i]), lo = hex_digit(t[i + 1]);
        if (hi < 0 || lo < 0) return false;
        out.bytes[b++] = static_cast<uint8_t>(hi << 4 | lo);
        i += 2;
    }
    return b == 16;
}

NodeId NodeId::parse(std::string_view t) {
    NodeId id;
    if (!try_parse(t, id)) throw Error("invalid node id \"" + std::string(t.substr(0, 64)) + "\" (want a UUID)");
    return id;
}

std::string NodeId::str() const {
    static const char* hex = "0123456789abcdef";
    std::string s;
    s.reserve(36);
    for (size_t i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
        s.push_back(hex[bytes[i] >> 4]);
        s.push_back(hex[bytes[i] & 15]);
    }
    return s;
}

}  // namespace lww
