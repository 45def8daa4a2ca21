#include "http_client.h"

#include "exchange.h"
#include "gzip.h"
#include "peer_notices.h"
#include "value.h"
#include "version.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include <rapidjson/document.h>

#include "json.h"

namespace lww {

namespace {

constexpr size_t kGzipAbove = 1024;                                   // smaller bodies are not worth a deflate
constexpr size_t kMaxResponseBytes = kMaxDocumentBytes + (1u << 20);  // a change set and its envelope
constexpr const char* kUserAgent = "lwwsync/" LWWSYNC_VERSION;

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw Error("cannot initialise libcurl");
    });
}

struct Body {
    std::string data;
    bool too_large = false;
};

size_t on_data(char* ptr, size_t size, size_t n, void* user) noexcept {
    auto* b = static_cast<Body*>(user);
    const size_t len = size * n;
    if (b->data.size() + len > kMaxResponseBytes) {
        b->too_large = true;
        return 0;  // aborts the transfer
    }
    try {
        b->data.append(ptr, len);
    } catch (...) {
        return 0;
    }
    return len;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) noexcept {
    auto* hooks = static_cast<HttpHooks*>(user);
    try {
        return hooks->cancelled && hooks->cancelled() ? 1 : 0;
    } catch (...) {
        return 1;
    }
}

bool transient_curl(CURLcode rc) {
    switch (rc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM: return true;
        default: return false;
    }
}

bool transient_status(long status) {
    return status == 408 || status == 429 || status == 502 || status == 503 || status == 504;
}

}  // namespace

// A proxy's HTML error page says what happened in its title ("413 Request
// Entity Too Large"); "" when there is none.
static std::string_view html_title(std::string_view body) {
    auto find = [&](std::string_view what, size_t from) {
        for (size_t i = from; i + what.size() <= body.size(); ++i) {
            size_t k = 0;
            while (k < what.size() && std::tolower(static_cast<unsigned char>(body[i + k])) == what[k]) ++k;
            if (k == what.size()) return i;
        }
        return std::string_view::npos;
    };
    const size_t open = find("<title>", 0);
    if (open == std::string_view::npos) return {};
    const size_t close = find("</title>", open);
    if (close == std::string_view::npos) return {};
    return body.substr(open + 7, close - open - 7);
}

std::string http_error_message(std::string_view body) {
    // An error answer is small; a larger one is not a gateway's JSON error,
    // and is never parsed (nor is one nested past the JSON depth bound).
    constexpr size_t kMaxParsed = 64 << 10, kShown = 300;
    if (body.size() <= kMaxParsed) {
        rapidjson::Document d;
        std::string error;
        if (parse_json(d, body, error) && d.IsObject()) {
            auto m = d.FindMember("message");
            if (m != d.MemberEnd() && m->value.IsString()) {
                std::string msg = printable_line({m->value.GetString(), m->value.GetStringLength()}, 4 * kShown);
                return msg.empty() ? "no message" : msg;
            }
        }
    }
    const std::string_view title = body.size() <= kMaxParsed ? html_title(body) : std::string_view{};
    std::string s = printable_line(title.empty() ? body : title, kShown);
    return s.empty() ? "no message" : s;
}

// The "code" of a gateway's (or PostgREST's) JSON error, or "".
static std::string http_error_code(std::string_view body) {
    if (body.size() > (64 << 10)) return {};
    rapidjson::Document d;
    std::string error;
    if (!parse_json(d, body, error) || !d.IsObject()) return {};
    auto m = d.FindMember("code");
    return m != d.MemberEnd() && m->value.IsString() ? std::string(m->value.GetString(), m->value.GetStringLength())
                                                     : std::string();
}

struct HttpTransport::Attempt {
    CURLcode rc = CURLE_OK;
    long status = 0;
    std::string body;
    std::string curl_error;
    bool too_large = false;
};

HttpTransport::HttpTransport(std::string url, const SyncOptions& options, HttpHooks hooks)
    : url_(std::move(url)), opt_(options), hooks_(std::move(hooks)) {}

HttpTransport::~HttpTransport() {
    if (headers_) curl_slist_free_all(static_cast<curl_slist*>(headers_));
    if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

HttpTransport::Attempt HttpTransport::post(const std::string& body, bool compressed) {
    global_init();
    if (!curl_) {
        curl_ = curl_easy_init();
        if (!curl_) throw Error("cannot create a libcurl handle");
    }
    CURL* c = static_cast<CURL*>(curl_);
    if (headers_) {
        curl_slist_free_all(static_cast<curl_slist*>(headers_));
        headers_ = nullptr;
    }
    curl_slist* h = nullptr;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: application/json");
    h = curl_slist_append(h, "Expect:");  // no 100-continue round trip before large bodies
    if (compressed) h = curl_slist_append(h, "Content-Encoding: gzip");
    if (!opt_.token.empty()) h = curl_slist_append(h, ("Authorization: Bearer " + opt_.token).c_str());
    headers_ = h;

    Body out;
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // never SIGALRM inside a database process
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, kUserAgent);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // gzip, deflate, br: whatever this libcurl decodes
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, opt_.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, opt_.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, opt_.insecure ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, opt_.insecure ? 0L : 2L);
    if (!opt_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, opt_.ca_file.c_str());
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &hooks_);

    Attempt a;
    a.rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
    curl_off_t up = 0, down = 0;
    curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &up);
    curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &down);
    wire_sent_ += static_cast<uint64_t>(up);
    wire_received_ += static_cast<uint64_t>(down);
    a.curl_error = errbuf[0] ? errbuf : curl_easy_strerror(a.rc);
    while (!a.curl_error.empty() && a.curl_error.back() == '\n') a.curl_error.pop_back();
    a.body = std::move(out.data);
    a.too_large = out.too_large;
    return a;
}

std::string HttpTransport::exchange(const std::string& request) {
    const bool compress = opt_.gzip && request.size() >= kGzipAbove;
    const std::string body = compress ? gzip_compress(request) : request;
    const std::string where = redact_url(url_);
    for (int attempt = 0;; ++attempt) {
        Attempt a = post(body, compress);
        if (a.rc == CURLE_ABORTED_BY_CALLBACK) throw Cancelled();
        if (a.too_large)
            throw Error("the response from " + where + " exceeds the " + std::to_string(kMaxDocumentBytes >> 20) +
                        " MiB limit");
        std::string failure;
        ErrorKind kind = ErrorKind::bad_input;  // the server's answer, told to the app (docs/ERRORS.md)
        bool transient = false;
        if (a.rc != CURLE_OK) {
            transient = transient_curl(a.rc);
            failure = "cannot reach " + where + ": " + a.curl_error;
        } else if (a.status == 200) {
            return std::move(a.body);
        } else {
            transient = transient_status(a.status);
            const std::string msg = http_error_message(a.body);
            if (a.status == 401 || a.status == 403) {
                failure = "the server at " + where + " refused the credentials (HTTP " + std::to_string(a.status) +
                          "): " + msg;
                kind = ErrorKind::permission;
            } else if (a.status == 404) {
                failure = "no lww_exchange endpoint at " + where + " (HTTP 404): " + msg;
                kind = ErrorKind::not_found;
            } else if (a.status == 503 && http_error_code(a.body) == "25006") {
                throw ReadOnlyError("the server at " + where + " is read-only (HTTP 503): " + msg,
                                    ErrorKind::read_only);
            } else if (a.status == 413) {
                throw TooLargeError("the server at " + where + " (or a proxy in front of it) refused a request of " +
                                        std::to_string(body.size()) + " bytes" + (compress ? " (gzip)" : "") +
                                        " as too large (HTTP 413): " + msg,
                                    ErrorKind::limit);
            } else {
                failure =
                    "the server at " + where + " refused the exchange (HTTP " + std::to_string(a.status) + "): " + msg;
                // 409: the server's clock guard (22008) or an object in use.
                if (a.status == 409) kind = http_error_code(a.body) == "22008" ? ErrorKind::drift : ErrorKind::conflict;
            }
        }
        if (!transient || attempt >= opt_.retries) {
            if (transient && attempt > 0) failure += " (after " + std::to_string(attempt + 1) + " attempts)";
            throw Error(failure, kind);
        }
        ++retries_;
        const long wait = retry_backoff_ms(attempt);
        if (hooks_.note) hooks_.note(failure + "; retrying in " + std::to_string(wait) + " ms");
        if (hooks_.sleep) hooks_.sleep(wait);
        else std::this_thread::sleep_for(std::chrono::milliseconds(wait));
        if (hooks_.cancelled && hooks_.cancelled()) throw Cancelled();
    }
}

SyncStats sync_over_http(SyncEngine& local, const std::string& url, const SyncOptions& options, HttpHooks hooks,
                         const Progress& progress) {
    // Overlapping pulls (run_sync): a request sent ahead is called off
    // through the hooks, which curl's progress callback and the retry
    // backoff consult.
    std::atomic<bool> abandon{false};
    Overlap overlap;
    if (hooks.thread_safe) {
        overlap = [&abandon](bool on) { abandon = on; };
        hooks.cancelled = [&abandon, inner = std::move(hooks.cancelled)] { return abandon || (inner && inner()); };
        hooks.sleep = [&abandon, inner = std::move(hooks.sleep)](long ms) {
            for (long slept = 0; slept < ms; slept += 20) {
                if (abandon) throw Cancelled();
                const long slice = std::min<long>(20, ms - slept);
                if (inner) inner(slice);
                else std::this_thread::sleep_for(std::chrono::milliseconds(slice));
            }
        };
    }
    HttpTransport http(url, options, std::move(hooks));
    auto with_wire = [&](SyncStats s) {
        s.wire_sent = http.wire_sent();
        s.wire_received = http.wire_received();
        s.retries = http.retries();
        return s;
    };
    Transport send = [&](const std::string& request) { return http.exchange(request); };
    Progress report = [&](const SyncStats& s) {
        if (progress) progress(with_wire(s));
    };
    return with_wire(run_sync(local, send, options.limits, report, overlap));
}

}  // namespace lww
