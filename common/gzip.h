// lwwsync core: gzip (RFC 1952) of a whole document, for HTTP bodies — the
// client's requests and the gateway's responses.
#pragma once
#include <string>

namespace lww {

// Throws lww::Error on a zlib failure. Documents stay below 1 GiB (zlib's
// 32-bit counters): change sets are capped at 512 MiB.
std::string gzip_compress(const std::string& data);

}  // namespace lww
