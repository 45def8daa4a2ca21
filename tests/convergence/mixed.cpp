// Randomized convergence test for mixed lwwsync peers: PostgreSQL databases
// (the lwwsync Postgres extension) and SQLite files (the SQLite extension).
//
// Black-box, like convergence.cpp, whose workload generator it shares
// (workload.h): only the public SQL API (lww_track, lww_node_id, lww_changes,
// lww_apply, lww_sync) plus plain SQL writes on tracked tables.
//
// Transports:
//   Postgres <-> Postgres   lww_sync('postgresql:///db?host=...')  (in the server)
//   SQLite   <-> SQLite     lww_sync('file:...')
//   Postgres <-> SQLite     change sets moved by this program: lww_changes on
//                           one side, lww_apply on the other, with a cursor per
//                           direction kept here (paged by the "complete" /
//                           "after" rules of docs/PROTOCOL.md when a row limit
//                           is used).
// At the end everyone syncs with everyone until quiet, and every peer must
// hold the same rows in the canonical value model, byte for byte.
//
// See README.md in this directory for flags and how to reproduce a seed.

#include <libpq-fe.h>
#include <sqlite3.h>

#include <sys/types.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
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
#include <utility>
#include <vector>

#include "workload.h"

namespace fs = std::filesystem;

// The schema of this test. Every column has one type, the same in both
// engines, so that a value means the same thing on every peer:
//   integer <-> int8, real <-> float8, text <-> text, blob <-> bytea.
// (The SQLite-only test also has untyped columns and off-type values; a typed
// Postgres column cannot hold those, so they are left out here.)
namespace conv {

const std::vector<Table>& tables() {
    static const std::vector<Table> t = {
        {"items",
         {{"id", Kind::Int}},
         {{"name", Kind::Text}, {"score", Kind::Real}, {"qty", Kind::Int}, {"data", Kind::Blob}, {"extra", Kind::Real}},
         "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, score REAL, qty INTEGER, data BLOB, extra REAL)"},
        {"pairs",
         {{"k1", Kind::Text}, {"k2", Kind::Int}},
         {{"label", Kind::Text},
          {"weight", Kind::Real},
          {"cnt", Kind::Int},
          {"payload", Kind::Blob},
          {"note", Kind::Text}},
         "CREATE TABLE pairs(k1 TEXT, k2 INTEGER, label TEXT, weight REAL, cnt INTEGER, payload BLOB, note TEXT, "
         "PRIMARY KEY(k1, k2)) WITHOUT ROWID"},
    };
    return t;
}

}  // namespace conv

namespace {

using namespace conv;

// The same tables in Postgres (index-aligned with tables()).
const std::vector<std::string>& pg_ddl() {
    static const std::vector<std::string> d = {
        "CREATE TABLE items(id int8 PRIMARY KEY, name text, score float8, qty int8, data bytea, extra float8)",
        "CREATE TABLE pairs(k1 text, k2 int8, label text, weight float8, cnt int8, payload bytea, note text, "
        "PRIMARY KEY(k1, k2))",
    };
    return d;
}

// ---------------------------------------------------------------- options

struct Options {
    std::string ext = "./lwwsync.so";
    std::string pg;  // libpq conninfo of a running cluster; empty = mixed mode skipped
    uint64_t scenarios = 200;
    uint64_t seed = 0;
    bool seed_given = false;
    int peers_min = 4;
    int peers_max = 6;
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
    int timeout = 120;
    std::string tmpdir;
    // filled in by main
    std::string db_prefix;  // lwwconv_<pid>_
    std::string pg_host, pg_port, pg_user, pg_password;
};

int max_pg_peers(const Options& o) { return o.peers_max - 2; }

// ---------------------------------------------------------------- connections

using Rows = std::vector<std::vector<Val>>;

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
        if (v.t == VT::Text || v.t == VT::Blob) return v.s;
        if (v.t == VT::Int) return std::to_string(v.i);
        throw Failure("unexpected " + render(v) + " from [" + sql + "]");
    }
};

class SqliteConn : public Conn {
public:
    SqliteConn(const std::string& path, const std::string& ext) : path_(path) {
        if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
            sqlite3_close_v2(db_);
            db_ = nullptr;
            throw Failure("cannot open " + path);
        }
        sqlite3_busy_timeout(db_, 10000);
        std::string err = load_ext(db_, ext);
        if (!err.empty()) throw Failure("cannot load extension " + ext + " into " + path + ": " + err);
        conv::exec(db_, "PRAGMA synchronous=OFF");
    }
    ~SqliteConn() override {
        if (db_) sqlite3_close_v2(db_);
    }
    Rows query(const std::string& sql, const std::vector<Val>& args) override {
        Stmt s(db_, sql);
        for (size_t i = 0; i < args.size(); ++i) s.bind(static_cast<int>(i + 1), args[i]);
        Rows out;
        while (s.step()) {
            std::vector<Val> row;
            for (int i = 0; i < s.ncols(); ++i) row.push_back(s.col(i));
            out.push_back(std::move(row));
        }
        return out;
    }

private:
    std::string path_;
    sqlite3* db_ = nullptr;
};

void put_be64(std::string& out, uint64_t v) {
    for (int i = 7; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
uint64_t get_be(const char* p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
}

// "?12" -> "$12" (the SQL built here never has a '?' anywhere else).
std::string pg_placeholders(const std::string& sql) {
    std::string o;
    for (size_t i = 0; i < sql.size(); ++i) {
        if (sql[i] == '?' && i + 1 < sql.size() && std::isdigit(static_cast<unsigned char>(sql[i + 1]))) o += '$';
        else o += sql[i];
    }
    return o;
}

class PgConn : public Conn {
public:
    // `conninfo` as given by --pg; `dbname` (if not empty) overrides its database.
    PgConn(const std::string& conninfo, const std::string& dbname) : db_(dbname) {
        const char* kw[] = {"dbname", "dbname", "fallback_application_name", nullptr};
        const char* vals[] = {conninfo.c_str(), dbname.c_str(), "lwwconv", nullptr};
        if (dbname.empty()) {
            kw[1] = "fallback_application_name";
            vals[1] = "lwwconv";
            kw[2] = nullptr;
            vals[2] = nullptr;
        }
        // After a backend crash the server restarts and recovers: wait for it
        // (up to a minute), so that one crash fails one scenario, not the rest.
        for (int attempt = 0;; ++attempt) {
            c_ = PQconnectdbParams(kw, vals, 1);
            if (c_ && PQstatus(c_) == CONNECTION_OK) break;
            std::string m = c_ ? PQerrorMessage(c_) : "out of memory";
            if (c_) PQfinish(c_);
            c_ = nullptr;
            bool restarting = m.find("recovery") != std::string::npos ||
                              m.find("not yet accepting connections") != std::string::npos ||
                              m.find("starting up") != std::string::npos;
            if (!restarting || attempt >= 600)
                throw Failure("cannot connect to Postgres database \"" + dbname + "\": " + trim(m));
            usleep(100000);
        }
        PQsetNoticeProcessor(
            c_, [](void*, const char*) {}, nullptr);
    }
    ~PgConn() override {
        if (c_) PQfinish(c_);
    }
    PGconn* raw() { return c_; }

    // Several statements, no parameters (simple query protocol).
    void script(const std::string& sql) {
        PGresult* r = PQexec(c_, sql.c_str());
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            std::string m = PQresultErrorMessage(r);
            PQclear(r);
            throw Failure("Postgres (" + db_ + "): " + trim(m) + " [" + sql + "]");
        }
        PQclear(r);
    }

    Rows query(const std::string& sql, const std::vector<Val>& args) override {
        std::string q = pg_placeholders(sql);
        std::vector<std::string> bufs(args.size());
        std::vector<Oid> types(args.size(), 0);
        std::vector<const char*> vals(args.size(), nullptr);
        std::vector<int> lens(args.size(), 0), fmts(args.size(), 1);
        for (size_t i = 0; i < args.size(); ++i) {
            const Val& v = args[i];
            switch (v.t) {
                case VT::Null: continue;
                case VT::Int:
                    types[i] = 20;
                    put_be64(bufs[i], static_cast<uint64_t>(v.i));
                    break;
                case VT::Real: {
                    uint64_t bits;
                    std::memcpy(&bits, &v.r, 8);
                    types[i] = 701;
                    put_be64(bufs[i], bits);
                    break;
                }
                case VT::Text:
                    types[i] = 25;
                    bufs[i] = v.s;
                    break;
                case VT::Blob:
                    types[i] = 17;
                    bufs[i] = v.s;
                    break;
            }
            vals[i] = bufs[i].data();
            lens[i] = static_cast<int>(bufs[i].size());
        }
        PGresult* r = PQexecParams(c_, q.c_str(), static_cast<int>(args.size()), types.data(), vals.data(), lens.data(),
                                   fmts.data(), 1);
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            std::string m = r ? PQresultErrorMessage(r) : PQerrorMessage(c_);
            PQclear(r);
            throw Failure("Postgres (" + db_ + "): " + trim(m) + " [" + q + "]");
        }
        Rows out;
        int nr = PQntuples(r), nc = PQnfields(r);
        for (int i = 0; i < nr; ++i) {
            std::vector<Val> row;
            for (int j = 0; j < nc; ++j) {
                if (PQgetisnull(r, i, j)) {
                    row.push_back(Val::null());
                    continue;
                }
                const char* p = PQgetvalue(r, i, j);
                int n = PQgetlength(r, i, j);
                Oid t = PQftype(r, j);
                switch (t) {
                    case 20: row.push_back(Val::integer(static_cast<int64_t>(get_be(p, 8)))); break;
                    case 23: row.push_back(Val::integer(static_cast<int32_t>(get_be(p, 4)))); break;
                    case 21: row.push_back(Val::integer(static_cast<int16_t>(get_be(p, 2)))); break;
                    case 16: row.push_back(Val::integer(p[0] ? 1 : 0)); break;
                    case 701: {
                        uint64_t bits = get_be(p, 8);
                        double d;
                        std::memcpy(&d, &bits, 8);
                        row.push_back(Val::real(d));
                        break;
                    }
                    case 25:
                    case 1043:
                    case 19:
                    case 705:
                    case 1042: row.push_back(Val::text(std::string(p, static_cast<size_t>(n)))); break;
                    case 17: row.push_back(Val::blob(std::string(p, static_cast<size_t>(n)))); break;
                    default:
                        PQclear(r);
                        throw Failure("unexpected result type oid " + std::to_string(t) + " [" + q + "]");
                }
            }
            out.push_back(std::move(row));
        }
        PQclear(r);
        return out;
    }

    static std::string trim(std::string s) {
        while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
        return s;
    }

private:
    std::string db_;
    PGconn* c_ = nullptr;
};

// ---------------------------------------------------------------- JSON fields

std::string url_encode(const std::string& s) {
    static const char* hex = "0123456789ABCDEF";
    std::string o;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') o += static_cast<char>(c);
        else {
            o += '%';
            o += hex[c >> 4];
            o += hex[c & 15];
        }
    }
    return o;
}

std::string pg_ident(const std::string& s) { return "\"" + s + "\""; }  // names made here: [a-z0-9_]

// ---------------------------------------------------------------- peers

struct Peer {
    std::string name;
    bool pg = false;
    std::string path;    // SQLite: the database file
    std::string dbname;  // Postgres: the database
    std::string url;     // what lww_sync on a peer of the same engine is given
    std::string node;
    std::vector<std::unique_ptr<Conn>> conns;
    Conn* db = nullptr;
    std::vector<int64_t> uptos;  // "upto" values seen from lww_changes on this peer
    std::string label() const { return name + "(" + (pg ? "pg" : "sqlite") + ")"; }
};

std::unique_ptr<Conn> connect(const Peer& p, const Options& o) {
    if (p.pg) return std::make_unique<PgConn>(o.pg, p.dbname);
    return std::make_unique<SqliteConn>(p.path, o.ext);
}

std::string pg_url(const Options& o, const std::string& db) {
    std::string u = "postgresql:///" + url_encode(db) + "?";
    std::string sep;
    auto add = [&](const char* k, const std::string& v) {
        if (v.empty()) return;
        u += sep + k + "=" + url_encode(v);
        sep = "&";
    };
    add("host", o.pg_host);
    add("port", o.pg_port);
    add("user", o.pg_user);
    add("password", o.pg_password);
    return u;
}

// Database names of the Postgres slots: pg0..pgK for peers, and the two late joiners.
std::vector<std::string> pg_slot_names(const Options& o) {
    std::vector<std::string> v;
    for (int i = 0; i < max_pg_peers(o); ++i) v.push_back("pg" + std::to_string(i));
    v.push_back("late_sync");
    v.push_back("late_apply");
    return v;
}

// ---------------------------------------------------------------- dumps

bool val_less(const Val& a, const Val& b) {
    if (a.t != b.t) return static_cast<int>(a.t) < static_cast<int>(b.t);
    switch (a.t) {
        case VT::Null: return false;
        case VT::Int: return a.i < b.i;
        case VT::Real: return a.r < b.r;
        case VT::Text:
        case VT::Blob: return a.s < b.s;
    }
    return false;
}

Dump dump(Conn& db) {
    Dump d;
    for (const auto& t : tables()) {
        std::string sql = "SELECT " + t.key_list();
        for (const auto& c : t.cols) sql += ", " + c.name;
        sql += " FROM " + t.name;
        Rows rs = db.query(sql);
        // rows sorted by key in the canonical model (integers numerically, text bytewise)
        std::sort(rs.begin(), rs.end(), [&](const std::vector<Val>& x, const std::vector<Val>& y) {
            for (size_t i = 0; i < t.keys.size(); ++i) {
                if (val_less(x[i], y[i])) return true;
                if (val_less(y[i], x[i])) return false;
            }
            return false;
        });
        std::vector<Row> rows;
        for (const auto& r : rs) {
            std::vector<Val> k(r.begin(), r.begin() + static_cast<long>(t.keys.size()));
            Row row;
            row.key = render_key(t, k);
            row.full = row.key + " {";
            for (size_t i = 0; i < t.cols.size(); ++i) {
                row.vals.push_back(render(r[t.keys.size() + i]));
                row.full += (i ? ", " : "") + t.cols[i].name + "=" + row.vals.back();
            }
            row.full += "}";
            rows.push_back(std::move(row));
        }
        d.push_back(std::move(rows));
    }
    return d;
}

// ---------------------------------------------------------------- scenario

struct PoolEntry {
    size_t origin;
    int64_t since;
    int64_t upto;
    std::string cs;
    int delivered = 0;
};

struct KeyInfo {
    size_t table;
    std::vector<Val> key;
    bool inserted = false;
    bool killed = false;
};

// What the test holds of one direction (src -> dst) of a Postgres <-> SQLite
// pair: dst has every register src changed up to `floor`, and every row whose
// latest change is up to `after` (the two differ only while paging).
struct TransferCursor {
    int64_t floor = 0;
    int64_t after = 0;
};

class Scenario {
public:
    Scenario(uint64_t seed, const Options& o, const std::string& dir)
        : seed_(seed), opt_(o), dir_(dir), rng_(seed), gen_{rng_, o.edge_values} {
        gen_.typed_only = true;
    }

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
    std::vector<std::unique_ptr<Peer>> late_;
    std::vector<PoolEntry> pool_;
    std::map<std::string, KeyInfo> keys_;
    std::map<std::pair<std::string, std::string>, TransferCursor> cursors_;
    std::vector<std::string> log_;
    bool two_conns_ = false;
    bool in_txn_ = false;
    std::vector<std::pair<size_t, std::vector<Val>>> txn_inserts_;

    // ---------------- reporting

    void fail(const std::string& what) {
        std::printf("  scenario seed %" PRIu64 ": %s\n", seed_, what.c_str());
        dump_log();
        save_state();
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
        if (opt_.verbose) return;
        std::string path = dir_ + "/ops.log";
        if (FILE* f = std::fopen(path.c_str(), "w")) {
            for (const auto& l : log_) std::fprintf(f, "%s\n", l.c_str());
            std::fclose(f);
            std::printf("  operation log: %s\n", path.c_str());
        }
    }
    // The Postgres databases are reused by the next scenario, so a failure
    // saves every peer's rows and every Postgres peer's lww_changes(0).
    void save_state() {
        std::string path = dir_ + "/state.txt";
        FILE* f = std::fopen(path.c_str(), "w");
        if (!f) return;
        auto save = [&](Peer& p) {
            std::fprintf(f, "== %s node %s %s\n", p.label().c_str(), p.node.c_str(),
                         p.pg ? p.dbname.c_str() : p.path.c_str());
            try {
                if (!p.db) return;
                Dump d = dump(*p.db);
                for (size_t t = 0; t < d.size(); ++t)
                    for (const auto& r : d[t]) std::fprintf(f, "%s\n", r.full.c_str());
                if (p.pg) {
                    std::string cs = p.db->text("SELECT lww_changes(0)");
                    std::fprintf(f, "lww_changes(0): %s\n", cs.c_str());
                }
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

    // A Postgres peer reuses its database: the user tables and the extension
    // are dropped and made again (a new extension means a new node id).
    void reset_pg(PgConn& c) {
        std::string sql =
            "SET client_min_messages = warning;"
            "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
            "  WHERE datname = current_database() AND pid <> pg_backend_pid();"
            "DROP TABLE IF EXISTS items, pairs;"
            "DROP EXTENSION IF EXISTS lwwsync CASCADE;"
            "DROP SCHEMA IF EXISTS lwwsync CASCADE;"
            "CREATE EXTENSION lwwsync;";
        for (const auto& d : pg_ddl()) sql += d + ";";
        c.script(sql);
    }

    std::unique_ptr<Peer> make_peer(const std::string& name, bool pg, bool allow_prerows) {
        auto p = std::make_unique<Peer>();
        p->name = name;
        p->pg = pg;
        if (pg) {
            p->dbname = opt_.db_prefix + name;
            p->url = pg_url(opt_, p->dbname);
            auto c = std::make_unique<PgConn>(opt_.pg, p->dbname);
            reset_pg(*c);
            p->conns.push_back(std::move(c));
        } else {
            p->path = dir_ + "/" + name + ".db";
            p->url = "file:" + p->path;
            p->conns.push_back(connect(*p, opt_));
            std::string mode = p->conns[0]->text("PRAGMA journal_mode=WAL");
            if (mode != "wal") throw Failure("journal_mode is " + mode + ", wanted wal");
            for (const auto& t : tables()) p->conns[0]->exec(t.ddl);
        }
        p->db = p->conns[0].get();
        if (allow_prerows) {
            for (size_t ti = 0; ti < tables().size(); ++ti) {
                int n = static_cast<int>(rng_.range(0, 3));
                for (int i = 0; i < n; ++i) {
                    auto k = gen_.key(tables()[ti]);
                    if (exists(*p, ti, k)) continue;
                    insert_row(*p, ti, k, true, "INSERT");
                    note(name + ": (that insert was before lww_track)");
                    mark_inserted(ti, k);
                }
            }
        }
        const std::string track = pg ? "SELECT lww_track(?1::regclass)" : "SELECT lww_track(?1)";
        for (const auto& t : tables()) {
            p->db->query(track, {Val::text(t.name)});
            if (rng_.chance(10)) p->db->query(track, {Val::text(t.name)});  // idempotent
        }
        p->node = node_id(*p);
        note(p->label() + ": node " + p->node + " " + (pg ? "database " + p->dbname : "file " + p->path));
        if (two_conns_) {
            p->conns.push_back(connect(*p, opt_));
            Conn* keep = p->db;
            p->db = p->conns.back().get();
            std::string n2 = node_id(*p);
            p->db = keep;
            if (n2 != p->node) throw Failure(name + ": second connection reports node id " + n2 + ", first " + p->node);
        }
        return p;
    }

    std::string node_id(Peer& p) { return p.db->text(p.pg ? "SELECT lww_node_id()::text" : "SELECT lww_node_id()"); }

    // ---------------- helpers on rows

    bool exists(Peer& p, size_t ti, const std::vector<Val>& k) {
        const Table& t = tables()[ti];
        return !p.db->query("SELECT 1 FROM " + t.name + " WHERE " + t.key_where(1), k).empty();
    }
    std::vector<std::vector<Val>> existing_keys(Peer& p, size_t ti) {
        const Table& t = tables()[ti];
        Rows rs = p.db->query("SELECT " + t.key_list() + " FROM " + t.name);
        // canonical order, so that a seed picks the same keys whatever the collation
        std::sort(rs.begin(), rs.end(), [&](const std::vector<Val>& x, const std::vector<Val>& y) {
            for (size_t i = 0; i < x.size(); ++i) {
                if (val_less(x[i], y[i])) return true;
                if (val_less(y[i], x[i])) return false;
            }
            return false;
        });
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

    // verb: "INSERT" / "INSERT OR REPLACE" / "UPSERT". On Postgres, INSERT OR
    // REPLACE is either DELETE + INSERT in one transaction or an INSERT ... ON
    // CONFLICT that sets every column (the ones not given to NULL).
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
        for (size_t c : cols) {
            Val v = gen_.value(t.cols[c].kind);
            desc += " " + t.cols[c].name + "=" + render(v);
            args.push_back(v);
        }
        std::string names = t.key_list(), params;
        int n = static_cast<int>(t.keys.size());
        for (int i = 1; i <= n; ++i) params += (i > 1 ? ", ?" : "?") + std::to_string(i);
        for (size_t c : cols) {
            names += ", " + t.cols[c].name;
            params += ", ?" + std::to_string(++n);
        }
        const std::string ins = "INSERT INTO " + t.name + "(" + names + ") VALUES(" + params + ")";
        std::string shown = verb;
        if (verb == "UPSERT") {
            std::string sql = ins + " ON CONFLICT(" + t.key_list() + ")";
            if (cols.empty()) sql += " DO NOTHING";
            else {
                sql += " DO UPDATE SET ";
                for (size_t i = 0; i < cols.size(); ++i)
                    sql += (i ? ", " : "") + t.cols[cols[i]].name + " = excluded." + t.cols[cols[i]].name;
            }
            p.db->query(sql, args);
        } else if (verb == "INSERT OR REPLACE" && p.pg) {
            if (rng_.chance(50)) {
                shown = "DELETE+INSERT (replace)";
                bool own = !in_txn_;
                if (own) p.db->exec("BEGIN");
                p.db->query("DELETE FROM " + t.name + " WHERE " + t.key_where(1), k);
                p.db->query(ins, args);
                if (own) p.db->exec("COMMIT");
            } else {
                shown = "INSERT ON CONFLICT SET ALL (replace)";
                std::string sql = ins + " ON CONFLICT(" + t.key_list() + ") DO UPDATE SET ";
                for (size_t i = 0; i < t.cols.size(); ++i)
                    sql += (i ? ", " : "") + t.cols[i].name + " = excluded." + t.cols[i].name;
                p.db->query(sql, args);
            }
        } else {
            p.db->query(verb + " INTO " + t.name + "(" + names + ") VALUES(" + params + ")", args);
        }
        note(p.label() + ": " + shown + " " + render_key(t, k) + desc);
    }

    // ---------------- write operations (as in convergence.cpp)

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
            if (rng_.chance(8)) {
                sql += c.name + " = " + c.name;
                desc += " " + c.name + "=(unchanged)";
            } else {
                Val v = gen_.value(c.kind);
                args.push_back(v);
                sql += c.name + " = ?" + std::to_string(++n);
                desc += " " + c.name + "=" + render(v);
            }
        }
        sql += " WHERE " + t.key_where(1);
        p.db->query(sql, args);
        note(p.label() + ": UPDATE " + render_key(t, k) + desc);
    }

    void delete_key(Peer& p, size_t ti, const std::vector<Val>& k) {
        const Table& t = tables()[ti];
        p.db->query("DELETE FROM " + t.name + " WHERE " + t.key_where(1), k);
        mark_killed(ti, k);
        note(p.label() + ": DELETE " + render_key(t, k));
    }

    void op_delete(Peer& p, size_t ti) {
        auto ks = existing_keys(p, ti);
        if (ks.empty()) {
            op_insert(p, ti);
            return;
        }
        delete_key(p, ti, rng_.pick(ks));
    }

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
            note(p.label() + ": (pk change skipped: no free key)");
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
        note(p.label() + ": UPDATE KEY " + render_key(t, old) + " -> " + render_key(t, nk));
    }

    void op_replace(Peer& p, size_t ti) {
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

    // ---------------- schema changes mid-run (docs/SCHEMA.md)
    //
    // Extra integer columns x1, x2 of "items" come and go on random peers:
    // Postgres peers with plain ALTER TABLE (the event trigger follows), SQLite
    // peers with lww_alter or a plain ADD COLUMN noticed at the next lwwsync
    // call. Peers without a column hold its registers. Before the final
    // spread every peer gets one schema (a column dropped anywhere ends
    // dropped: a peer never gets its own registers back, docs/SCHEMA.md).

    std::map<std::string, std::set<std::string>> extra_, dropped_;

    static const std::vector<std::string>& extra_cols() {
        static const std::vector<std::string> c = {"x1", "x2"};
        return c;
    }

    void ddl(Peer& p, const std::string& sql, bool plain) {
        if (p.pg || plain) {
            p.db->exec(sql);
            if (!p.pg) p.db->text("SELECT lww_seq()");  // any lwwsync call notices it
        } else {
            p.db->query("SELECT lww_alter(?1)", {Val::text(sql)});
        }
        note(p.label() + ": " + sql + (p.pg ? "" : plain ? " (plain)" : " (lww_alter)"));
    }

    void add_extra(Peer& p, const std::string& col) {
        static const char* defaults[] = {"", " DEFAULT 1", " DEFAULT 2"};
        ddl(p, "ALTER TABLE items ADD COLUMN " + col + (p.pg ? " int8" : " INTEGER") + defaults[rng_.below(3)],
            rng_.chance(40));
        extra_[p.name].insert(col);
    }

    void drop_extra(Peer& p, const std::string& col) {
        ddl(p, "ALTER TABLE items DROP COLUMN " + col, false);
        extra_[p.name].erase(col);
        dropped_[p.name].insert(col);
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
            const Val v = Val::integer(static_cast<int64_t>(rng_.below(10)));
            p.db->query("UPDATE items SET " + col + " = ?1 WHERE id = ?2", {v, k[0]});
            note(p.label() + ": UPDATE items SET " + col + " = " + render(v) + " WHERE id = " + render(k[0]));
        } else if (r < 80) {
            std::vector<std::string> missing;
            for (const auto& c : extra_cols())
                if (!ex.count(c) && !dropped_[p.name].count(c)) missing.push_back(c);
            if (!missing.empty()) add_extra(p, missing[rng_.below(missing.size())]);
        } else if (!ex.empty()) {
            std::vector<std::string> have(ex.begin(), ex.end());
            drop_extra(p, have[rng_.below(have.size())]);
        }
    }

    std::vector<std::string> align_schema() {
        std::vector<std::string> kept;
        if (opt_.no_schema) return kept;
        for (const auto& col : extra_cols()) {
            bool dropped_somewhere = false;
            for (auto& pp : peers_) dropped_somewhere |= dropped_[pp->name].count(col) > 0;
            const bool keep = !dropped_somewhere && rng_.chance(70);
            for (auto& pp : peers_) {
                const bool has = extra_[pp->name].count(col) > 0;
                if (keep && !has) add_extra(*pp, col);
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
                for (size_t i = 0; i < row.size(); ++i) line += (i ? " | " : "") + render(row[i]);
                rows.push_back(line);
            }
            all.push_back(std::move(rows));
        }
        for (size_t i = 1; i < all.size(); ++i)
            if (all[i] != all[0]) {
                std::string msg =
                    "divergence of the added columns: " + peers_[0]->label() + " vs " + peers_[i]->label() + "\n";
                for (size_t r = 0; r < std::max(all[0].size(), all[i].size()); ++r) {
                    const std::string a = r < all[0].size() ? all[0][r] : "-", b = r < all[i].size() ? all[i][r] : "-";
                    if (a != b) msg += "  " + a + "  <>  " + b + "\n";
                }
                throw Failure(msg);
            }
        note("added columns identical on every peer: " + std::to_string(all[0].size()) + " rows");
    }

    void op_txn(Peer& p) {
        p.db->exec("BEGIN");
        note(p.label() + ": BEGIN");
        in_txn_ = true;
        txn_inserts_.clear();
        int n = static_cast<int>(rng_.range(2, 4));
        for (int i = 0; i < n; ++i) one_write(p);
        in_txn_ = false;
        if (rng_.chance(20)) {
            p.db->exec("ROLLBACK");
            note(p.label() + ": ROLLBACK");
        } else {
            p.db->exec("COMMIT");
            note(p.label() + ": COMMIT");
            for (auto& ti : txn_inserts_) info(ti.first, ti.second).inserted = true;
        }
        txn_inserts_.clear();
    }

    // Close every connection of a peer and open them again (an app restart;
    // for Postgres, new sessions).
    void op_reopen(Peer& p) {
        size_t n = p.conns.size();
        p.db = nullptr;
        p.conns.clear();
        for (size_t i = 0; i < n; ++i) p.conns.push_back(connect(p, opt_));
        p.db = p.conns[0].get();
        std::string node = node_id(p);
        if (node != p.node) throw Failure(p.label() + ": node id changed across reopen: " + p.node + " -> " + node);
        note(p.label() + ": reopened " + std::to_string(n) + " connection(s)");
    }

    // ---------------- change sets

    struct Changes {
        std::string cs;
        int64_t upto = 0;
        bool complete = true;
    };

    // lww_changes(since) or, with a row limit, lww_changes(since, limit, after).
    Changes changes(Peer& p, int64_t since, int64_t limit = 0, int64_t after = -1) {
        Changes c;
        std::string call = "lww_changes(" + std::to_string(since) +
                           (limit ? ", " + std::to_string(limit) + ", " + std::to_string(after) : "") + ")";
        try {
            if (limit)
                c.cs = p.db->text("SELECT lww_changes(?1, ?2, ?3)",
                                  {Val::integer(since), Val::integer(limit), Val::integer(after)});
            else c.cs = p.db->text("SELECT lww_changes(?1)", {Val::integer(since)});
        } catch (const Failure& e) {
            throw Failure(p.label() + " " + call + " failed: " + e.what());
        }
        const JsonDoc doc(c.cs);
        if (!doc.valid())
            throw Failure(p.label() + " " + call + " returned invalid JSON (" + std::to_string(c.cs.size()) +
                          " bytes): " + render(Val::text(c.cs.substr(0, 120))));
        c.upto = doc.integer("upto", -1);
        c.complete = doc.boolean("complete", true);
        if (c.upto < 0) throw Failure(p.label() + " " + call + " has no upto: " + c.cs.substr(0, 300));
        if (c.upto < std::max(since, after))
            throw Failure(p.label() + " " + call + " returned upto " + std::to_string(c.upto) + ", below its start");
        p.uptos.push_back(c.upto);
        return c;
    }

    // lww_apply; returns the number of registers applied.
    int64_t apply_cs(Peer& p, const std::string& cs, const std::string& what, std::string* res_out = nullptr) {
        std::string res;
        try {
            res = p.db->text(p.pg ? "SELECT lww_apply(?1)::text" : "SELECT lww_apply(?1)", {Val::text(cs)});
        } catch (const Failure& e) {
            throw Failure(p.label() + " lww_apply(" + what + ") failed: " + e.what());
        }
        if (!JsonDoc(res).valid())
            throw Failure(p.label() + " lww_apply(" + what + ") returned invalid JSON (" + std::to_string(res.size()) +
                          " bytes): " + render(Val::text(res.substr(0, 120))));
        if (res_out) *res_out = res;
        return JsonDoc(res).integer("applied", 0);
    }

    // ---------------- sync operations

    // Moves src's changes to dst by hand, from the cursor this test keeps for
    // the direction src -> dst. Returns the registers applied.
    int64_t transfer(Peer& src, Peer& dst) {
        TransferCursor& cur = cursors_[{src.name, dst.name}];
        int64_t limit = !opt_.plain_sync && rng_.chance(40) ? rng_.range(1, 5) : 0;
        int64_t applied = 0;
        int pages = 0;
        for (;;) {
            if (++pages > 100000) throw Failure("transfer " + src.label() + " -> " + dst.label() + " never completes");
            Changes c = limit ? changes(src, cur.floor, limit, cur.after) : changes(src, cur.floor);
            std::string res;
            applied += apply_cs(dst, c.cs, "changes of " + src.label(), &res);
            note("  " + src.label() + " -> " + dst.label() + ": lww_changes(" + std::to_string(cur.floor) +
                 (limit ? ", " + std::to_string(limit) + ", " + std::to_string(cur.after) : "") +
                 ") upto=" + std::to_string(c.upto) + (c.complete ? "" : " (partial)") + " -> " + res);
            // The cursor moves only after the apply committed.
            cur.after = c.upto;
            if (c.complete) {
                cur.floor = c.upto;
                break;
            }
            if (!limit)
                throw Failure(src.label() + " lww_changes(" + std::to_string(cur.floor) +
                              ") without a row "
                              "limit says it is not complete");
        }
        return applied;
    }

    int64_t sync_stats(const std::string& res) {
        const JsonDoc doc(res);
        return doc.integer("sent.applied", 0) + doc.integer("received.applied", 0);
    }

    // One bidirectional sync started by `a`. Returns the registers applied on
    // either side.
    int64_t sync(Peer& a, Peer& b) {
        if (a.pg != b.pg) {
            note(a.label() + " <-> " + b.label() + ": change sets by hand");
            if (rng_.chance(50)) return transfer(a, b) + transfer(b, a);
            int64_t x = transfer(b, a);
            return x + transfer(a, b);
        }
        std::string res, how;
        const std::string fn = a.pg ? "SELECT lww_sync(?1, ?2::jsonb)::text" : "SELECT lww_sync(?1, ?2)";
        try {
            if (!opt_.plain_sync && rng_.chance(40)) {
                std::string o = "{\"batch_rows\":" + std::to_string(rng_.range(1, 5)) + "}";
                how = ", '" + o + "'";
                res = a.db->text(fn, {Val::text(b.url), Val::text(o)});
            } else {
                res = a.db->text(a.pg ? "SELECT lww_sync(?1)::text" : "SELECT lww_sync(?1)", {Val::text(b.url)});
            }
        } catch (const Failure& e) {
            throw Failure(a.label() + " lww_sync(" + b.label() + how + ") failed: " + e.what());
        }
        note(a.label() + ": lww_sync(" + b.label() + how + ") -> " + res);
        if (!JsonDoc(res).valid())
            throw Failure(a.label() + " lww_sync(" + b.label() + how + ") returned invalid JSON (" +
                          std::to_string(res.size()) + " bytes): " + render(Val::text(res.substr(0, 120))));
        return sync_stats(res);
    }
    int64_t sync(size_t a, size_t b) { return sync(*peers_[a], *peers_[b]); }

    void op_sync() {
        size_t a = rng_.below(peers_.size());
        size_t b = (a + 1 + rng_.below(peers_.size() - 1)) % peers_.size();
        sync(a, b);
    }

    void op_relay() {
        std::vector<size_t> idx;
        for (size_t i = 0; i < peers_.size(); ++i) idx.push_back(i);
        rng_.shuffle(idx);
        size_t a = idx[0], b = idx[1], c = idx[2];
        note("relay " + peers_[a]->label() + " -> " + peers_[b]->label() + " -> " + peers_[c]->label());
        if (rng_.chance(50)) sync(a, b);
        else sync(b, a);
        if (rng_.chance(50)) sync(b, c);
        else sync(c, b);
    }

    // A change set for the pool. Usually lww_changes(since); sometimes one
    // row-limited page of it (any page is a valid set of registers).
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
        return e;
    }

    void op_capture() {
        size_t pi = rng_.below(peers_.size());
        Peer& p = *peers_[pi];
        int64_t since = 0;
        if (!p.uptos.empty() && rng_.chance(60)) since = rng_.pick(p.uptos);
        PoolEntry e = capture(pi, since, true);
        note(p.label() + ": lww_changes(" + std::to_string(since) + ") -> pool#" + std::to_string(pool_.size()) +
             " upto=" + std::to_string(e.upto) + " bytes=" + std::to_string(e.cs.size()));
        pool_.push_back(std::move(e));
    }

    int64_t apply(size_t entry, size_t target) {
        PoolEntry& e = pool_[entry];
        if (target == e.origin) throw Failure("internal error: applying a change set to its origin");
        Peer& p = *peers_[target];
        std::string res;
        int64_t n = apply_cs(p, e.cs, "pool#" + std::to_string(entry) + " from " + peers_[e.origin]->label(), &res);
        ++e.delivered;
        note(p.label() + ": lww_apply(pool#" + std::to_string(entry) + " from " + peers_[e.origin]->label() + ") -> " +
             res);
        return n;
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
        if (rng_.chance(25)) batch.push_back(batch[rng_.below(batch.size())]);
        rng_.shuffle(batch);
        for (size_t e : batch) apply(e, target);
    }

    // ---------------- final phase

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
            note("final: star twice around " + peers_[hub]->label());
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

    void compare_all(const std::string& phase, const std::vector<Dump>& dumps) {
        for (size_t i = 1; i < dumps.size(); ++i) {
            if (!dumps_equal(dumps[0], dumps[i])) {
                std::string msg = "divergence " + phase + ": " + peers_[0]->label() + " (" + peers_[0]->node + ") vs " +
                                  peers_[i]->label() + " (" + peers_[i]->node + ")\n";
                msg += diff_dumps(peers_[0]->label(), dumps[0], peers_[i]->label(), dumps[i]);
                throw Failure(msg);
            }
        }
    }

    std::vector<Dump> dump_all() {
        std::vector<Dump> d;
        for (auto& p : peers_) d.push_back(dump(*p->db));
        return d;
    }

    void body() {
        size_t n = static_cast<size_t>(rng_.range(opt_.peers_min, opt_.peers_max));
        size_t npg = static_cast<size_t>(rng_.range(2, static_cast<int64_t>(n) - 2));
        bool prerows = rng_.chance(30);
        two_conns_ = rng_.chance(40) && !opt_.single_conn;
        std::vector<int> engine;  // 1 = Postgres; in random order
        for (size_t i = 0; i < n; ++i) engine.push_back(i < npg ? 1 : 0);
        rng_.shuffle(engine);
        note("scenario seed " + std::to_string(seed_) + ": " + std::to_string(n) + " peers (" + std::to_string(npg) +
             " Postgres, " + std::to_string(n - npg) + " SQLite)" + (two_conns_ ? ", two connections each" : ""));
        size_t ipg = 0, isl = 0;
        for (size_t i = 0; i < n; ++i) {
            std::string name = engine[i] ? "pg" + std::to_string(ipg++) : "sl" + std::to_string(isl++);
            peers_.push_back(make_peer(name, engine[i] == 1, prerows));
        }
        std::set<std::string> nodes;
        for (auto& p : peers_)
            if (!nodes.insert(p->node).second) throw Failure("two peers share node id " + p->node);

        int steps = static_cast<int>(rng_.range(opt_.ops_min, opt_.ops_max));
        for (int s = 0; s < steps; ++s) {
            for (auto& pp : peers_) pp->db = pp->conns[rng_.below(pp->conns.size())].get();
            unsigned r = static_cast<unsigned>(rng_.below(100));
            Peer& p = *peers_[rng_.below(n)];
            if (r < 2) {
                if (!opt_.no_reopen) op_reopen(p);
            } else if (r < 52) one_write(p);
            else if (r < 58) op_txn(p);
            else if (r < 70) op_sync();
            else if (r < 75) op_relay();
            else if (r < 86) op_capture();
            else if (r < 96 || opt_.no_schema) op_deliver();
            else op_schema(p);
        }

        const std::vector<std::string> kept = align_schema();
        spread();
        std::vector<Dump> dumps = dump_all();
        compare_all("after final spread", dumps);
        compare_extra(kept);

        // Everyone syncs with everyone until a whole round applies nothing.
        // The spread already brought every register everywhere, so the first
        // round must be quiet; if it is not, peers with equal rows still hold
        // different registers (checked after the rows are compared).
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
        {
            std::vector<Dump> d2 = dump_all();
            compare_all("after syncing until quiet", d2);
            if (!dumps_equal(dumps[0], d2[0]))
                throw Failure(
                    "rows changed between the final spread and the quiet mesh rounds\n" +
                    diff_dumps(peers_[0]->label() + "(spread)", dumps[0], peers_[0]->label() + "(quiet)", d2[0]));
            if (first_round != 0)
                throw Failure("the first mesh round after the final spread still applied " +
                              std::to_string(first_round) + " register(s) (quiet after " + std::to_string(rounds) +
                              " rounds): the spread left registers behind although the rows were equal");
        }

        // Late joiners of either engine: one syncs once with a random peer,
        // one is given a random peer's changes by lww_changes/lww_apply.
        {
            late_.push_back(make_peer("late_sync", rng_.chance(50), false));
            Peer& lj = *late_.back();
            Peer& other = *peers_[rng_.below(n)];
            try {
                if (rng_.chance(50)) sync(lj, other);
                else sync(other, lj);
            } catch (const Failure& e) {
                throw Failure("late joiner sync with " + other.label() + " failed: " + e.what());
            }
            Dump d = dump(*lj.db);
            if (!dumps_equal(dumps[0], d))
                throw Failure("late joiner " + lj.label() + " (synced with " + other.label() + ") differs from " +
                              peers_[0]->label() + "\n" + diff_dumps(peers_[0]->label(), dumps[0], lj.label(), d));

            late_.push_back(make_peer("late_apply", rng_.chance(50), false));
            Peer& lm = *late_.back();
            Peer& other2 = *peers_[rng_.below(n)];
            transfer(other2, lm);
            Dump d2 = dump(*lm.db);
            if (!dumps_equal(dumps[0], d2))
                throw Failure("late joiner " + lm.label() + " (given " + other2.label() +
                              "'s lww_changes) differs from " + peers_[0]->label() + "\n" +
                              diff_dumps(peers_[0]->label(), dumps[0], lm.label(), d2));
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
                    throw Failure(
                        "stale re-delivery of pool#" + std::to_string(e) + " (from " +
                        peers_[pool_[e].origin]->label() + ") changed " + peers_[t]->label() + " after convergence\n" +
                        diff_dumps(peers_[t]->label() + "(before)", dumps[t], peers_[t]->label() + "(after)", d));
            }
        }

        for (const auto& kv : keys_) {
            const KeyInfo& ki = kv.second;
            if (!ki.inserted || ki.killed) continue;
            for (auto& p : peers_)
                if (!exists(*p, ki.table, ki.key))
                    throw Failure("lost row: " + kv.first +
                                  " was inserted and never deleted or re-keyed, but is "
                                  "missing on " +
                                  p->label() + " (" + p->node + ")");
        }
        note("scenario passed");
    }
};

// ---------------------------------------------------------------- main

volatile sig_atomic_t g_interrupted = 0;
void on_interrupt(int) { g_interrupted = 1; }

void usage(const char* argv0) {
    std::printf(
        "usage: %s --pg CONNINFO [--ext PATH] [--mixed-scenarios N] [--seed S] [--peers-min N] [--peers-max N]\n"
        "          [--ops-min N] [--ops-max N] [--timeout SEC] [--tmpdir DIR] [--edge-values]\n"
        "          [--plain-sync] [--single-conn] [--no-reopen] [--no-schema] [--no-fork] [--keep] [--verbose]\n",
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

// Creates (or, with create = false, drops) the Postgres databases of this run.
std::string setup_databases(const Options& o, bool create) {
    try {
        PgConn admin(o.pg, "");
        if (create) {
            Rows r = admin.query("SELECT count(*)::int4 FROM pg_available_extensions WHERE name = 'lwwsync'", {});
            if (r.empty() || r[0][0].i != 1)
                return "the lwwsync extension is not installed in this cluster "
                       "(make -C pg_ext && make -C pg_ext install)";
        }
        for (const auto& s : pg_slot_names(o)) {
            std::string db = pg_ident(o.db_prefix + s);
            admin.script("SET client_min_messages = warning");
            admin.script("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
            if (create)
                admin.script("CREATE DATABASE " + db +
                             " TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'");
        }
    } catch (const std::exception& e) {
        return e.what();
    }
    return std::string();
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
        else if (a == "--pg" && i + 1 < argc) o.pg = argv[++i];
        else if (a == "--tmpdir" && i + 1 < argc) o.tmpdir = argv[++i];
        else if (a == "--mixed-scenarios" || a == "--scenarios") {
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
        else if (a == "--help" || a == "-h") {
            usage(argv[0]);
            return 0;
        } else {
            std::fprintf(stderr, "unknown argument: %s\n", a.c_str());
            usage(argv[0]);
            return 2;
        }
    }
    if (o.peers_min < 4 || o.peers_max < o.peers_min) {
        std::fprintf(stderr, "need 4 <= --peers-min <= --peers-max (at least 2 Postgres and 2 SQLite peers)\n");
        return 2;
    }
    if (o.ops_max < o.ops_min) {
        std::fprintf(stderr, "need --ops-min <= --ops-max\n");
        return 2;
    }
    if (o.pg.empty()) {
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

    // Fail fast if either extension or the cluster is unusable.
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
    o.db_prefix = "lwwconv_" + std::to_string(getpid()) + "_";
    try {
        PgConn c(o.pg, "");
        auto s = [](const char* p) { return std::string(p ? p : ""); };
        o.pg_host = s(PQhost(c.raw()));
        o.pg_port = s(PQport(c.raw()));
        o.pg_user = s(PQuser(c.raw()));
        o.pg_password = s(PQpass(c.raw()));
    } catch (const std::exception& e) {
        std::printf("cannot connect to --pg \"%s\": %s\n", o.pg.c_str(), e.what());
        std::printf("0 passed, %" PRIu64 " failed\n", o.scenarios);
        return 1;
    }
    std::string err = setup_databases(o, true);
    if (!err.empty()) {
        std::printf("cannot set up the Postgres databases: %s\n", err.c_str());
        setup_databases(o, false);
        std::printf("0 passed, %" PRIu64 " failed\n", o.scenarios);
        return 1;
    }

    std::string base = o.tmpdir;
    if (base.empty()) {
        const char* t = std::getenv("TMPDIR");
        base = t && *t ? t : "/tmp";
    }
    std::string tmpl = base + "/lwwmixed-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) {
        std::perror("mkdtemp");
        setup_databases(o, false);
        return 2;
    }
    std::string root = buf.data();

    std::string repro_extra = " --pg '" + o.pg + "'";
    if (o.ext != "./lwwsync.so") repro_extra += " --ext " + o.ext;
    if (o.peers_min != 4) repro_extra += " --peers-min " + std::to_string(o.peers_min);
    if (o.peers_max != 6) repro_extra += " --peers-max " + std::to_string(o.peers_max);
    if (o.ops_min != 20) repro_extra += " --ops-min " + std::to_string(o.ops_min);
    if (o.ops_max != 60) repro_extra += " --ops-max " + std::to_string(o.ops_max);
    if (o.edge_values) repro_extra += " --edge-values";
    if (o.plain_sync) repro_extra += " --plain-sync";
    if (o.single_conn) repro_extra += " --single-conn";
    if (o.no_reopen) repro_extra += " --no-reopen";

    std::printf("seed: %" PRIu64 " (mixed scenarios %" PRIu64
                ", peers %d-%d with >= 2 Postgres and >= 2 SQLite, "
                "ops %d-%d, ext %s, pg \"%s\", databases %s*, dir %s)\n",
                o.seed, o.scenarios, o.peers_min, o.peers_max, o.ops_min, o.ops_max, o.ext.c_str(), o.pg.c_str(),
                o.db_prefix.c_str(), root.c_str());
    std::fflush(stdout);

    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    auto t0 = std::chrono::steady_clock::now();
    RunOptions ro;
    ro.seed = o.seed;
    ro.scenarios = o.scenarios;
    ro.fork_each = o.fork_each;
    ro.timeout = o.timeout;
    ro.keep = o.keep;
    ro.verbose = o.verbose;
    ro.count_flag = "--mixed-scenarios";
    ro.repro_extra = repro_extra;
    const RunTotals totals = run_scenarios(
        ro, root, argv[0],
        [&](uint64_t seed, const std::string& dir) {
            Scenario sc(seed, o, dir);
            return sc.run();
        },
        &g_interrupted);
    const uint64_t passed = totals.passed, failed = totals.failed;

    if (o.keep) {
        std::printf("--keep: the Postgres databases %s* (as the last scenario left them) are not dropped\n",
                    o.db_prefix.c_str());
    } else {
        std::string derr = setup_databases(o, false);
        if (!derr.empty())
            std::printf("warning: could not drop the databases %s*: %s\n", o.db_prefix.c_str(), derr.c_str());
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (g_interrupted) std::printf("interrupted\n");
    std::printf("elapsed %.1fs\n", secs);
    if (failed == 0 && !o.keep) {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    std::printf("%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
    return failed == 0 && !g_interrupted ? 0 : 1;
}
