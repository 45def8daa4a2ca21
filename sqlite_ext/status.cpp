#include "status.h"

#include <atomic>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>

#include "../common/error.h"
#include "../common/sync_options.h"

namespace lww::sq {

namespace {

struct Entry {
    bool running = false;
    std::string url, started_at, error, retrying;
    SyncStats stats;
    std::atomic<bool> cancel{false};
};

std::mutex mu;
std::map<std::string, std::shared_ptr<Entry>>& entries() {
    static std::map<std::string, std::shared_ptr<Entry>> m;
    return m;
}

std::string utc_now() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string quoted(const std::string& s) {
    std::string out = "\"";
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            out += esc;
        } else {
            out += ch;
        }
    }
    return out + "\"";
}

}  // namespace

SyncStatusScope::SyncStatusScope(std::string db_key, const std::string& url) : key_(std::move(db_key)) {
    std::lock_guard<std::mutex> g(mu);
    auto& e = entries()[key_];
    if (e && e->running) throw Error("a sync of this database is already running (see lww_sync_status())");
    e = std::make_shared<Entry>();
    e->running = true;
    e->url = redact_url(url);
    e->started_at = utc_now();
}

SyncStatusScope::~SyncStatusScope() {
    std::lock_guard<std::mutex> g(mu);
    auto& e = entries()[key_];
    if (e) e->running = false;
}

void SyncStatusScope::progress(const SyncStats& s) {
    {
        std::lock_guard<std::mutex> g(mu);
        if (auto& e = entries()[key_]) e->stats = s;
    }
    check_cancel();  // between round trips, for every transport
}

void SyncStatusScope::failed(const std::string& error) {
    std::lock_guard<std::mutex> g(mu);
    if (auto& e = entries()[key_]) e->error = error;
}

void SyncStatusScope::retrying(const std::string& why) {
    std::lock_guard<std::mutex> g(mu);
    if (auto& e = entries()[key_]) e->retrying = why;
}

void SyncStatusScope::check_cancel() const {
    if (cancel_requested()) throw Cancelled();
}

bool SyncStatusScope::cancel_requested() const {
    std::lock_guard<std::mutex> g(mu);
    auto it = entries().find(key_);
    return it != entries().end() && it->second->cancel.load();
}

std::string sync_status_json(const std::string& db_key) {
    std::lock_guard<std::mutex> g(mu);
    auto it = entries().find(db_key);
    if (it == entries().end()) return "{\"running\":false}";
    const Entry& e = *it->second;
    std::string out = std::string("{\"running\":") + (e.running ? "true" : "false") + ",\"url\":" + quoted(e.url) +
                      ",\"started_at\":" + quoted(e.started_at) + ",\"stats\":" + e.stats.json();
    if (!e.error.empty()) out += ",\"error\":" + quoted(e.error);
    if (!e.retrying.empty()) out += ",\"last_retry\":" + quoted(e.retrying);
    return out + "}";
}

bool request_sync_cancel(const std::string& db_key) {
    std::lock_guard<std::mutex> g(mu);
    auto it = entries().find(db_key);
    if (it == entries().end() || !it->second->running) return false;
    it->second->cancel = true;
    return true;
}

}  // namespace lww::sq
