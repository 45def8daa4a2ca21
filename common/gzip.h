// lwwsync core: gzip (RFC 1952) of a whole document, for HTTP bodies — the
// client's requests and the gateway's responses.
#pragma once
#include <string>

namespace lww {

// Throws lww::Error on a zlib failure. Documents stay below 1 GiB (zlib's
// 32-bit counters): change sets are capped at 512 MiB.
// `level`: zlib's 1 (fastest) … 9 (smallest); the client uses the default
// (6: its CPU is its own), the gateway 1 (its CPU serves every client).
std::string gzip_compress(const std::string& data, int level = 6);

}  // namespace lww
