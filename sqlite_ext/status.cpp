#include "status.h"

#include <atomic>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

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

}  // namespace

SyncStatusScope::SyncStatusScope(std::string db_key, const std::string& url) : key_(std::move(db_key)) {
    std::lock_guard<std::mutex> g(mu);
    auto& e = entries()[key_];
    if (e && e->running)
        throw Error("a sync of this database is already running (see lww_sync_status())", ErrorKind::conflict);
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
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    auto text = [&](const char* key, const std::string& v) {
        w.Key(key);
        w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
    };
    w.StartObject();
    w.Key("running");
    w.Bool(e.running);
    text("url", e.url);
    text("started_at", e.started_at);
    w.Key("stats");
    const std::string stats = e.stats.json();
    w.RawValue(stats.data(), stats.size(), rapidjson::kObjectType);
    if (!e.error.empty()) text("error", e.error);
    if (!e.retrying.empty()) text("last_retry", e.retrying);
    w.EndObject();
    return std::string(buf.GetString(), buf.GetSize());
}

bool request_sync_cancel(const std::string& db_key) {
    std::lock_guard<std::mutex> g(mu);
    auto it = entries().find(db_key);
    if (it == entries().end() || !it->second->running) return false;
    it->second->cancel = true;
    return true;
}

}  // namespace lww::sq
