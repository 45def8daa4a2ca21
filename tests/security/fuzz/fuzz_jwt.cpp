// libFuzzer target: lwwgw::verify_jwt, which the gateway runs on the bearer
// token of every request before anything else. A random token never gets
// past the signature, so most inputs are signed here with the fixed secret:
//
//   byte 0 % 4   0: the rest is the token, verified as it is
//                1: bytes 1..8 are `now` (little endian), then header JSON,
//                   '\n', payload JSON: both base64url-encoded and signed
//                2: as 1, the payload only, under {"alg":"HS256","typ":"JWT"}
//                3: as 1, but the two segments are taken as base64url text
//                   as they are (so their decoding is fuzzed too), then signed
//
// verify_jwt reports refusals in its result: it must not throw at all. For
// signed tokens, a changed signature or another secret is always refused,
// and an accepted token has the documented shape.
#include <rapidjson/document.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>
#include <string>

#include "../../../server/jwt.h"
#include "fuzz_common.h"

namespace {

const std::string kSecret = "fuzz-secret-0123456789abcdef-0123456789abcdef";

std::string b64url(const std::string& in) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
        out += a[v >> 18];
        out += a[(v >> 12) & 63];
        out += a[(v >> 6) & 63];
        out += a[v & 63];
    }
    if (i + 1 == in.size()) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16;
        out += a[v >> 18];
        out += a[(v >> 12) & 63];
    } else if (i + 2 == in.size()) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8;
        out += a[v >> 18];
        out += a[(v >> 12) & 63];
        out += a[(v >> 6) & 63];
    }
    return out;
}

std::string hs256(const std::string& key, const std::string& msg) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(msg.data()),
         msg.size(), mac, &n);
    return std::string(reinterpret_cast<char*>(mac), n);
}

lwwgw::JwtResult verify(const std::string& token, const std::string& secret, int64_t now) {
    lwwgw::JwtResult r;
    fuzz::must_not_throw("verify_jwt", [&] { r = lwwgw::verify_jwt(token, secret, now); });
    FUZZ_CHECK(r.ok == r.error.empty());
    if (r.ok) {
        rapidjson::Document d;
        d.Parse(r.claims_json.data(), r.claims_json.size());
        FUZZ_CHECK(!d.HasParseError() && d.IsObject());
        FUZZ_CHECK(r.role.find('\0') == std::string::npos);
    }
    return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const int mode = data[0] % 4;
    if (mode == 0) {
        verify(std::string(reinterpret_cast<const char*>(data + 1), size - 1), kSecret, 1700000000);
        return 0;
    }
    if (size < 9) return 0;
    int64_t now = 0;
    std::memcpy(&now, data + 1, sizeof now);
    const std::string rest(reinterpret_cast<const char*>(data + 9), size - 9);
    std::string h64, p64;
    if (mode == 2) {
        h64 = b64url(R"({"alg":"HS256","typ":"JWT"})");
        p64 = b64url(rest);
    } else {
        const size_t nl = rest.find('\n');
        const std::string first = rest.substr(0, nl), second = nl == std::string::npos ? "" : rest.substr(nl + 1);
        h64 = mode == 1 ? b64url(first) : first;
        p64 = mode == 1 ? b64url(second) : second;
    }
    const std::string signed_part = h64 + "." + p64;
    const std::string sig = hs256(kSecret, signed_part);
    const lwwgw::JwtResult r = verify(signed_part + "." + b64url(sig), kSecret, now);
    if (r.ok) FUZZ_CHECK(r.claims_json.size() <= p64.size());

    std::string bad = sig;
    bad[data[size - 1] % bad.size()] ^= static_cast<char>(1u << (data[size - 1] % 8));
    FUZZ_CHECK(!verify(signed_part + "." + b64url(bad), kSecret, now).ok);
    FUZZ_CHECK(!verify(signed_part + "." + b64url(sig), kSecret + "x", now).ok);
    FUZZ_CHECK(!verify(signed_part + "." + b64url(sig.substr(0, 31)), kSecret, now).ok);
    return 0;
}
