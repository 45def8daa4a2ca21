// The gateway's HTTP surface, apart from the HTTP library: POST
// /rpc/lww_exchange, GET /health, and the JSON errors (PostgREST's shape)
// with their HTTP statuses. http_server.cpp drives it:
//   begin()        once the request headers are in (event thread): routing,
//                  authentication, early refusals;
//   feed()         each piece of the body (event thread);
//   finish_body()  when the body is complete (event thread);
//   work()         the database part, on a worker thread.
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "body.h"
#include "config.h"
#include "pool.h"

namespace lwwgw {

struct App {
    Config cfg;
    Pool pool;
    std::unique_ptr<Pool> read_pool;    // cfg.db_read_uri's, when set
    std::atomic<bool> stopping{false};  // responses then carry Connection: close
};

struct HttpRequest {
    std::string method, path, remote;
    std::vector<std::pair<std::string, std::string>> headers;
    // First value of a header (case-insensitive name), or "".
    std::string header(const char* name) const;
    std::size_t count(const char* name) const;
};

struct HttpResponse {
    int status = 0;  // 0: none yet
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
};

enum class Route { None, Exchange, Health };

struct Auth {
    std::string role;
    std::string claims_json;
};

// One HTTP request from its headers to its log line.
struct RequestState {
    HttpRequest req;
    std::chrono::steady_clock::time_point start{};
    int client_fd = -1;  // the client's socket: watched for a hang-up while the database works
    Route route = Route::None;
    Auth auth;
    std::unique_ptr<BodyDecoder> body;
    bool body_expected = false;  // Content-Length > 0 or Transfer-Encoding
    std::size_t dropped = 0;     // body bytes read and dropped (refused, or nobody reads them)
    HttpResponse response;
    bool client_gone = false;  // close without answering
    // for the log line
    std::string role, error;
    const char* db = nullptr;  // "primary" or "replica": where the exchange ran
    std::size_t bytes_in = 0;
};

// Event thread. Sets st.response for an answer that needs no database (404,
// 405, 401, 413 by Content-Length, 415...), else st.route and st.body.
void begin(App& app, RequestState& st);

// Event thread, when begin() refused a request that has a body: true to
// answer at once (the body then stays unread and the connection closes),
// false to read and drop the body first. Closing on unread bytes makes the
// kernel reset the connection, which can destroy the answer before the
// client reads it; so only a client that waits for "100 Continue", or
// announced more than we would drain, is answered before its body.
bool answer_before_body(const RequestState& st);

// Event thread: false when the connection should be closed at once (the
// body was refused and the client keeps sending far beyond it).
bool feed(RequestState& st, const char* data, std::size_t n);

// Event thread: sets st.response when the body is refused (413, 400), else
// leaves it for work().
void finish_body(App& app, RequestState& st);

// Worker thread: the database part; sets st.response, or st.client_gone.
void work(App& app, RequestState& st);

// An answer for the HTTP layer's own failures (e.g. a worker queue that
// waited past db-pool-acquisition-timeout).
void set_pool_timeout(App& app, RequestState& st);
void set_internal_error(RequestState& st, const std::string& what);

// The HTTP status for an error PostgreSQL raised (SQLSTATE), outside the
// connection-level cases the caller handles first.
int status_for_sqlstate(const std::string& sqlstate);

}  // namespace lwwgw
