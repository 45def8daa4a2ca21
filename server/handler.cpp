#include "handler.h"

#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <strings.h>

#include <cctype>
#include <charconv>
#include <ctime>
#include <random>

#include "../common/gzip.h"
#include "../common/json.h"
#include "../common/json.h"
#include "jwt.h"
#include "log.h"
#include "pgasync.h"

namespace lwwgw {
namespace {

constexpr const char* kExchangePath = "/rpc/lww_exchange";
constexpr const char* kHealthPath = "/health";
constexpr const char* kJson = "application/json; charset=utf-8";  // PostgREST's content type
constexpr std::size_t kGzipAbove = 256;                           // smaller bodies do not shrink enough to bother
constexpr int kMaxAttempts = 3;  // a transaction runs at most this often (40001, 40P01, dead connection)
// A refused body is still read (and dropped) up to this many bytes, so the
// client sees the 413/400 instead of a reset; beyond it the connection is cut.
constexpr std::size_t kDrainBytes = std::size_t(8) << 20;

bool iequals(const std::string& a, const char* b) { return strcasecmp(a.c_str(), b) == 0; }

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t");
    return b == std::string::npos ? std::string() : s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// A header value quoted in a message: bounded, it comes from the client.
std::string quoted_excerpt(const std::string& v) { return "\"" + (v.size() > 80 ? v.substr(0, 80) + "…" : v) + "\""; }

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

void send_error(RequestState& st, const HttpError& e) {
    st.response = HttpResponse{};
    st.response.status = e.status;
    st.response.headers = e.headers;
    st.response.headers.emplace_back("Content-Type", kJson);
    st.response.body = error_json(e);
    st.error = e.message;
    if (e.details) st.error += ": " + *e.details;
}

HttpError make_error(int status, std::string code, std::string message) {
    HttpError e;
    e.status = status;
    e.code = std::move(code);
    e.message = std::move(message);
    return e;
}

// An answer sent before the body was read: the client must not reuse the
// connection (the unread bytes would be taken for its next request).
void close_if_body_unread(RequestState& st) {
    if (st.body_expected) st.response.headers.emplace_back("Connection", "close");
}

// The announced body size; nullopt when absent.
std::optional<unsigned long long> content_length(const HttpRequest& req) {
    const std::string v = trim(req.header("Content-Length"));
    unsigned long long n = 0;
    const auto r = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || r.ec != std::errc() || r.ptr != v.data() + v.size()) return std::nullopt;
    return n;
}

// ------------------------------------------------------------------ gzip responses

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
        const std::string name = lower(trim(item.substr(0, semi)));
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

void send_json(RequestState& st, int status, std::string body) {
    st.response = HttpResponse{};
    st.response.status = status;
    st.response.headers.emplace_back("Vary", "Accept-Encoding");
    if (body.size() >= kGzipAbove && accepts_gzip(st.req.header("Accept-Encoding"))) {
        body = lww::gzip_compress(body, 1);  // fastest: this CPU serves every client
        st.response.headers.emplace_back("Content-Encoding", "gzip");
    }
    st.response.headers.emplace_back("Content-Type", kJson);
    st.response.body = std::move(body);
}

// ------------------------------------------------------------------ auth

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
std::optional<HttpError> authenticate(const HttpRequest& req, const Config& cfg, Auth& out) {
    const std::size_t n = req.count("Authorization");
    if (n == 0) {
        if (cfg.db_anon_role.empty())
            return unauthorized("PGRST302", "Anonymous access is disabled: send Authorization: Bearer <JWT>", "Bearer");
        out.role = cfg.db_anon_role;
        out.claims_json = anon_claims(out.role);
        return std::nullopt;
    }
    if (n > 1) return invalid_token("more than one Authorization header");
    const std::string h = req.header("Authorization");
    if (h.size() < 7 || strncasecmp(h.c_str(), "Bearer ", 7) != 0)
        return invalid_token("the Authorization header must be Bearer <JWT>");
    const std::string token = trim(h.substr(7));
    if (token.empty()) return invalid_token("empty bearer token");
    if (cfg.jwt_secret.empty()) return invalid_token("JWT cannot be verified: the server has no jwt-secret");
    JwtResult jwt = verify_jwt(token, cfg.jwt_secret, static_cast<int64_t>(std::time(nullptr)));
    if (!jwt.ok) return invalid_token(jwt.error);
    out.claims_json = std::move(jwt.claims_json);
    out.role = jwt.role.empty() ? cfg.db_anon_role : jwt.role;
    if (out.role.empty()) return invalid_token("JWT has no role claim and anonymous access is disabled");
    // SET ROLE none would run the request as the login role itself.
    if (reserved_role(out.role)) {
        HttpError e = make_error(403, "LWW403", "JWT role \"" + out.role + "\" is a reserved role name");
        e.hint = "a token must name a real role granted to the role in db-uri";
        return e;
    }
    return std::nullopt;
}

// application/json (any parameters but a charset other than UTF-8), or no
// Content-Type at all (PostgREST's default). Anything else (multipart,
// form-urlencoded, text/plain...) is not an exchange document.
bool json_content_type(const std::string& header) {
    if (trim(header).empty()) return true;
    const auto semi = header.find(';');
    if (lower(trim(header.substr(0, semi))) != "application/json") return false;
    std::size_t pos = semi;
    while (pos != std::string::npos) {
        const auto next = header.find(';', pos + 1);
        const std::string param =
            trim(header.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1));
        pos = next;
        const auto eq = param.find('=');
        if (eq == std::string::npos || lower(trim(param.substr(0, eq))) != "charset") continue;
        std::string cs = lower(trim(param.substr(eq + 1)));
        if (cs.size() >= 2 && cs.front() == '"' && cs.back() == '"') cs = cs.substr(1, cs.size() - 2);
        if (cs != "utf-8" && cs != "utf8") return false;
    }
    return true;
}

// ------------------------------------------------------------------ routing

// Reads an exchange document's top-level members until it knows whether the
// request writes: a non-null "push", or "forked": true. Stops there, so a
// large push costs a few members' parse, not the whole body's.
class WritesScan : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, WritesScan> {
public:
    bool writes = false;
    bool Default() { return settle(false); }
    bool Null() { return settle(false); }
    bool Bool(bool b) { return settle(b && member_ == Member::Forked); }
    bool StartObject() {
        if (depth_ == 1 && member_ == Member::Push) return settle(true);
        return enter();
    }
    bool EndObject(rapidjson::SizeType) {
        --depth_;
        return true;
    }
    bool StartArray() {
        if (depth_ == 1 && member_ != Member::Other && !settle(member_ == Member::Push)) return false;
        return enter();
    }
    bool EndArray(rapidjson::SizeType) {
        --depth_;
        return true;
    }
    bool Key(const char* k, rapidjson::SizeType n, bool) {
        if (depth_ == 1) {
            const std::string_view key(k, n);
            member_ = key == "push" ? Member::Push : key == "forked" ? Member::Forked : Member::Other;
        }
        return true;
    }

private:
    enum class Member { Other, Push, Forked };
    // Nesting as deep as the exchange's own reader allows; deeper is not a
    // pull the replica may serve (the primary refuses it).
    bool enter() { return ++depth_ <= static_cast<int>(lww::kMaxJsonDepth); }
    // A top-level scalar: true ends the scan (it writes), false goes on.
    bool settle(bool w) {
        if (depth_ == 1 && member_ != Member::Other) {
            writes = writes || w;
            member_ = Member::Other;
        }
        return !writes;
    }
    int depth_ = 0;
    Member member_ = Member::Other;
};

// True when the exchange document pushes nothing (no "push", no "forked"):
// a read replica can serve it. Anything unreadable goes to the primary,
// which answers the error.
bool pull_only(const std::string& body) {
    WritesScan scan;
    rapidjson::Reader reader;
    rapidjson::StringStream in(body.c_str());
    // Iterative: an untrusted body never drives recursion (docs/SECURITY.md).
    const bool done =
        !reader.Parse<rapidjson::kParseStopWhenDoneFlag | rapidjson::kParseIterativeFlag>(in, scan).IsError();
    return done && !scan.writes;
}

// ------------------------------------------------------------------ PostgreSQL

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
enum class Outcome { Ok, Failed, ClientGone, TimedOut };

// The wait for one statement: the server's statement_timeout ends it first;
// this is the backstop for a server that stopped answering altogether.
Clock::time_point statement_deadline(const Config& cfg) {
    if (cfg.db_statement_timeout_ms == 0) return Clock::time_point::max();
    return Clock::now() + std::chrono::milliseconds(cfg.db_statement_timeout_ms) + std::chrono::seconds(5);
}

Outcome run_step(PGconn* c, const std::string& sql, const std::vector<const char*>* params, ExecStatusType want,
                 int client_fd, const Config& cfg, Result& r, DbFailure& f) {
    switch (exec(c, sql, params, client_fd, statement_deadline(cfg), r)) {
        case Exec::ClientGone: return Outcome::ClientGone;
        case Exec::TimedOut: return Outcome::TimedOut;
        case Exec::Broken:
        case Exec::Done: break;
    }
    return check(c, r, want, f) ? Outcome::Ok : Outcome::Failed;
}

// One exchange in one transaction: the role, claims and timeouts are
// transaction-local (SET LOCAL, set_config(..., true)), so nothing outlives
// the COMMIT or a ROLLBACK on the pooled connection.
Outcome run_exchange(PGconn* c, const Config& cfg, const Auth& auth, const std::string& body, int client_fd,
                     std::string& out, DbFailure& f, Step& step, bool read_only) {
    step = Step::Role;
    char* quoted = PQescapeIdentifier(c, auth.role.data(), auth.role.size());
    if (!quoted) {
        f = DbFailure{};
        f.sqlstate = "22023";
        f.message = "invalid role name: " + one_line(PQerrorMessage(c));
        f.connection_lost = PQstatus(c) != CONNECTION_OK;
        return Outcome::Failed;
    }
    // On the replica, read-only also where it is not a standby (a
    // misconfigured db-read-uri never takes a write).
    std::string begin = read_only ? "BEGIN READ ONLY" : "BEGIN";
    // 0 leaves the database's own setting in force.
    if (cfg.db_statement_timeout_ms > 0)
        begin += "; SET LOCAL statement_timeout = " + std::to_string(cfg.db_statement_timeout_ms);
    if (cfg.db_lock_timeout_ms > 0) begin += "; SET LOCAL lock_timeout = " + std::to_string(cfg.db_lock_timeout_ms);
    begin += std::string("; SET LOCAL ROLE ") + quoted;
    PQfreemem(quoted);
    Result r(nullptr, PQclear);
    Outcome o = run_step(c, begin, nullptr, PGRES_COMMAND_OK, client_fd, cfg, r, f);
    if (o != Outcome::Ok) return o;

    step = Step::Claims;
    const std::vector<const char*> claims = {auth.claims_json.c_str(), "POST", kExchangePath};
    o = run_step(c,
                 "SELECT set_config('request.jwt.claims', $1, true), "
                 "set_config('request.method', $2, true), set_config('request.path', $3, true)",
                 &claims, PGRES_TUPLES_OK, client_fd, cfg, r, f);
    if (o != Outcome::Ok) return o;

    step = Step::Exchange;
    const std::vector<const char*> params = {body.c_str()};
    o = run_step(c, "SELECT lww_exchange($1::json)::text", &params, PGRES_TUPLES_OK, client_fd, cfg, r, f);
    if (o != Outcome::Ok) return o;
    if (PQntuples(r.get()) != 1 || PQnfields(r.get()) != 1) {
        f = DbFailure{};
        f.message = "lww_exchange returned " + std::to_string(PQntuples(r.get())) + " rows";
        return Outcome::Failed;
    }
    out = PQgetisnull(r.get(), 0, 0) ? "null" : std::string(PQgetvalue(r.get(), 0, 0), PQgetlength(r.get(), 0, 0));

    step = Step::Commit;
    return run_step(c, "COMMIT", nullptr, PGRES_COMMAND_OK, client_fd, cfg, r, f);
}

HttpError unavailable(std::string code, std::string message, std::optional<std::string> details, int retry_after) {
    HttpError e = make_error(503, std::move(code), std::move(message));
    e.details = std::move(details);
    e.headers.emplace_back("Retry-After", std::to_string(retry_after));
    return e;
}

HttpError pool_error(const std::string& what) {
    return unavailable("PGRST003", "Timed out acquiring a connection from the pool", what, 1);
}

HttpError connect_error(const ConnectFailed& c) {
    HttpError e =
        unavailable("PGRST000", "Database connection error: PostgreSQL is unreachable", std::string(c.what()), 5);
    e.hint = "the gateway reconnects by itself once PostgreSQL accepts connections again";
    return e;
}

HttpError timeout_error(const Config& cfg, std::string message) {
    HttpError e = make_error(504, "57014", std::move(message));
    e.details = "db-statement-timeout-ms is " + std::to_string(cfg.db_statement_timeout_ms);
    e.hint = "retry later; the exchange was rolled back";
    e.headers.emplace_back("Retry-After", "1");
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
    // SET LOCAL ROLE: a role that does not exist (22023) or that the
    // gateway's login role was not granted (42501) is not the caller's to use.
    if (step == Step::Role && (f.sqlstate == "22023" || f.sqlstate == "42501" || f.sqlstate == "42704")) {
        e.status = 403;
        if (!e.hint) e.hint = "the token's role must exist and be granted to the role in db-uri";
        return e;
    }
    // A push reached a server that cannot write (a hot standby): the same
    // push succeeds at the primary, or here once this server is promoted.
    if (f.sqlstate == "25006" && !e.hint)
        e.hint = "this database is read-only: point db-uri at the primary (a standby goes in db-read-uri)";
    e.status = f.sqlstate.empty() ? 500 : status_for_sqlstate(f.sqlstate);
    if (e.status == 503 || e.status == 504) e.headers.emplace_back("Retry-After", "1");  // transient
    if (f.sqlstate == "42883" && !e.hint)
        e.hint = "is the lwwsync extension (0.2 or later: lww_exchange(json)) installed in this database?";
    return e;
}

void client_went_away(RequestState& st, const char* when) {
    st.client_gone = true;
    st.error = std::string("client disconnected ") + when;
}

// ------------------------------------------------------------------ handlers

void exchange(App& app, RequestState& st) {
    const std::string& body = st.body->body();
    const int fd = st.client_fd;
    // Pushes need the primary; the rest runs read-only on the replica
    // when there is one (docs/DEPLOY.md).
    bool on_replica = app.read_pool && pull_only(body);
    for (int attempt = 1;; ++attempt) {
        DbFailure f;
        Step step = Step::Role;
        std::string result;
        {
            Pool& pool = on_replica ? *app.read_pool : app.pool;
            std::optional<Pool::Lease> lease;
            try {
                lease.emplace(pool.acquire([fd] { return peer_gone(fd); }));
            } catch (const PoolTimeout& t) {
                return send_error(st, pool_error(t.what()));
            } catch (const ConnectFailed& c) {
                // A replica that is down: the primary serves its pulls meanwhile.
                if (on_replica) {
                    log_event("warning", std::string("read replica unreachable, pulling from db-uri: ") + c.what());
                    on_replica = false;
                    --attempt;
                    continue;
                }
                return send_error(st, connect_error(c));
            } catch (const Abandoned&) {
                return client_went_away(st, "while waiting for a database connection");
            }
            PGconn* c = lease->get();
            st.db = on_replica ? "replica" : "primary";
            switch (run_exchange(c, app.cfg, st.auth, body, fd, result, f, step, on_replica)) {
                case Outcome::Ok: return send_json(st, 200, std::move(result));
                case Outcome::ClientGone:
                    if (!rollback(c)) lease->discard();
                    return client_went_away(st, "during the exchange: query cancelled, transaction rolled back");
                case Outcome::TimedOut:
                    lease->discard();  // it did not answer: its state is unknown
                    return send_error(st, timeout_error(app.cfg, "PostgreSQL did not answer in time"));
                case Outcome::Failed: break;
            }
            if (f.connection_lost) {
                lease->discard();
                pool.drop_idle();
            } else if (!rollback(c)) {
                lease->discard();
            }
        }
        // The replica could not serve it (lost, or its feed waits on a
        // long transaction of the primary: 25006): the primary serves it.
        if (on_replica && (f.connection_lost || f.sqlstate == "25006")) {
            log_event("warning", "read replica failed a pull, retrying on db-uri: " + f.message);
            on_replica = false;
            continue;
        }
        // A connection found dead before anything ran (a pooled connection
        // from before a server restart) is replaced; a serialization failure
        // or deadlock is retried after a short random pause. A connection lost
        // later is not retried here: the outcome of the COMMIT is unknown, and
        // the client, whose exchanges are idempotent, retries on 503.
        const bool retry =
            attempt < kMaxAttempts && ((f.connection_lost && step == Step::Role) || serialization_failure(f.sqlstate));
        if (!retry) {
            if (f.sqlstate == "57014") return send_error(st, timeout_error(app.cfg, f.message));
            return send_error(st, db_error(f, step));
        }
        if (serialization_failure(f.sqlstate)) {
            static thread_local std::mt19937 rng{std::random_device{}()};
            std::uniform_int_distribution<int> ms(10 * attempt, 50 * attempt);
            if (!sleep_watching(fd, ms(rng))) return client_went_away(st, "before a retry");
        }
    }
}

void health(App& app, RequestState& st) {
    auto down = [&](const std::string& message) {
        rapidjson::StringBuffer sb;
        JsonWriter w(sb);
        w.StartObject();
        w.Key("status");
        w.String("unavailable");
        w.Key("message");
        put_string(w, message);
        w.EndObject();
        st.response = HttpResponse{};
        st.response.status = 503;
        st.response.headers = {{"Retry-After", "5"}, {"Content-Type", kJson}};
        st.response.body = sb.GetString();
        st.error = message;
    };
    const int fd = st.client_fd;
    for (int attempt = 1;; ++attempt) {
        std::optional<Pool::Lease> lease;
        try {
            lease.emplace(app.pool.acquire([fd] { return peer_gone(fd); }));
        } catch (const Abandoned&) {
            return client_went_away(st, "while waiting for a database connection");
        } catch (const std::exception& e) {
            return down(e.what());
        }
        PGconn* c = lease->get();
        Result r(nullptr, PQclear);
        switch (exec(c, "SELECT 1", nullptr, fd, Clock::now() + std::chrono::seconds(5), r)) {
            case Exec::ClientGone:
                if (!rollback(c)) lease->discard();
                return client_went_away(st, "during the health check");
            case Exec::TimedOut: lease->discard(); return down("PostgreSQL did not answer SELECT 1 within 5 s");
            case Exec::Broken:
            case Exec::Done: break;
        }
        DbFailure f;
        if (check(c, r, PGRES_TUPLES_OK, f)) return send_json(st, 200, "{\"status\":\"ok\"}");
        if (!f.connection_lost) {
            if (!rollback(c)) lease->discard();
            return down(f.message);
        }
        lease->discard();
        lease.reset();
        app.pool.drop_idle();
        if (attempt >= 2) return down("database connection lost: " + f.message);
    }
}

void method_not_allowed(RequestState& st, const char* allow) {
    HttpError e =
        make_error(405, "LWW405", st.req.method + " is not allowed on " + st.req.path + " (use " + allow + ")");
    e.headers.emplace_back("Allow", allow);
    send_error(st, e);
    close_if_body_unread(st);
}

// Framing the HTTP library leaves to us: one Content-Length, chunked as the
// only transfer coding, never both (request smuggling through proxies).
std::optional<HttpError> framing_error(const HttpRequest& req) {
    const std::size_t te = req.count("Transfer-Encoding"), cl = req.count("Content-Length");
    if (te > 1 || cl > 1) return make_error(400, "LWW400", "more than one Transfer-Encoding or Content-Length header");
    if (te == 1 && cl == 1)
        return make_error(400, "LWW400", "both Transfer-Encoding and Content-Length: the body length is ambiguous");
    if (te == 1 && !iequals(trim(req.header("Transfer-Encoding")), "chunked"))
        return make_error(501, "LWW501",
                          "unsupported Transfer-Encoding " + quoted_excerpt(req.header("Transfer-Encoding")) +
                              " (use chunked or Content-Length)");
    return std::nullopt;
}

}  // namespace

std::string HttpRequest::header(const char* name) const {
    for (const auto& [k, v] : headers)
        if (iequals(k, name)) return v;
    return "";
}

std::size_t HttpRequest::count(const char* name) const {
    std::size_t n = 0;
    for (const auto& h : headers) n += iequals(h.first, name);
    return n;
}

void begin(App& app, RequestState& st) {
    const HttpRequest& req = st.req;
    const auto cl = content_length(req);
    st.body_expected = req.count("Transfer-Encoding") > 0 || (cl && *cl > 0);
    if (auto e = framing_error(req)) {
        send_error(st, *e);
        return close_if_body_unread(st);
    }
    if (req.path == kHealthPath) {
        if (req.method == "GET" || req.method == "HEAD") st.route = Route::Health;
        else method_not_allowed(st, "GET");
        return;
    }
    if (req.path != kExchangePath) {
        send_error(st, make_error(404, "LWW404",
                                  "no such endpoint: " + req.method + " " + req.path +
                                      " (this gateway serves POST /rpc/lww_exchange and GET /health)"));
        return close_if_body_unread(st);
    }
    if (req.method != "POST") return method_not_allowed(st, "POST");

    Encoding enc;
    const std::string enc_header = req.header("Content-Encoding");
    if (req.count("Content-Encoding") > 1 || !parse_encoding(enc_header, enc)) {
        send_error(st, make_error(415, "LWW415",
                                  "unsupported Content-Encoding " + quoted_excerpt(enc_header) +
                                      " (use gzip, deflate, br or none)"));
        return close_if_body_unread(st);
    }
    const std::string type = req.header("Content-Type");
    if (req.count("Content-Type") > 1 || !json_content_type(type)) {
        HttpError e = make_error(415, "LWW415",
                                 "unsupported Content-Type " + quoted_excerpt(type) +
                                     ": the body must be an application/json exchange document");
        e.hint = "send Content-Type: application/json (UTF-8)";
        send_error(st, e);
        return close_if_body_unread(st);
    }
    // Before reading the body: an unauthenticated client cannot make us
    // receive (and decompress) up to max-body-bytes.
    if (auto err = authenticate(req, app.cfg, st.auth)) {
        send_error(st, *err);
        return close_if_body_unread(st);
    }
    st.role = st.auth.role;
    // Announced too large: refused before reading it (and before "100 Continue").
    if (cl && *cl > app.cfg.max_body_bytes) {
        send_error(st, make_error(413, "LWW413",
                                  "request body exceeds max-body-bytes (" + std::to_string(app.cfg.max_body_bytes) +
                                      " bytes)"));
        return close_if_body_unread(st);
    }
    st.route = Route::Exchange;
    st.body = std::make_unique<BodyDecoder>(enc, app.cfg.max_body_bytes);
}

bool answer_before_body(const RequestState& st) {
    if (framing_error(st.req)) return true;  // a body we cannot delimit is never read
    if (strcasecmp(trim(st.req.header("Expect")).c_str(), "100-continue") == 0) return true;
    const auto cl = content_length(st.req);
    return cl && *cl > kDrainBytes;
}

bool feed(RequestState& st, const char* data, std::size_t n) {
    if (st.response.status != 0 || !st.body) {  // refused, or nobody reads it (GET /health): dropped, up to a point
        st.dropped += n;
        return st.dropped <= kDrainBytes;
    }
    st.body->feed(data, n);
    return st.body->discarded() <= kDrainBytes;
}

void finish_body(App& app, RequestState& st) {
    if (!st.body) {
        st.bytes_in = 0;
        return;
    }
    BodyDecoder& b = *st.body;
    b.finish();
    st.bytes_in = b.body().size();
    const bool coded = b.encoding() != Encoding::Identity;
    if (b.too_large()) {
        st.bytes_in = 0;
        send_error(st, make_error(413, "LWW413",
                                  "request body exceeds max-body-bytes (" + std::to_string(app.cfg.max_body_bytes) +
                                      " bytes" + (coded ? " after decompression" : "") + ")"));
        st.response.headers.emplace_back("Connection", "close");
        return;
    }
    if (b.invalid()) {
        send_error(st, make_error(400, "PGRST102",
                                  std::string("cannot read the request body (truncated, or not valid ") +
                                      (coded ? "compressed data)" : "HTTP framing)")));
        return;
    }
    const std::string& body = b.body();
    if (body.find('\0') != std::string::npos)  // a text parameter ends at NUL; JSON never has one
        return send_error(st, make_error(400, "PGRST102", "request body contains a NUL byte: not JSON text"));
    // Before PostgreSQL: its JSON parser recurses, and a document of a few
    // thousand '[' ends in "stack depth limit exceeded" (54001).
    if (!json_depth_ok(body, lww::kMaxJsonDepth)) {
        HttpError e =
            make_error(400, "PGRST102", "JSON nested deeper than " + std::to_string(lww::kMaxJsonDepth) + " levels");
        e.hint = "an exchange document nests 6 levels deep";
        return send_error(st, e);
    }
}

void work(App& app, RequestState& st) {
    try {
        if (st.route == Route::Health) health(app, st);
        else exchange(app, st);
    } catch (const std::exception& e) {
        set_internal_error(st, e.what());
    } catch (...) {
        set_internal_error(st, "unknown exception");
    }
}

void set_pool_timeout(App& app, RequestState& st) {
    send_error(
        st, pool_error("timed out after " + std::to_string(app.cfg.db_pool_acquisition_timeout) +
                       " s waiting for a free database connection (db-pool " + std::to_string(app.pool.size()) + ")"));
}

void set_internal_error(RequestState& st, const std::string& what) {
    send_error(st, make_error(500, "LWW500", "internal error: " + what));
}

int status_for_sqlstate(const std::string& s) {
    auto cls = [&](const char* c) { return s.rfind(c, 0) == 0; };
    if (s == "53400") return 500;  // configuration limit exceeded: not transient
    if (s == "57014") return 504;  // statement_timeout (or an operator's cancel): try again later
    if (s == "55P03") return 503;  // lock_timeout: a lock held elsewhere for long
    if (s == "25006") return 503;  // read-only (a hot standby): retry, or push to the primary
    if (connection_class(s) || serialization_failure(s) || cls("53")) return 503;  // transient
    // lwwsync's clock drift guard (22008): the sender's clock is ahead, not
    // its document malformed; and an object in use (55006: a sync already
    // running). Both conflict with the server's state (docs/ERRORS.md).
    if (s == "22008" || s == "55006") return 409;
    if (cls("22") || s == "P0001") return 400;     // invalid input: lwwsync's refusals are 22000
    if (s == "42704" || s == "42P01") return 404;  // an object that is not there
    // program limit exceeded: the input is too large (54000) or too complex
    // (54001 stack depth, 54011 too many columns, 54023 too many arguments)
    if (s == "54000") return 413;
    if (cls("54")) return 400;
    if (cls("23")) return 409;  // integrity constraint: conflicts with stored data
    // insufficient privilege; invalid authorization, grantor, role specification
    if (s == "42501" || cls("28") || cls("0L") || cls("0P")) return 403;
    return 500;
}

}  // namespace lwwgw
