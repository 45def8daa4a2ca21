#include "sync.h"
SQLITE_EXTENSION_INIT3

#include <rapidjson/document.h>

#include "apply.h"
#include "changes.h"

namespace lww::sq {

SyncOptions parse_sync_options(const std::string& json) {
    SyncOptions o;
    if (json.empty()) return o;
    rapidjson::Document d;
    d.Parse(json.c_str(), json.size());
    if (d.HasParseError() || !d.IsObject()) throw Error("options must be a JSON object");
    for (const auto& m : d.GetObject()) {
        std::string k(m.name.GetString(), m.name.GetStringLength());
        if (k == "batch_rows" && m.value.IsInt64() && m.value.GetInt64() > 0 && m.value.GetInt64() <= 1000000)
            o.batch_rows = m.value.GetInt64();
        else
            throw Error("unknown or invalid option \"" + k + "\" (known: batch_rows, 1..1000000)");
    }
    return o;
}

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

Batch SqliteEngine::changes_for(const NodeId& peer, const Cursor& from, int64_t limit) {
    return collect_changes(c_, ChangesRequest::for_peer(peer, from, limit));
}

ApplyCounts SqliteEngine::apply_from(const NodeId& peer, const ChangeSet& cs) {
    if (cs.origin != peer) throw Error("a change set from " + cs.origin.str() + " arrived as " + peer.str() + "'s");
    exec(c_.db, "SAVEPOINT lww_batch");
    try {
        const Cursor next = cursor_of(peer).after_batch(cs);
        ApplyCounts s = apply_changeset(c_, cs);
        // The cursor commits with its batch.
        Stmt cur(c_.db,
                 "INSERT INTO lww_peers(node, received, floor, synced_at)"
                 " VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ'))"
                 " ON CONFLICT(node) DO UPDATE SET received = excluded.received, floor = excluded.floor,"
                 " synced_at = excluded.synced_at");
        cur.bind_text(1, peer.str());
        cur.bind_int(2, static_cast<int64_t>(next.received));
        cur.bind_int(3, static_cast<int64_t>(next.floor));
        cur.step();
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

namespace {

struct PeerDb {
    sqlite3* db = nullptr;
    ~PeerDb() {
        if (db) sqlite3_close_v2(db);
    }
};

}  // namespace

std::string sync_with(Conn& c, const std::string& url, const SyncOptions& opt) {
    c.ensure_ready();
    if (is_postgres_url(url)) return sync_with_postgres(c, url, opt.batch_rows);
    if (url.rfind("file:", 0) != 0)
        throw Error("unsupported URL \"" + url + "\": use file:PATH (another SQLite database) or postgresql://…");
    PeerDb peer;
    // The URL is a SQLite URI itself (file:path?mode=rw...); never create a missing peer.
    int rc = sqlite3_open_v2(url.c_str(), &peer.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, nullptr);
    if (rc != SQLITE_OK)
        throw Error("cannot open peer " + url + ": " + (peer.db ? sqlite3_errmsg(peer.db) : "out of memory"));
    sqlite3_busy_timeout(peer.db, 10000);
    Conn* pc = register_functions(peer.db);
    if (!pc->has_state()) throw Error("peer " + url + " has no lwwsync metadata (run lww_track there first)");

    SqliteEngine local(c);
    Transport in_process = [&](const std::string& request) { return exchange_request(*pc, request); };
    return run_sync(local, in_process, opt.batch_rows).json();
}

}  // namespace lww::sq
