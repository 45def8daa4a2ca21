// lwwsync core: the HTTP(S) transport of lww_sync — one POST of an exchange
// request per round trip, over libcurl, with gzip both ways, bearer-token
// auth, timeouts and retries of transient failures with backoff.
//
// Engines plug in cancellation: `cancelled` is polled from libcurl's progress
// callback and must only read flags (no errors raised, no longjmp); a
// cancelled transfer throws lww::Cancelled after libcurl has unwound, and the
// engine raises its own cancel error from there.
#pragma once
#include <cstdint>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "error.h"
#include "sync_options.h"

namespace lww {

struct HttpHooks {
    std::function<bool()> cancelled;               // from the progress callback: read flags only
    std::function<void(long ms)> sleep;            // between retries; may throw (an engine's cancel)
    std::function<void(const std::string&)> note;  // one line per retried failure
    // The hooks may run on a thread of their own (they touch no engine
    // state): the next pull is then requested while a batch applies.
    bool thread_safe = false;
};

class HttpTransport {
public:
    HttpTransport(std::string url, const SyncOptions& options, HttpHooks hooks = {});
    ~HttpTransport();
    HttpTransport(const HttpTransport&) = delete;
    HttpTransport& operator=(const HttpTransport&) = delete;

    // One round trip: POSTs `request`, returns the response body. Retries
    // transient failures (connection refused or reset, timeouts, HTTP 429,
    // 502, 503, 504) up to options.retries times — safe because a repeated
    // exchange is idempotent. Throws lww::Error with the server's message
    // otherwise, lww::Cancelled when the hook cancelled.
    std::string exchange(const std::string& request);

    uint64_t wire_sent() const { return wire_sent_; }
    uint64_t wire_received() const { return wire_received_; }
    size_t retries() const { return retries_; }

private:
    struct Attempt;
    Attempt post(const std::string& body, bool compressed);

    std::string url_;
    SyncOptions opt_;
    HttpHooks hooks_;
    void* curl_ = nullptr;     // CURL*, reused so the connection stays open
    void* headers_ = nullptr;  // curl_slist*
    // Read by progress reports while an exchange runs on another thread.
    std::atomic<uint64_t> wire_sent_{0}, wire_received_{0};
    std::atomic<size_t> retries_{0};
};

// The message of an HTTP error answer: PostgREST and lwwsync-server answer
// {"message": …}; anything else is shown as (the start of) its text. The body
// is untrusted: bounded in size and depth before it is parsed.
std::string http_error_message(std::string_view body);

// lww_sync over HTTP: run_sync through an HttpTransport, whose wire counts
// and retries fill in the stats (also those passed to `progress`).
SyncStats sync_over_http(SyncEngine& local, const std::string& url, const SyncOptions& options, HttpHooks hooks,
                         const Progress& progress);

}  // namespace lww
