// PostgreSQL adapter: the sync engine, lww_exchange's server side, and
// lww_sync('postgresql://…') over libpq.
#include "changes.h"

#include <libpq-fe.h>

namespace lww::pg {

NodeId PgEngine::self() { return State::get().self(); }

static Param uuid_text(const NodeId& id) {
    std::string s = id.str();
    Param p{TEXTOID, 0, false};
    pg_call([&] { p.value = PointerGetDatum(cstring_to_text(s.c_str())); });
    return p;
}

Cursor PgEngine::cursor_of(const NodeId& peer) {
    AsMetadataOwner owner;
    run(prepare("SELECT received, floor FROM lwwsync.peers WHERE node = $1::uuid", {TEXTOID}), {uuid_text(peer)}, false);
    if (!SPI_processed) return Cursor{};
    return Cursor{static_cast<uint64_t>(col_int64(0, 0)), static_cast<uint64_t>(col_int64(0, 1))};
}

Batch PgEngine::changes_for(const NodeId& peer, const Cursor& from, int64_t limit) {
    return collect_changes(ChangesRequest::for_peer(peer, from, limit));
}

ApplyCounts PgEngine::apply_from(const NodeId& peer, const ChangeSet& cs) {
    if (cs.origin != peer) throw Error("a change set from " + cs.origin.str() + " arrived as " + peer.str() + "'s");
    const Cursor next = cursor_of(peer).after_batch(cs);
    ApplyCounts counts = apply_changeset(cs);
    // Same transaction as the batch: the cursor commits with it.
    AsMetadataOwner owner;
    run(prepare("INSERT INTO lwwsync.peers(node, received, floor, synced_at) VALUES ($1::uuid, $2, $3, now())"
                " ON CONFLICT (node) DO UPDATE SET received = excluded.received, floor = excluded.floor,"
                " synced_at = excluded.synced_at",
                {TEXTOID, INT8OID, INT8OID}),
        {uuid_text(peer), Param{INT8OID, Int64GetDatum(static_cast<int64>(next.received)), false},
         Param{INT8OID, Int64GetDatum(static_cast<int64>(next.floor)), false}},
        false);
    return counts;
}

namespace {

struct Connection {
    PGconn* conn = nullptr;
    ~Connection() {
        if (conn) PQfinish(conn);
    }
};

struct Result {
    PGresult* res = nullptr;
    ~Result() {
        if (res) PQclear(res);
    }
};

// Waits for the socket without blocking cancellation: interrupts are checked
// between waits, never inside libpq.
void wait_readable(PGconn* conn) {
    while (PQisBusy(conn)) {
        int rc = 0;
        pg_call([&] {
            rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_SOCKET_READABLE | WL_EXIT_ON_PM_DEATH, PQsocket(conn), -1L,
                                   PG_WAIT_EXTENSION);
            ResetLatch(MyLatch);
            CHECK_FOR_INTERRUPTS();
        });
        if ((rc & WL_SOCKET_READABLE) && !PQconsumeInput(conn))
            throw Error(std::string("peer connection failed: ") + PQerrorMessage(conn));
    }
}

std::string call_exchange(PGconn* conn, const std::string& request) {
    const char* values[1] = {request.c_str()};
    if (!PQsendQueryParams(conn, "SELECT lww_exchange($1)", 1, nullptr, values, nullptr, nullptr, 0))
        throw Error(std::string("cannot send to peer: ") + PQerrorMessage(conn));
    std::string out;
    std::string error;
    for (;;) {
        wait_readable(conn);
        Result r;
        r.res = PQgetResult(conn);
        if (!r.res) break;
        if (PQresultStatus(r.res) == PGRES_TUPLES_OK && PQntuples(r.res) == 1) {
            out.assign(PQgetvalue(r.res, 0, 0), PQgetlength(r.res, 0, 0));
        } else if (error.empty()) {
            const char* msg = PQresultErrorField(r.res, PG_DIAG_MESSAGE_PRIMARY);
            if (!msg || !*msg) msg = PQresultErrorMessage(r.res);
            error = msg && *msg ? msg : "unexpected result";
            while (!error.empty() && (error.back() == '\n' || error.back() == ' ')) error.pop_back();
        }
    }
    if (!error.empty()) throw Error("peer refused the exchange: " + error);
    return out;
}

}  // namespace

std::string sync_postgres(const std::string& url, int64_t batch_rows) {
    Connection c;
    c.conn = PQconnectStart(url.c_str());
    if (!c.conn) throw Error("out of memory connecting to peer");
    // Drive the connection without blocking interrupts.
    for (PostgresPollingStatusType st = PGRES_POLLING_WRITING;;) {
        if (PQstatus(c.conn) == CONNECTION_BAD) break;
        if (st == PGRES_POLLING_OK || st == PGRES_POLLING_FAILED) break;
        int events = st == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
        pg_call([&] {
            WaitLatchOrSocket(MyLatch, WL_LATCH_SET | events | WL_EXIT_ON_PM_DEATH, PQsocket(c.conn), 10000L,
                              PG_WAIT_EXTENSION);
            ResetLatch(MyLatch);
            CHECK_FOR_INTERRUPTS();
        });
        st = PQconnectPoll(c.conn);
    }
    if (PQstatus(c.conn) != CONNECTION_OK) {
        std::string msg = PQerrorMessage(c.conn);
        while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
        throw Error("cannot connect to peer: " + msg);
    }
    if (PQsetnonblocking(c.conn, 0) != 0) throw Error("cannot configure the peer connection");
    PgEngine local;
    Transport send = [&](const std::string& req) { return call_exchange(c.conn, req); };
    return run_sync(local, send, batch_rows).json();
}

}  // namespace lww::pg
