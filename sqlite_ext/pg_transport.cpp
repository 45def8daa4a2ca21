// SQLite adapter: lww_sync('postgresql://…') — a SQLite client syncing
// straight with a PostgreSQL server, one lww_exchange round trip per batch.
// Built when libpq is available (LWWSYNC_WITH_LIBPQ); the HTTP gateway is the
// transport for clients that cannot reach Postgres directly.
#include "sync.h"
SQLITE_EXTENSION_INIT3

#include "../common/peer_notices.h"

#ifdef LWWSYNC_WITH_LIBPQ
#include <libpq-fe.h>
#include <poll.h>

#include <cerrno>
#include <chrono>
#endif

namespace lww::sq {

#ifdef LWWSYNC_WITH_LIBPQ

namespace {

struct Connection {
    PGconn* conn = nullptr;
    PeerNotices notices;  // what the server said outside results
    ~Connection() {
        if (conn) PQfinish(conn);
    }
};

// libpq's notice receiver. Its default prints the server's NOTICEs,
// WARNINGs and the FATAL of a restart on the host app's stderr; they are
// kept instead and told with an error (PeerNotices::said).
void receive_notice(void* arg, const PGresult* r) {
    const char* severity = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (!severity) severity = PQresultErrorField(r, PG_DIAG_SEVERITY);
    const char* msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    static_cast<PeerNotices*>(arg)->add(severity, msg ? msg : PQresultErrorMessage(r));
}

std::string trimmed(const char* msg) {
    std::string s = msg ? msg : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

}  // namespace

std::string sync_with_postgres(Conn& c, const std::string& url, const SyncOptions& opt, const Progress& progress) {
    Connection pg;
    // Connected step by step, the receiver in place before the server's
    // first message; connect_timeout_ms bounds it (PQconnectPoll ignores
    // the URL's connect_timeout).
    pg.conn = PQconnectStart(url.c_str());
    if (!pg.conn) throw Error("cannot connect to " + url + ": out of memory");
    PQsetNoticeReceiver(pg.conn, receive_notice, &pg.notices);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(opt.connect_timeout_ms);
    bool timed_out = false;
    for (PostgresPollingStatusType st = PGRES_POLLING_WRITING;
         st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED && PQstatus(pg.conn) != CONNECTION_BAD;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd p{PQsocket(pg.conn), static_cast<short>(st == PGRES_POLLING_READING ? POLLIN : POLLOUT), 0};
        const int rc = poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
        if (rc < 0 && errno != EINTR) break;
        if (rc > 0) st = PQconnectPoll(pg.conn);
    }
    if (timed_out)
        throw Error("cannot connect to " + url + ": no answer within " + std::to_string(opt.connect_timeout_ms) +
                    " ms");
    if (PQstatus(pg.conn) != CONNECTION_OK)
        throw Error("cannot connect to " + url + ": " + trimmed(PQerrorMessage(pg.conn)) + pg.notices.said());
    Transport send = [&](const std::string& request) {
        const char* values[1] = {request.c_str()};
        PGresult* r = PQexecParams(pg.conn, "SELECT lww_exchange($1)", 1, nullptr, values, nullptr, nullptr, 0);
        std::string out, error;
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            out.assign(PQgetvalue(r, 0, 0), PQgetlength(r, 0, 0));
        else {
            const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
            error = trimmed(primary && *primary ? primary : PQresultErrorMessage(r));
        }
        PQclear(r);
        if (!error.empty()) throw Error("the server refused the exchange: " + error + pg.notices.said());
        return out;
    };
    SqliteEngine local(c);
    return run_sync(local, send, opt.limits, progress).json();
}

#else

std::string sync_with_postgres(Conn&, const std::string& url, const SyncOptions&, const Progress&) {
    throw Error("this build of lwwsync has no libpq: cannot sync with " + url);
}

#endif

}  // namespace lww::sq
