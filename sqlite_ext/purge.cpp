// SQLite adapter: tombstone purge and re-snapshot (docs/PROTOCOL.md, "Purge
// and re-snapshot"). The rules are the core's (common/purge.h, the client
// loop in common/exchange.cpp); this file reads and deletes metadata.
#include "purge.h"
SQLITE_EXTENSION_INIT3

#include <algorithm>
#include <climits>

#include "../common/batch.h"
#include "../common/purge.h"
#include "sync.h"

namespace lww::sq {

namespace {

// Runs `body` in a savepoint of its own, rolled back when it throws.
template <class Body>
auto in_savepoint(Conn& c, const char* name, Body&& body) {
    exec(c.db, std::string("SAVEPOINT ") + name);
    try {
        auto out = body();
        exec(c.db, std::string("RELEASE ") + name);
        return out;
    } catch (...) {
        sqlite3_exec(c.db, (std::string("ROLLBACK TO ") + name + "; RELEASE " + name).c_str(), nullptr, nullptr,
                     nullptr);
        throw;
    }
}

// Sequences of purged rows are never handed out again: recovery after a
// reopen reads the highest sequence left in the metadata.
void keep_sequences(Conn& c) {
    if (c.last_seq() > c.setting("seq_floor", 0)) c.set_setting("seq_floor", static_cast<int64_t>(c.last_seq()));
}

void raise_horizon(Conn& c, uint64_t seq) {
    if (seq > c.setting("purged_upto", 0)) c.set_setting("purged_upto", static_cast<int64_t>(seq));
}

std::string key_where(size_t n) {
    std::string where;
    for (size_t i = 0; i < n; ++i) where += (i ? " AND k" : "k") + std::to_string(i) + " = ?" + std::to_string(i + 1);
    return where;
}

// Children before parents: a parent dropped first would meet its children.
std::vector<TablePtr> children_first(Conn& c) {
    std::vector<TablePtr> left = c.tables(), out;
    const std::vector<ForeignKey>& fks = c.foreign_keys();
    while (!left.empty()) {
        auto child_left = [&](const TablePtr& t) {
            for (const ForeignKey& fk : fks)
                if (fk.parent == t->name && fk.child != t->name)
                    for (const TablePtr& o : left)
                        if (o->name == fk.child) return true;
            return false;
        };
        auto it = std::find_if(left.begin(), left.end(), [&](const TablePtr& t) { return !child_left(t); });
        if (it == left.end()) it = left.begin();  // a cycle: any order
        out.push_back(*it);
        left.erase(it);
    }
    return out;
}

}  // namespace

size_t purge_tombstones(Conn& c, uint64_t older_than_ms) {
    c.ensure_ready();
    return in_savepoint(c, "lww_purge", [&] {
        c.lock_for_write();
        const uint64_t before = purge_before_hlc(wall_clock_ms(), older_than_ms);
        // A tombstone a server we push to has not received yet stays.
        int64_t held_upstream = INT64_MAX;
        {
            Stmt up(c.db, "SELECT min(CAST(value AS INTEGER)) FROM lww_state WHERE key GLOB 'upstream:*'");
            if (up.step() && !up.is_null(0)) held_upstream = up.int64(0);
        }
        keep_sequences(c);
        size_t removed = 0;
        uint64_t top = 0;
        for (const TablePtr& t : c.tables()) {
            const std::string where = " FROM " + t->meta + " WHERE (gen & 1) = 0 AND hlc < ?1 AND seq <= ?2";
            Stmt q(c.db, "SELECT count(*), max(seq)" + where);
            q.bind_int(1, static_cast<int64_t>(before));
            q.bind_int(2, held_upstream);
            if (!q.step() || q.int64(0) == 0) continue;
            removed += static_cast<size_t>(q.int64(0));
            top = std::max(top, static_cast<uint64_t>(q.int64(1)));
            Stmt del(c.db, "DELETE" + where);
            del.bind_int(1, static_cast<int64_t>(before));
            del.bind_int(2, held_upstream);
            del.step();
        }
        raise_horizon(c, top);
        return removed;
    });
}

size_t auto_purge(Conn& c) {
    c.ensure_ready();
    if (sqlite3_db_readonly(c.db, "main") == 1) return 0;
    const uint64_t now = wall_clock_ms();
    const uint64_t ttl = c.setting("tombstone_ttl_ms", static_cast<uint64_t>(kDefaultTombstoneTtlMs));
    if (!auto_purge_due(now, c.setting("purged_at", 0), ttl)) return 0;
    return in_savepoint(c, "lww_auto_purge", [&] {
        c.set_setting("purged_at", static_cast<int64_t>(now));
        return purge_tombstones(c, ttl);
    });
}

uint64_t SqliteEngine::purge_horizon() {
    c_.ensure_ready();
    return c_.setting("purged_upto", 0);
}

size_t SqliteEngine::auto_purge() { return sq::auto_purge(c_); }

void SqliteEngine::note_upstream(const NodeId& peer, uint64_t floor) {
    c_.ensure_ready();
    if (sqlite3_db_readonly(c_.db, "main") == 1) return;
    c_.set_setting("upstream:" + peer.str(), static_cast<int64_t>(std::min<uint64_t>(floor, INT64_MAX)));
}

std::optional<std::vector<bool>> SqliteEngine::holds_keys(const NodeId&, const std::string& table,
                                                          const std::vector<std::vector<Value>>& keys) {
    c_.ensure_ready();
    c_.refresh();
    const TablePtr t = c_.find_table(table);
    if (!t) return std::nullopt;
    Stmt meta(c_.db, "SELECT 1 FROM " + t->meta + " WHERE " + key_where(t->key.size()));
    Stmt parked(c_.db, "SELECT 1 FROM lww_rejected WHERE tbl = ?1 AND key = ?2");
    std::vector<bool> held;
    held.reserve(keys.size());
    for (const auto& key : keys) {
        if (key.size() != t->key.size())
            throw Error("probe of table \"" + table + "\": a key of " + std::to_string(key.size()) +
                        " values, the table's has " + std::to_string(t->key.size()));
        meta.reset();
        for (size_t i = 0; i < key.size(); ++i) meta.bind(static_cast<int>(i + 1), key[i]);
        bool here = meta.step();
        if (!here) {
            // A row parked here (lww_rejected) is held too: it lands later.
            parked.reset();
            parked.bind_text(1, table);
            parked.bind_text(2, key_json(key));
            here = parked.step();
        }
        held.push_back(here);
    }
    return held;
}

std::vector<std::string> SqliteEngine::probe_tables() {
    c_.ensure_ready();
    c_.refresh();
    std::vector<std::string> names;
    for (const TablePtr& t : children_first(c_)) names.push_back(t->name);
    return names;
}

ProbePage SqliteEngine::probe_rows(const NodeId& peer, const std::string& table, uint64_t after, size_t limit,
                                   uint64_t peer_floor, const SeqRanges& relayed) {
    c_.ensure_ready();
    c_.refresh();
    ProbePage page;
    const TablePtr t = c_.find_table(table);
    if (!t) return page;
    const size_t n = t->key.size();
    std::string keys;
    for (size_t i = 0; i < n; ++i) keys += "k" + std::to_string(i) + ", ";
    Stmt st(c_.db, "SELECT " + keys + "gen, hlc, node, mseq, seq FROM " + t->meta +
                       " WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    st.bind_int(1, static_cast<int64_t>(std::min<uint64_t>(after, INT64_MAX)));
    st.bind_int(2, static_cast<int64_t>(limit));
    const NodeId self = c_.self();
    size_t scanned = 0;
    while (st.step()) {
        ++scanned;
        const int b = static_cast<int>(n);
        page.next = static_cast<uint64_t>(st.int64(b + 4));
        if ((st.int64(b) & 1) == 0) continue;  // a tombstone: nothing to remove
        Register gen;
        gen.present = true;
        gen.stamp = Stamp{static_cast<uint64_t>(st.int64(b + 1)), c_.nodes().id(static_cast<uint32_t>(st.int64(b + 2)))};
        gen.seq = static_cast<uint64_t>(st.int64(b + 3));
        // A generation the peer lacks is news to it: the row stays and goes.
        if (receiver_lacks(gen, peer_floor, &peer, UINT64_MAX, &relayed, &self)) continue;
        std::vector<Value> key;
        for (size_t i = 0; i < n; ++i) key.push_back(st.value(static_cast<int>(i)));
        page.keys.push_back(std::move(key));
        page.gen_seq.push_back(gen.seq);
    }
    page.done = scanned < limit;
    return page;
}

size_t SqliteEngine::drop_rows(const NodeId&, const std::string& table, const std::vector<std::vector<Value>>& keys,
                               const std::vector<uint64_t>& gen_seq) {
    c_.ensure_ready();
    return in_savepoint(c_, "lww_drop", [&] {
        c_.lock_for_write();
        const TablePtr t = c_.find_table(table);
        if (!t) return size_t(0);
        const size_t n = t->key.size();
        const std::string where = key_where(n);
        Stmt gen(c_.db, "SELECT mseq, gen FROM " + t->meta + " WHERE " + where);
        Stmt del_meta(c_.db, "DELETE FROM " + t->meta + " WHERE " + where);
        std::string user_where;
        for (size_t i = 0; i < n; ++i)
            user_where += (i ? " AND " : "") + quote_ident(t->key[i]) + " = ?" + std::to_string(i + 1);
        Stmt del_user(c_.db, "DELETE FROM " + quote_ident(t->name) + " WHERE " + user_where);
        auto bind = [&](Stmt& s, const std::vector<Value>& key) {
            s.reset();
            for (size_t i = 0; i < key.size(); ++i) s.bind(static_cast<int>(i + 1), key[i]);
        };
        keep_sequences(c_);
        size_t dropped = 0;
        ++c_.applying;  // an app's triggers see a merge (lww_applying()), not a local delete
        try {
            for (size_t k = 0; k < keys.size(); ++k) {
                if (keys[k].size() != n) continue;
                bind(gen, keys[k]);
                // Written again since it was probed: a new generation is news.
                if (!gen.step() || static_cast<uint64_t>(gen.int64(0)) != gen_seq[k] || (gen.int64(1) & 1) == 0) continue;
                gen.reset();
                // The capture trigger stays silent for this write: it is not a
                // local delete, and a tombstone would only travel back.
                const std::string name = t->name;
                c_.merging = MergeWrite{true, 'd', &name, &keys[k], nullptr};
                try {
                    exec(c_.db, "SAVEPOINT lww_drop_row");
                    bind(del_user, keys[k]);
                    del_user.step();
                    c_.merging.active = false;
                    bind(del_meta, keys[k]);
                    del_meta.step();
                    exec(c_.db, "RELEASE lww_drop_row");
                    ++dropped;
                } catch (const SqlError&) {
                    // A constraint keeps it (a child row still refers to it).
                    c_.merging.active = false;
                    sqlite3_exec(c_.db, "ROLLBACK TO lww_drop_row; RELEASE lww_drop_row", nullptr, nullptr, nullptr);
                }
            }
        } catch (...) {
            --c_.applying;
            c_.merging.active = false;
            throw;
        }
        --c_.applying;
        // This database's own pullers may hold these rows: past a new
        // sequence, they re-snapshot against it too.
        if (dropped) {
            raise_horizon(c_, c_.next_seq());
            keep_sequences(c_);
        }
        return dropped;
    });
}

}  // namespace lww::sq
