// HS256 JSON Web Tokens (RFC 7519/7515), verified the way PostgREST does.
#pragma once
#include <cstdint>
#include <string>

namespace lwwgw {

struct JwtResult {
    bool ok = false;
    std::string error;        // why the token is refused (safe to send to the client)
    std::string claims_json;  // the payload, re-serialized: a JSON object
    std::string role;         // the "role" claim; empty when the token has none
};

// Verifies `token` (header.payload.signature, base64url without padding)
// against `secret` at `now` (seconds since the epoch):
//  - the header is a JSON object whose "alg" is exactly "HS256" (so "none",
//    RS256 and every other algorithm are refused) and has no "crit";
//  - the signature is HMAC-SHA256 over "header.payload", compared in constant time;
//  - the payload is a JSON object; "exp" (refused when now >= exp) and "nbf"
//    (refused when now < nbf) are checked when present, with no leeway;
//  - "role", when present, is a non-empty string.
JwtResult verify_jwt(const std::string& token, const std::string& secret, int64_t now);

}  // namespace lwwgw
