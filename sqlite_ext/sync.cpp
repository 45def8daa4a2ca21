#include "sync.h"
SQLITE_EXTENSION_INIT3

#include <rapidjson/document.h>

#include "apply.h"
#include "changes.h"
#include "status.h"
#include "../common/failpoint.h"
#include "../common/http_client.h"

#include <sys/stat.h>

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

// No echo (docs/PROTOCOL.md): per peer, the sequences of rows merged from
// it that brought a third node's registers; dropped once the peer's cursor
// on us is past them.
static void ensure_relayed_table(Conn& c) {
    exec(c.db,
         "CREATE TABLE IF NOT EXISTS lww_relayed(peer TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL,"
         " PRIMARY KEY (peer, lo)) WITHOUT ROWID");
}

static bool has_table(Conn& c, const char* name);

// What a peer relayed to us is not sent back to it (no echo).
static void record_relayed(Conn& c, const RelayedRows& rows) {
    if (rows.empty()) return;
    ensure_relayed_table(c);
    Stmt put(c.db, "INSERT OR REPLACE INTO lww_relayed(peer, lo, hi) VALUES (?1, ?2, ?3)");
    for (const auto& [peer, ranges] : relayed_by_peer(rows))
        for (const SeqRange& r : ranges) {
            put.reset();
            put.bind_text(1, peer.str());
            put.bind_int(2, static_cast<int64_t>(r.lo));
            put.bind_int(3, static_cast<int64_t>(r.hi));
            put.step();
        }
}

SeqRanges SqliteEngine::relayed_from(const NodeId& peer, uint64_t after) {
    c_.ensure_ready();
    SeqRanges out;
    if (!has_table(c_, "lww_relayed")) return out;
    Stmt st(c_.db, "SELECT lo, hi FROM lww_relayed WHERE peer = ?1 AND hi > ?2 ORDER BY lo");
    st.bind_text(1, peer.str());
    st.bind_int(2, static_cast<int64_t>(std::min<uint64_t>(after, INT64_MAX)));
    while (st.step()) out.push_back(SeqRange{static_cast<uint64_t>(st.int64(0)), static_cast<uint64_t>(st.int64(1))});
    return out;
}

void SqliteEngine::forget_relayed(const NodeId& peer, uint64_t upto) {
    c_.ensure_ready();
    if (!has_table(c_, "lww_relayed")) return;
    Stmt st(c_.db, "DELETE FROM lww_relayed WHERE peer = ?1 AND hi <= ?2");
    st.bind_text(1, peer.str());
    st.bind_int(2, static_cast<int64_t>(std::min<uint64_t>(upto, INT64_MAX)));
    st.step();
}

ApplyCounts SqliteEngine::apply_from(const NodeId& peer, const ChangeSet& cs, Trust trust, uint64_t seen) {
    if (cs.origin != peer) throw Error("a change set from " + cs.origin.str() + " arrived as " + peer.str() + "'s");
    exec(c_.db, "SAVEPOINT lww_batch");
    try {
        const Cursor next = cursor_of(peer).after_batch(cs);
        RelayedRows relayed;
        // A push this database serves (Trust::caller) may bring rows from
        // below its purge floor: adopted (common/apply.h, Receiver::adopt).
        ApplyCounts s = apply_changeset(c_, cs, trust, seen, &relayed, restamp_lower_, trust == Trust::caller);
        record_relayed(c_, relayed);
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

// Copies and restores (docs/PROTOCOL.md). Two small tables, made on first
// use: the ids of this database's recent pushes per server, and per caller
// the id of its push that last moved our cursor on it.
static void ensure_push_tables(Conn& c) {
    exec(c.db,
         "CREATE TABLE IF NOT EXISTS lww_pushes(peer TEXT NOT NULL, id TEXT NOT NULL);"
         "CREATE INDEX IF NOT EXISTS lww_pushes_peer ON lww_pushes(peer, id);"
         "CREATE TABLE IF NOT EXISTS lww_push_marks(node TEXT PRIMARY KEY, id TEXT NOT NULL) WITHOUT ROWID;");
}

static bool has_table(Conn& c, const char* name) {
    Stmt st(c.db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1");
    st.bind_text(1, name);
    return st.step();
}

// Recent pushes kept per server: enough for every push that may be in
// flight (an interrupted one, a few concurrent syncs of this file).
constexpr int64_t kKeptPushes = 256;

uint64_t SqliteEngine::last_seq() {
    c_.ensure_ready();
    c_.refresh();
    return c_.last_seq();
}

void SqliteEngine::note_push(const NodeId& server, const std::string& id) {
    c_.ensure_ready();
    exec(c_.db, "SAVEPOINT lww_push");
    try {
        ensure_push_tables(c_);
        Stmt ins(c_.db, "INSERT INTO lww_pushes(peer, id) VALUES (?1, ?2)");
        ins.bind_text(1, server.str());
        ins.bind_text(2, id);
        ins.step();
        Stmt prune(c_.db,
                   "DELETE FROM lww_pushes WHERE peer = ?1 AND rowid <= "
                   "(SELECT max(rowid) FROM lww_pushes WHERE peer = ?1) - ?2");
        prune.bind_text(1, server.str());
        prune.bind_int(2, kKeptPushes);
        prune.step();
        // Committed before the push is sent (unless the caller's own transaction is open).
        exec(c_.db, "RELEASE lww_push");
    } catch (...) {
        sqlite3_exec(c_.db, "ROLLBACK TO lww_push; RELEASE lww_push", nullptr, nullptr, nullptr);
        throw;
    }
}

bool SqliteEngine::sent_push(const NodeId& server, const std::string& id) {
    c_.ensure_ready();
    if (!has_table(c_, "lww_pushes")) return false;
    Stmt st(c_.db, "SELECT 1 FROM lww_pushes WHERE peer = ?1 AND id = ?2");
    st.bind_text(1, server.str());
    st.bind_text(2, id);
    return st.step();
}

std::string SqliteEngine::push_mark(const NodeId& caller) {
    c_.ensure_ready();
    if (!has_table(c_, "lww_push_marks")) return {};
    Stmt st(c_.db, "SELECT id FROM lww_push_marks WHERE node = ?1");
    st.bind_text(1, caller.str());
    return st.step() ? st.text(0) : std::string();
}

void SqliteEngine::set_push_mark(const NodeId& caller, const std::string& id) {
    ensure_push_tables(c_);
    Stmt st(c_.db,
            "INSERT INTO lww_push_marks(node, id) VALUES (?1, ?2) ON CONFLICT(node) DO UPDATE SET id = excluded.id");
    st.bind_text(1, caller.str());
    st.bind_text(2, id);
    st.step();
}

NodeId SqliteEngine::reset_node() { return reset_node_id(c_); }

ApplyCounts SqliteEngine::retry_parked() {
    // A parked row that lands counts for the peer it came from (no echo,
    // and the re-snapshot asks that peer about it).
    return in_savepoint(c_.db, "lww_retry", [&] {
        RelayedRows relayed;
        ApplyCounts s = retry_rejected(c_, &relayed);
        record_relayed(c_, relayed);
        return s;
    });
}

NodeId reset_node_id(Conn& c) {
    c.ensure_ready();
    exec(c.db, "SAVEPOINT lww_reset_node");
    try {
        c.lock_for_write();
        const NodeId old = c.self();
        const std::string key = NodeId::random_key();
        const NodeId id = NodeId::from_key(key);
        // Index 0 is this node: every register this database stamped now
        // carries the new id, and goes to every peer (their cursors on the
        // new id start at 0). The old id stays as another node.
        Stmt st(c.db, "UPDATE lww_state SET value = ?2 WHERE key = ?1");
        st.bind_text(1, "node_id");
        st.bind_text(2, id.str());
        st.step();
        Stmt k(c.db,
               "INSERT INTO lww_state(key, value) VALUES ('node_key', ?1)"
               " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
        k.bind_blob(1, key);
        k.step();
        Stmt self(c.db, "UPDATE lww_nodes SET id = ?1 WHERE idx = 0");
        self.bind_text(1, id.str());
        self.step();
        Stmt keep(c.db, "INSERT INTO lww_nodes(idx, id) SELECT coalesce(max(idx), 0) + 1, ?1 FROM lww_nodes");
        keep.bind_text(1, old.str());
        keep.step();
        // Peers held back registers stamped by the old id (a receiver never
        // gets its own) and skipped what they hold past their cursors on it:
        // every cursor restarts, both ways.
        exec(c.db, "DELETE FROM lww_peers");
        // Servers hold nothing of the new id yet: no tombstone is purged
        // before they received it again; what they held under the old id
        // still tells a re-snapshot which rows they had (purge.cpp).
        exec(c.db,
             "INSERT INTO lww_state(key, value) SELECT 'held:' || substr(key, 10), value FROM lww_state"
             " WHERE key GLOB 'upstream:*' AND true"
             " ON CONFLICT(key) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))");
        exec(c.db, "UPDATE lww_state SET value = 0 WHERE key GLOB 'upstream:*'");
        if (has_table(c, "lww_pushes")) exec(c.db, "DELETE FROM lww_pushes");
        exec(c.db, "RELEASE lww_reset_node");
        c.reload();
        return id;
    } catch (...) {
        sqlite3_exec(c.db, "ROLLBACK TO lww_reset_node; RELEASE lww_reset_node", nullptr, nullptr, nullptr);
        c.reload();
        throw;
    }
}

void check_copied_file(Conn& c) {
    if (c.file_checked || sqlite3_db_readonly(c.db, "main") == 1) return;
    c.ensure_ready();
    const std::string here = c.file_identity();
    if (here.empty() || c.setting("detect_copies", 1) == 0) {
        c.file_checked = true;
        return;
    }
    Stmt st(c.db, "SELECT value FROM lww_state WHERE key = 'file'");
    const std::string stored = st.step() && !st.is_null(0) ? st.text(0) : std::string();
    st = Stmt();
    if (stored != here) {
        exec(c.db, "SAVEPOINT lww_file");
        try {
            // No record yet (made before lwwsync 0.5): this is where the id lives.
            if (!stored.empty()) reset_node_id(c);
            Stmt put(c.db,
                     "INSERT INTO lww_state(key, value) VALUES ('file', ?1)"
                     " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
            put.bind_text(1, here);
            put.step();
            exec(c.db, "RELEASE lww_file");
        } catch (...) {
            sqlite3_exec(c.db, "ROLLBACK TO lww_file; RELEASE lww_file", nullptr, nullptr, nullptr);
            throw;
        }
    }
    c.file_checked = true;
}

std::string exchange_request(Conn& c, const std::string& request) {
    c.ensure_ready();
    check_copied_file(c);
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
    StmtScope peer_stmts(*pc);
    if (!pc->has_state()) throw Error("peer " + url + " has no lwwsync metadata (run lww_track there first)");

    SqliteEngine local(c);
    // Two files with one node id: one is a copy of the other (the same file
    // twice is refused by run_sync).
    pc->ensure_ready();
    check_copied_file(*pc);
    if (pc->self() == local.self()) {
        struct stat mine {
        }, theirs{};
        const char* here = sqlite3_db_filename(c.db, "main");
        const char* there = sqlite3_db_filename(peer.db, "main");
        const bool same = here && there && stat(here, &mine) == 0 && stat(there, &theirs) == 0 &&
                          mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino;
        // Both take new ids: a third file may hold a cursor on this id
        // made from either one's changes.
        if (!same) {
            local.reset_node();
            reset_node_id(*pc);
        }
    }
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
    hooks.thread_safe = true;  // the status is locked; nothing else is touched
    SqliteEngine local(c);
    return sync_over_http(local, url, opt, hooks, [&](const SyncStats& s) { status.progress(s); }).json();
}

}  // namespace

std::string sync_with(Conn& c, const std::string& url, const SyncOptions& opt) {
    c.ensure_ready();
    check_copied_file(c);
    if (!is_http_url(url) && !is_postgres_url(url) && url.rfind("file:", 0) != 0)
        throw Error("unsupported URL \"" + url +
                    "\": use http(s)://host/rpc/lww_exchange, postgresql://…, or file:PATH (another SQLite database)");
    SyncStatusScope status(status_key(c), url);
    StmtScope stmts(c);  // the batches reuse their statements
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
