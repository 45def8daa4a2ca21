// lwwsync core: base64 (RFC 4648). Standard alphabet with padding for bytes
// in change sets and node keys; the URL alphabet without padding for JWTs.
// Decoders are strict: a character outside the alphabet, bad padding or
// length is refused (false).
#pragma once
#include <string>
#include <string_view>

namespace lww {

std::string base64_encode(std::string_view bytes);
bool base64_decode(std::string_view text, std::string& out);
// base64url without padding (RFC 7515 §2); the unused low bits of the last
// character must be zero, so each byte string has one spelling.
bool base64url_decode(std::string_view text, std::string& out);

}  // namespace lww
