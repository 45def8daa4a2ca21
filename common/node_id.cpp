#include "node_id.h"

#include <random>

#include <openssl/evp.h>

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

std::string NodeId::random_key() {
    std::random_device rd;
    std::string key(kKeyBytes, '\0');
    for (size_t i = 0; i < key.size(); i += 4) {
        const uint32_t r = rd();
        for (size_t j = 0; j < 4; ++j) key[i + j] = static_cast<char>(r >> (8 * j));
    }
    return key;
}

NodeId NodeId::from_key(std::string_view key) {
    if (key.size() != kKeyBytes) throw Error("a node key is " + std::to_string(kKeyBytes) + " bytes");
    static const char kDomain[] = "lwwsync node key";
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                    EVP_DigestUpdate(ctx, kDomain, sizeof kDomain) == 1 &&
                    EVP_DigestUpdate(ctx, key.data(), key.size()) == 1 && EVP_DigestFinal_ex(ctx, digest, &len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok || len < 16) throw Error("cannot compute SHA-256", ErrorKind::internal);
    NodeId id;
    for (size_t i = 0; i < id.bytes.size(); ++i) id.bytes[i] = digest[i];
    id.bytes[6] = static_cast<uint8_t>((id.bytes[6] & 0x0F) | 0x80);  // version 8: derived, not random
    id.bytes[8] = static_cast<uint8_t>((id.bytes[8] & 0x3F) | 0x80);  // RFC 9562 variant
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
    // The nil UUID is nobody's node: node directories use it for "none".
    return b == 16 && out != NodeId{};
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
