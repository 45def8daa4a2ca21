#include "sync.h"
SQLITE_EXTENSION_INIT3

#include <rapidjson/document.h>

#include "apply.h"
#include "changes.h"
#include "status.h"
#include "../common/failpoint.h"
#include "../common/http_client.h"

#include <algorithm>
#include <chrono>
#include <thread>

namespace lww::sq {

NodeId SqliteEngine::self() {
    c_.ensure_ready();
    return c_.self();
}

Cursor SqliteEngine::cursor_of(const NodeId& peer) {
    c_.ensure_ready();
    Stmt st(c_.db, "SELECT received, floor FROM lww_peers WHERE node = ?1");
    st.bind_text(1, peer.str());
    if (!st.step()) return Cursor{};
    return Cursor{static_cast<uint64_t>(st.int64(0)), static_cast<uint64_t>(st.int64(1))};
}

Batch SqliteEngine::changes(const ChangesRequest& req) { return collect_changes(c_, req); }

uint64_t SqliteEngine::clock_now() {
    c_.ensure_ready();
    c_.refresh();
    return std::max(c_.clock.last(), wall_clock_ms() << 16);
}

void SqliteEngine::observe_clock(uint64_t hlc) {
    c_.ensure_ready();
    if (hlc <= c_.clock.last()) return;
    exec(c_.db, "SAVEPOINT lww_clock");
    try {
        c_.refresh();
        c_.clock.observe(hlc);
        c_.persist_clock();
        exec(c_.db, "RELEASE lww_clock");
    } catch (...) {
        sqlite3_exec(c_.db, "ROLLBACK TO lww_clock; RELEASE lww_clock", nullptr, nullptr, nullptr);
        throw;
    }
}

std::string SqliteEngine::node_key() {
    c_.ensure_ready();
    Stmt st(c_.db, "SELECT value FROM lww_state WHERE key = 'node_key'");
    return st.step() && !st.is_null(0) ? st.blob(0) : std::string();
}

uint64_t SqliteEngine::max_drift_ms() {
    c_.ensure_ready();
    return c_.setting("max_drift_ms", kDefaultMaxDriftMs);
}

ApplyCounts SqliteEngine::apply_from(const NodeId& peer, const ChangeSet& cs, Trust trust) {
    if (cs.origin != peer) throw Error("a change set from " + cs.origin.str() + " arrived as " + peer.str() + "'s");
    exec(c_.db, "SAVEPOINT lww_batch");
    try {
        const Cursor next = cursor_of(peer).after_batch(cs);
        ApplyCounts s = apply_changeset(c_, cs, trust);
        // The cursor commits with its batch.
        Stmt cur(c_.db,
                 "INSERT INTO lww_peers(node, received, floor, synced_at)"
                 " VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ'))"
                 // Never backwards (two syncs at once from two processes).
                 " ON CONFLICT(node) DO UPDATE SET received = max(received, excluded.received),"
                 " floor = max(floor, excluded.floor),"
                 " synced_at = excluded.synced_at");
        cur.bind_text(1, peer.str());
        cur.bind_int(2, static_cast<int64_t>(next.received));
        cur.bind_int(3, static_cast<int64_t>(next.floor));
        cur.step();
        failpoint("apply_before_commit");  // tests: the batch is written, not committed
        exec(c_.db, "RELEASE lww_batch");
        return s;
    } catch (...) {
        sqlite3_exec(c_.db, "ROLLBACK TO lww_batch; RELEASE lww_batch", nullptr, nullptr, nullptr);
        throw;
    }
}

std::string exchange_request(Conn& c, const std::string& request) {
    SqliteEngine engine(c);
    exec(c.db, "SAVEPOINT lww_exchange");
    try {
        std::string out = serve_exchange(engine, request);
        exec(c.db, "RELEASE lww_exchange");
        return out;
    } catch (...) {
        sqlite3_exec(c.db, "ROLLBACK TO lww_exchange; RELEASE lww_exchange", nullptr, nullptr, nullptr);
        throw;
    }
}

std::string status_key(Conn& c) {
    const char* file = sqlite3_db_filename(c.db, "main");
    // A temporary or in-memory database is private to its connection.
    if (!file || !*file) return "conn:" + std::to_string(reinterpret_cast<uintptr_t>(c.db));
    return file;
}

namespace {

struct PeerDb {
    sqlite3* db = nullptr;
    ~PeerDb() {
        if (db) sqlite3_close_v2(db);
    }
};

std::string sync_file(Conn& c, const std::string& url, const SyncOptions& opt, const Progress& progress) {
    PeerDb peer;
    // The URL is a SQLite URI itself (file:path?mode=rw...); never create a missing peer.
    int rc = sqlite3_open_v2(url.c_str(), &peer.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, nullptr);
    if (rc != SQLITE_OK)
        throw Error("cannot open peer " + url + ": " + (peer.db ? sqlite3_errmsg(peer.db) : "out of memory"));
    sqlite3_busy_timeout(peer.db, 10000);
    // The peer enforces foreign keys as this connection does (a per-connection
    // setting): what it cannot apply is parked there, as it would be here.
    {
        Stmt fk(c.db, "PRAGMA foreign_keys");
        if (fk.step() && fk.int64(0)) exec(peer.db, "PRAGMA foreign_keys = ON");
    }
    Conn* pc = register_functions(peer.db);
    if (!pc->has_state()) throw Error("peer " + url + " has no lwwsync metadata (run lww_track there first)");

    SqliteEngine local(c);
    Transport in_process = [&](const std::string& request) { return exchange_request(*pc, request); };
    return run_sync(local, in_process, opt.limits, progress).json();
}

std::string sync_http(Conn& c, const std::string& url, const SyncOptions& opt, SyncStatusScope& status) {
    HttpHooks hooks;
    hooks.cancelled = [&] { return status.cancel_requested(); };
    hooks.note = [&](const std::string& why) { status.retrying(why); };
    hooks.sleep = [&](long ms) {  // backoff that a cancel cuts short
        for (long slept = 0; slept < ms; slept += 20) {
            status.check_cancel();
            std::this_thread::sleep_for(std::chrono::milliseconds(std::min<long>(20, ms - slept)));
        }
    };
    SqliteEngine local(c);
    return sync_over_http(local, url, opt, hooks, [&](const SyncStats& s) { status.progress(s); }).json();
}

}  // namespace

std::string sync_with(Conn& c, const std::string& url, const SyncOptions& opt) {
    c.ensure_ready();
    if (!is_http_url(url) && !is_postgres_url(url) && url.rfind("file:", 0) != 0)
        throw Error("unsupported URL \"" + url +
                    "\": use http(s)://host/rpc/lww_exchange, postgresql://…, or file:PATH (another SQLite database)");
    SyncStatusScope status(status_key(c), url);
    try {
        if (is_http_url(url)) return sync_http(c, url, opt, status);
        Progress progress = [&](const SyncStats& s) { status.progress(s); };
        if (is_postgres_url(url)) return sync_with_postgres(c, url, opt, progress);
        return sync_file(c, url, opt, progress);
    } catch (const Cancelled&) {
        status.failed("cancelled");
        throw;
    } catch (const std::exception& e) {
        status.failed(e.what());
        throw;
    }
}

}  // namespace lww::sq
