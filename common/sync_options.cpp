#include "json.h"
#include "sync_options.h"

#include <rapidjson/document.h>

#include "changeset.h"
#include "error.h"

namespace lww {

namespace {

[[noreturn]] void bad_option(const std::string& key, const char* accepts) {
    throw Error("invalid option \"" + key + "\": " + accepts);
}

int64_t int_in(const rapidjson::Value& v, const std::string& key, int64_t lo, int64_t hi) {
    if (!v.IsInt64() || v.GetInt64() < lo || v.GetInt64() > hi)
        throw Error("invalid option \"" + key + "\": an integer from " + std::to_string(lo) + " to " +
                    std::to_string(hi));
    return v.GetInt64();
}

std::string text(const rapidjson::Value& v, const std::string& key) {
    if (!v.IsString()) bad_option(key, "a string");
    return std::string(v.GetString(), v.GetStringLength());
}

bool flag(const rapidjson::Value& v, const std::string& key) {
    if (!v.IsBool()) bad_option(key, "true or false");
    return v.GetBool();
}

}  // namespace

SyncOptions parse_sync_options(std::string_view json) {
    SyncOptions o;
    if (json.empty()) return o;
    rapidjson::Document d;
    std::string error;
    if (!parse_json(d, json, error) || !d.IsObject()) throw Error("options must be a JSON object");
    for (const auto& m : d.GetObject()) {
        const std::string k(m.name.GetString(), m.name.GetStringLength());
        const auto& v = m.value;
        if (k == "batch_rows") o.limits.rows = int_in(v, k, 1, kMaxBatchRows);
        else if (k == "batch_bytes") o.limits.bytes = static_cast<size_t>(int_in(v, k, 1024, kMaxBatchBytes));
        else if (k == "token") o.token = text(v, k);
        else if (k == "timeout_ms") o.timeout_ms = static_cast<long>(int_in(v, k, 1, 86400000));
        else if (k == "connect_timeout_ms") o.connect_timeout_ms = static_cast<long>(int_in(v, k, 1, 3600000));
        else if (k == "ca_file") o.ca_file = text(v, k);
        else if (k == "insecure") o.insecure = flag(v, k);
        else if (k == "gzip") o.gzip = flag(v, k);
        else if (k == "retries") o.retries = static_cast<int>(int_in(v, k, 0, 100));
        else
            throw Error("unknown option \"" + k +
                        "\" (known: batch_rows, batch_bytes, token, timeout_ms, connect_timeout_ms, ca_file, "
                        "insecure, gzip, retries)");
    }
    return o;
}

bool is_postgres_url(const std::string& url) {
    return url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0;
}

bool is_http_url(const std::string& url) { return url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0; }

std::string redact_url(const std::string& url) {
    std::string out = url.substr(0, url.find_first_of("?#"));
    const size_t scheme = out.find("://");
    if (scheme == std::string::npos) return out;
    const size_t host = scheme + 3;
    const size_t at = out.find('@', host);
    const size_t slash = out.find('/', host);
    if (at != std::string::npos && (slash == std::string::npos || at < slash)) out.erase(host, at + 1 - host);
    return out;
}

}  // namespace lww
