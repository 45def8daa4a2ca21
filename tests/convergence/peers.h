// The peers of the convergence driver (scenario.h). A peer is one database
// of one engine, reached through one or two connections; the driver writes
// its operations once, against the Peer interface here, and each engine
// says how its SQL spells lwwsync's functions.
//
// This file holds the interface, the SQLite peer and the row dumps. The
// PostgreSQL peer is in pg_peer.h, which only ./mixed includes: ./convergence
// (SQLite peers only) is built without libpq.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "workload.h"

namespace conv {

using lwwtest::Rows;

// ---------------------------------------------------------------- connections

// One connection to one peer. SQL is written with SQLite's ?N placeholders;
// the Postgres connection turns them into $N.
class Conn {
public:
    virtual ~Conn() = default;
    virtual Rows query(const std::string& sql, const std::vector<Val>& args = {}) = 0;
    void exec(const std::string& sql) { query(sql); }
    // First column of the first row as text (integers in decimal).
    std::string text(const std::string& sql, const std::vector<Val>& args = {}) {
        Rows r = query(sql, args);
        if (r.empty() || r[0].empty()) throw Failure("no row from [" + sql + "]");
        const Val& v = r[0][0];
        if (v.kind == Val::Text || v.kind == Val::Blob) return v.s;
        if (v.kind == Val::Int) return std::to_string(v.i);
        throw Failure("unexpected " + v.repr() + " from [" + sql + "]");
    }
};

// A connection to a SQLite file with the extension loaded, foreign keys on
// (the schema of ./convergence has one) and no fsync.
class SqliteConn : public Conn {
public:
    SqliteConn(const std::string& path, const std::string& ext) {
        if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
            sqlite3_close_v2(db_);
            db_ = nullptr;
            throw Failure("cannot open " + path);
        }
        sqlite3_busy_timeout(db_, 10000);
        std::string err = lwwtest::load_lwwsync(db_, ext);
        if (err.empty()) {
            try {
                conv::exec(db_, "PRAGMA synchronous=OFF");
                conv::exec(db_, "PRAGMA foreign_keys=ON");
            } catch (const Failure& e) {
                err = e.what();
            }
        }
        if (!err.empty()) {
            sqlite3_close_v2(db_);
            db_ = nullptr;
            throw Failure("cannot set up connection to " + path + " (extension " + ext + "): " + err);
        }
    }
    ~SqliteConn() override {
        if (db_) sqlite3_close_v2(db_);
    }
    SqliteConn(const SqliteConn&) = delete;
    SqliteConn& operator=(const SqliteConn&) = delete;

    Rows query(const std::string& sql, const std::vector<Val>& args) override {
        Stmt s(db_, sql);
        s.bind_all(args);
        Rows out;
        while (s.step()) {
            std::vector<Val> row;
            for (int i = 0; i < s.ncols(); ++i) row.push_back(s.col(i));
            out.push_back(std::move(row));
        }
        return out;
    }

private:
    sqlite3* db_ = nullptr;
};

// ---------------------------------------------------------------- peers

enum class Engine { Sqlite, Postgres };

class Peer {
public:
    std::string name;   // p0, pg1, sl0, copy0_of_p2, late_sync, ...
    std::string label;  // how logs and failures name it: the name, plus the engine in mixed scenarios
    std::string node;   // lww_node_id() as last read
    std::vector<std::unique_ptr<Conn>> conns;
    Conn* db = nullptr;          // the connection the current step uses
    std::vector<int64_t> uptos;  // "upto" values seen from lww_changes on this peer

    explicit Peer(std::string n) : name(std::move(n)), label(name) {}
    virtual ~Peer() = default;
    Peer(const Peer&) = delete;
    Peer& operator=(const Peer&) = delete;

    virtual Engine engine() const = 0;
    bool pg() const { return engine() == Engine::Postgres; }
    // Where its rows live, for the log: "file /tmp/..." or "database lwwconv_...".
    virtual std::string where() const = 0;
    // What lww_sync on a peer of the same engine is given to reach this one.
    virtual std::string url() const = 0;
    virtual std::unique_ptr<Conn> connect() const = 0;
    // Opens the first connection on an empty store that has the tables of
    // tables(), not yet tracked.
    virtual void create() = 0;

    // lwwsync's SQL API as the engine spells it (Postgres returns uuid and
    // jsonb, read here as text).
    virtual std::string node_id_on(Conn& c) = 0;
    std::string node_id() { return node_id_on(*db); }
    virtual void track(const std::string& table) = 0;
    // lww_changes(since) or, with a row limit, lww_changes(since, limit, after).
    std::string changes(int64_t since, int64_t limit, int64_t after) {
        if (limit)
            return db->text("SELECT lww_changes(?1, ?2, ?3)",
                            {Val::integer(since), Val::integer(limit), Val::integer(after)});
        return db->text("SELECT lww_changes(?1)", {Val::integer(since)});
    }
    virtual std::string apply(const std::string& changeset) = 0;
    // lww_sync(url) or, with `options` not empty, lww_sync(url, options).
    virtual std::string sync(const std::string& url, const std::string& options) = 0;
    // ALTER TABLE as an app of this engine runs it. Postgres: plain (its event
    // trigger follows); SQLite: through lww_alter, or plain and noticed at the
    // next lwwsync call. Returns how it was done, for the log.
    virtual std::string alter(const std::string& ddl, bool plain) = 0;
    // The column type that holds integers in both engines' sense (added columns).
    virtual std::string int_type() const = 0;
};

// One database file. `create` makes it; `open` opens one that exists (a copy).
class SqlitePeer : public Peer {
public:
    SqlitePeer(std::string name, std::string path, std::string ext)
        : Peer(std::move(name)), path_(std::move(path)), ext_(std::move(ext)) {}
    const std::string& path() const { return path_; }

    Engine engine() const override { return Engine::Sqlite; }
    std::string where() const override { return "file " + path_; }
    std::string url() const override { return "file:" + path_; }
    std::unique_ptr<Conn> connect() const override { return std::make_unique<SqliteConn>(path_, ext_); }
    void open() {
        conns.push_back(connect());
        db = conns[0].get();
        std::string mode = db->text("PRAGMA journal_mode=WAL");
        if (mode != "wal") throw Failure("journal_mode is " + mode + ", wanted wal");
    }
    void create() override {
        open();
        for (const auto& t : tables()) db->exec(t.ddl);
    }

    std::string node_id_on(Conn& c) override { return c.text("SELECT lww_node_id()"); }
    void track(const std::string& table) override { db->query("SELECT lww_track(?1)", {Val::text(table)}); }
    std::string apply(const std::string& cs) override { return db->text("SELECT lww_apply(?1)", {Val::text(cs)}); }
    std::string sync(const std::string& url, const std::string& options) override {
        if (options.empty()) return db->text("SELECT lww_sync(?1)", {Val::text(url)});
        return db->text("SELECT lww_sync(?1, ?2)", {Val::text(url), Val::text(options)});
    }
    std::string alter(const std::string& ddl, bool plain) override {
        if (plain) {
            db->exec(ddl);
            db->text("SELECT lww_seq()");  // any lwwsync call notices it
            return " (plain)";
        }
        db->text("SELECT lww_alter(?1)", {Val::text(ddl)});
        return " (lww_alter)";
    }
    std::string int_type() const override { return "INTEGER"; }

private:
    std::string path_;
    std::string ext_;
};

// The Postgres databases of ./mixed (pg_peer.h), made once per run and
// reused by every scenario.
class PgCluster {
public:
    virtual ~PgCluster() = default;
    // Connects and makes one database per slot; returns what went wrong, or "".
    virtual std::string open(const std::string& conninfo, const std::vector<std::string>& slots) = 0;
    // Drops the databases, unless `keep`.
    virtual void close(bool keep) = 0;
    // The cluster and the databases' names, for the first line of the output.
    virtual std::string describe() const = 0;
    // The peer of slot `name`; create() resets its database.
    virtual std::unique_ptr<Peer> peer(const std::string& name) = 0;
};

// ---------------------------------------------------------------- dumps

// The canonical order of keys: by type, then integers by number and text
// and blobs bytewise (SQLite's ORDER BY for the keys generated here; a
// Postgres database's collation plays no part).
bool val_less(const Val& a, const Val& b) {
    if (a.kind != b.kind) return static_cast<int>(a.kind) < static_cast<int>(b.kind);
    switch (a.kind) {
        case Val::Null: return false;
        case Val::Int: return a.i < b.i;
        case Val::Real: return a.d < b.d;
        case Val::Text:
        case Val::Blob: return a.s < b.s;
    }
    return false;
}

void sort_by_key(Rows& rows, size_t nkeys) {
    std::sort(rows.begin(), rows.end(), [&](const std::vector<Val>& x, const std::vector<Val>& y) {
        for (size_t i = 0; i < nkeys; ++i) {
            if (val_less(x[i], y[i])) return true;
            if (val_less(y[i], x[i])) return false;
        }
        return false;
    });
}

constexpr size_t kItems = 0;  // tables()[0] is "items" in every mode

// Every table's rows, in key order, each value in the canonical rendering
// (workload.h), read with the engine's own types. items_extra: columns added
// mid-run that every peer kept.
Dump dump(Conn& db, const std::vector<std::string>& items_extra = {}) {
    Dump d;
    for (size_t ti = 0; ti < tables().size(); ++ti) {
        const Table& t = tables()[ti];
        std::vector<std::string> names;
        for (const auto& c : t.cols) names.push_back(c.name);
        if (ti == kItems) names.insert(names.end(), items_extra.begin(), items_extra.end());
        std::string sql = "SELECT " + t.key_list();
        for (const auto& name : names) sql += ", " + name;
        Rows rs = db.query(sql + " FROM " + t.name);
        sort_by_key(rs, t.keys.size());
        std::vector<Row> rows;
        for (const auto& r : rs) {
            Row row;
            row.key = render_key(t, std::vector<Val>(r.begin(), r.begin() + static_cast<long>(t.keys.size())));
            row.full = row.key + " {";
            for (size_t i = 0; i < names.size(); ++i) {
                row.vals.push_back(r[t.keys.size() + i].repr());
                row.full += (i ? ", " : "") + names[i] + "=" + row.vals.back();
            }
            row.full += "}";
            rows.push_back(std::move(row));
        }
        d.push_back(std::move(rows));
    }
    return d;
}

}  // namespace conv
