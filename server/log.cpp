#include "log.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <ctime>
#include <mutex>

namespace lwwgw {
namespace {

std::mutex g_write_mu;

// One write(2) per line under a lock: lines of concurrent requests never interleave.
void write_line(std::string line) {
    line += '\n';
    std::lock_guard<std::mutex> lock(g_write_mu);
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
        const ssize_t n = ::write(STDERR_FILENO, p, left);
        if (n <= 0) return;  // nowhere to log to: drop the line rather than fail the request
        p += n;
        left -= static_cast<size_t>(n);
    }
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

}  // namespace

// A log line stays valid JSON whatever bytes a client put in its path.
std::string utf8_or_replaced(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    for (size_t i = 0; i < n;) {
        const unsigned char c = p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xC0) == 0x80;
        if (ok && len > 1) {  // no overlong forms, surrogates or code points past U+10FFFF
            uint32_t cp = c & (0x7F >> len);
            for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
            ok = cp >= (len == 2   ? 0x80u
                        : len == 3 ? 0x800u
                                   : 0x10000u) &&
                 cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
        }
        if (ok) {
            out.append(s, i, len);
            i += len;
        } else {
            out += "\xEF\xBF\xBD";  // U+FFFD
            ++i;
        }
    }
    return out;
}

namespace {

void key_string(Writer& w, const char* key, const std::string& value) {
    const std::string v = utf8_or_replaced(value);
    w.Key(key);
    w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}

}  // namespace

std::string iso_now() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    tm t{};
    gmtime_r(&ts.tv_sec, &t);
    char buf[40];
    const size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
    snprintf(buf + n, sizeof buf - n, ".%03ldZ", ts.tv_nsec / 1000000);
    return buf;
}

void log_request(const RequestLine& l) {
    rapidjson::StringBuffer sb;
    Writer w(sb);
    w.StartObject();
    key_string(w, "ts", iso_now());
    if (!l.method.empty()) key_string(w, "method", l.method);
    key_string(w, "path", l.path);
    w.Key("status");
    w.Int(l.status);
    w.Key("ms");
    w.Double(std::round(l.ms * 10) / 10);
    w.Key("bytes_in");
    w.Uint64(l.bytes_in);
    w.Key("bytes_out");
    w.Uint64(l.bytes_out);
    if (!l.role.empty()) key_string(w, "role", l.role);
    if (!l.db.empty()) key_string(w, "db", l.db);
    key_string(w, "remote", l.remote);
    if ((l.status >= 400 || l.status == 0) && !l.error.empty()) key_string(w, "error", l.error);
    w.EndObject();
    write_line(sb.GetString());
}

void log_event(const char* level, const std::string& msg, const std::string& extra_json) {
    rapidjson::StringBuffer sb;
    Writer w(sb);
    w.StartObject();
    key_string(w, "ts", iso_now());
    key_string(w, "level", level);
    key_string(w, "msg", msg);
    w.EndObject();
    std::string line = sb.GetString();
    if (!extra_json.empty()) line.insert(line.size() - 1, extra_json);
    write_line(std::move(line));
}

}  // namespace lwwgw
