// The convergence driver: one random scenario engine for every kind of peer.
//
// Each operation (writes, transactions, schema changes, restarts, syncs,
// relays, captures, deliveries, the final spread and every check) is written
// once here, against the Peer interface of peers.h. Two programs run it:
//   ./convergence (convergence.cpp)  mode Sqlite: SQLite peers only, with the
//                                    features only files have (copies, --purge)
//   ./mixed (mixed.cpp)              mode Mixed: PostgreSQL databases
//                                    (pg_peer.h) and SQLite files together
// Each program also defines the schema, tables() (workload.h).
//
// Black-box: only the public SQL API (lww_track, lww_node_id, lww_changes,
// lww_apply, lww_sync, lww_alter, lww_purge, lww_config) plus plain SQL
// writes on tracked tables. See README.md in this directory.
#pragma once

#include <sys/types.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "peers.h"
#include "workload.h"

namespace conv {

// ---------------------------------------------------------------- options

enum class Mode {
    Sqlite,  // ./convergence
    Mixed,   // ./mixed: at least 2 Postgres and 2 SQLite peers per scenario
};

struct Options {
    Mode mode;
    std::string ext = "./lwwsync.so";
    std::string pg;  // Mixed: libpq conninfo of a running cluster; empty = mixed mode skipped
    uint64_t scenarios;
    uint64_t seed = 0;
    bool seed_given = false;
    int peers_min;
    int peers_max;
    int ops_min = 20;
    int ops_max = 60;
    bool verbose = false;
    bool fork_each = true;
    bool keep = false;
    bool edge_values = false;
    bool plain_sync = false;  // no batch_rows, no row-limited pages
    bool single_conn = false;
    bool no_reopen = false;
    bool no_schema = false;  // no ADD/DROP COLUMN mid-run (docs/SCHEMA.md)
    // Sqlite mode only.
    bool no_copy = false;
    bool copy_undetected = false;
    // Tombstone purge (docs/PROTOCOL.md, "Purge and re-snapshot"): a star
    // around p0, random purges (by hand and during sync), peers offline for
    // stretches; no hand-delivered change sets (lww_apply knows no horizon).
    bool purge = false;
    int timeout = 120;
    std::string tmpdir;

    explicit Options(Mode m)
        : mode(m),
          scenarios(m == Mode::Mixed ? 200 : 300),
          peers_min(m == Mode::Mixed ? 4 : 3),
          peers_max(m == Mode::Mixed ? 6 : 5) {}
    bool mixed() const { return mode == Mode::Mixed; }
};

// ---------------------------------------------------------------- scenario

struct PoolEntry {
    size_t origin;
    std::string origin_node;  // the set's "origin" (a copied peer may share it for a while)
    int64_t since;
    int64_t upto;
    std::string cs;
    int delivered = 0;
};

struct KeyInfo {
    size_t table;
    std::vector<Val> key;
    bool inserted = false;          // inserted (committed) somewhere
    bool killed = false;            // deleted or moved away (pk change) somewhere, or possibly so
    std::set<std::string> parents;  // notes: every item it referenced (a cascade may delete it)
};

// What the test holds of one direction (src -> dst) of change sets moved by
// hand: dst has every register src changed up to `floor`, and every row whose
// latest change is up to `after` (the two differ only while paging).
struct TransferCursor {
    int64_t floor = 0;
    int64_t after = 0;
};

// An app trigger of some SQLite peers (schemas with notes): counts edits of a
// note's body. Without `WHEN NOT lww_applying()` it also fires for merged
// bodies, and lwwsync records that write as the peer's own.
std::string counter_trigger(bool when_not_applying) {
    return std::string("CREATE TRIGGER count_note_edits AFTER UPDATE OF body ON notes ") +
           (when_not_applying ? "WHEN NOT lww_applying() " : "") +
           "BEGIN UPDATE notes SET edits = coalesce(edits, 0) + 1 WHERE id = NEW.id; END";
}

class Scenario {
public:
    // `pg`: where Postgres peers come from (Mixed mode), else null.
    Scenario(uint64_t seed, const Options& o, const std::string& dir, PgCluster* pg)
        : seed_(seed), opt_(o), dir_(dir), pg_(pg), rng_(seed), gen_{rng_, o.edge_values} {
        notes_ = tables().size();
        for (size_t i = 0; i < tables().size(); ++i) {
            if (tables()[i].name == "notes") notes_ = i;
            for (const auto& c : tables()[i].cols) typed_ = typed_ && c.kind != Kind::Any;
        }
        // A schema of typed columns only (./mixed: what Postgres can share)
        // gets values of each column's own kind only.
        gen_.typed_only = typed_;
    }

    // Returns true on pass; on failure prints details to stdout.
    bool run() {
        try {
            body();
            return true;
        } catch (const Failure& e) {
            fail(e.what());
            return false;
        } catch (const std::exception& e) {
            fail(std::string("unexpected exception: ") + e.what());
            return false;
        }
    }

private:
    uint64_t seed_;
    const Options& opt_;
    std::string dir_;
    PgCluster* pg_;
    Rng rng_;
    Gen gen_;
    size_t notes_;       // index of "notes" in tables(), or tables().size() when the schema has none
    bool typed_ = true;  // no untyped column anywhere
    std::vector<std::unique_ptr<Peer>> peers_;
    std::vector<std::unique_ptr<Peer>> late_;  // the late joiners, for save_state
    std::vector<PoolEntry> pool_;
    std::map<std::string, KeyInfo> keys_;
    std::map<std::pair<std::string, std::string>, TransferCursor> cursors_;
    std::vector<std::string> log_;
    bool two_conns_ = false;
    int copies_ = 0;
    // pending inserts of the current explicit transaction (discarded on rollback)
    bool in_txn_ = false;
    std::vector<std::pair<size_t, std::vector<Val>>> txn_inserts_;
    bool merge_triggers_ = false;           // some peer's app trigger fires for merged changes
    std::set<std::string> replaced_items_;  // items rows removed by INSERT OR REPLACE somewhere

    bool has_notes() const { return notes_ < tables().size(); }

    // ---------------- reporting

    void fail(const std::string& what) {
        std::printf("  scenario seed %" PRIu64 ": %s\n", seed_, what.c_str());
        dump_log();
        save_state();
        // first line of the reason, for the parent's one-line summary
        if (FILE* f = std::fopen((dir_ + "/reason.txt").c_str(), "w")) {
            std::fprintf(f, "%s", what.substr(0, what.find('\n')).c_str());
            std::fclose(f);
        }
    }
    void note(const std::string& s) {
        log_.push_back(s);
        if (opt_.verbose) std::printf("    %s\n", s.c_str());
    }
    void dump_log() {
        if (opt_.verbose) return;  // already printed
        std::string path = dir_ + "/ops.log";
        if (FILE* f = std::fopen(path.c_str(), "w")) {
            for (const auto& l : log_) std::fprintf(f, "%s\n", l.c_str());
            std::fclose(f);
            std::printf("  operation log: %s\n", path.c_str());
        }
    }
    // Every peer's rows, and every Postgres peer's lww_changes(0): the next
    // scenario reuses the Postgres databases (the SQLite files are kept).
    void save_state() {
        std::string path = dir_ + "/state.txt";
        FILE* f = std::fopen(path.c_str(), "w");
        if (!f) return;
        auto save = [&](Peer& p) {
            std::fprintf(f, "== %s node %s %s\n", p.label.c_str(), p.node.c_str(), p.where().c_str());
            try {
                if (!p.db) return;
                Dump d = dump(*p.db);
                for (size_t t = 0; t < d.size(); ++t)
                    for (const auto& r : d[t]) std::fprintf(f, "%s\n", r.full.c_str());
                if (p.pg()) std::fprintf(f, "lww_changes(0): %s\n", p.changes(0, 0, 0).c_str());
            } catch (const std::exception& e) {
                std::fprintf(f, "(cannot read: %s)\n", e.what());
            }
        };
        for (auto& p : peers_) save(*p);
        for (auto& p : late_) save(*p);
        std::fclose(f);
        std::printf("  peer state: %s\n", path.c_str());
    }

    KeyInfo& info(size_t t, const std::vector<Val>& k) {
        std::string ks = render_key(tables()[t], k);
        auto it = keys_.find(ks);
        if (it == keys_.end()) {
            KeyInfo ki;
            ki.table = t;
            ki.key = k;
            it = keys_.emplace(ks, ki).first;
        }
        return it->second;
    }
    void mark_inserted(size_t t, const std::vector<Val>& k) {
        if (in_txn_) txn_inserts_.emplace_back(t, k);
        else info(t, k).inserted = true;
    }
    void mark_killed(size_t t, const std::vector<Val>& k) { info(t, k).killed = true; }

    // ---------------- peer setup

    std::string label_of(const std::string& name, Engine e) const {
        return opt_.mixed() ? name + (e == Engine::Postgres ? "(pg)" : "(sqlite)") : name;
    }

    std::unique_ptr<Peer> make_peer(const std::string& name, Engine engine, bool allow_prerows,
                                    bool merge_trigger_ok = true) {
        std::unique_ptr<Peer> p;
        if (engine == Engine::Postgres) p = pg_->peer(name);
        else p = std::make_unique<SqlitePeer>(name, dir_ + "/" + name + ".db", opt_.ext);
        p->label = label_of(name, engine);
        p->create();
        // The app's own trigger (SQLite peers of a schema with notes): none,
        // quiet while merging, or firing for merged changes too; made before
        // or after lww_track.
        unsigned trig = 0;
        bool firing = false, trig_first = false;
        if (has_notes() && !p->pg()) {
            trig = static_cast<unsigned>(rng_.below(3));
            firing = trig == 2 && merge_trigger_ok;
            trig_first = rng_.chance(50);
            if (trig && trig_first) p->db->exec(counter_trigger(!firing));
            if (trig)
                note(p->label + ": app trigger on notes" +
                     (firing ? " (fires while merging)" : " (WHEN NOT lww_applying())"));
            if (firing) merge_triggers_ = true;
        }
        if (allow_prerows) {
            // rows that exist before tracking: they must get stamped by lww_track
            for (size_t ti = 0; ti < tables().size(); ++ti) {
                int n = static_cast<int>(rng_.range(0, 3));
                for (int i = 0; i < n; ++i) {
                    auto k = gen_.key(tables()[ti]);
                    if (exists(*p, ti, k)) continue;
                    insert_row(*p, ti, k, /*all_cols=*/true, "INSERT");
                    note(p->label + ": (that insert was before lww_track)");
                    mark_inserted(ti, k);
                }
            }
        }
        for (const auto& t : tables()) {
            p->track(t.name);
            if (rng_.chance(10)) p->track(t.name);  // idempotent
        }
        if (trig && !trig_first) p->db->exec(counter_trigger(!firing));
        p->node = p->node_id();
        note(p->label + ": node " + p->node + " " + p->where());
        if (two_conns_) {
            p->conns.push_back(p->connect());
            std::string n2 = p->node_id_on(*p->conns.back());
            if (n2 != p->node)
                throw Failure(p->label + ": second connection reports node id " + n2 + ", first " + p->node);
        }
        return p;
    }

    // ---------------- helpers on rows

    bool exists(Peer& p, size_t ti, const std::vector<Val>& k) {
        const Table& t = tables()[ti];
        return !p.db->query("SELECT 1 FROM " + t.name + " WHERE " + t.key_where(1), k).empty();
    }
    // In the canonical order, so that a seed picks the same keys whatever the engine.
    std::vector<std::vector<Val>> existing_keys(Peer& p, size_t ti) {
        const Table& t = tables()[ti];
        Rows rs = p.db->query("SELECT " + t.key_list() + " FROM " + t.name);
        sort_by_key(rs, t.keys.size());
        return rs;
    }
    std::vector<size_t> random_cols(size_t ti, bool allow_empty) {
        const Table& t = tables()[ti];
        std::vector<size_t> idx;
        for (size_t i = 0; i < t.cols.size(); ++i) idx.push_back(i);
        rng_.shuffle(idx);
        size_t n = static_cast<size_t>(rng_.range(allow_empty ? 0 : 1, static_cast<int64_t>(idx.size())));
        idx.resize(n);
        std::sort(idx.begin(), idx.end());
        return idx;
    }
    // A value for column `c` of table `ti` written on `p`: notes.item is an
    // item there or NULL (a local write must satisfy the foreign key).
    Val col_value(Peer& p, size_t ti, size_t c, KeyInfo* note_row) {
        if (ti == notes_ && tables()[ti].cols[c].name == "item") {
            auto ks = existing_keys(p, kItems);
            if (ks.empty() || rng_.chance(20)) return Val();
            const auto& k = rng_.pick(ks);
            if (note_row) note_row->parents.insert(render_key(tables()[kItems], k));
            return k[0];
        }
        return gen_.value(tables()[ti].cols[c].kind);
    }

    // verb: "INSERT" / "INSERT OR REPLACE" / "UPSERT". Postgres has no INSERT
    // OR REPLACE: there it is either DELETE + INSERT in one transaction or an
    // INSERT ... ON CONFLICT that sets every column (the ones not given to NULL).
    void insert_row(Peer& p, size_t ti, const std::vector<Val>& k, bool all_cols, const std::string& verb) {
        const Table& t = tables()[ti];
        std::vector<size_t> cols;
        if (all_cols) {
            for (size_t i = 0; i < t.cols.size(); ++i) cols.push_back(i);
        } else {
            cols = random_cols(ti, true);
        }
        std::vector<Val> args = k;
        std::string desc;
        KeyInfo* ki = ti == notes_ ? &info(ti, k) : nullptr;
        for (size_t c : cols) {
            Val v = col_value(p, ti, c, ki);
            desc += " " + t.cols[c].name + "=" + v.repr();
            args.push_back(v);
        }
        std::string names = t.key_list(), params;
        int n = static_cast<int>(t.keys.size());
        for (int i = 1; i <= n; ++i) params += (i > 1 ? ", ?" : "?") + std::to_string(i);
        for (size_t c : cols) {
            names += ", " + t.cols[c].name;
            params += ", ?" + std::to_string(++n);
        }
        const std::string values = " INTO " + t.name + "(" + names + ") VALUES(" + params + ")";
        if (ti == kItems && verb == "INSERT OR REPLACE" && exists(p, ti, k))
            replaced_items_.insert(render_key(t, k));  // its notes here cascade away
        std::string shown = verb;
        if (verb == "UPSERT") {
            std::string sql = "INSERT" + values + " ON CONFLICT(" + t.key_list() + ")";
            if (cols.empty()) sql += " DO NOTHING";
            else {
                sql += " DO UPDATE SET ";
                for (size_t i = 0; i < cols.size(); ++i)
                    sql += (i ? ", " : "") + t.cols[cols[i]].name + " = excluded." + t.cols[cols[i]].name;
            }
            p.db->query(sql, args);
        } else if (verb == "INSERT OR REPLACE" && p.pg()) {
            if (rng_.chance(50)) {
                shown = "DELETE+INSERT (replace)";
                bool own = !in_txn_;
                if (own) p.db->exec("BEGIN");
                p.db->query("DELETE FROM " + t.name + " WHERE " + t.key_where(1), k);
                p.db->query("INSERT" + values, args);
                if (own) p.db->exec("COMMIT");
            } else {
                shown = "INSERT ON CONFLICT SET ALL (replace)";
                std::string sql = "INSERT" + values + " ON CONFLICT(" + t.key_list() + ") DO UPDATE SET ";
                for (size_t i = 0; i < t.cols.size(); ++i)
                    sql += (i ? ", " : "") + t.cols[i].name + " = excluded." + t.cols[i].name;
                p.db->query(sql, args);
            }
        } else {
            p.db->query(verb + values, args);
        }
        note(p.label + ": " + shown + " " + render_key(t, k) + desc);
    }

    // ---------------- write operations

    void op_insert(Peer& p, size_t ti) {
        auto k = gen_.key(tables()[ti]);
        if (exists(p, ti, k)) {
            op_update(p, ti);
            return;
        }
        insert_row(p, ti, k, rng_.chance(75), "INSERT");
        mark_inserted(ti, k);
    }

    void op_update(Peer& p, size_t ti) {
        const Table& t = tables()[ti];
        auto ks = existing_keys(p, ti);
        if (ks.empty()) {
            op_insert(p, ti);
            return;
        }
        const auto k = rng_.pick(ks);
        auto cols = random_cols(ti, false);
        std::string sql = "UPDATE " + t.name + " SET ";
        std::vector<Val> args = k;
        std::string desc;
        int n = static_cast<int>(t.keys.size());
        for (size_t i = 0; i < cols.size(); ++i) {
            const Col& c = t.cols[cols[i]];
            sql += i ? ", " : "";
            if (rng_.chance(8)) {  // no-op assignment
                sql += c.name + " = " + c.name;
                desc += " " + c.name + "=(unchanged)";
            } else {
                Val v = col_value(p, ti, cols[i], ti == notes_ ? &info(ti, k) : nullptr);
                args.push_back(v);
                sql += c.name + " = ?" + std::to_string(++n);
                desc += " " + c.name + "=" + v.repr();
            }
        }
        sql += " WHERE " + t.key_where(1);
        p.db->query(sql, args);
        note(p.label + ": UPDATE " + render_key(t, k) + desc);
    }

    void delete_key(Peer& p, size_t ti, const std::vector<Val>& k) {
        const Table& t = tables()[ti];
        p.db->query("DELETE FROM " + t.name + " WHERE " + t.key_where(1), k);
        mark_killed(ti, k);
        note(p.label + ": DELETE " + render_key(t, k));
    }

    void op_delete(Peer& p, size_t ti) {
        auto ks = existing_keys(p, ti);
        if (ks.empty()) {
            op_insert(p, ti);
            return;
        }
        delete_key(p, ti, rng_.pick(ks));
    }

    // delete then re-insert the same key (generation 1 -> 2 -> 3 on this peer)
    void op_delete_reinsert(Peer& p, size_t ti) {
        auto ks = existing_keys(p, ti);
        if (ks.empty()) {
            op_insert(p, ti);
            return;
        }
        auto k = rng_.pick(ks);
        delete_key(p, ti, k);
        insert_row(p, ti, k, rng_.chance(75), "INSERT");
        mark_inserted(ti, k);
    }

    void op_pk_change(Peer& p, size_t ti) {
        const Table& t = tables()[ti];
        auto ks = existing_keys(p, ti);
        if (ks.empty()) {
            op_insert(p, ti);
            return;
        }
        auto old = rng_.pick(ks);
        std::vector<Val> nk;
        std::vector<size_t> changed;
        bool found = false;
        for (int attempt = 0; attempt < 6 && !found; ++attempt) {
            nk = old;
            changed.clear();
            for (size_t i = 0; i < t.keys.size(); ++i) {
                if (t.keys.size() == 1 || rng_.chance(60)) {
                    nk[i] = gen_.key(t.keys[i], t);
                    changed.push_back(i);
                }
            }
            if (changed.empty()) {
                nk[0] = gen_.key(t.keys[0], t);
                changed.push_back(0);
            }
            found = render_key(t, nk) != render_key(t, old) && !exists(p, ti, nk);
        }
        if (!found) {
            note(p.label + ": (pk change skipped: no free key)");
            return;
        }
        std::string sql = "UPDATE " + t.name + " SET ";
        std::vector<Val> args = old;
        int n = static_cast<int>(t.keys.size());
        for (size_t i = 0; i < changed.size(); ++i) {
            sql += (i ? ", " : "") + t.keys[changed[i]].name + " = ?" + std::to_string(++n);
            args.push_back(nk[changed[i]]);
        }
        sql += " WHERE " + t.key_where(1);
        p.db->query(sql, args);
        mark_killed(ti, old);
        mark_inserted(ti, nk);
        // Parents of notes: a note keeps its item's under its new key, and an
        // item's notes follow it to its new key (ON UPDATE CASCADE).
        if (ti == notes_) {
            const std::set<std::string> ps = info(ti, old).parents;
            info(ti, nk).parents.insert(ps.begin(), ps.end());
        } else if (ti == kItems) {
            const std::string o = render_key(t, old), n2 = render_key(t, nk);
            for (auto& kv : keys_)
                if (kv.second.table == notes_ && kv.second.parents.count(o)) kv.second.parents.insert(n2);
        }
        note(p.label + ": UPDATE KEY " + render_key(t, old) + " -> " + render_key(t, nk));
    }

    void op_replace(Peer& p, size_t ti) {
        // any key: may or may not exist locally
        std::vector<Val> k;
        auto ks = existing_keys(p, ti);
        if (!ks.empty() && rng_.chance(50)) k = rng_.pick(ks);
        else k = gen_.key(tables()[ti]);
        insert_row(p, ti, k, rng_.chance(70), "INSERT OR REPLACE");
        mark_inserted(ti, k);
    }

    void op_upsert(Peer& p, size_t ti) {
        std::vector<Val> k;
        auto ks = existing_keys(p, ti);
        if (!ks.empty() && rng_.chance(50)) k = rng_.pick(ks);
        else k = gen_.key(tables()[ti]);
        insert_row(p, ti, k, rng_.chance(50), "UPSERT");
        mark_inserted(ti, k);
    }

    void one_write(Peer& p) {
        size_t ti = rng_.below(tables().size());
        unsigned r = static_cast<unsigned>(rng_.below(100));
        if (r < 26) op_insert(p, ti);
        else if (r < 58) op_update(p, ti);
        else if (r < 72) op_delete(p, ti);
        else if (r < 77) op_delete_reinsert(p, ti);
        else if (r < 86) op_pk_change(p, ti);
        else if (r < 94) op_replace(p, ti);
        else op_upsert(p, ti);
    }

    void op_txn(Peer& p) {
        p.db->exec("BEGIN");
        note(p.label + ": BEGIN");
        in_txn_ = true;
        txn_inserts_.clear();
        int n = static_cast<int>(rng_.range(2, 4));
        for (int i = 0; i < n; ++i) one_write(p);
        in_txn_ = false;
        if (rng_.chance(20)) {
            p.db->exec("ROLLBACK");
            note(p.label + ": ROLLBACK");
            // deletes stay recorded as "killed" (conservative); inserts are forgotten
        } else {
            p.db->exec("COMMIT");
            note(p.label + ": COMMIT");
            for (auto& ti : txn_inserts_) info(ti.first, ti.second).inserted = true;
        }
        txn_inserts_.clear();
    }

    // Close every connection of a peer and open them again (an app restart;
    // for Postgres, new sessions). The node id must stay the same.
    void op_reopen(Peer& p) {
        size_t n = p.conns.size();
        p.db = nullptr;
        p.conns.clear();
        for (size_t i = 0; i < n; ++i) p.conns.push_back(p.connect());
        p.db = p.conns[0].get();
        std::string node = p.node_id();
        if (node != p.node) throw Failure(p.label + ": node id changed across reopen: " + p.node + " -> " + node);
        note(p.label + ": reopened " + std::to_string(n) + " connection(s)");
    }

    // ---------------- schema changes mid-run (docs/SCHEMA.md)
    //
    // Extra columns x1, x2 of "items" come and go on random peers and get
    // written; peers without them hold their registers in lww_pending. Before
    // the final sync every peer is brought to one schema; then the extra
    // columns must be identical everywhere too. In a typed schema (./mixed)
    // they are integer columns of each engine's integer type; otherwise
    // untyped, with defaults and values of mixed types.

    std::map<std::string, std::set<std::string>> extra_;    // peer name -> extra columns it has
    std::map<std::string, std::set<std::string>> dropped_;  // peer name -> extra columns it dropped
    std::set<std::string> offline_;                         // --purge: leaves that do not sync now
    std::vector<std::string> kept_;                         // extra columns every peer has at the end
    // A peer that dropped a column lost its own writes to it, and peers never
    // send a node its own registers back: it does not add that column again
    // (docs/SCHEMA.md, "Limits"), and a column dropped anywhere ends dropped.

    static const std::vector<std::string>& extra_cols() {
        static const std::vector<std::string> c = {"x1", "x2"};
        return c;
    }

    void add_extra(Peer& p, const std::string& col, bool plain) {
        static const char* untyped[] = {"", " DEFAULT 1", " DEFAULT 'two'"};
        static const char* typed[] = {"", " DEFAULT 1", " DEFAULT 2"};
        const size_t d = rng_.below(3);
        const std::string ddl =
            "ALTER TABLE items ADD COLUMN " + col + (typed_ ? " " + p.int_type() + typed[d] : untyped[d]);
        const std::string how = p.alter(ddl, plain);
        extra_[p.name].insert(col);
        note(p.label + ": " + ddl + how);
    }

    void drop_extra(Peer& p, const std::string& col) {
        const std::string ddl = "ALTER TABLE items DROP COLUMN " + col;
        const std::string how = p.alter(ddl, false);
        extra_[p.name].erase(col);
        dropped_[p.name].insert(col);
        note(p.label + ": " + ddl + how);
    }

    void op_schema(Peer& p) {
        auto& ex = extra_[p.name];
        unsigned r = static_cast<unsigned>(rng_.below(100));
        if (r < 45 && !ex.empty()) {
            auto keys = existing_keys(p, kItems);
            if (keys.empty()) return;
            std::vector<std::string> have(ex.begin(), ex.end());
            const std::string col = have[rng_.below(have.size())];
            const auto& k = keys[rng_.below(keys.size())];
            const Val v = typed_ || rng_.chance(50) ? Val::integer(static_cast<int64_t>(rng_.below(10)))
                                                    : Val::text("v" + std::to_string(rng_.below(10)));
            p.db->query("UPDATE items SET " + col + " = ?1 WHERE id = ?2", {v, k[0]});
            note(p.label + ": UPDATE items SET " + col + " = " + v.repr() + " WHERE id = " + k[0].repr());
        } else if (r < 80 && ex.size() < extra_cols().size()) {
            std::vector<std::string> missing;
            for (const auto& c : extra_cols())
                if (!ex.count(c) && !dropped_[p.name].count(c)) missing.push_back(c);
            if (!missing.empty()) add_extra(p, missing[rng_.below(missing.size())], rng_.chance(40));
        } else if (!ex.empty()) {
            std::vector<std::string> have(ex.begin(), ex.end());
            drop_extra(p, have[rng_.below(have.size())]);
        }
    }

    // Every peer to one schema: each extra column kept everywhere or dropped everywhere.
    std::vector<std::string> align_schema() {
        std::vector<std::string> kept;
        if (opt_.no_schema) return kept;
        for (const auto& col : extra_cols()) {
            bool dropped_somewhere = false;
            for (auto& pp : peers_) dropped_somewhere |= dropped_[pp->name].count(col) > 0;
            const bool keep = !dropped_somewhere && rng_.chance(70);
            for (auto& pp : peers_) {
                const bool has = extra_[pp->name].count(col) > 0;
                if (keep && !has) add_extra(*pp, col, rng_.chance(40));
                if (!keep && has) drop_extra(*pp, col);
            }
            if (keep) kept.push_back(col);
        }
        return kept;
    }

    void compare_extra(const std::vector<std::string>& cols) {
        if (cols.empty()) return;
        std::string sql = "SELECT id";
        for (const auto& c : cols) sql += ", " + c;
        sql += " FROM items ORDER BY id";
        std::vector<std::vector<std::string>> all;
        for (auto& pp : peers_) {
            std::vector<std::string> rows;
            for (const auto& row : pp->db->query(sql)) {
                std::string line;
                for (size_t i = 0; i < row.size(); ++i) line += (i ? " | " : "") + row[i].repr();
                rows.push_back(line);
            }
            all.push_back(std::move(rows));
        }
        for (size_t i = 1; i < all.size(); ++i)
            if (all[i] != all[0]) {
                std::string msg =
                    "divergence of the added columns: " + peers_[0]->label + " vs " + peers_[i]->label + "\n";
                for (size_t r = 0; r < std::max(all[0].size(), all[i].size()); ++r) {
                    const std::string a = r < all[0].size() ? all[0][r] : "-", b = r < all[i].size() ? all[i][r] : "-";
                    if (a != b) msg += "  " + a + "  <>  " + b + "\n";
                }
                throw Failure(msg);
            }
        note("added columns identical on every peer: " + std::to_string(all[0].size()) + " rows");
    }

    // ---------------- change sets

    struct Changes {
        std::string cs;
        std::string origin;
        int64_t upto = 0;
        bool complete = true;
    };

    // lww_changes(since) or, with a row limit, lww_changes(since, limit, after).
    Changes changes(Peer& p, int64_t since, int64_t limit = 0, int64_t after = -1) {
        Changes c;
        std::string call = "lww_changes(" + std::to_string(since) +
                           (limit ? ", " + std::to_string(limit) + ", " + std::to_string(after) : "") + ")";
        try {
            c.cs = p.changes(since, limit, after);
        } catch (const Failure& e) {
            throw Failure(p.label + " " + call + " failed: " + e.what());
        }
        const JsonDoc doc(c.cs);
        if (!doc.valid())
            throw Failure(p.label + " " + call + " returned invalid JSON (" + std::to_string(c.cs.size()) +
                          " bytes): " + Val::text(c.cs.substr(0, 120)).repr());
        c.upto = doc.integer("upto", -1);
        c.complete = doc.boolean("complete", true);
        c.origin = doc.text("origin");
        if (c.upto < 0) throw Failure(p.label + " " + call + " has no upto: " + c.cs.substr(0, 300));
        if (c.upto < std::max(since, after))
            throw Failure(p.label + " " + call + " returned upto " + std::to_string(c.upto) + ", below its start");
        p.uptos.push_back(c.upto);
        return c;
    }

    // lww_apply; returns the number of registers applied.
    int64_t apply_cs(Peer& p, const std::string& cs, const std::string& what, std::string* res_out = nullptr) {
        std::string res;
        try {
            res = p.apply(cs);
        } catch (const Failure& e) {
            throw Failure(p.label + " lww_apply(" + what + ") failed: " + e.what());
        }
        const JsonDoc doc(res);
        if (!doc.valid())
            throw Failure(p.label + " lww_apply(" + what + ") returned invalid JSON (" + std::to_string(res.size()) +
                          " bytes): " + Val::text(res.substr(0, 120)).repr());
        if (res_out) *res_out = res;
        return doc.integer("applied", 0);
    }

    // ---------------- sync operations

    // Moves src's changes to dst by hand (lww_changes on one side, lww_apply
    // on the other), from the cursor this test keeps for the direction
    // src -> dst. Some transfers page with a row limit of 1..5, by the
    // "complete" / "after" rules of docs/PROTOCOL.md. Returns the registers
    // applied.
    int64_t transfer(Peer& src, Peer& dst) {
        TransferCursor& cur = cursors_[{src.name, dst.name}];
        int64_t limit = !opt_.plain_sync && rng_.chance(40) ? rng_.range(1, 5) : 0;
        int64_t applied = 0;
        int pages = 0;
        for (;;) {
            if (++pages > 100000) throw Failure("transfer " + src.label + " -> " + dst.label + " never completes");
            Changes c = limit ? changes(src, cur.floor, limit, cur.after) : changes(src, cur.floor);
            std::string res;
            applied += apply_cs(dst, c.cs, "changes of " + src.label, &res);
            note("  " + src.label + " -> " + dst.label + ": lww_changes(" + std::to_string(cur.floor) +
                 (limit ? ", " + std::to_string(limit) + ", " + std::to_string(cur.after) : "") +
                 ") upto=" + std::to_string(c.upto) + (c.complete ? "" : " (partial)") + " -> " + res);
            // The cursor moves only after the apply committed.
            cur.after = c.upto;
            if (c.complete) {
                cur.floor = c.upto;
                break;
            }
            if (!limit)
                throw Failure(src.label + " lww_changes(" + std::to_string(cur.floor) +
                              ") without a row limit says it is not complete");
        }
        return applied;
    }

    // One bidirectional sync started by `a`; returns the registers applied on
    // either side. Peers of one engine run lww_sync (over 'file:' between
    // SQLite files, 'postgresql:' in the server between databases; unless
    // --plain-sync, 40% pass {"batch_rows": 1..5} so that one sync needs many
    // batches). Between engines the test moves the change sets itself, in
    // both directions, in random order.
    int64_t sync(Peer& a, Peer& b) {
        int64_t applied = 0;
        if (a.engine() != b.engine()) {
            note(a.label + " <-> " + b.label + ": change sets by hand");
            if (rng_.chance(50)) {
                applied = transfer(a, b);
                applied += transfer(b, a);
            } else {
                applied = transfer(b, a);
                applied += transfer(a, b);
            }
        } else {
            std::string res, how, options;
            if (!opt_.plain_sync && rng_.chance(40)) {
                options = "{\"batch_rows\":" + std::to_string(rng_.range(1, 5)) + "}";
                how = ", '" + options + "'";
            }
            try {
                res = a.sync(b.url(), options);
            } catch (const Failure& e) {
                throw Failure(a.label + " lww_sync(" + b.label + how + ") failed: " + e.what());
            }
            note(a.label + ": lww_sync(" + b.label + how + ") -> " + res);
            const JsonDoc doc(res);
            if (!doc.valid())
                throw Failure(a.label + " lww_sync(" + b.label + how + ") returned invalid JSON (" +
                              std::to_string(res.size()) + " bytes): " + Val::text(res.substr(0, 120)).repr());
            applied = doc.integer("sent.applied", 0) + doc.integer("received.applied", 0);
        }
        // Either side may have taken a new node id (it was a copy).
        for (Peer* q : {&a, &b}) {
            std::string now = q->node_id();
            if (now != q->node) note(q->label + ": new node id " + now + " (was " + q->node + ")");
            q->node = now;
        }
        return applied;
    }
    int64_t sync(size_t a, size_t b) { return sync(*peers_[a], *peers_[b]); }

    void op_sync() {
        if (opt_.purge) return op_star_sync();
        size_t a = rng_.below(peers_.size());
        size_t b = (a + 1 + rng_.below(peers_.size() - 1)) % peers_.size();
        sync(a, b);
    }

    // A <-> B then B <-> C; C never talks to A here.
    void op_relay() {
        if (peers_.size() < 3 || opt_.purge) {
            op_sync();
            return;
        }
        std::vector<size_t> idx;
        for (size_t i = 0; i < peers_.size(); ++i) idx.push_back(i);
        rng_.shuffle(idx);
        size_t a = idx[0], b = idx[1], c = idx[2];
        note("relay " + peers_[a]->label + " -> " + peers_[b]->label + " -> " + peers_[c]->label);
        if (rng_.chance(50)) sync(a, b);
        else sync(b, a);
        if (rng_.chance(50)) sync(b, c);
        else sync(c, b);
    }

    // ---------------- SQLite files only: copies, purges, a star with offline leaves

    // Copies happen in Sqlite mode (a copy is a file copied with VACUUM INTO;
    // the quiet-round check of a mixed scenario also assumes no node id
    // changes during the final phase).
    bool copies_in_mode() const { return !opt_.mixed(); }

    // A peer's file copied to a new peer mid-run (a restored backup, a
    // copied app folder): the copy finds out when first used (its file is
    // not where its node id was made). With --copy-undetected, some copies
    // have the file check off and keep the id until an exchange shows they
    // are copies (docs/PROTOCOL.md names the limits of that path: a third
    // peer's cursor on the shared id made from one copy's changes). Either
    // way every write made on either copy must reach everyone.
    void op_copy() {
        if (opt_.no_copy || peers_.size() >= static_cast<size_t>(opt_.peers_max) + 2) {
            op_sync();
            return;
        }
        // --purge: a copy of the hub would be a restored server older than
        // its own purges (docs/PROTOCOL.md names that limit); devices only.
        size_t src = opt_.purge ? 1 + rng_.below(peers_.size() - 1) : rng_.below(peers_.size());
        if (peers_[src]->pg()) throw Failure("internal error: a copy of a Postgres peer");
        auto& p = static_cast<SqlitePeer&>(*peers_[src]);
        const bool detect = !opt_.copy_undetected || rng_.chance(60);
        const std::string name = "copy" + std::to_string(copies_++) + "_of_" + p.name;
        const std::string path = dir_ + "/" + name + ".db";
        // The copy inherits the setting; the original keeps its own.
        const std::string was = p.db->text("SELECT lww_config('detect_copies')");
        p.db->text(std::string("SELECT lww_config('detect_copies', ") + (detect ? "1" : "0") + ")");
        p.db->exec("VACUUM INTO '" + path + "'");
        p.db->text("SELECT lww_config('detect_copies', " + was + ")");
        auto c = std::make_unique<SqlitePeer>(name, path, opt_.ext);
        c->label = label_of(name, Engine::Sqlite);
        c->open();
        c->node = c->node_id();
        note(name + ": file copied from " + p.name + (detect ? "" : " (file check off)") + ", node " + c->node +
             (c->node == p.node ? " (same as the original's)" : " (a new one)"));
        if (detect && c->node == p.node) throw Failure(name + ": the copied file kept its node id " + c->node);
        if (two_conns_) c->conns.push_back(c->connect());
        extra_[name] = extra_[p.name];  // the copy has the original's schema
        dropped_[name] = dropped_[p.name];
        peers_.push_back(std::move(c));
    }

    bool shares_node_id() const {
        std::set<std::string> ids;
        for (const auto& q : peers_)
            if (!ids.insert(q->node).second) return true;
        return false;
    }

    // Copies that have not found out yet: sync each with the peer whose id
    // it shares (the exchange finds the copy) before the final phase.
    void unmask_copies() {
        if (copies_ == 0) return;
        for (size_t i = 0; i < peers_.size(); ++i)
            for (size_t j = i + 1; j < peers_.size(); ++j) {
                peers_[i]->node = peers_[i]->node_id();
                peers_[j]->node = peers_[j]->node_id();
                if (peers_[i]->node != peers_[j]->node) continue;
                note("final: " + peers_[j]->label + " and " + peers_[i]->label + " share node id " + peers_[i]->node);
                if (rng_.chance(50)) sync(j, i);
                else sync(i, j);
                if (peers_[i]->node == peers_[j]->node)
                    throw Failure(peers_[i]->label + " and " + peers_[j]->label + " synced and still share node id " +
                                  peers_[i]->node);
            }
    }

    // --purge: who syncs is a leaf with the hub (p0), the hub serving (a
    // device purges only what the servers it pushes to hold; a hub that
    // pulled from a device would be a server of nobody's: docs/PROTOCOL.md);
    // leaves offline for a stretch do not sync.
    void op_star_sync() {
        std::vector<size_t> online;
        for (size_t i = 1; i < peers_.size(); ++i)
            if (!offline_.count(peers_[i]->name)) online.push_back(i);
        if (online.empty()) return;
        sync(online[rng_.below(online.size())], 0);
    }

    // Every tombstone goes, between syncs. (The purge that runs during sync
    // is the same code on a timer; a horizon of 0 there would purge a
    // tombstone inside the round trip that made it, which a real horizon,
    // measured from when this database got the tombstone, never does.)
    void op_purge(Peer& p) { note(p.label + ": lww_purge(0) -> " + p.db->text("SELECT lww_purge(0)")); }

    void op_offline() {
        if (peers_.size() < 3) return;
        const size_t k = 1 + rng_.below(peers_.size() - 1);
        const std::string& name = peers_[k]->name;
        if (offline_.erase(name)) {
            note(peers_[k]->label + ": back online");
        } else if (offline_.size() + 2 < peers_.size()) {
            offline_.insert(name);
            note(peers_[k]->label + ": offline for a while");
        }
    }

    // ---------------- captures and deliveries

    // A change set for the pool. Usually lww_changes(since); unless
    // --plain-sync, 20% of captures (allow_page) are one row-limited page
    // of it (any page is a valid set of registers).
    PoolEntry capture(size_t pi, int64_t since, bool allow_page) {
        Peer& p = *peers_[pi];
        PoolEntry e;
        e.origin = pi;
        e.since = since;
        Changes c;
        if (allow_page && !opt_.plain_sync && rng_.chance(20)) {
            int64_t after = since;
            if (!p.uptos.empty() && rng_.chance(50)) after = std::max(since, rng_.pick(p.uptos));
            c = changes(p, since, rng_.range(1, 5), after);
        } else {
            c = changes(p, since);
        }
        e.cs = std::move(c.cs);
        e.upto = c.upto;
        e.origin_node = c.origin;
        return e;
    }

    void op_capture() {
        size_t pi = rng_.below(peers_.size());
        Peer& p = *peers_[pi];
        int64_t since = 0;
        if (!p.uptos.empty() && rng_.chance(60)) since = rng_.pick(p.uptos);
        PoolEntry e = capture(pi, since, true);
        note(p.label + ": lww_changes(" + std::to_string(since) + ") -> pool#" + std::to_string(pool_.size()) +
             " upto=" + std::to_string(e.upto) + " bytes=" + std::to_string(e.cs.size()));
        pool_.push_back(std::move(e));
    }

    void apply(size_t entry, size_t target) {
        PoolEntry& e = pool_[entry];
        if (target == e.origin) throw Failure("internal error: applying a change set to its origin");
        Peer& p = *peers_[target];
        // A copy that has not found out yet shares its node id with the set's
        // origin: a database refuses its own sets.
        p.node = p.node_id();
        if (p.node == e.origin_node) {
            note(p.label + ": skip pool#" + std::to_string(entry) + " (same node id as its origin)");
            return;
        }
        const std::string what = "pool#" + std::to_string(entry) + " from " + peers_[e.origin]->label;
        std::string res;
        apply_cs(p, e.cs, what, &res);
        ++e.delivered;
        note(p.label + ": lww_apply(" + what + ") -> " + res);
    }

    // A shuffled batch of pooled sets to a random peer: duplicated, stale and
    // out of order, never back to the peer a set came from.
    void op_deliver() {
        if (pool_.empty()) {
            op_capture();
            return;
        }
        size_t target = rng_.below(peers_.size());
        std::vector<size_t> cand;
        for (size_t i = 0; i < pool_.size(); ++i)
            if (pool_[i].origin != target) cand.push_back(i);
        if (cand.empty()) return;
        rng_.shuffle(cand);
        size_t n = static_cast<size_t>(rng_.range(1, std::min<int64_t>(4, static_cast<int64_t>(cand.size()))));
        std::vector<size_t> batch(cand.begin(), cand.begin() + static_cast<long>(n));
        if (rng_.chance(25)) batch.push_back(batch[rng_.below(batch.size())]);  // duplicate delivery
        rng_.shuffle(batch);
        for (size_t e : batch) apply(e, target);
    }

    // ---------------- final phase

    // Every pair syncs once, in random order; returns the registers applied.
    int64_t mesh_round() {
        size_t n = peers_.size();
        std::vector<std::pair<size_t, size_t>> pairs;
        for (size_t i = 0; i < n; ++i)
            for (size_t j = i + 1; j < n; ++j) pairs.emplace_back(i, j);
        rng_.shuffle(pairs);
        int64_t applied = 0;
        for (auto& pr : pairs) applied += rng_.chance(50) ? sync(pr.first, pr.second) : sync(pr.second, pr.first);
        return applied;
    }

    // One of four spreads, each enough to bring every change to every peer.
    void spread() {
        size_t n = peers_.size();
        unsigned mode = static_cast<unsigned>(rng_.below(100));
        if (mode < 45) {
            note("final: mesh (all pairs once)");
            mesh_round();
        } else if (mode < 65) {
            note("final: ring twice");
            size_t off = rng_.below(n);
            for (int round = 0; round < 2; ++round)
                for (size_t k = 0; k < n; ++k) {
                    size_t a = (off + k) % n, b = (off + k + 1) % n;
                    if (rng_.chance(50)) sync(a, b);
                    else sync(b, a);
                }
        } else if (mode < 85) {
            size_t hub = rng_.below(n);
            note("final: star twice around " + peers_[hub]->label);
            for (int round = 0; round < 2; ++round)
                for (size_t k = 0; k < n; ++k) {
                    if (k == hub) continue;
                    if (rng_.chance(50)) sync(hub, k);
                    else sync(k, hub);
                }
        } else {
            note("final: manual full exchange of lww_changes(0)");
            std::vector<size_t> entries;
            for (size_t i = 0; i < n; ++i) {
                pool_.push_back(capture(i, 0, false));
                entries.push_back(pool_.size() - 1);
            }
            std::vector<std::pair<size_t, size_t>> deliveries;
            for (size_t e : entries)
                for (size_t t = 0; t < n; ++t)
                    if (t != pool_[e].origin) deliveries.emplace_back(e, t);
            rng_.shuffle(deliveries);
            for (auto& d : deliveries) apply(d.first, d.second);
        }
    }

    // The final spread; --purge keeps the star: everyone back, no more
    // purges, each leaf syncs with the hub until nothing changes (a
    // re-snapshot's drops, a tombstone sent again to a peer that brought back
    // its row, reach the other leaves a round later), at most eight rounds.
    void converge() {
        if (!opt_.purge) return spread();
        size_t n = peers_.size();
        offline_.clear();
        note("final: star around " + peers_[0]->label + " until nothing changes");
        std::vector<Dump> before = dump_all(kept_);
        for (int round = 0; round < 8; ++round) {
            for (size_t k = 1; k < n; ++k) sync(k, 0);
            std::vector<Dump> after = dump_all(kept_);
            bool same = true;
            for (size_t i = 0; i < n; ++i)
                same = same && dumps_equal(before[i], after[i]) && dumps_equal(after[0], after[i]);
            if (same) return;
            before = std::move(after);
        }
    }

    std::vector<Dump> dump_all(const std::vector<std::string>& items_extra = {}) {
        std::vector<Dump> d;
        for (auto& p : peers_) d.push_back(dump(*p->db, items_extra));
        return d;
    }

    void compare_all(const std::string& phase, const std::vector<Dump>& dumps) {
        for (size_t i = 1; i < dumps.size(); ++i) {
            if (!dumps_equal(dumps[0], dumps[i])) {
                std::string msg = "divergence " + phase + ": " + peers_[0]->label + " (" + peers_[0]->node + ") vs " +
                                  peers_[i]->label + " (" + peers_[i]->node + ")\n";
                msg += diff_dumps(peers_[0]->label, dumps[0], peers_[i]->label, dumps[i]);
                throw Failure(msg);
            }
        }
    }

    // Everyone syncs with everyone until a whole round applies nothing (at
    // most 5 rounds). The spread already brought every register everywhere,
    // so the first round must be quiet; if it is not, peers with equal rows
    // still hold different registers. The rows must not change either.
    void quiet_rounds() {
        const Dump spread0 = dump(*peers_[0]->db);
        int rounds = 0;
        int64_t first_round = 0;
        for (;;) {
            ++rounds;
            note("final: mesh round " + std::to_string(rounds) + " (until quiet)");
            int64_t applied = mesh_round();
            if (rounds == 1) first_round = applied;
            if (applied == 0) break;
            if (rounds >= 5)
                throw Failure("not quiet after " + std::to_string(rounds) + " mesh rounds (last applied " +
                              std::to_string(applied) + " registers)");
        }
        if (rounds > 1) note("quiet after " + std::to_string(rounds) + " mesh rounds");
        std::vector<Dump> d2 = dump_all();
        compare_all("after syncing until quiet", d2);
        if (!dumps_equal(spread0, d2[0]))
            throw Failure("rows changed between the final spread and the quiet mesh rounds\n" +
                          diff_dumps(peers_[0]->label + "(spread)", spread0, peers_[0]->label + "(quiet)", d2[0]));
        if (first_round != 0)
            throw Failure("the first mesh round after the final spread still applied " + std::to_string(first_round) +
                          " register(s) (quiet after " + std::to_string(rounds) +
                          " rounds): the spread left registers behind although the rows were equal");
    }

    void body() {
        const size_t n = static_cast<size_t>(rng_.range(opt_.peers_min, opt_.peers_max));
        // Mixed: 2..n-2 Postgres peers, the rest SQLite, in random order.
        const size_t npg = opt_.mixed() ? static_cast<size_t>(rng_.range(2, static_cast<int64_t>(n) - 2)) : 0;
        bool prerows = rng_.chance(30);
        two_conns_ = rng_.chance(40) && !opt_.single_conn;
        std::vector<Engine> engine;
        for (size_t i = 0; i < n; ++i) engine.push_back(i < npg ? Engine::Postgres : Engine::Sqlite);
        if (npg) rng_.shuffle(engine);
        note("scenario seed " + std::to_string(seed_) + ": " + std::to_string(n) + " peers" +
             (opt_.mixed() ? " (" + std::to_string(npg) + " Postgres, " + std::to_string(n - npg) + " SQLite)" : "") +
             (two_conns_ ? ", two connections each" : ""));
        size_t ipg = 0, isl = 0;
        for (size_t i = 0; i < n; ++i) {
            std::string name = !opt_.mixed()                   ? "p" + std::to_string(i)
                               : engine[i] == Engine::Postgres ? "pg" + std::to_string(ipg++)
                                                               : "sl" + std::to_string(isl++);
            peers_.push_back(make_peer(name, engine[i], prerows));
        }
        std::set<std::string> nodes;
        for (auto& p : peers_)
            if (!nodes.insert(p->node).second) throw Failure("two peers share node id " + p->node);

        int steps = static_cast<int>(rng_.range(opt_.ops_min, opt_.ops_max));
        for (int s = 0; s < steps; ++s) {
            for (auto& pp : peers_) pp->db = pp->conns[rng_.below(pp->conns.size())].get();
            unsigned r = static_cast<unsigned>(rng_.below(100));
            Peer& p = *peers_[rng_.below(peers_.size())];
            // Two files sharing a node id (a copy that has not found out)
            // are two devices: their writes never fall in one millisecond
            // here, as the clocks of two devices would not (the residual
            // risk, docs/PROTOCOL.md "Copies and restores").
            if (shares_node_id()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
            if (r < 2) {
                if (!opt_.no_reopen) op_reopen(p);
            } else if (r < 52) one_write(p);
            else if (r < 58) op_txn(p);
            else if (r < 70) op_sync();
            else if (r < 75) opt_.purge ? op_purge(p) : op_relay();
            else if (r < 86) opt_.purge ? op_sync() : op_capture();
            else if (r < 89 && copies_in_mode()) op_copy();
            else if (r < 96 || opt_.no_schema) opt_.purge ? (r < 92 ? op_offline() : op_purge(p)) : op_deliver();
            else op_schema(p);
        }

        unmask_copies();
        kept_ = align_schema();
        converge();
        // items and pairs converge in one spread. notes may not: a cascade
        // (an item deleted by a merge) or an app trigger firing for merged
        // changes writes during the final syncs, and those writes are local
        // ones that need spreads of their own. Nor may the added columns: a
        // copy detected during the final syncs takes a new node id, and the
        // backfill stamps it sent under the old one (docs/SCHEMA.md) can
        // still win on peers it had already met (seed 936081220800). Without
        // notes and copies (./mixed) nothing writes during the spread: every
        // table must be equal after it, and the syncs that follow must find
        // nothing to do.
        const bool writes_while_merging = has_notes() || copies_ > 0;
        {
            std::vector<Dump> parents = dump_all();
            for (auto& d : parents) d.resize(std::min(d.size(), notes_));
            compare_all(has_notes() ? "after final sync (items, pairs)" : "after final spread", parents);
        }
        std::vector<Dump> dumps = dump_all(kept_);
        for (int round = 0; writes_while_merging && round < 4; ++round) {
            bool same = true;
            for (size_t i = 1; i < dumps.size(); ++i) same = same && dumps_equal(dumps[0], dumps[i]);
            if (same) break;
            note(std::string("final: again (") + (merge_triggers_ ? "app triggers or " : "") +
                 "cascades wrote while merging, or a copy took a new node id)");
            converge();
            dumps = dump_all(kept_);
        }
        compare_all("after final sync", dumps);
        compare_extra(kept_);
        if (!writes_while_merging && !opt_.purge) quiet_rounds();
        // Late joiners hold the added columns' registers as pending: compare
        // the tables' own columns from here on.
        dumps = dump_all();

        // Late joiners, of a random engine in a mixed scenario: a fresh peer
        // that syncs once with a random peer, and one that is given a random
        // peer's changes through lww_changes/lww_apply, must both end up with
        // the same rows.
        {
            late_.push_back(make_peer("late_sync", late_engine(), false, false));
            Peer& lj = *late_.back();
            Peer& other = *peers_[rng_.below(n)];
            try {
                if (rng_.chance(50)) sync(lj, other);
                else sync(other, lj);
            } catch (const Failure& e) {
                throw Failure("late joiner sync with " + other.label + " failed: " + e.what());
            }
            Dump d = dump(*lj.db);
            if (!dumps_equal(dumps[0], d))
                throw Failure("late joiner " + lj.label + " (synced with " + other.label + ") differs from " +
                              peers_[0]->label + "\n" + diff_dumps(peers_[0]->label, dumps[0], lj.label, d));

            late_.push_back(make_peer("late_apply", late_engine(), false, false));
            Peer& lm = *late_.back();
            Peer& other2 = *peers_[rng_.below(n)];
            transfer(other2, lm);
            Dump d2 = dump(*lm.db);
            if (!dumps_equal(dumps[0], d2))
                throw Failure("late joiner " + lm.label + " (given " + other2.label + "'s lww_changes) differs from " +
                              peers_[0]->label + "\n" + diff_dumps(peers_[0]->label, dumps[0], lm.label, d2));
        }

        // Stale re-delivery after convergence must change nothing.
        if (!pool_.empty()) {
            int k = static_cast<int>(rng_.range(1, 3));
            for (int i = 0; i < k; ++i) {
                size_t e = rng_.below(pool_.size());
                size_t t = rng_.below(n);
                if (t == pool_[e].origin) t = (t + 1) % n;
                apply(e, t);
                Dump d = dump(*peers_[t]->db);
                if (!dumps_equal(dumps[t], d))
                    throw Failure("stale re-delivery of pool#" + std::to_string(e) + " (from " +
                                  peers_[pool_[e].origin]->label + ") changed " + peers_[t]->label +
                                  " after convergence\n" +
                                  diff_dumps(peers_[t]->label + "(before)", dumps[t], peers_[t]->label + "(after)", d));
            }
        }

        // Strong invariant: a key inserted somewhere and never deleted or
        // moved away anywhere must be alive on every peer.
        for (const auto& kv : keys_) {
            const KeyInfo& ki = kv.second;
            if (!ki.inserted || ki.killed) continue;
            // A note goes with its item (ON DELETE CASCADE), wherever that item went.
            bool parent_gone = false;
            for (const auto& parent : ki.parents) {
                auto it = keys_.find(parent);
                parent_gone = parent_gone || replaced_items_.count(parent) || (it != keys_.end() && it->second.killed);
            }
            if (parent_gone) continue;
            for (auto& p : peers_)
                if (!exists(*p, ki.table, ki.key))
                    throw Failure("lost row: " + kv.first +
                                  " was inserted and never deleted or re-keyed, but is missing on " + p->label + " (" +
                                  p->node + ")");
        }
        note("scenario passed");
    }

    Engine late_engine() { return opt_.mixed() && rng_.chance(50) ? Engine::Postgres : Engine::Sqlite; }
};

// ---------------------------------------------------------------- main

volatile sig_atomic_t g_interrupted = 0;
void on_interrupt(int) { g_interrupted = 1; }

void usage(const char* argv0, Mode mode) {
    if (mode == Mode::Mixed)
        std::printf(
            "usage: %s --pg CONNINFO [--ext PATH] [--mixed-scenarios N] [--seed S] [--peers-min N] [--peers-max N]\n"
            "          [--ops-min N] [--ops-max N] [--timeout SEC] [--tmpdir DIR] [--edge-values]\n"
            "          [--plain-sync] [--single-conn] [--no-reopen] [--no-schema] [--no-fork] [--keep] [--verbose]\n",
            argv0);
    else
        std::printf(
            "usage: %s [--ext PATH] [--scenarios N] [--seed S] [--peers-min N] [--peers-max N]\n"
            "          [--ops-min N] [--ops-max N] [--timeout SEC] [--tmpdir DIR] [--edge-values]\n"
            "          [--plain-sync] [--single-conn] [--no-reopen] [--no-schema] [--no-copy] [--copy-undetected] "
            "[--purge] [--no-fork] [--keep] [--verbose]\n",
            argv0);
}

bool parse_u64(const char* s, uint64_t& out) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s, &end, 10);
    if (errno || !end || *end || s[0] == '-') return false;
    out = v;
    return true;
}

// Returns -1 to go on, else the exit status.
int parse_options(int argc, char** argv, Options& o) {
    const bool mixed = o.mixed();
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto need = [&](uint64_t& v) {
            if (i + 1 >= argc || !parse_u64(argv[i + 1], v)) {
                std::fprintf(stderr, "bad or missing value for %s\n", a.c_str());
                std::exit(2);
            }
            ++i;
        };
        uint64_t v = 0;
        if (a == "--ext" && i + 1 < argc) o.ext = argv[++i];
        else if (mixed && a == "--pg" && i + 1 < argc) o.pg = argv[++i];
        else if (a == "--tmpdir" && i + 1 < argc) o.tmpdir = argv[++i];
        else if (a == "--scenarios" || (mixed && a == "--mixed-scenarios")) {
            need(v);
            o.scenarios = v;
        } else if (a == "--seed") {
            need(v);
            o.seed = v;
            o.seed_given = true;
        } else if (a == "--peers-min") {
            need(v);
            o.peers_min = static_cast<int>(v);
        } else if (a == "--peers-max") {
            need(v);
            o.peers_max = static_cast<int>(v);
        } else if (a == "--ops-min") {
            need(v);
            o.ops_min = static_cast<int>(v);
        } else if (a == "--ops-max") {
            need(v);
            o.ops_max = static_cast<int>(v);
        } else if (a == "--timeout") {
            need(v);
            o.timeout = static_cast<int>(v);
        } else if (a == "--verbose" || a == "-v") o.verbose = true;
        else if (a == "--no-fork") o.fork_each = false;
        else if (a == "--keep") o.keep = true;
        else if (a == "--edge-values") o.edge_values = true;
        else if (a == "--plain-sync") o.plain_sync = true;
        else if (a == "--single-conn") o.single_conn = true;
        else if (a == "--no-reopen") o.no_reopen = true;
        else if (a == "--no-schema") o.no_schema = true;
        else if (!mixed && a == "--no-copy") o.no_copy = true;
        else if (!mixed && a == "--purge") o.purge = true;
        else if (!mixed && a == "--copy-undetected") o.copy_undetected = true;
        else if (a == "--help" || a == "-h") {
            usage(argv[0], o.mode);
            return 0;
        } else {
            std::fprintf(stderr, "unknown argument: %s\n", a.c_str());
            usage(argv[0], o.mode);
            return 2;
        }
    }
    const int least = mixed ? 4 : 2;
    if (o.peers_min < least || o.peers_max < o.peers_min) {
        std::fprintf(stderr, "need %d <= --peers-min <= --peers-max%s\n", least,
                     mixed ? " (at least 2 Postgres and 2 SQLite peers)" : "");
        return 2;
    }
    if (o.ops_max < o.ops_min) {
        std::fprintf(stderr, "need --ops-min <= --ops-max\n");
        return 2;
    }
    return -1;
}

// The whole program: options, the Postgres databases (Mixed), the scenarios
// (each in a forked child, workload.h's run_scenarios), and the closing line
// "N passed, M failed" that tests/run_all.sh reads.
int driver_main(int argc, char** argv, Mode mode, PgCluster* pg) {
    Options o(mode);
    if (int rc = parse_options(argc, argv, o); rc >= 0) return rc;
    if (o.mixed() && o.pg.empty()) {
        std::printf(
            "mixed mode skipped: no --pg CONNINFO given (a running PostgreSQL cluster with the lwwsync "
            "extension installed, e.g. --pg \"host=/tmp/pgdir port=5531 user=postgres\")\n");
        std::printf("0 passed, 0 failed\n");
        return 0;
    }
    if (!o.seed_given) {
        uint64_t t = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
        Rng r(t ^ (static_cast<uint64_t>(getpid()) << 32));
        o.seed = r.next() % 1000000000000ULL;
    }

    // Fail fast if the extension (or the cluster) is unusable.
    {
        sqlite3* db = nullptr;
        sqlite3_open(":memory:", &db);
        std::string err = lwwtest::load_lwwsync(db, o.ext);
        sqlite3_close(db);
        if (!err.empty()) {
            std::printf("cannot load extension %s: %s\n", o.ext.c_str(), err.c_str());
            std::printf("0 passed, %" PRIu64 " failed\n", o.scenarios);
            return 1;
        }
    }
    if (o.mixed()) {
        // One database per Postgres peer a scenario can have, and the late joiners.
        std::vector<std::string> slots;
        for (int i = 0; i < o.peers_max - 2; ++i) slots.push_back("pg" + std::to_string(i));
        slots.push_back("late_sync");
        slots.push_back("late_apply");
        std::string err = pg->open(o.pg, slots);
        if (!err.empty()) {
            std::printf("%s\n", err.c_str());
            std::printf("0 passed, %" PRIu64 " failed\n", o.scenarios);
            return 1;
        }
    }

    std::string base = o.tmpdir;
    if (base.empty()) {
        const char* t = std::getenv("TMPDIR");
        base = t && *t ? t : "/tmp";
    }
    std::string tmpl = base + (o.mixed() ? "/lwwmixed-XXXXXX" : "/lwwconv-XXXXXX");
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) {
        std::perror("mkdtemp");
        if (o.mixed()) pg->close(false);
        return 2;
    }
    std::string root = buf.data();

    const Options dflt(mode);
    std::string repro_extra;
    if (o.mixed()) repro_extra += " --pg '" + o.pg + "'";
    if (o.ext != dflt.ext) repro_extra += " --ext " + o.ext;
    if (o.peers_min != dflt.peers_min) repro_extra += " --peers-min " + std::to_string(o.peers_min);
    if (o.peers_max != dflt.peers_max) repro_extra += " --peers-max " + std::to_string(o.peers_max);
    if (o.ops_min != dflt.ops_min) repro_extra += " --ops-min " + std::to_string(o.ops_min);
    if (o.ops_max != dflt.ops_max) repro_extra += " --ops-max " + std::to_string(o.ops_max);
    if (o.edge_values) repro_extra += " --edge-values";
    if (o.plain_sync) repro_extra += " --plain-sync";
    if (o.single_conn) repro_extra += " --single-conn";
    if (o.no_reopen) repro_extra += " --no-reopen";
    if (o.no_copy) repro_extra += " --no-copy";
    if (o.no_schema) repro_extra += " --no-schema";
    if (o.purge) repro_extra += " --purge";
    if (o.copy_undetected) repro_extra += " --copy-undetected";

    if (o.mixed())
        std::printf("seed: %" PRIu64 " (mixed scenarios %" PRIu64
                    ", peers %d-%d with >= 2 Postgres and >= 2 SQLite, ops %d-%d, ext %s, %s, dir %s)\n",
                    o.seed, o.scenarios, o.peers_min, o.peers_max, o.ops_min, o.ops_max, o.ext.c_str(),
                    pg->describe().c_str(), root.c_str());
    else
        std::printf("seed: %" PRIu64 " (scenarios %" PRIu64 ", peers %d-%d, ops %d-%d, ext %s, dir %s)\n", o.seed,
                    o.scenarios, o.peers_min, o.peers_max, o.ops_min, o.ops_max, o.ext.c_str(), root.c_str());
    std::fflush(stdout);

    // An interrupt ends the run after the current scenario, so that the
    // Postgres databases are dropped.
    if (o.mixed()) {
        struct sigaction sa {};
        sa.sa_handler = on_interrupt;
        sigaction(SIGINT, &sa, nullptr);
        sigaction(SIGTERM, &sa, nullptr);
    }

    auto t0 = std::chrono::steady_clock::now();
    RunOptions ro;
    ro.seed = o.seed;
    ro.scenarios = o.scenarios;
    ro.fork_each = o.fork_each;
    ro.timeout = o.timeout;
    ro.keep = o.keep;
    ro.verbose = o.verbose;
    ro.count_flag = o.mixed() ? "--mixed-scenarios" : "--scenarios";
    ro.repro_extra = repro_extra;
    const RunTotals totals = run_scenarios(
        ro, root, argv[0],
        [&](uint64_t seed, const std::string& dir) {
            Scenario sc(seed, o, dir, pg);
            return sc.run();
        },
        &g_interrupted);
    const uint64_t passed = totals.passed, failed = totals.failed;

    if (o.mixed()) pg->close(o.keep);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (g_interrupted) std::printf("interrupted\n");
    std::printf("elapsed %.1fs\n", secs);
    if (failed == 0 && !o.keep) {
        std::error_code ec;
        std::filesystem::remove_all(root, ec);
    }
    std::printf("%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
    return failed == 0 && !g_interrupted ? 0 : 1;
}

}  // namespace conv
