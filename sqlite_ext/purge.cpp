// SQLite adapter: tombstone purge and re-snapshot (docs/PROTOCOL.md, "Purge
// and re-snapshot"). The rules are the core's (common/purge.h, the client
// loop in common/exchange.cpp); this file reads and deletes metadata.
#include "purge.h"
#include "capture_log.h"
SQLITE_EXTENSION_INIT3

#include <algorithm>
#include <climits>
#include <set>

#include "../common/batch.h"
#include "../common/changeset.h"
#include "../common/purge.h"
#include "sync.h"

namespace lww::sq {

namespace {

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

// Registers held for a column this database does not have yet (lww_pending)
// of `t`'s rows for which `gone(row)` says the row is gone for good (its
// tombstone purged, or dropped by a re-snapshot): they would bring the row
// back when they land. They go with it.
template <class Gone>
void drop_pending(Conn& c, const TableInfo& t, Gone&& gone) {
    Stmt has(c.db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lww_pending'");
    if (!has.step()) return;
    Stmt rows(c.db, "SELECT id, changeset FROM lww_pending WHERE tbl = ?1");
    rows.bind_text(1, t.name);
    std::vector<int64_t> stale;
    while (rows.step()) {
        ChangeSet cs;
        try {
            cs = decode_changeset(rows.text(1));
        } catch (const Error&) {
            continue;
        }
        if (cs.tables.size() != 1 || cs.tables[0].rows.size() != 1) continue;
        const RowChange& r = cs.tables[0].rows[0];
        if (r.key.size() == t.key.size() && gone(r)) stale.push_back(rows.int64(0));
    }
    Stmt del(c.db, "DELETE FROM lww_pending WHERE id = ?1");
    for (int64_t id : stale) {
        del.reset();
        del.bind_int(1, id);
        del.step();
    }
}

// The pending registers of rows whose tombstone the purge removes (they
// would lose to it when they land, at a generation no higher).
void drop_pending_of_purged(Conn& c, int64_t upto) {
    for (const TablePtr& t : c.tables()) {
        Stmt meta(c.db, "SELECT gen FROM " + t->meta + " WHERE " + key_where(t->key.size()) +
                            " AND (gen & 1) = 0 AND max_seq <= ?" + std::to_string(t->key.size() + 1));
        drop_pending(c, *t, [&](const RowChange& r) {
            meta.reset();
            for (size_t i = 0; i < r.key.size(); ++i) meta.bind(static_cast<int>(i + 1), r.key[i]);
            meta.bind_int(static_cast<int>(r.key.size() + 1), upto);
            return meta.step() && static_cast<uint64_t>(meta.int64(0)) >= r.gen;
        });
    }
}

// Which sequences are old enough: marks recorded as purges run (common/purge.h).
uint64_t old_enough(Conn& c, uint64_t older_than_ms) {
    const uint64_t now = wall_clock_ms();
    Stmt get(c.db, "SELECT value FROM lww_state WHERE key = 'purge_marks'");
    PurgeMarks marks = get.step() && !get.is_null(0) ? parse_marks(get.text(0)) : PurgeMarks{};
    get = Stmt();
    const uint64_t ttl = c.setting("tombstone_ttl_ms", static_cast<uint64_t>(kDefaultTombstoneTtlMs));
    const uint64_t upto = seq_older_than(marks, now, older_than_ms, c.last_seq());
    Stmt put(c.db,
             "INSERT INTO lww_state(key, value) VALUES ('purge_marks', ?1)"
             " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    put.bind_text(1, format_marks(record_mark(std::move(marks), now, c.last_seq(), ttl)));
    put.step();
    return upto;
}

}  // namespace

size_t purge_tombstones(Conn& c, uint64_t older_than_ms) {
    c.ensure_ready();
    return in_savepoint(c.db, "lww_purge", [&] {
        c.lock_for_write();
        // Tombstones this database has held that long, and (a tombstone a
        // server we push to has not received yet stays) every such server holds.
        int64_t upto = static_cast<int64_t>(std::min<uint64_t>(old_enough(c, older_than_ms), INT64_MAX));
        {
            Stmt up(c.db, "SELECT min(CAST(value AS INTEGER)) FROM lww_state WHERE key GLOB 'upstream:*'");
            if (up.step() && !up.is_null(0)) upto = std::min(upto, up.int64(0));
        }
        keep_sequences(c);
        drop_pending_of_purged(c, upto);
        size_t removed = 0;
        uint64_t top = 0;
        for (const TablePtr& t : c.tables()) {
            const std::string where = " FROM " + t->meta + " WHERE (gen & 1) = 0 AND max_seq <= ?1";
            Stmt q(c.db, "SELECT count(*), max(max_seq), max(gen)" + where);
            q.bind_int(1, upto);
            if (!q.step() || q.int64(0) == 0) continue;
            removed += static_cast<size_t>(q.int64(0));
            top = std::max(top, static_cast<uint64_t>(q.int64(1)));
            c.set_gen_floor(t->name, static_cast<uint64_t>(q.int64(2)));
            Stmt del(c.db, "DELETE" + where);
            del.bind_int(1, upto);
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
    return in_savepoint(c.db, "lww_auto_purge", [&] {
        c.set_setting("purged_at", static_cast<int64_t>(now));
        return purge_tombstones(c, ttl);
    });
}

uint64_t SqliteEngine::purge_horizon() {
    c_.ensure_ready();
    return c_.setting("purged_upto", 0);
}

size_t SqliteEngine::auto_purge() { return sq::auto_purge(c_); }

void SqliteEngine::note_upstream(const NodeId& peer, uint64_t floor, bool first) {
    c_.ensure_ready();
    if (sqlite3_db_readonly(c_.db, "main") == 1) return;
    const std::string key = "upstream:" + peer.str();
    const int64_t value = static_cast<int64_t>(std::min<uint64_t>(floor, INT64_MAX));
    Stmt st(c_.db, first ? "INSERT INTO lww_state(key, value) VALUES (?1, ?2)"
                           " ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE value IS NOT excluded.value"
                         : "UPDATE lww_state SET value = ?2 WHERE key = ?1 AND value IS NOT ?2");
    st.bind_text(1, key);
    st.bind_int(2, value);
    st.step();
}

std::vector<std::pair<std::string, uint64_t>> SqliteEngine::gen_floors() {
    c_.ensure_ready();
    c_.refresh();
    std::vector<std::pair<std::string, uint64_t>> out;
    for (const TablePtr& t : c_.tables())
        if (const uint64_t g = c_.gen_floor(t->name)) out.emplace_back(t->name, g);
    return out;
}

void SqliteEngine::raise_gen_floors(const std::vector<std::pair<std::string, uint64_t>>& floors) {
    c_.ensure_ready();
    if (sqlite3_db_readonly(c_.db, "main") == 1) return;
    in_savepoint(c_.db, "lww_floors", [&] {
        c_.lock_for_write();
        for (const auto& f : floors)
            if (c_.find_table(f.first)) c_.set_gen_floor(f.first, std::min<uint64_t>(f.second, kMaxGeneration - 1));
        return 0;
    });
}

std::optional<std::vector<uint64_t>> SqliteEngine::holds_keys(const NodeId& caller, const std::string& table,
                                                              const std::vector<std::vector<Value>>& keys) {
    c_.ensure_ready();
    c_.refresh();
    const TablePtr t = c_.find_table(table);
    if (!t) return std::nullopt;
    Stmt meta(c_.db, "SELECT gen FROM " + t->meta + " WHERE " + key_where(t->key.size()));
    Stmt parked(c_.db, "SELECT 1 FROM lww_rejected WHERE tbl = ?1 AND key = ?2 AND origin = ?3");
    std::vector<uint64_t> held;
    held.reserve(keys.size());
    for (const auto& key : keys) {
        if (key.size() != t->key.size())
            throw Error("probe of table \"" + table + "\": a key of " + std::to_string(key.size()) +
                        " values, the table's has " + std::to_string(t->key.size()));
        meta.reset();
        for (size_t i = 0; i < key.size(); ++i) meta.bind(static_cast<int>(i + 1), key[i]);
        uint64_t gen = meta.step() ? static_cast<uint64_t>(meta.int64(0)) : 0;
        if (gen == 0) {
            // A row parked here (lww_rejected) is held too: it lands later.
            parked.reset();
            parked.bind_text(1, table);
            parked.bind_text(2, key_json(key));
            parked.bind_text(3, caller.str());
            if (parked.step()) gen = kParkedGeneration;
        }
        held.push_back(gen);
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
    fold_log(c_);  // the sequences it pages by
    const size_t n = t->key.size();
    std::string keys;
    for (size_t i = 0; i < n; ++i) keys += "k" + std::to_string(i) + ", ";
    Stmt st(c_.db, "SELECT " + keys + "gen, hlc, node, row_seq, max_seq FROM " + t->meta +
                       " WHERE max_seq > ?1 ORDER BY max_seq LIMIT ?2");
    st.bind_int(1, static_cast<int64_t>(std::min<uint64_t>(after, INT64_MAX)));
    st.bind_int(2, static_cast<int64_t>(limit));
    const NodeId self = c_.self();
    // Before this database took a new node id (a copy, a restore), the peer
    // held its changes up to a floor it kept (sync.cpp, reset_node_id).
    peer_floor = std::max(peer_floor, c_.setting(("held:" + peer.str()).c_str(), 0));
    size_t scanned = 0;
    while (st.step()) {
        ++scanned;
        const int b = static_cast<int>(n);
        page.next = static_cast<uint64_t>(st.int64(b + 4));
        if ((st.int64(b) & 1) == 0) continue;  // a tombstone: nothing to remove
        Register gen;
        gen.present = true;
        gen.stamp =
            Stamp{static_cast<uint64_t>(st.int64(b + 1)), c_.nodes().id(static_cast<uint32_t>(st.int64(b + 2)))};
        gen.seq = static_cast<uint64_t>(st.int64(b + 3));
        // A generation the peer lacks is news to it: the row stays and goes.
        if (receiver_lacks(gen, peer_floor, &peer, UINT64_MAX, &relayed, &self)) continue;
        std::vector<Value> key;
        for (size_t i = 0; i < n; ++i) key.push_back(st.value(static_cast<int>(i)));
        page.keys.push_back(std::move(key));
        page.gens.push_back(static_cast<uint64_t>(st.int64(b)));
        page.gen_seq.push_back(gen.seq);
    }
    page.done = scanned < limit;
    return page;
}

size_t SqliteEngine::drop_rows(const NodeId&, const std::string& table, const std::vector<std::vector<Value>>& keys,
                               const std::vector<uint64_t>& gen_seq) {
    c_.ensure_ready();
    return in_savepoint(c_.db, "lww_drop", [&] {
        c_.lock_for_write();
        const TablePtr t = c_.find_table(table);
        if (!t) return size_t(0);
        const size_t n = t->key.size();
        const std::string where = key_where(n);
        Stmt gen(c_.db, "SELECT row_seq, gen FROM " + t->meta + " WHERE " + where);
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
                if (!gen.step() || static_cast<uint64_t>(gen.int64(0)) != gen_seq[k] || (gen.int64(1) & 1) == 0)
                    continue;
                // The peer deleted it at a higher generation, unknown here:
                // one past ours at least.
                const uint64_t dropped_gen = gen_after_delete(static_cast<uint64_t>(gen.int64(1)));
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
                    c_.set_gen_floor(t->name, dropped_gen);
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
            // Registers held for columns not here yet of the dropped rows.
            std::set<std::string> gone_keys;
            for (const auto& key : keys) gone_keys.insert(key_json(key));
            drop_pending(c_, *t, [&](const RowChange& r) {
                if (!gone_keys.count(key_json(r.key))) return false;
                gen.reset();
                for (size_t i = 0; i < r.key.size(); ++i) gen.bind(static_cast<int>(i + 1), r.key[i]);
                return !gen.step();  // dropped here (no metadata left), not merely probed
            });
            raise_horizon(c_, c_.next_seq());
            keep_sequences(c_);
        }
        return dropped;
    });
}

}  // namespace lww::sq
