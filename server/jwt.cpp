#include "jwt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <rapidjson/document.h>

#include <set>

#include "../common/base64.h"
#include "../common/json.h"

namespace lwwgw {
namespace {

JwtResult refuse(std::string why) {
    JwtResult r;
    r.error = std::move(why);
    return r;
}

// Parses a JWT segment as a JSON object without duplicate member names: with
// {"role":"a","role":"b"} we would SET ROLE to one and an RLS policy reading
// request.jwt.claims (Postgres' ->> takes the last) would see the other.
// The core's reader: iterative (no recursion a token of 10 000 '[' could
// exhaust) and depth-bounded, the same bound the body check applies.
bool parse_object(const std::string& text, rapidjson::Document& doc, const char* what, std::string& error) {
    std::string why;
    if (!lww::parse_json(doc, text, why)) {
        error = std::string("JWT ") + what + " is not valid JSON: " + why;
        return false;
    }
    if (!doc.IsObject()) {
        error = std::string("JWT ") + what + " is not a JSON object";
        return false;
    }
    std::set<std::string> seen;
    for (const auto& m : doc.GetObject()) {
        if (!seen.emplace(m.name.GetString(), m.name.GetStringLength()).second) {
            error = std::string("JWT ") + what + " has a duplicate \"" + m.name.GetString() + "\"";
            return false;
        }
    }
    return true;
}

}  // namespace

JwtResult verify_jwt(const std::string& token, const std::string& secret, int64_t now) {
    const auto dot1 = token.find('.');
    const auto dot2 = dot1 == std::string::npos ? dot1 : token.find('.', dot1 + 1);
    if (dot2 == std::string::npos || token.find('.', dot2 + 1) != std::string::npos)
        return refuse("JWT must have three parts (header.payload.signature)");
    const std::string h64 = token.substr(0, dot1), p64 = token.substr(dot1 + 1, dot2 - dot1 - 1),
                      s64 = token.substr(dot2 + 1);
    std::string header, payload, sig;
    if (!lww::base64url_decode(h64, header) || !lww::base64url_decode(p64, payload) || !lww::base64url_decode(s64, sig))
        return refuse("JWT is not base64url-encoded (without padding)");

    // The algorithm comes from the token but is never trusted: only HS256 is
    // accepted, so "none" and key-confusion tricks have nothing to select.
    rapidjson::Document hdr;
    std::string error;
    if (!parse_object(header, hdr, "header", error)) return refuse(error);
    const auto alg = hdr.FindMember("alg");
    if (alg == hdr.MemberEnd() || !alg->value.IsString() || std::string(alg->value.GetString()) != "HS256")
        return refuse("JWT algorithm must be HS256");
    if (hdr.HasMember("crit")) return refuse("JWT has critical header extensions");

    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    const std::string signed_part = token.substr(0, dot2);
    if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
              reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac, &mac_len))
        return refuse("cannot compute the JWT signature");
    // Lengths are public (always 32 for HS256); the bytes are compared in constant time.
    if (sig.size() != mac_len || CRYPTO_memcmp(sig.data(), mac, mac_len) != 0)
        return refuse("JWT signature does not match");

    rapidjson::Document claims;
    if (!parse_object(payload, claims, "payload", error)) return refuse(error);
    const double t = static_cast<double>(now);
    const auto exp = claims.FindMember("exp");
    if (exp != claims.MemberEnd()) {
        if (!exp->value.IsNumber()) return refuse("JWT exp claim must be a number");
        if (t >= exp->value.GetDouble()) return refuse("JWT expired");
    }
    const auto nbf = claims.FindMember("nbf");
    if (nbf != claims.MemberEnd()) {
        if (!nbf->value.IsNumber()) return refuse("JWT nbf claim must be a number");
        if (t < nbf->value.GetDouble()) return refuse("JWT not yet valid");
    }
    JwtResult r;
    const auto role = claims.FindMember("role");
    if (role != claims.MemberEnd()) {
        if (!role->value.IsString() || role->value.GetStringLength() == 0)
            return refuse("JWT role claim must be a non-empty string");
        r.role.assign(role->value.GetString(), role->value.GetStringLength());
        if (r.role.find('\0') != std::string::npos) return refuse("JWT role claim contains a NUL character");
    }
    // Passed on verbatim: it is a valid JSON object, and PostgREST hands
    // policies the claims as the client's issuer wrote them too.
    r.claims_json = std::move(payload);
    r.ok = true;
    return r;
}

}  // namespace lwwgw
