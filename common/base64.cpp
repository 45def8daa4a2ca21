#include "base64.h"

#include <cstdint>
#include <cstring>

namespace lww {

static const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
        out.push_back(kB64[v >> 18]);
        out.push_back(kB64[(v >> 12) & 63]);
        out.push_back(kB64[(v >> 6) & 63]);
        out.push_back(kB64[v & 63]);
    }
    if (i < in.size()) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16;
        if (i + 1 < in.size()) v |= uint32_t(uint8_t(in[i + 1])) << 8;
        out.push_back(kB64[v >> 18]);
        out.push_back(kB64[(v >> 12) & 63]);
        out.push_back(i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=');
        out.push_back('=');
    }
    return out;
}

bool base64_decode(std::string_view in, std::string& out) {
    static int8_t rev[256];
    static bool init = [] {
        std::memset(rev, -1, sizeof rev);
        for (int i = 0; i < 64; ++i) rev[uint8_t(kB64[i])] = int8_t(i);
        return true;
    }();
    (void)init;
    if (in.size() % 4) return false;
    out.clear();
    out.reserve(in.size() / 4 * 3);
    for (size_t i = 0; i < in.size(); i += 4) {
        int a = rev[uint8_t(in[i])], b = rev[uint8_t(in[i + 1])];
        bool last = i + 4 == in.size();
        bool pad2 = last && in[i + 2] == '=' && in[i + 3] == '=';
        bool pad1 = last && !pad2 && in[i + 3] == '=';
        int c = pad2 ? 0 : rev[uint8_t(in[i + 2])];
        int d = (pad1 || pad2) ? 0 : rev[uint8_t(in[i + 3])];
        if (a < 0 || b < 0 || c < 0 || d < 0) return false;
        uint32_t v = uint32_t(a) << 18 | uint32_t(b) << 12 | uint32_t(c) << 6 | uint32_t(d);
        out.push_back(char(v >> 16));
        if (!pad2) out.push_back(char(v >> 8));
        if (!pad1 && !pad2) out.push_back(char(v));
    }
    return true;
}

static int base64url_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

bool base64url_decode(std::string_view in, std::string& out) {
    out.clear();
    if (in.size() % 4 == 1) return false;
    out.reserve(in.size() * 3 / 4);
    uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : in) {
        const int v = base64url_value(c);
        if (v < 0) return false;
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xFF);
        }
    }
    return (acc & ((1u << bits) - 1)) == 0;  // unused low bits of the last character
}

}  // namespace lww
