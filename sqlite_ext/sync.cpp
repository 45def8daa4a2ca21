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
        if (k == "batch_rows" && m.value.IsInt64() && m.value.GetInt64() > 0) o.batch_rows = m.value.GetInt64();
        else throw Error("unknown or invalid option \"" + k + "\" (known: batch_rows > 0)");
    }
    return o;
}

namespace {

struct Direction {
    size_t batches = 0, rows = 0, applied = 0, ignored = 0;
    std::string json() const {
        return "{\"batches\":" + std::to_string(batches) + ",\"rows\":" + std::to_string(rows) +
               ",\"applied\":" + std::to_string(applied) + ",\"ignored\":" + std::to_string(ignored) + "}";
    }
};

uint64_t received_cursor(Conn& receiver, const NodeId& sender) {
    receiver.ensure_ready();
    Stmt st(receiver.db, "SELECT received FROM lww_peers WHERE node = ?1");
    st.bind_text(1, sender.str());
    return st.step() ? static_cast<uint64_t>(st.int64(0)) : 0;
}

// Moves everything `from` has and `to` lacks, one atomic batch at a time;
// the receiver's cursor advances in the same transaction as its batch.
Direction transfer(Conn& from, Conn& to, int64_t batch_rows) {
    Direction d;
    for (;;) {
        const uint64_t since = received_cursor(to, from.self());
        ChangesRequest req;
        req.since = since;
        req.limit = batch_rows;
        req.skip_node = &to.self();
        ChangesResult res = collect_changes(from, req);
        if (res.upto <= since) break;
        ChangeSet cs = decode_changeset(res.json);

        exec(to.db, "SAVEPOINT lww_sync_batch");
        try {
            ApplyStats s = apply_changeset(to, cs);
            Stmt cur(to.db,
                     "INSERT INTO lww_peers(node, received, synced_at) VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ'))"
                     " ON CONFLICT(node) DO UPDATE SET received = excluded.received, synced_at = excluded.synced_at");
            cur.bind_text(1, from.self().str());
            cur.bind_int(2, static_cast<int64_t>(res.upto));
            cur.step();
            exec(to.db, "RELEASE lww_sync_batch");
            ++d.batches;
            d.rows += s.rows;
            d.applied += s.applied;
            d.ignored += s.ignored;
        } catch (...) {
            sqlite3_exec(to.db, "ROLLBACK TO lww_sync_batch; RELEASE lww_sync_batch", nullptr, nullptr, nullptr);
            throw;
        }
    }
    return d;
}

struct PeerDb {
    sqlite3* db = nullptr;
    ~PeerDb() {
        if (db) sqlite3_close_v2(db);
    }
};

}  // namespace

std::string sync_with(Conn& c, const std::string& url, const SyncOptions& opt) {
    if (url.rfind("file:", 0) != 0)
        throw Error("unsupported URL \"" + url + "\": the SQLite extension syncs with file:PATH (another SQLite database)");
    c.ensure_ready();
    PeerDb peer;
    // The URL is a SQLite URI itself (file:path?mode=rw...); never create a missing peer.
    int rc = sqlite3_open_v2(url.c_str(), &peer.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, nullptr);
    if (rc != SQLITE_OK)
        throw Error("cannot open peer " + url + ": " + (peer.db ? sqlite3_errmsg(peer.db) : "out of memory"));
    sqlite3_busy_timeout(peer.db, 10000);
    Conn* pc = register_functions(peer.db);
    if (!pc->has_state()) throw Error("peer " + url + " has no lwwsync metadata (run lww_track there first)");
    pc->ensure_ready();
    if (pc->self() == c.self()) throw Error("peer " + url + " is this database itself (same node id)");

    Direction sent = transfer(c, *pc, opt.batch_rows);
    Direction received = transfer(*pc, c, opt.batch_rows);
    return "{\"peer\":\"" + pc->self().str() + "\",\"sent\":" + sent.json() + ",\"received\":" + received.json() + "}";
}

}  // namespace lww::sq
