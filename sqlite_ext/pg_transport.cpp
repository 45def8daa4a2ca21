// SQLite adapter: lww_sync('postgresql://…') — a SQLite client syncing
// straight with a PostgreSQL server, one lww_exchange round trip per batch.
// Built when libpq is available (LWWSYNC_WITH_LIBPQ); the HTTP gateway is the
// transport for clients that cannot reach Postgres directly.
#include "sync.h"
SQLITE_EXTENSION_INIT3

#ifdef LWWSYNC_WITH_LIBPQ
#include <libpq-fe.h>
#endif

namespace lww::sq {

#ifdef LWWSYNC_WITH_LIBPQ

namespace {

struct Connection {
    PGconn* conn = nullptr;
    ~Connection() {
        if (conn) PQfinish(conn);
    }
};

std::string trimmed(const char* msg) {
    std::string s = msg ? msg : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

}  // namespace

std::string sync_with_postgres(Conn& c, const std::string& url, const SyncOptions& opt, const Progress& progress) {
    Connection pg;
    pg.conn = PQconnectdb(url.c_str());
    if (!pg.conn || PQstatus(pg.conn) != CONNECTION_OK)
        throw Error("cannot connect to " + url + ": " + trimmed(pg.conn ? PQerrorMessage(pg.conn) : "out of memory"));
    Transport send = [&](const std::string& request) {
        const char* values[1] = {request.c_str()};
        PGresult* r = PQexecParams(pg.conn, "SELECT lww_exchange($1)", 1, nullptr, values, nullptr, nullptr, 0);
        std::string out, error;
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) out.assign(PQgetvalue(r, 0, 0), PQgetlength(r, 0, 0));
        else {
            const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
            error = trimmed(primary && *primary ? primary : PQresultErrorMessage(r));
        }
        PQclear(r);
        if (!error.empty()) throw Error("the server refused the exchange: " + error);
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
