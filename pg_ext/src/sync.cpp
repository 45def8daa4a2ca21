// PostgreSQL adapter: the sync engine, lww_exchange's server side, and
// lww_sync('postgresql://…') over libpq or lww_sync('http(s)://…') over
// libcurl (common/http_client.h).
#include "sync.h"
#include "apply.h"
#include "changes.h"

#include <libpq-fe.h>

#include <chrono>

#include "../../common/http_client.h"
#include "../../common/peer_notices.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

extern "C" {
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "utils/lsyscache.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
}

namespace lww::pg {

NodeId PgEngine::self() { return State::get().self(); }

static Param uuid_text(const NodeId& id) { return text_param(id.str()); }

const Principal& PgEngine::who() {
    if (!who_) who_ = current_principal();
    return *who_;
}

// serve_exchange has checked the key of a keyed caller.
void PgEngine::authorize(const NodeId& caller, bool bind) { bind_node(caller, who(), true, bind); }

bool PgEngine::writable() {
    bool yes = false;
    pg_call([&] { yes = !RecoveryInProgress() && !XactReadOnly; });
    return yes;
}

// A Postgres database's node id is random (made by the install script);
// one given a key ('node_key' in lwwsync.state, base64) sends it.
std::string PgEngine::node_key() {
    AsMetadataOwner owner;
    const SpiResult res = run_sql("SELECT value FROM lwwsync.state WHERE key = 'node_key'", true);
    std::string key;
    if (!res.empty() && base64_decode(res.text(0, 0), key)) return key;
    return {};
}

// Cursors are kept per (node, principal).
Cursor PgEngine::cursor_of(const NodeId& peer) {
    const Principal& p = who();
    const std::vector<Param> args = {uuid_text(peer), text_param(p.role), text_param(p.subject)};
    AsMetadataOwner owner;
    SpiResult res = run(
        prepare("SELECT received, floor FROM lwwsync.peers WHERE node = $1::uuid AND role = $2::name AND subject = $3",
                {TEXTOID, TEXTOID, TEXTOID}),
        args, false);
    if (res.empty()) {
        // A cursor from before 0.3 (no principal) belongs to the node's
        // principal; it moves to it at that node's first push (a read-only
        // round trip leaves it, and reads no cursor: the push starts at 0).
        if (!writable()) return Cursor{};
        res = run(prepare("UPDATE lwwsync.peers SET role = $2::name, subject = $3 WHERE node = $1::uuid AND role = ''"
                          " AND subject = '' RETURNING received, floor",
                          {TEXTOID, TEXTOID, TEXTOID}),
                  args, false);
        if (res.empty()) return Cursor{};
    }
    return Cursor{static_cast<uint64_t>(res.integer(0, 0)), static_cast<uint64_t>(res.integer(0, 1))};
}

Batch PgEngine::changes(const ChangesRequest& req) { return collect_changes(req); }

uint64_t PgEngine::clock_now() { return std::max(State::get().clock().last(), wall_clock_ms() << 16); }

// In memory only: a client persists its clock with its next applied batch
// (apply_changeset) — writing here, between feed reads, would hold a row
// lock while the feed waits for writers.
void PgEngine::observe_clock(uint64_t hlc) { State::get().clock().observe(hlc); }

uint64_t PgEngine::max_drift_ms() { return State::get().clock().max_drift_ms(); }

// Copies and restores (docs/PROTOCOL.md).
uint64_t PgEngine::last_seq() {
    AsMetadataOwner owner;
    const SpiResult res = run_sql("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM lwwsync.seq", true);
    return res.empty() ? 0 : static_cast<uint64_t>(res.integer(0, 0));
}

// In the calling statement's transaction: a sync that rolls back forgets
// the ids it sent, and the next one, seeing one of them, takes a new node id
// (a cost, never a loss).
void PgEngine::note_push(const NodeId& server, const std::string& id) {
    AsMetadataOwner owner;
    run(prepare("INSERT INTO lwwsync.pushes(peer, id) VALUES ($1::uuid, $2)", {TEXTOID, TEXTOID}),
        {uuid_text(server), text_param(id)}, false);
    run(prepare("DELETE FROM lwwsync.pushes WHERE peer = $1::uuid AND n <= "
                "(SELECT max(n) - 256 FROM lwwsync.pushes WHERE peer = $1::uuid)",
                {TEXTOID}),
        {uuid_text(server)}, false);
}

bool PgEngine::sent_push(const NodeId& server, const std::string& id) {
    AsMetadataOwner owner;
    return !run(prepare("SELECT 1 FROM lwwsync.pushes WHERE peer = $1::uuid AND id = $2", {TEXTOID, TEXTOID}),
                {uuid_text(server), text_param(id)}, false)  // sees the ids this transaction noted
                .empty();
}

std::string PgEngine::push_mark(const NodeId& caller) {
    AsMetadataOwner owner;
    const SpiResult res =
        run(prepare("SELECT id FROM lwwsync.push_marks WHERE node = $1::uuid", {TEXTOID}), {uuid_text(caller)}, false);
    return res.empty() ? std::string() : res.text(0, 0);
}

void PgEngine::set_push_mark(const NodeId& caller, const std::string& id) {
    AsMetadataOwner owner;
    run(prepare("INSERT INTO lwwsync.push_marks(node, id) VALUES ($1::uuid, $2)"
                " ON CONFLICT (node) DO UPDATE SET id = excluded.id",
                {TEXTOID, TEXTOID}),
        {uuid_text(caller), text_param(id)}, false);
}

NodeId PgEngine::reset_node() {
    return State::get().reset_node("a copy of this database pushes as its node id (found at an exchange)");
}

// No echo (docs/PROTOCOL.md): lwwsync.relayed, from version 0.6 of the
// schema (a database not updated yet records nothing and sends everything).
static bool has_relayed_table() {
    bool found = false;
    pg_call([&] {
        const Oid ns = get_namespace_oid("lwwsync", true);
        found = OidIsValid(ns) && OidIsValid(get_relname_relid("relayed", ns));
    });
    return found;
}

static Param int8_arg(uint64_t v) {
    return Param{INT8OID, Int64GetDatum(static_cast<int64>(std::min<uint64_t>(v, INT64_MAX))), false};
}

// What a peer relayed to us is not sent back to it.
static void record_relayed(const RelayedRows& rows) {
    if (rows.empty()) return;
    AsMetadataOwner owner;
    const SPIPlanPtr put = prepare(
        "INSERT INTO lwwsync.relayed(node, lo, hi) VALUES ($1::uuid, $2, $3)"
        " ON CONFLICT (node, lo) DO UPDATE SET hi = greatest(lwwsync.relayed.hi, excluded.hi)",
        {TEXTOID, INT8OID, INT8OID});
    for (const auto& [peer, ranges] : relayed_by_peer(rows))
        for (const SeqRange& r : ranges) run(put, {uuid_text(peer), int8_arg(r.lo), int8_arg(r.hi)}, false);
}

// A parked row that lands counts for the peer it came from.
ApplyCounts PgEngine::retry_parked() {
    RelayedRows relayed;
    const ApplyCounts counts = retry_parked_rows(has_relayed_table() ? &relayed : nullptr);
    record_relayed(relayed);
    return counts;
}

SeqRanges PgEngine::relayed_from(const NodeId& peer, uint64_t after) {
    SeqRanges out;
    if (!has_relayed_table()) return out;
    AsMetadataOwner owner;
    // Not read-only: a read-only statement sees the snapshot the calling
    // query started with, not the ranges this sync recorded (its retry of
    // parked rows).
    const SpiResult res = run(
        prepare("SELECT lo, hi FROM lwwsync.relayed WHERE node = $1::uuid AND hi > $2 ORDER BY lo", {TEXTOID, INT8OID}),
        {uuid_text(peer), int8_arg(after)}, false);
    for (uint64_t r = 0; r < res.size(); ++r)
        out.push_back(SeqRange{static_cast<uint64_t>(res.integer(r, 0)), static_cast<uint64_t>(res.integer(r, 1))});
    return out;
}

void PgEngine::forget_relayed(const NodeId& peer, uint64_t upto) {
    if (!has_relayed_table()) return;
    AsMetadataOwner owner;
    run(prepare("DELETE FROM lwwsync.relayed WHERE node = $1::uuid AND hi <= $2", {TEXTOID, INT8OID}),
        {uuid_text(peer), int8_arg(upto)}, false);
}

ApplyCounts PgEngine::apply_from(const NodeId& peer, const ChangeSet& cs, Trust trust, uint64_t seen) {
    if (cs.origin != peer) throw Error("a change set from " + cs.origin.str() + " arrived as " + peer.str() + "'s");
    const Cursor next = cursor_of(peer).after_batch(cs);
    RelayedRows relayed;
    // A push this database serves may bring rows from below its purge
    // floor: adopted (common/apply.h, Receiver::adopt).
    ApplyCounts counts =
        apply_changeset(cs, trust, seen, has_relayed_table() ? &relayed : nullptr, trust == Trust::caller);
    record_relayed(relayed);  // no echo
    // Same transaction as the batch: the cursor commits with it.
    const Principal& p = who();
    AsMetadataOwner owner;
    run(prepare("INSERT INTO lwwsync.peers(node, role, subject, received, floor, synced_at)"
                " VALUES ($1::uuid, $2::name, $3, $4, $5, now())"
                // Never backwards: two exchanges of one caller at once each
                // computed their cursor from the same base; both are true, so
                // is their join.
                " ON CONFLICT (node, role, subject) DO UPDATE"
                " SET received = greatest(lwwsync.peers.received, excluded.received),"
                " floor = greatest(lwwsync.peers.floor, excluded.floor),"
                " synced_at = excluded.synced_at",
                {TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID}),
        {uuid_text(peer), text_param(p.role), text_param(p.subject),
         Param{INT8OID, Int64GetDatum(static_cast<int64>(next.received)), false},
         Param{INT8OID, Int64GetDatum(static_cast<int64>(next.floor)), false}},
        false);
    return counts;
}

namespace {

struct Connection {
    PGconn* conn = nullptr;
    PeerNotices notices;  // what the peer said outside results (receive_notice)
    ~Connection() {
        if (conn) PQfinish(conn);
    }
};

// libpq's notice receiver: keeps the line (libpq's default prints it on the
// server's stderr); route_notices reports it after the call, outside libpq.
void receive_notice(void* arg, const PGresult* r) {
    const char* severity = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (!severity) severity = PQresultErrorField(r, PG_DIAG_SEVERITY);
    const char* msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    static_cast<PeerNotices*>(arg)->add(severity, msg ? msg : PQresultErrorMessage(r));
}

// The peer's DEBUG lines at DEBUG1, its NOTICEs as NOTICEs, a WARNING or the
// FATAL it hung up with as a WARNING.
void route_notices(PeerNotices& notices) {
    for (const PeerNotice& n : notices.take()) {
        const int level = n.level == PeerNotice::Level::debug  ? DEBUG1
                          : n.level == PeerNotice::Level::info ? NOTICE
                                                               : WARNING;
        pg_call([&] { ereport(level, (errmsg("lww_sync: the peer said: %s", n.text.c_str()))); });
    }
}

struct Result {
    PGresult* res = nullptr;
    ~Result() {
        if (res) PQclear(res);
    }
};

// Waits for the socket without blocking cancellation: interrupts are checked
// between waits, never inside libpq.
void wait_readable(Connection& c) {
    PGconn* conn = c.conn;
    while (PQisBusy(conn)) {
        int rc = 0;
        pg_call([&] {
            rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_SOCKET_READABLE | WL_EXIT_ON_PM_DEATH, PQsocket(conn),
                                   -1L, PG_WAIT_EXTENSION);
            ResetLatch(MyLatch);
            CHECK_FOR_INTERRUPTS();
        });
        if ((rc & WL_SOCKET_READABLE) && !PQconsumeInput(conn))
            throw Error(std::string("peer connection failed: ") + PQerrorMessage(conn) + c.notices.said());
    }
}

std::string call_exchange(Connection& c, const std::string& request) {
    PGconn* conn = c.conn;
    const char* values[1] = {request.c_str()};
    if (!PQsendQueryParams(conn, "SELECT lww_exchange($1)", 1, nullptr, values, nullptr, nullptr, 0))
        throw Error(std::string("cannot send to peer: ") + PQerrorMessage(conn) + c.notices.said());
    std::string out;
    std::string error, sqlstate;
    for (;;) {
        wait_readable(c);
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
            const char* state = PQresultErrorField(r.res, PG_DIAG_SQLSTATE);
            sqlstate = state ? state : "";
        }
    }
    if (!error.empty()) {
        // A deadlock or serialization failure rolled the peer's exchange back: resend it.
        if (sqlstate == "40P01" || sqlstate == "40001") throw TransientError("peer refused the exchange: " + error);
        // A hot standby: the same push goes to its primary.
        if (sqlstate == "25006") throw ReadOnlyError("the peer is read-only: " + error);
        throw Error("peer refused the exchange: " + error + c.notices.said());
    }
    return out;
}

}  // namespace

namespace {

void interruptible_sleep(long ms);

void notice(const std::string& line) {
    pg_call([&] { ereport(NOTICE, (errmsg("lww_sync: %s", line.c_str()))); });
}

std::string sync_libpq(const std::string& url, const SyncOptions& opt, const Progress& progress) {
    Connection c;
    c.conn = PQconnectStart(url.c_str());
    if (!c.conn) throw Error("out of memory connecting to peer");
    PQsetNoticeReceiver(c.conn, receive_notice, &c.notices);  // before the peer's first message
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
        throw Error("cannot connect to peer: " + msg + c.notices.said());
    }
    if (PQsetnonblocking(c.conn, 0) != 0) throw Error("cannot configure the peer connection");
    PgEngine local;
    auto exchange = [&](const std::string& req) {
        std::string out;
        try {
            out = call_exchange(c, req);
        } catch (...) {
            route_notices(c.notices);
            throw;
        }
        route_notices(c.notices);
        return out;
    };
    Transport send = with_retries(exchange, opt.retries, interruptible_sleep, notice);
    return run_sync(local, send, opt.limits, progress).json();
}

// Progress of a running lww_sync: a NOTICE every 10th round trip (or second), and the
// backend's pg_stat_activity.query (read by lww_sync_status()) after every
// round trip.
class ProgressReport {
public:
    explicit ProgressReport(const std::string& url) : url_(redact_url(url)) {}
    ~ProgressReport() {
        // Back to the statement's own text.
        if (reported_) pgstat_report_activity(STATE_RUNNING, debug_query_string);
    }
    void operator()(const SyncStats& s) {
        rapidjson::StringBuffer buf;
        rapidjson::Writer<rapidjson::StringBuffer> w(buf);
        w.StartObject();
        w.Key("url");
        w.String(url_.data(), static_cast<rapidjson::SizeType>(url_.size()));
        w.Key("stats");
        const std::string stats = s.json();
        w.RawValue(stats.data(), stats.size(), rapidjson::kObjectType);
        w.EndObject();
        const std::string text = std::string("lww_sync progress: ") + buf.GetString();
        pg_call([&] { pgstat_report_activity(STATE_RUNNING, text.c_str()); });
        reported_ = true;
        const auto now = std::chrono::steady_clock::now();
        // Every 10th round trip, or when a second passed without one.
        if (s.done || s.batches == 0 || (s.batches % 10 != 0 && now - last_notice_ < std::chrono::seconds(1))) return;
        last_notice_ = now;
        char line[320];
        int n = snprintf(line, sizeof line, "lww_sync: %zu batches, %zu rows pushed, %zu rows pulled, %.1f s",
                         s.batches, s.pushed, s.pulled, s.ms / 1000.0);
        if ((s.to_pull || s.to_push) && n > 0 && static_cast<size_t>(n) < sizeof line)
            snprintf(line + n, sizeof line - static_cast<size_t>(n), "; about %llu rows left to pull, %llu to push",
                     static_cast<unsigned long long>(s.to_pull), static_cast<unsigned long long>(s.to_push));
        pg_call([&] { ereport(NOTICE, (errmsg("%s", line))); });
    }

private:
    std::string url_;
    bool reported_ = false;
    std::chrono::steady_clock::time_point last_notice_ = std::chrono::steady_clock::now();
};

// Between retries: a latch wait that a cancel or shutdown interrupts.
void interruptible_sleep(long ms) {
    pg_call([&] {
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms, PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
        CHECK_FOR_INTERRUPTS();
    });
}

std::string sync_http(const std::string& url, const SyncOptions& opt, ProgressReport& report) {
    HttpHooks hooks;
    // Polled inside libcurl's progress callback: read the flags, nothing else.
    hooks.cancelled = [] { return QueryCancelPending || ProcDiePending; };
    hooks.sleep = interruptible_sleep;
    hooks.note = notice;
    PgEngine local;
    return sync_over_http(local, url, opt, hooks, [&](const SyncStats& s) { report(s); }).json();
}

}  // namespace

std::string sync_with(const std::string& url, const SyncOptions& opt) {
    if (!is_http_url(url) && !is_postgres_url(url))
        throw Error("unsupported URL \"" + redact_url(url) +
                    "\": use http(s)://host/rpc/lww_exchange (an lwwsync server or PostgREST) or postgresql://…");
    ProgressReport report(url);
    report(SyncStats{});  // visible in lww_sync_status() before the first round trip ends
    std::string stats =
        is_http_url(url) ? sync_http(url, opt, report) : sync_libpq(url, opt, [&](const SyncStats& s) { report(s); });
    // The server's clock, observed in memory during the sync, is persisted
    // now that no feed read follows: other backends' writes stamp after it too.
    State::get().persist_clock();
    return stats;
}

}  // namespace lww::pg
