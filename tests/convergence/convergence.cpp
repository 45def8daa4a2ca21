// Randomized convergence test for the lwwsync SQLite extension.
//
// Black-box: it only uses the public SQL API (lww_track, lww_node_id,
// lww_changes, lww_apply, lww_sync) plus plain SQL writes on tracked tables.
// Each scenario builds 3-5 peer databases, performs random writes, random
// pairwise / relayed syncs and random (stale, duplicated, out-of-order)
// manual change-set deliveries, then makes everyone sync with everyone and
// requires every peer to hold the same rows, byte for byte.
//
// See README.md in this directory for flags and how to reproduce a seed.

#include <sqlite3.h>

#include <sys/types.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

#include "workload.h"

// The schema of this test: typed columns that also get off-type values, and
// one untyped column per table.
namespace conv {

const std::vector<Table>& tables() {
    static const std::vector<Table> t = {
        {"items",
         {{"id", Kind::Int}},
         {{"name", Kind::Text}, {"score", Kind::Real}, {"qty", Kind::Int}, {"data", Kind::Blob}, {"extra", Kind::Any}},
         "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, score REAL, qty INTEGER, data BLOB, extra)"},
        {"pairs",
         {{"k1", Kind::Text}, {"k2", Kind::Int}},
         {{"label", Kind::Text},
          {"weight", Kind::Real},
          {"cnt", Kind::Int},
          {"payload", Kind::Blob},
          {"note", Kind::Any}},
         "CREATE TABLE pairs(k1 TEXT, k2 INTEGER, label TEXT, weight REAL, cnt INTEGER, payload BLOB, note, "
         "PRIMARY KEY(k1, k2)) WITHOUT ROWID"},
        // A child of items (foreign keys are on in every connection): its
        // `item` is an existing item or NULL when written; a delete or key
        // change of the item cascades (local writes, also while merging).
        {"notes",
         {{"id", Kind::Int}},
         {{"item", Kind::Int}, {"body", Kind::Text}, {"edits", Kind::Int}},
         "CREATE TABLE notes(id INTEGER PRIMARY KEY, item INTEGER REFERENCES items(id) ON DELETE CASCADE"
         " ON UPDATE CASCADE, body TEXT, edits INTEGER)"},
    };
    return t;
}

constexpr size_t kItems = 0, kNotes = 2;

// An app trigger of some peers: counts edits of a note's body. Without
// `WHEN NOT lww_applying()` it also fires for merged bodies, and lwwsync
// records that write as the peer's own.
std::string counter_trigger(bool when_not_applying) {
    return std::string("CREATE TRIGGER count_note_edits AFTER UPDATE OF body ON notes ") +
           (when_not_applying ? "WHEN NOT lww_applying() " : "") +
           "BEGIN UPDATE notes SET edits = coalesce(edits, 0) + 1 WHERE id = NEW.id; END";
}

}  // namespace conv

namespace {

using namespace conv;

// ---------------------------------------------------------------- options

struct Options {
    std::string ext = "./lwwsync.so";
    uint64_t scenarios = 300;
    uint64_t seed = 0;
    bool seed_given = false;
    int peers_min = 3;
    int peers_max = 5;
    int ops_min = 20;
    int ops_max = 60;
    bool verbose = false;
    bool fork_each = true;
    bool keep = false;
    bool edge_values = false;
    bool plain_sync = false;
    bool single_conn = false;
    bool no_reopen = false;
    bool no_schema = false;  // no ADD/DROP COLUMN mid-run (docs/SCHEMA.md)
    bool no_copy = false;
    bool copy_undetected = false;
    // Tombstone purge (docs/PROTOCOL.md, "Purge and re-snapshot"): a star
    // around p0, random purges (by hand and during sync), peers offline for
    // stretches; no hand-delivered change sets (lww_apply knows no horizon).
    bool purge = false;
    int timeout = 120;
    std::string tmpdir;
};

// ---------------------------------------------------------------- peers

// A peer is one database file.  It may have a second connection (as an app
// with a connection pool would); `db` is the connection the current step uses.
struct Peer {
    std::string name;
    std::string path;
    std::string node;
    std::vector<sqlite3*> conns;
    sqlite3* db = nullptr;
    std::vector<int64_t> uptos;  // "upto" values seen from lww_changes on this peer
    void close_all() {
        for (sqlite3* c : conns) sqlite3_close_v2(c);
        conns.clear();
        db = nullptr;
    }
    ~Peer() { close_all(); }
};

sqlite3* open_conn(const std::string& path, const Options& o) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
        sqlite3_close_v2(db);
        throw Failure("cannot open " + path);
    }
    sqlite3_busy_timeout(db, 10000);
    std::string err = load_ext(db, o.ext);
    if (err.empty()) {
        try {
            exec(db, "PRAGMA synchronous=OFF");
            exec(db, "PRAGMA foreign_keys=ON");
        } catch (const Failure& e) {
            err = e.what();
        }
    }
    if (!err.empty()) {
        sqlite3_close_v2(db);
        throw Failure("cannot set up connection to " + path + " (extension " + o.ext + "): " + err);
    }
    return db;
}

std::unique_ptr<Peer> open_peer(const std::string& name, const std::string& path, const Options& o) {
    auto p = std::make_unique<Peer>();
    p->name = name;
    p->path = path;
    p->db = open_conn(path, o);
    p->conns.push_back(p->db);
    std::string mode = query_text(p->db, "PRAGMA journal_mode=WAL");
    if (mode != "wal") throw Failure("journal_mode is " + mode + ", wanted wal");
    return p;
}

// extra: columns added mid-run that every peer kept (items only).
std::vector<Row> dump_table(sqlite3* db, const Table& t, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> names;
    for (const auto& c : t.cols) names.push_back(c.name);
    names.insert(names.end(), extra.begin(), extra.end());
    std::string sql = "SELECT " + t.key_list();
    for (const auto& name : names) sql += ", " + name;
    sql += " FROM " + t.name + " ORDER BY " + t.key_list();
    Stmt s(db, sql);
    std::vector<Row> rows;
    while (s.step()) {
        std::vector<Val> k;
        for (size_t i = 0; i < t.keys.size(); ++i) k.push_back(s.col(static_cast<int>(i)));
        Row r;
        r.key = render_key(t, k);
        r.full = r.key + " {";
        for (size_t i = 0; i < names.size(); ++i) {
            r.vals.push_back(render(s.col(static_cast<int>(t.keys.size() + i))));
            r.full += (i ? ", " : "") + names[i] + "=" + r.vals.back();
        }
        r.full += "}";
        rows.push_back(std::move(r));
    }
    return rows;
}

Dump dump(sqlite3* db, const std::vector<std::string>& items_extra = {}) {
    Dump d;
    for (size_t i = 0; i < tables().size(); ++i)
        d.push_back(dump_table(db, tables()[i], i == kItems ? items_extra : std::vector<std::string>{}));
    return d;
}

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

class Scenario {
public:
    Scenario(uint64_t seed, const Options& o, const std::string& dir)
        : seed_(seed), opt_(o), dir_(dir), rng_(seed), gen_{rng_, o.edge_values} {}

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
    Rng rng_;
    Gen gen_;
    std::vector<std::unique_ptr<Peer>> peers_;
    std::vector<PoolEntry> pool_;
    std::map<std::string, KeyInfo> keys_;
    std::vector<std::string> log_;
    // pending inserts of the current explicit transaction (discarded on rollback)
    bool two_conns_ = false;
    int copies_ = 0;
    bool in_txn_ = false;
    std::vector<std::pair<size_t, std::vector<Val>>> txn_inserts_;
    bool merge_triggers_ = false;           // some peer's app trigger fires for merged changes
    std::set<std::string> replaced_items_;  // items rows removed by INSERT OR REPLACE somewhere

    void fail(const std::string& what) {
        std::printf("  scenario seed %" PRIu64 ": %s\n", seed_, what.c_str());
        dump_log();
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

    std::unique_ptr<Peer> make_peer(const std::string& name, bool allow_prerows, bool merge_trigger_ok = true) {
        auto p = open_peer(name, dir_ + "/" + name + ".db", opt_);
        for (const auto& t : tables()) exec(p->db, t.ddl);
        // The app's own trigger: none, quiet while merging, or firing for
        // merged changes too; made before or after lww_track.
        const unsigned trig = static_cast<unsigned>(rng_.below(3));
        const bool firing = trig == 2 && merge_trigger_ok;
        const bool trig_first = rng_.chance(50);
        if (trig && trig_first) exec(p->db, counter_trigger(!firing));
        if (trig)
            note(name + ": app trigger on notes" + (firing ? " (fires while merging)" : " (WHEN NOT lww_applying())"));
        if (firing) merge_triggers_ = true;
        if (allow_prerows) {
            // rows that exist before tracking: they must get stamped by lww_track
            for (size_t ti = 0; ti < tables().size(); ++ti) {
                int n = static_cast<int>(rng_.range(0, 3));
                for (int i = 0; i < n; ++i) {
                    auto k = gen_.key(tables()[ti]);
                    if (exists(*p, ti, k)) continue;
                    insert_row(*p, ti, k, /*all_cols=*/true, "INSERT");
                    note(name + ": pre-track insert " + render_key(tables()[ti], k));
                    mark_inserted(ti, k);
                }
            }
        }
        for (const auto& t : tables()) {
            query_text(p->db, "SELECT lww_track(?1)", {Val::text(t.name)}, true);
            if (rng_.chance(10)) query_text(p->db, "SELECT lww_track(?1)", {Val::text(t.name)}, true);  // idempotent
        }
        if (trig && !trig_first) exec(p->db, counter_trigger(!firing));
        p->node = query_text(p->db, "SELECT lww_node_id()");
        note(name + ": node " + p->node + " file " + p->path);
        if (two_conns_) {
            p->conns.push_back(open_conn(p->path, opt_));
            std::string n2 = query_text(p->conns.back(), "SELECT lww_node_id()");
            if (n2 != p->node) throw Failure(name + ": second connection reports node id " + n2 + ", first " + p->node);
        }
        return p;
    }

    // ---------------- helpers on rows

    bool exists(Peer& p, size_t ti, const std::vector<Val>& k) {
        const Table& t = tables()[ti];
        Stmt s(p.db, "SELECT 1 FROM " + t.name + " WHERE " + t.key_where(1));
        for (size_t i = 0; i < k.size(); ++i) s.bind(static_cast<int>(i + 1), k[i]);
        return s.step();
    }
    std::vector<std::vector<Val>> existing_keys(Peer& p, size_t ti) {
        const Table& t = tables()[ti];
        Stmt s(p.db, "SELECT " + t.key_list() + " FROM " + t.name + " ORDER BY " + t.key_list());
        std::vector<std::vector<Val>> out;
        while (s.step()) {
            std::vector<Val> k;
            for (size_t i = 0; i < t.keys.size(); ++i) k.push_back(s.col(static_cast<int>(i)));
            out.push_back(std::move(k));
        }
        return out;
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
        if (ti == kNotes && tables()[ti].cols[c].name == "item") {
            auto ks = existing_keys(p, kItems);
            if (ks.empty() || rng_.chance(20)) return Val();
            const auto& k = rng_.pick(ks);
            if (note_row) note_row->parents.insert(render_key(tables()[kItems], k));
            return k[0];
        }
        return gen_.value(tables()[ti].cols[c].kind);
    }

    // verb: "INSERT" / "INSERT OR REPLACE" / "UPSERT"
    void insert_row(Peer& p, size_t ti, const std::vector<Val>& k, bool all_cols, const std::string& verb) {
        const Table& t = tables()[ti];
        std::vector<size_t> cols;
        if (all_cols) {
            for (size_t i = 0; i < t.cols.size(); ++i) cols.push_back(i);
        } else {
            cols = random_cols(ti, true);
        }
        std::string names = t.key_list(), params;
        int n = static_cast<int>(t.keys.size());
        for (int i = 1; i <= n; ++i) params += (i > 1 ? ", ?" : "?") + std::to_string(i);
        for (size_t c : cols) {
            names += ", " + t.cols[c].name;
            params += ", ?" + std::to_string(++n);
        }
        std::string sql;
        if (verb == "UPSERT") {
            sql = "INSERT INTO " + t.name + "(" + names + ") VALUES(" + params + ") ON CONFLICT(" + t.key_list() + ")";
            if (cols.empty()) sql += " DO NOTHING";
            else {
                sql += " DO UPDATE SET ";
                for (size_t i = 0; i < cols.size(); ++i)
                    sql += (i ? ", " : "") + t.cols[cols[i]].name + " = excluded." + t.cols[cols[i]].name;
            }
        } else {
            sql = verb + " INTO " + t.name + "(" + names + ") VALUES(" + params + ")";
        }
        Stmt s(p.db, sql);
        std::string desc;
        int b = 1;
        for (const auto& kv : k) s.bind(b++, kv);
        KeyInfo* ki = ti == kNotes ? &info(ti, k) : nullptr;
        for (size_t c : cols) {
            Val v = col_value(p, ti, c, ki);
            desc += " " + t.cols[c].name + "=" + render(v);
            s.bind(b++, v);
        }
        if (ti == kItems && verb == "INSERT OR REPLACE" && exists(p, ti, k))
            replaced_items_.insert(render_key(t, k));  // its notes here cascade away
        s.run();
        note(p.name + ": " + verb + " " + render_key(t, k) + desc);
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
        const auto& k = rng_.pick(ks);
        auto cols = random_cols(ti, false);
        std::string sql = "UPDATE " + t.name + " SET ";
        std::vector<Val> vals;
        std::string desc;
        int n = static_cast<int>(t.keys.size());
        for (size_t i = 0; i < cols.size(); ++i) {
            const Col& c = t.cols[cols[i]];
            sql += i ? ", " : "";
            if (rng_.chance(8)) {  // no-op assignment
                sql += c.name + " = " + c.name;
                desc += " " + c.name + "=(unchanged)";
            } else {
                Val v = col_value(p, ti, cols[i], ti == kNotes ? &info(ti, k) : nullptr);
                vals.push_back(v);
                sql += c.name + " = ?" + std::to_string(++n);
                desc += " " + c.name + "=" + render(v);
            }
        }
        sql += " WHERE " + t.key_where(1);
        Stmt s(p.db, sql);
        int b = 1;
        for (const auto& kv : k) s.bind(b++, kv);
        for (const auto& v : vals) s.bind(b++, v);
        s.run();
        note(p.name + ": UPDATE " + render_key(t, k) + desc);
    }

    void delete_key(Peer& p, size_t ti, const std::vector<Val>& k) {
        const Table& t = tables()[ti];
        Stmt s(p.db, "DELETE FROM " + t.name + " WHERE " + t.key_where(1));
        for (size_t i = 0; i < k.size(); ++i) s.bind(static_cast<int>(i + 1), k[i]);
        s.run();
        mark_killed(ti, k);
        note(p.name + ": DELETE " + render_key(t, k));
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
            note(p.name + ": (pk change skipped: no free key)");
            return;
        }
        std::string sql = "UPDATE " + t.name + " SET ";
        int n = static_cast<int>(t.keys.size());
        for (size_t i = 0; i < changed.size(); ++i)
            sql += (i ? ", " : "") + t.keys[changed[i]].name + " = ?" + std::to_string(++n);
        sql += " WHERE " + t.key_where(1);
        Stmt s(p.db, sql);
        int b = 1;
        for (const auto& kv : old) s.bind(b++, kv);
        for (size_t c : changed) s.bind(b++, nk[c]);
        s.run();
        mark_killed(ti, old);
        mark_inserted(ti, nk);
        // Parents of notes: a note keeps its item's under its new key, and an
        // item's notes follow it to its new key (ON UPDATE CASCADE).
        if (ti == kNotes) {
            const std::set<std::string> ps = info(ti, old).parents;
            info(ti, nk).parents.insert(ps.begin(), ps.end());
        } else if (ti == kItems) {
            const std::string o = render_key(t, old), n = render_key(t, nk);
            for (auto& kv : keys_)
                if (kv.second.table == kNotes && kv.second.parents.count(o)) kv.second.parents.insert(n);
        }
        note(p.name + ": UPDATE KEY " + render_key(t, old) + " -> " + render_key(t, nk));
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

    // ---------------- schema changes mid-run (docs/SCHEMA.md)
    //
    // Extra columns x1, x2 of "items" come and go on random peers (lww_alter,
    // or a plain ALTER for ADD COLUMN, noticed at the next lwwsync call) and
    // get written; peers without them hold their registers in lww_pending.
    // Before the final sync every peer is brought to one schema; then the
    // extra columns must be identical everywhere too.

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
        static const char* defaults[] = {"", " DEFAULT 1", " DEFAULT 'two'"};
        const std::string ddl = "ALTER TABLE items ADD COLUMN " + col + defaults[rng_.below(3)];
        if (plain) {
            exec(p.db, ddl);
            query_text(p.db, "SELECT lww_seq()");  // any lwwsync call notices it
        } else {
            query_text(p.db, "SELECT lww_alter(?1)", {Val::text(ddl)});
        }
        extra_[p.name].insert(col);
        note(p.name + ": " + ddl + (plain ? " (plain)" : " (lww_alter)"));
    }

    void drop_extra(Peer& p, const std::string& col) {
        query_text(p.db, "SELECT lww_alter(?1)", {Val::text("ALTER TABLE items DROP COLUMN " + col)});
        extra_[p.name].erase(col);
        dropped_[p.name].insert(col);
        note(p.name + ": lww_alter DROP COLUMN " + col);
    }

    void op_schema(Peer& p) {
        auto& ex = extra_[p.name];
        unsigned r = static_cast<unsigned>(rng_.below(100));
        if (r < 45 && !ex.empty()) {
            auto keys = existing_keys(p, 0);
            if (keys.empty()) return;
            std::vector<std::string> have(ex.begin(), ex.end());
            const std::string col = have[rng_.below(have.size())];
            const auto& k = keys[rng_.below(keys.size())];
            const Val v = rng_.chance(50) ? Val::integer(static_cast<int64_t>(rng_.below(10)))
                                          : Val::text("v" + std::to_string(rng_.below(10)));
            Stmt st(p.db, "UPDATE items SET " + col + " = ?1 WHERE id = ?2");
            st.bind(1, v);
            st.bind(2, k[0]);
            st.step();
            note(p.name + ": UPDATE items SET " + col + " = " + render(v) + " WHERE id = " + render(k[0]));
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
            Stmt st(pp->db, sql);
            std::vector<std::string> rows;
            while (st.step()) {
                std::string line;
                for (size_t i = 0; i <= cols.size(); ++i)
                    line += (i ? " | " : "") + render(st.col(static_cast<int>(i)));
                rows.push_back(line);
            }
            all.push_back(std::move(rows));
        }
        for (size_t i = 1; i < all.size(); ++i)
            if (all[i] != all[0]) {
                std::string msg =
                    "divergence of the added columns: " + peers_[0]->name + " vs " + peers_[i]->name + "\n";
                for (size_t r = 0; r < std::max(all[0].size(), all[i].size()); ++r) {
                    const std::string a = r < all[0].size() ? all[0][r] : "-", b = r < all[i].size() ? all[i][r] : "-";
                    if (a != b) msg += "  " + a + "  <>  " + b + "\n";
                }
                throw Failure(msg);
            }
        note("added columns identical on every peer: " + std::to_string(all[0].size()) + " rows");
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
        exec(p.db, "BEGIN");
        note(p.name + ": BEGIN");
        in_txn_ = true;
        txn_inserts_.clear();
        int n = static_cast<int>(rng_.range(2, 4));
        for (int i = 0; i < n; ++i) one_write(p);
        in_txn_ = false;
        if (rng_.chance(20)) {
            exec(p.db, "ROLLBACK");
            note(p.name + ": ROLLBACK");
            // deletes stay recorded as "killed" (conservative); inserts are forgotten
        } else {
            exec(p.db, "COMMIT");
            note(p.name + ": COMMIT");
            for (auto& ti : txn_inserts_) info(ti.first, ti.second).inserted = true;
        }
        txn_inserts_.clear();
    }

    // Close every connection of a peer and open them again (an app restart).
    void op_reopen(Peer& p) {
        size_t n = p.conns.size();
        p.close_all();
        for (size_t i = 0; i < n; ++i) p.conns.push_back(open_conn(p.path, opt_));
        p.db = p.conns[0];
        std::string node = query_text(p.db, "SELECT lww_node_id()");
        if (node != p.node) throw Failure(p.name + ": node id changed across reopen: " + p.node + " -> " + node);
        note(p.name + ": reopened " + std::to_string(n) + " connection(s)");
    }

    // ---------------- sync operations

    // lww_sync from `db` to the database file `path`.  Unless --plain-sync,
    // some syncs pass {"batch_rows": 1..5} so that a sync needs many batches.
    std::string sync_call(sqlite3* db, const std::string& path, std::string& how) {
        if (!opt_.plain_sync && rng_.chance(40)) {
            std::string o = "{\"batch_rows\":" + std::to_string(rng_.range(1, 5)) + "}";
            how = ", '" + o + "'";
            return query_text(db, "SELECT lww_sync(?1, ?2)", {Val::text("file:" + path), Val::text(o)});
        }
        how.clear();
        return query_text(db, "SELECT lww_sync(?1)", {Val::text("file:" + path)});
    }

    void sync(size_t a, size_t b) {
        Peer& pa = *peers_[a];
        Peer& pb = *peers_[b];
        std::string res, how;
        try {
            res = sync_call(pa.db, pb.path, how);
        } catch (const Failure& e) {
            throw Failure(pa.name + " lww_sync(" + pb.name + how + ") failed: " + e.what());
        }
        note(pa.name + ": lww_sync(" + pb.name + how + ") -> " + res);
        // Either side may have taken a new node id (it was a copy).
        for (Peer* q : {&pa, &pb}) {
            std::string now = query_text(q->db, "SELECT lww_node_id()");
            if (now != q->node) note(q->name + ": new node id " + now + " (was " + q->node + ")");
            q->node = now;
        }
    }

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
        Peer& p = *peers_[src];
        const bool detect = !opt_.copy_undetected || rng_.chance(60);
        const std::string name = "copy" + std::to_string(copies_++) + "_of_" + p.name;
        const std::string path = dir_ + "/" + name + ".db";
        // The copy inherits the setting; the original keeps its own.
        const std::string was = query_text(p.db, "SELECT lww_config('detect_copies')");
        query_text(p.db, std::string("SELECT lww_config('detect_copies', ") + (detect ? "1" : "0") + ")");
        exec(p.db, "VACUUM INTO '" + path + "'");
        query_text(p.db, "SELECT lww_config('detect_copies', " + was + ")");
        auto c = open_peer(name, path, opt_);
        c->node = query_text(c->db, "SELECT lww_node_id()");
        note(name + ": file copied from " + p.name + (detect ? "" : " (file check off)") + ", node " + c->node +
             (c->node == p.node ? " (same as the original's)" : " (a new one)"));
        if (detect && c->node == p.node) throw Failure(name + ": the copied file kept its node id " + c->node);
        if (two_conns_) c->conns.push_back(open_conn(c->path, opt_));
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
        for (size_t i = 0; i < peers_.size(); ++i)
            for (size_t j = i + 1; j < peers_.size(); ++j) {
                peers_[i]->node = query_text(peers_[i]->db, "SELECT lww_node_id()");
                peers_[j]->node = query_text(peers_[j]->db, "SELECT lww_node_id()");
                if (peers_[i]->node != peers_[j]->node) continue;
                note("final: " + peers_[j]->name + " and " + peers_[i]->name + " share node id " + peers_[i]->node);
                if (rng_.chance(50)) sync(j, i);
                else sync(i, j);
                if (peers_[i]->node == peers_[j]->node)
                    throw Failure(peers_[i]->name + " and " + peers_[j]->name + " synced and still share node id " +
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
    void op_purge(Peer& p) { note(p.name + ": lww_purge(0) -> " + query_text(p.db, "SELECT lww_purge(0)")); }

    void op_offline() {
        if (peers_.size() < 3) return;
        const size_t k = 1 + rng_.below(peers_.size() - 1);
        const std::string& name = peers_[k]->name;
        if (offline_.erase(name)) {
            note(name + ": back online");
        } else if (offline_.size() + 2 < peers_.size()) {
            offline_.insert(name);
            note(name + ": offline for a while");
        }
    }

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
        note("relay " + peers_[a]->name + " -> " + peers_[b]->name + " -> " + peers_[c]->name);
        if (rng_.chance(50)) sync(a, b);
        else sync(b, a);
        if (rng_.chance(50)) sync(b, c);
        else sync(c, b);
    }

    PoolEntry capture(size_t pi, int64_t since) {
        Peer& p = *peers_[pi];
        PoolEntry e;
        e.origin = pi;
        e.since = since;
        try {
            e.cs = query_text(p.db, "SELECT lww_changes(?1)", {Val::integer(since)});
        } catch (const Failure& ex) {
            throw Failure(p.name + " lww_changes(" + std::to_string(since) + ") failed: " + ex.what());
        }
        const JsonDoc doc(e.cs);
        if (!doc.valid())
            throw Failure(p.name + " lww_changes(" + std::to_string(since) +
                          ") returned invalid JSON: " + e.cs.substr(0, 300));
        e.upto = doc.integer("upto", 0);
        e.origin_node = doc.text("origin");
        p.uptos.push_back(e.upto);
        return e;
    }

    void op_capture() {
        size_t pi = rng_.below(peers_.size());
        Peer& p = *peers_[pi];
        int64_t since = 0;
        if (!p.uptos.empty() && rng_.chance(60)) since = rng_.pick(p.uptos);
        PoolEntry e = capture(pi, since);
        note(p.name + ": lww_changes(" + std::to_string(since) + ") -> pool#" + std::to_string(pool_.size()) +
             " upto=" + std::to_string(e.upto) + " bytes=" + std::to_string(e.cs.size()));
        pool_.push_back(std::move(e));
    }

    void apply(size_t entry, size_t target) {
        PoolEntry& e = pool_[entry];
        if (target == e.origin) throw Failure("internal error: applying a change set to its origin");
        Peer& p = *peers_[target];
        // A copy that has not found out yet shares its node id with the set's
        // origin: a database refuses its own sets.
        p.node = query_text(p.db, "SELECT lww_node_id()");
        if (p.node == e.origin_node) {
            note(p.name + ": skip pool#" + std::to_string(entry) + " (same node id as its origin)");
            return;
        }
        std::string res;
        try {
            res = query_text(p.db, "SELECT lww_apply(?1)", {Val::text(e.cs)});
        } catch (const Failure& ex) {
            throw Failure(p.name + " lww_apply(pool#" + std::to_string(entry) + " from " + peers_[e.origin]->name +
                          ") failed: " + ex.what());
        }
        ++e.delivered;
        note(p.name + ": lww_apply(pool#" + std::to_string(entry) + " from " + peers_[e.origin]->name + ") -> " + res);
    }

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

    void converge() {
        size_t n = peers_.size();
        if (opt_.purge) {
            // Everyone back, no more purges; each leaf syncs with the hub
            // until nothing changes (a re-snapshot's drops, a tombstone sent
            // again to a peer that brought back its row, reach the other
            // leaves a round later), at most eight rounds.
            offline_.clear();
            note("final: star around p0 until nothing changes");
            std::vector<Dump> before;
            for (auto& p : peers_) before.push_back(dump(p->db, kept_));
            for (int round = 0; round < 8; ++round) {
                for (size_t k = 1; k < n; ++k) sync(k, 0);
                std::vector<Dump> after;
                for (auto& p : peers_) after.push_back(dump(p->db, kept_));
                bool same = true;
                for (size_t i = 0; i < n; ++i)
                    same = same && dumps_equal(before[i], after[i]) && dumps_equal(after[0], after[i]);
                if (same) return;
                before = std::move(after);
            }
            return;
        }
        unsigned mode = static_cast<unsigned>(rng_.below(100));
        if (mode < 45) {
            // mesh: every pair syncs directly once (bidirectional), in random order
            note("final: mesh (all pairs once)");
            std::vector<std::pair<size_t, size_t>> pairs;
            for (size_t i = 0; i < n; ++i)
                for (size_t j = i + 1; j < n; ++j) pairs.emplace_back(i, j);
            rng_.shuffle(pairs);
            for (auto& pr : pairs) {
                if (rng_.chance(50)) sync(pr.first, pr.second);
                else sync(pr.second, pr.first);
            }
        } else if (mode < 65) {
            // ring, twice around
            note("final: ring twice");
            size_t off = rng_.below(n);
            for (int round = 0; round < 2; ++round)
                for (size_t k = 0; k < n; ++k) {
                    size_t a = (off + k) % n, b = (off + k + 1) % n;
                    if (rng_.chance(50)) sync(a, b);
                    else sync(b, a);
                }
        } else if (mode < 85) {
            // star around a random hub, twice
            size_t hub = rng_.below(n);
            note("final: star twice around " + peers_[hub]->name);
            for (int round = 0; round < 2; ++round)
                for (size_t k = 0; k < n; ++k) {
                    if (k == hub) continue;
                    if (rng_.chance(50)) sync(hub, k);
                    else sync(k, hub);
                }
        } else {
            // manual: every peer's full change set applied to every other peer
            note("final: manual full exchange of lww_changes(0)");
            std::vector<size_t> entries;
            for (size_t i = 0; i < n; ++i) {
                pool_.push_back(capture(i, 0));
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

    void compare_all(const std::string& phase, const std::vector<Dump>& dumps) {
        for (size_t i = 1; i < dumps.size(); ++i) {
            if (!dumps_equal(dumps[0], dumps[i])) {
                std::string msg = "divergence " + phase + ": " + peers_[0]->name + " (" + peers_[0]->node + ") vs " +
                                  peers_[i]->name + " (" + peers_[i]->node + ")\n";
                msg += diff_dumps(peers_[0]->name, dumps[0], peers_[i]->name, dumps[i]);
                throw Failure(msg);
            }
        }
    }

    void body() {
        size_t n = static_cast<size_t>(rng_.range(opt_.peers_min, opt_.peers_max));
        bool prerows = rng_.chance(30);
        two_conns_ = rng_.chance(40) && !opt_.single_conn;
        note("scenario seed " + std::to_string(seed_) + ": " + std::to_string(n) + " peers" +
             (two_conns_ ? ", two connections each" : ""));
        for (size_t i = 0; i < n; ++i) peers_.push_back(make_peer("p" + std::to_string(i), prerows));

        int steps = static_cast<int>(rng_.range(opt_.ops_min, opt_.ops_max));
        for (int s = 0; s < steps; ++s) {
            for (auto& pp : peers_) pp->db = pp->conns[rng_.below(pp->conns.size())];
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
            else if (r < 89) op_copy();
            else if (r < 96 || opt_.no_schema) opt_.purge ? (r < 92 ? op_offline() : op_purge(p)) : op_deliver();
            else op_schema(p);
        }

        unmask_copies();
        kept_ = align_schema();
        converge();
        // items and pairs converge in one round. notes may not: a cascade
        // (an item deleted by a merge) or an app trigger firing for merged
        // changes writes during the final syncs, and those writes are local
        // ones that need rounds of their own. Nor may the added columns: a
        // copy detected during the final syncs takes a new node id, and the
        // backfill stamps it sent under the old one (docs/SCHEMA.md) can
        // still win on peers it had already met (seed 936081220800).
        {
            std::vector<Dump> parents;
            for (auto& p : peers_) {
                Dump d = dump(p->db);
                parents.push_back(Dump(d.begin(), d.begin() + kNotes));
            }
            compare_all("after final sync (items, pairs)", parents);
        }
        std::vector<Dump> dumps;
        for (auto& p : peers_) dumps.push_back(dump(p->db, kept_));
        for (int round = 0; round < 4; ++round) {
            bool same = true;
            for (size_t i = 1; i < dumps.size(); ++i) same = same && dumps_equal(dumps[0], dumps[i]);
            if (same) break;
            note(std::string("final: again (") + (merge_triggers_ ? "app triggers or " : "") +
                 "cascades wrote while merging, or a copy took a new node id)");
            converge();
            dumps.clear();
            for (auto& p : peers_) dumps.push_back(dump(p->db, kept_));
        }
        compare_all("after final sync", dumps);
        compare_extra(kept_);
        // Late joiners hold the added columns' registers as pending: compare
        // the tables' own columns from here on.
        dumps.clear();
        for (auto& p : peers_) dumps.push_back(dump(p->db));

        // Late joiners: a fresh peer that syncs once, and one that receives a
        // full change set by hand, must both end up with the same rows.
        {
            auto lj = make_peer("late_sync", false, false);
            size_t other = rng_.below(n);
            std::string res, how;
            try {
                if (rng_.chance(50)) res = sync_call(lj->db, peers_[other]->path, how);
                else res = sync_call(peers_[other]->db, lj->path, how);
            } catch (const Failure& e) {
                throw Failure("late joiner sync with " + peers_[other]->name + " failed: " + e.what());
            }
            note("late_sync <-> " + peers_[other]->name + how + ": " + res);
            Dump d = dump(lj->db);
            if (!dumps_equal(dumps[0], d))
                throw Failure("late joiner (lww_sync with " + peers_[other]->name + ") differs from " +
                              peers_[0]->name + "\n" + diff_dumps(peers_[0]->name, dumps[0], "late_sync", d));

            auto lm = make_peer("late_apply", false, false);
            other = rng_.below(n);
            int64_t since = 0;
            for (int guard = 0; guard < 1000; ++guard) {
                PoolEntry e = capture(other, since);
                std::string r2;
                try {
                    r2 = query_text(lm->db, "SELECT lww_apply(?1)", {Val::text(e.cs)});
                } catch (const Failure& ex) {
                    throw Failure("late joiner lww_apply(lww_changes(" + std::to_string(since) + ") of " +
                                  peers_[other]->name + ") failed: " + ex.what());
                }
                note("late_apply <- " + peers_[other]->name + " lww_changes(" + std::to_string(since) + "): " + r2);
                if (e.upto <= since) break;
                since = e.upto;
            }
            Dump d2 = dump(lm->db);
            if (!dumps_equal(dumps[0], d2))
                throw Failure("late joiner (lww_apply of " + peers_[other]->name + "'s lww_changes) differs from " +
                              peers_[0]->name + "\n" + diff_dumps(peers_[0]->name, dumps[0], "late_apply", d2));
        }

        // Stale re-delivery after convergence must change nothing.
        if (!pool_.empty()) {
            int k = static_cast<int>(rng_.range(1, 3));
            for (int i = 0; i < k; ++i) {
                size_t e = rng_.below(pool_.size());
                size_t t = rng_.below(n);
                if (t == pool_[e].origin) t = (t + 1) % n;
                apply(e, t);
                Dump d = dump(peers_[t]->db);
                if (!dumps_equal(dumps[t], d))
                    throw Failure("stale re-delivery of pool#" + std::to_string(e) + " (from " +
                                  peers_[pool_[e].origin]->name + ") changed " + peers_[t]->name +
                                  " after convergence\n" +
                                  diff_dumps(peers_[t]->name + "(before)", dumps[t], peers_[t]->name + "(after)", d));
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
                                  " was inserted and never deleted or re-keyed, but is "
                                  "missing on " +
                                  p->name + " (" + p->node + ")");
        }
        note("scenario passed");
    }
};

// ---------------------------------------------------------------- main

void usage(const char* argv0) {
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

}  // namespace

int main(int argc, char** argv) {
    Options o;
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
        else if (a == "--tmpdir" && i + 1 < argc) o.tmpdir = argv[++i];
        else if (a == "--scenarios") {
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
        else if (a == "--no-copy") o.no_copy = true;
        else if (a == "--purge") o.purge = true;
        else if (a == "--copy-undetected") o.copy_undetected = true;
        else if (a == "--help" || a == "-h") {
            usage(argv[0]);
            return 0;
        } else {
            std::fprintf(stderr, "unknown argument: %s\n", a.c_str());
            usage(argv[0]);
            return 2;
        }
    }
    if (o.peers_min < 2 || o.peers_max < o.peers_min) {
        std::fprintf(stderr, "need 2 <= --peers-min <= --peers-max\n");
        return 2;
    }
    if (o.ops_max < o.ops_min) {
        std::fprintf(stderr, "need --ops-min <= --ops-max\n");
        return 2;
    }
    if (!o.seed_given) {
        uint64_t t = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
        Rng r(t ^ (static_cast<uint64_t>(getpid()) << 32));
        o.seed = r.next() % 1000000000000ULL;
    }

    // Fail fast if the extension cannot be loaded at all.
    {
        sqlite3* db = nullptr;
        sqlite3_open(":memory:", &db);
        std::string err = load_ext(db, o.ext);
        sqlite3_close(db);
        if (!err.empty()) {
            std::printf("cannot load extension %s: %s\n", o.ext.c_str(), err.c_str());
            std::printf("0 passed, %" PRIu64 " failed\n", o.scenarios);
            return 1;
        }
    }

    std::string base = o.tmpdir;
    if (base.empty()) {
        const char* t = std::getenv("TMPDIR");
        base = t && *t ? t : "/tmp";
    }
    std::string tmpl = base + "/lwwconv-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) {
        std::perror("mkdtemp");
        return 2;
    }
    std::string root = buf.data();

    std::string repro_extra;
    if (o.ext != "./lwwsync.so") repro_extra += " --ext " + o.ext;
    if (o.peers_min != 3) repro_extra += " --peers-min " + std::to_string(o.peers_min);
    if (o.peers_max != 5) repro_extra += " --peers-max " + std::to_string(o.peers_max);
    if (o.ops_min != 20) repro_extra += " --ops-min " + std::to_string(o.ops_min);
    if (o.ops_max != 60) repro_extra += " --ops-max " + std::to_string(o.ops_max);
    if (o.edge_values) repro_extra += " --edge-values";
    if (o.plain_sync) repro_extra += " --plain-sync";
    if (o.single_conn) repro_extra += " --single-conn";
    if (o.no_reopen) repro_extra += " --no-reopen";
    if (o.no_copy) repro_extra += " --no-copy";
    if (o.no_schema) repro_extra += " --no-schema";
    if (o.purge) repro_extra += " --purge";
    if (o.copy_undetected) repro_extra += " --copy-undetected";

    std::printf("seed: %" PRIu64 " (scenarios %" PRIu64 ", peers %d-%d, ops %d-%d, ext %s, dir %s)\n", o.seed,
                o.scenarios, o.peers_min, o.peers_max, o.ops_min, o.ops_max, o.ext.c_str(), root.c_str());
    std::fflush(stdout);

    auto t0 = std::chrono::steady_clock::now();
    RunOptions ro;
    ro.seed = o.seed;
    ro.scenarios = o.scenarios;
    ro.fork_each = o.fork_each;
    ro.timeout = o.timeout;
    ro.keep = o.keep;
    ro.verbose = o.verbose;
    ro.count_flag = "--scenarios";
    ro.repro_extra = repro_extra;
    const RunTotals totals = run_scenarios(ro, root, argv[0], [&](uint64_t seed, const std::string& dir) {
        Scenario sc(seed, o, dir);
        return sc.run();
    });
    const uint64_t passed = totals.passed, failed = totals.failed;

    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("elapsed %.1fs\n", secs);
    if (failed == 0 && !o.keep) {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    std::printf("%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
