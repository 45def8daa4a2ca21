// lwwsync core: the options of lww_sync(url, options), one parser for both
// engines (docs/PROTOCOL.md lists them).
#pragma once
#include <string>
#include <string_view>

#include "exchange.h"

namespace lww {

struct SyncOptions {
    BatchLimits limits;       // batch_rows, batch_bytes
    std::string token;        // bearer token (HTTP)
    long timeout_ms = 60000;  // each HTTP round trip, request to last response byte
    long connect_timeout_ms = 10000;
    std::string ca_file;    // PEM bundle to verify the server with, instead of the system's
    bool insecure = false;  // skip TLS verification (tests only)
    bool gzip = true;       // compress request bodies (responses are always accepted gzipped)
    int retries = 4;        // retries of a round trip after a transient failure
};

// Parses a JSON object of options; empty text gives the defaults. Throws
// lww::Error naming the key and what it accepts.
SyncOptions parse_sync_options(std::string_view json);

// postgresql://…, http(s)://…
bool is_postgres_url(const std::string& url);
bool is_http_url(const std::string& url);

// The URL without credentials or query, for status displays and logs.
std::string redact_url(const std::string& url);

}  // namespace lww
