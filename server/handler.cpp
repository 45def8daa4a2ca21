#include "handler.h"

#include <httplib.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <zlib.h>

#include "../common/gzip.h"

#include <strings.h>

#include <cctype>
#include <charconv>
#include <ctime>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "jwt.h"
#include "log.h"

namespace lwwgw {
namespace {

constexpr const char* kExchangePath = "/rpc/lww_exchange";
constexpr const char* kHealthPath = "/health";
// PostgREST's content type; not httplib's exact "application/json" either,
// which would make httplib compress a second time (and prefer br over gzip).
constexpr const char* kJson = "application/json; charset=utf-8";
constexpr std::size_t kGzipAbove = 256;  // smaller bodies do not shrink enough to bother
constexpr int kMaxAttempts = 3;          // a transaction runs at most this often (40001, 40P01, dead connection)

// ------------------------------------------------------------------ errors

struct HttpError {
    int status = 500;
    std::string code;
    std::string message;
    std::optional<std::string> details, hint;
    std::vector<std::pair<std::string, std::string>> headers;
};

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

void put_string(JsonWriter& w, const std::string& s) {
    const std::string v = utf8_or_replaced(s);
    w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}

void put_nullable(JsonWriter& w, const char* key, const std::optional<std::string>& v) {
    w.Key(key);
    if (v) put_string(w, *v);
    else w.Null();
}

std::string error_json(const HttpError& e) {
    rapidjson::StringBuffer sb;
    JsonWriter w(sb);
    w.StartObject();
    w.Key("code");
    put_string(w, e.code);
    w.Key("message");
    put_string(w, e.message);
    put_nullable(w, "details", e.details);
    put_nullable(w, "hint", e.hint);
    w.EndObject();
    return sb.GetString();
}

void send_error(httplib::Response& res, const HttpError& e) {
    res.status = e.status;
    for (const auto& [k, v] : e.headers) res.set_header(k.c_str(), v);
    res.set_content(error_json(e), kJson);
    RequestLog& log = request_log();
    log.error = e.message;
    if (e.details) log.error += ": " + *e.details;
}

HttpError make_error(int status, std::string code, std::string message) {
    HttpError e;
    e.status = status;
    e.code = std::move(code);
    e.message = std::move(message);
    return e;
}

// The announced body size; 0 when absent or unreadable (chunked bodies have none).
std::size_t content_length(const httplib::Request& req) {
    const std::string v = req.get_header_value("Content-Length");
    unsigned long long n = 0;
    const auto r = std::from_chars(v.data(), v.data() + v.size(), n);
    return r.ec == std::errc() ? static_cast<std::size_t>(n) : 0;
}

// A response sent before the request body was read: the unread bytes would
// otherwise be parsed as the connection's next request (cpp-httplib 0.11
// keeps the connection), so the client is told to close it.
void close_if_body_unread(const httplib::Request& req, httplib::Response& res) {
    if (req.has_header("Transfer-Encoding") || content_length(req) > 0)
        res.set_header("Connection", "close");
}

// ------------------------------------------------------------------ gzip

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t");
    return b == std::string::npos ? std::string() : s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// Whether Accept-Encoding admits gzip: "gzip" or "x-gzip", else "*", with q > 0.
bool accepts_gzip(const std::string& header) {
    std::optional<bool> gzip, star;
    std::size_t pos = 0;
    while (pos < header.size()) {
        std::size_t end = header.find(',', pos);
        if (end == std::string::npos) end = header.size();
        const std::string item = header.substr(pos, end - pos);
        pos = end + 1;
        const auto semi = item.find(';');
        std::string name = trim(item.substr(0, semi));
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        bool refused = false;  // ";q=0", ";q=0.0", ...
        if (semi != std::string::npos) {
            const std::string param = trim(item.substr(semi + 1));
            if (param.size() > 2 && std::tolower(static_cast<unsigned char>(param[0])) == 'q' && param[1] == '=')
                refused = trim(param.substr(2)).find_first_not_of("0.") == std::string::npos;
        }
        if (name == "gzip" || name == "x-gzip") gzip = !refused;
        else if (name == "*") star = !refused;
    }
    return gzip ? *gzip : star.value_or(false);
}

void send_json(const httplib::Request& req, httplib::Response& res, int status, std::string body) {
    res.status = status;
    res.set_header("Vary", "Accept-Encoding");
    if (body.size() >= kGzipAbove && accepts_gzip(req.get_header_value("Accept-Encoding"))) {
        body = lww::gzip_compress(body, 1);  // fastest: this CPU serves every client
        res.set_header("Content-Encoding", "gzip");
    }
    res.set_content(std::move(body), kJson);
}

// ------------------------------------------------------------------ auth

struct Auth {
    std::string role;
    std::string claims_json;
};

std::string anon_claims(const std::string& role) {
    rapidjson::StringBuffer sb;
    JsonWriter w(sb);
    w.StartObject();
    w.Key("role");
    put_string(w, role);
    w.EndObject();
    return sb.GetString();
}

HttpError unauthorized(std::string code, std::string message, const std::string& www_authenticate) {
    HttpError e = make_error(401, std::move(code), std::move(message));
    e.headers.emplace_back("WWW-Authenticate", www_authenticate);
    return e;
}

HttpError invalid_token(const std::string& why) {
    std::string desc = why;  // RFC 6750 quoted-string: no quotes or backslashes inside
    for (char& c : desc)
        if (c == '"' || c == '\\') c = '\'';
    return unauthorized("PGRST301", why, "Bearer error=\"invalid_token\", error_description=\"" + desc + "\"");
}

// Who the request runs as, PostgREST's way: a verified token's "role" claim;
// the anonymous role for a token without one and for requests without a token.
std::optional<HttpError> authenticate(const httplib::Request& req, const Config& cfg, Auth& out) {
    const size_t n = req.get_header_value_count("Authorization");
    if (n == 0) {
        if (cfg.db_anon_role.empty())
            return unauthorized("PGRST302", "Anonymous access is disabled: send Authorization: Bearer <JWT>",
                                "Bearer");
        out.role = cfg.db_anon_role;
        out.claims_json = anon_claims(out.role);
        return std::nullopt;
    }
    if (n > 1) return invalid_token("more than one Authorization header");
    const std::string h = req.get_header_value("Authorization");
    if (h.size() < 7 || strncasecmp(h.c_str(), "Bearer ", 7) != 0)
        return invalid_token("the Authorization header must be Bearer <JWT>");
    const std::string token = trim(h.substr(7));
    if (token.empty()) return invalid_token("empty bearer token");
    if (cfg.jwt_secret.empty()) return invalid_token("JWT cannot be verified: the server has no jwt-secret");
    JwtResult jwt = verify_jwt(token, cfg.jwt_secret, static_cast<int64_t>(std::time(nullptr)));
    if (!jwt.ok) return invalid_token(jwt.error);
    out.claims_json = std::move(jwt.claims_json);
    out.role = jwt.role.empty() ? cfg.db_anon_role : jwt.role;
    if (out.role.empty())
        return invalid_token("JWT has no role claim and anonymous access is disabled");
    return std::nullopt;
}

// ------------------------------------------------------------------ PostgreSQL

using Result = std::unique_ptr<PGresult, void (*)(PGresult*)>;

struct DbFailure {
    std::string sqlstate, message;
    std::optional<std::string> detail, hint;
    bool connection_lost = false;
};

// True when `r` has the wanted status; otherwise describes the failure. A
// connection that is no longer CONNECTION_OK is "lost" whatever the result
// says (a 57P01 on shutdown arrives as an error result, then the socket closes),
// and so is one whose error libpq made up itself.
bool check(PGconn* c, const Result& r, ExecStatusType want, DbFailure& f) {
    if (r && PQresultStatus(r.get()) == want) return true;
    f = DbFailure{};
    if (r) {
        auto field = [&](int code) -> std::optional<std::string> {
            const char* v = PQresultErrorField(r.get(), code);
            return v ? std::optional<std::string>(v) : std::nullopt;
        };
        f.sqlstate = field(PG_DIAG_SQLSTATE).value_or("");
        f.message = field(PG_DIAG_MESSAGE_PRIMARY).value_or("");
        f.detail = field(PG_DIAG_MESSAGE_DETAIL);
        f.hint = field(PG_DIAG_MESSAGE_HINT);
    }
    if (f.message.empty()) f.message = one_line(PQerrorMessage(c));
    if (f.message.empty()) f.message = "unexpected result from PostgreSQL";
    // An error without SQLSTATE was made by libpq itself, not by the server:
    // the connection failed (e.g. "server closed the connection unexpectedly"
    // while PQstatus still reads OK, as after a failed write) — never a 500.
    f.connection_lost = PQstatus(c) != CONNECTION_OK || f.sqlstate.empty();
    return false;
}

bool connection_class(const std::string& s) {
    return s.rfind("08", 0) == 0 || s == "57P01" || s == "57P02" || s == "57P03";
}

bool serialization_failure(const std::string& s) { return s == "40001" || s == "40P01"; }

enum class Step { Role, Claims, Exchange, Commit };

// One exchange in one transaction: the role and claims are transaction-local
// (SET LOCAL, set_config(..., true)), so nothing outlives the COMMIT or a
// ROLLBACK on the pooled connection.
bool run_exchange(PGconn* c, const Auth& auth, const std::string& body, std::string& out, DbFailure& f,
                  Step& step) {
    step = Step::Role;
    char* quoted = PQescapeIdentifier(c, auth.role.data(), auth.role.size());
    if (!quoted) {
        f = DbFailure{};
        f.sqlstate = "22023";
        f.message = "invalid role name: " + one_line(PQerrorMessage(c));
        f.connection_lost = PQstatus(c) != CONNECTION_OK;
        return false;
    }
    const std::string begin = std::string("BEGIN; SET LOCAL ROLE ") + quoted;
    PQfreemem(quoted);
    Result r(PQexec(c, begin.c_str()), PQclear);
    if (!check(c, r, PGRES_COMMAND_OK, f)) return false;

    step = Step::Claims;
    const char* claims[] = {auth.claims_json.c_str(), "POST", kExchangePath};
    r.reset(PQexecParams(c,
                         "SELECT set_config('request.jwt.claims', $1, true), "
                         "set_config('request.method', $2, true), set_config('request.path', $3, true)",
                         3, nullptr, claims, nullptr, nullptr, 0));
    if (!check(c, r, PGRES_TUPLES_OK, f)) return false;

    step = Step::Exchange;
    const char* params[] = {body.c_str()};
    r.reset(PQexecParams(c, "SELECT lww_exchange($1::json)::text", 1, nullptr, params, nullptr, nullptr, 0));
    if (!check(c, r, PGRES_TUPLES_OK, f)) return false;
    if (PQntuples(r.get()) != 1 || PQnfields(r.get()) != 1) {
        f = DbFailure{};
        f.message = "lww_exchange returned " + std::to_string(PQntuples(r.get())) + " rows";
        return false;
    }
    out = PQgetisnull(r.get(), 0, 0) ? "null" : std::string(PQgetvalue(r.get(), 0, 0), PQgetlength(r.get(), 0, 0));

    step = Step::Commit;
    r.reset(PQexec(c, "COMMIT"));
    return check(c, r, PGRES_COMMAND_OK, f);
}

// Leaves the connection idle outside a transaction, or marks it for closing.
void rollback(Pool::Lease& lease) {
    PGconn* c = lease.get();
    if (PQstatus(c) != CONNECTION_OK) {
        lease.discard();
        return;
    }
    if (PQtransactionStatus(c) == PQTRANS_IDLE) return;
    Result r(PQexec(c, "ROLLBACK"), PQclear);
    if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK || PQtransactionStatus(c) != PQTRANS_IDLE) lease.discard();
}

HttpError unavailable(std::string code, std::string message, std::optional<std::string> details, int retry_after) {
    HttpError e = make_error(503, std::move(code), std::move(message));
    e.details = std::move(details);
    e.headers.emplace_back("Retry-After", std::to_string(retry_after));
    return e;
}

HttpError pool_error(const PoolTimeout& t) {
    return unavailable("PGRST003", "Timed out acquiring a connection from the pool", std::string(t.what()), 1);
}

HttpError connect_error(const ConnectFailed& c) {
    HttpError e = unavailable("PGRST000", "Database connection error: PostgreSQL is unreachable",
                              std::string(c.what()), 5);
    e.hint = "the gateway reconnects by itself once PostgreSQL accepts connections again";
    return e;
}

HttpError db_error(const DbFailure& f, Step step) {
    if (f.connection_lost || connection_class(f.sqlstate)) {
        HttpError e = unavailable(f.sqlstate.empty() ? "08006" : f.sqlstate,  // 08006: connection_failure
                                  "Database connection lost: " + f.message, f.detail, 5);
        e.hint = "retry: the gateway reconnects by itself once PostgreSQL accepts connections again";
        return e;
    }
    HttpError e;
    e.code = f.sqlstate.empty() ? "LWW500" : f.sqlstate;
    e.message = f.message;
    e.details = f.detail;
    e.hint = f.hint;
    if (serialization_failure(f.sqlstate)) {
        e.status = 503;
        e.headers.emplace_back("Retry-After", "1");
        return e;
    }
    // SET LOCAL ROLE: a role that does not exist (22023) or that the
    // gateway's login role was not granted (42501) is not the caller's to use.
    if (step == Step::Role && (f.sqlstate == "22023" || f.sqlstate == "42501" || f.sqlstate == "42704")) {
        e.status = 403;
        if (!e.hint) e.hint = "the token's role must exist and be granted to the role in db-uri";
        return e;
    }
    e.status = f.sqlstate.empty() ? 500 : status_for_sqlstate(f.sqlstate);
    if (e.status == 503) e.headers.emplace_back("Retry-After", "1");  // class 53: out of resources, for now
    if (f.sqlstate == "42883" && !e.hint)
        e.hint = "is the lwwsync extension (0.2 or later: lww_exchange(json)) installed in this database?";
    return e;
}

// ------------------------------------------------------------------ handlers

void exchange(App& app, const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    RequestLog& log = request_log();

    // Only encodings cpp-httplib decodes, spelled as it compares them; it
    // would pass any other (even "GZIP") through undecoded.
    const std::string enc = req.get_header_value("Content-Encoding");
    if (!(enc.empty() || enc == "identity" || enc == "gzip" || enc == "deflate" || enc == "br")) {
        close_if_body_unread(req, res);
        return send_error(res, make_error(415, "LWW415", "unsupported Content-Encoding \"" + enc +
                                                             "\" (use gzip, deflate, br or none)"));
    }

    // Before reading the body: an unauthenticated client cannot make us
    // receive (and decompress) up to max-body-bytes.
    Auth auth;
    if (auto err = authenticate(req, app.cfg, auth)) {
        close_if_body_unread(req, res);
        return send_error(res, *err);
    }
    log.role = auth.role;

    // The limit counts decompressed bytes as they come, so neither a large
    // chunked body nor a gzip bomb is ever held beyond it.
    const std::size_t limit = app.cfg.max_body_bytes;
    std::string body;
    body.reserve(std::min<std::size_t>(content_length(req), limit));
    bool too_large = false;
    const bool read_ok = reader([&](const char* data, size_t n) {
        if (n > limit - body.size()) {
            too_large = true;
            return false;
        }
        body.append(data, n);
        return true;
    });
    log.bytes_in = body.size();
    if (too_large) {
        res.set_header("Connection", "close");
        return send_error(res, make_error(413, "LWW413",
                                          "request body exceeds max-body-bytes (" + std::to_string(limit) +
                                              " bytes" + (enc.empty() || enc == "identity" ? "" : " after decompression") +
                                              ")"));
    }
    if (!read_ok) {
        res.set_header("Connection", "close");
        return send_error(res, make_error(400, "PGRST102",
                                          "cannot read the request body (truncated, or not valid " +
                                              (enc.empty() ? std::string("HTTP framing") : enc + " data") + ")"));
    }
    if (body.find('\0') != std::string::npos)  // a text parameter ends at NUL; JSON never has one
        return send_error(res, make_error(400, "PGRST102", "request body contains a NUL byte: not JSON text"));

    for (int attempt = 1;; ++attempt) {
        DbFailure f;
        Step step = Step::Role;
        std::string result;
        {
            std::optional<Pool::Lease> lease;
            try {
                lease.emplace(app.pool.acquire());
            } catch (const PoolTimeout& t) {
                return send_error(res, pool_error(t));
            } catch (const ConnectFailed& c) {
                return send_error(res, connect_error(c));
            }
            if (run_exchange(lease->get(), auth, body, result, f, step))
                return send_json(req, res, 200, std::move(result));
            if (f.connection_lost) {
                lease->discard();
                app.pool.drop_idle();
            } else {
                rollback(*lease);
            }
        }
        // A connection found dead before anything ran (a pooled connection
        // from before a server restart) is replaced; a serialization failure
        // or deadlock is retried after a short random pause. A connection lost
        // later is not retried here: the outcome of the COMMIT is unknown, and
        // the client, whose exchanges are idempotent, retries on 503.
        const bool retry = attempt < kMaxAttempts &&
                           ((f.connection_lost && step == Step::Role) || serialization_failure(f.sqlstate));
        if (!retry) return send_error(res, db_error(f, step));
        if (serialization_failure(f.sqlstate)) {
            static thread_local std::mt19937 rng{std::random_device{}()};
            std::uniform_int_distribution<int> ms(10 * attempt, 50 * attempt);
            std::this_thread::sleep_for(std::chrono::milliseconds(ms(rng)));
        }
    }
}

void health(App& app, const httplib::Request& req, httplib::Response& res) {
    auto down = [&](const std::string& message) {
        res.status = 503;
        res.set_header("Retry-After", "5");
        rapidjson::StringBuffer sb;
        JsonWriter w(sb);
        w.StartObject();
        w.Key("status");
        w.String("unavailable");
        w.Key("message");
        put_string(w, message);
        w.EndObject();
        res.set_content(sb.GetString(), kJson);
        request_log().error = message;
    };
    for (int attempt = 1;; ++attempt) {
        std::optional<Pool::Lease> lease;
        try {
            lease.emplace(app.pool.acquire());
        } catch (const std::exception& e) {
            return down(e.what());
        }
        Result r(PQexec(lease->get(), "SELECT 1"), PQclear);
        DbFailure f;
        if (check(lease->get(), r, PGRES_TUPLES_OK, f)) return send_json(req, res, 200, "{\"status\":\"ok\"}");
        if (!f.connection_lost) {
            rollback(*lease);
            return down(f.message);
        }
        lease->discard();
        lease.reset();
        app.pool.drop_idle();
        if (attempt >= 2) return down("database connection lost: " + f.message);
    }
}

// Drops whatever a failed handler had put in the response.
void reset(httplib::Response& res) {
    res.headers.clear();
    res.body.clear();
}

// Everything a handler does runs under this: no exception reaches httplib.
template <class F>
void guarded(httplib::Response& res, F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        reset(res);
        send_error(res, make_error(500, "LWW500", std::string("internal error: ") + e.what()));
    } catch (...) {
        reset(res);
        send_error(res, make_error(500, "LWW500", "internal error"));
    }
}

void method_not_allowed(const httplib::Request& req, httplib::Response& res, const char* allow) {
    close_if_body_unread(req, res);
    HttpError e = make_error(405, "LWW405", req.method + " is not allowed on " + req.path + " (use " + allow + ")");
    e.headers.emplace_back("Allow", allow);
    send_error(res, e);
}

}  // namespace

int status_for_sqlstate(const std::string& s) {
    auto cls = [&](const char* c) { return s.rfind(c, 0) == 0; };
    if (s == "53400") return 500;  // configuration limit exceeded: not transient
    if (connection_class(s) || serialization_failure(s) || cls("53")) return 503;  // transient
    if (cls("22") || s == "P0001") return 400;  // invalid input; lwwsync raises 22000 for every refusal
    if (cls("23")) return 409;                  // integrity constraint: conflicts with stored data
    // insufficient privilege; invalid authorization, grantor, role specification
    if (s == "42501" || cls("28") || cls("0L") || cls("0P")) return 403;
    return 500;
}

void install_routes(httplib::Server& svr, App& app) {
    svr.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
        log_request_start();
        return httplib::Server::HandlerResponse::Unhandled;
    });

    svr.Post(kExchangePath, [&app](const httplib::Request& req, httplib::Response& res,
                                   const httplib::ContentReader& reader) {
        guarded(res, [&] { exchange(app, req, res, reader); });
    });
    svr.Get(kHealthPath, [&app](const httplib::Request& req, httplib::Response& res) {
        guarded(res, [&] { health(app, req, res); });
    });

    // Wrong methods on known paths: 405 (bodies are never read).
    auto not_exchange = [](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader&) {
        method_not_allowed(req, res, "POST");
    };
    auto not_exchange_nobody = [](const httplib::Request& req, httplib::Response& res) {
        method_not_allowed(req, res, "POST");
    };
    svr.Get(kExchangePath, not_exchange_nobody);
    svr.Options(kExchangePath, not_exchange_nobody);
    svr.Put(kExchangePath, not_exchange);
    svr.Patch(kExchangePath, not_exchange);
    svr.Delete(kExchangePath, not_exchange);
    auto not_health = [](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader&) {
        method_not_allowed(req, res, "GET");
    };
    svr.Post(kHealthPath, not_health);
    svr.Put(kHealthPath, not_health);
    svr.Patch(kHealthPath, not_health);
    svr.Delete(kHealthPath, not_health);
    svr.Options(kHealthPath, [](const httplib::Request& req, httplib::Response& res) {
        method_not_allowed(req, res, "GET");
    });

    // A body announced larger than the limit is refused before "100 Continue",
    // so the client never sends it.
    svr.set_expect_100_continue_handler([&app](const httplib::Request& req, httplib::Response& res) {
        if (!request_log().started) log_request_start();
        if (req.method == "POST" && req.path == kExchangePath &&
            content_length(req) > app.cfg.max_body_bytes) {
            res.set_header("Connection", "close");
            send_error(res, make_error(413, "LWW413",
                                       "request body exceeds max-body-bytes (" +
                                           std::to_string(app.cfg.max_body_bytes) + " bytes)"));
            return 413;
        }
        return 100;
    });

    // Errors httplib answers by itself (unknown path, malformed request...)
    // get the same JSON shape.
    svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return;
        // httplib's own answer: no handler of ours ran for this request.
        request_log().role.clear();
        request_log().bytes_in = 0;
        const int status = res.status;
        std::string message = status == 413   ? "request too large"
                              : status == 414 ? "request URI too long"
                              : status >= 500 ? "internal error"
                                              : "HTTP error " + std::to_string(status);
        if (status == 404)
            message = "no such endpoint: " + req.method + " " + req.path +
                      " (this gateway serves POST /rpc/lww_exchange and GET /health)";
        else if (status == 400)
            message = "malformed HTTP request";
        HttpError e = make_error(status, "LWW" + std::to_string(status), message);
        send_error(res, e);
    });
    svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
            if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            what = e.what();
        } catch (...) {
        }
        reset(res);
        send_error(res, make_error(500, "LWW500", "internal error: " + what));
    });
    svr.set_logger([](const httplib::Request& req, const httplib::Response& res) { log_request(req, res); });
}

}  // namespace lwwgw
