// The PostgreSQL peers of the convergence driver: a libpq connection that
// reads and writes the canonical value model in binary (int8, float8, text,
// bytea), and the databases of a running cluster that ./mixed reuses from
// scenario to scenario. Only ./mixed includes this file (and links libpq).
#pragma once

#include <libpq-fe.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "peers.h"

namespace conv {

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
    PgConn(const PgConn&) = delete;
    PgConn& operator=(const PgConn&) = delete;
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
            switch (v.kind) {
                case Val::Null: continue;
                case Val::Int:
                    types[i] = 20;
                    put_be64(bufs[i], static_cast<uint64_t>(v.i));
                    break;
                case Val::Real: {
                    uint64_t bits;
                    std::memcpy(&bits, &v.d, 8);
                    types[i] = 701;
                    put_be64(bufs[i], bits);
                    break;
                }
                case Val::Text:
                    types[i] = 25;
                    bufs[i] = v.s;
                    break;
                case Val::Blob:
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

using lwwtest::quote_id;

// A table of tables() as Postgres declares it: each column of one kind takes
// the type that means the same in both engines (a schema with untyped
// columns cannot be shared with Postgres).
std::string pg_table_ddl(const Table& t) {
    auto type = [&](const Col& c) -> std::string {
        switch (c.kind) {
            case Kind::Int: return "int8";
            case Kind::Real: return "float8";
            case Kind::Text: return "text";
            case Kind::Blob: return "bytea";
            case Kind::Any: break;
        }
        throw Failure("column " + t.name + "." + c.name + " has no type Postgres shares");
    };
    std::string sql = "CREATE TABLE " + t.name + "(";
    for (const auto& c : t.keys) sql += c.name + " " + type(c) + ", ";
    for (const auto& c : t.cols) sql += c.name + " " + type(c) + ", ";
    return sql + "PRIMARY KEY(" + t.key_list() + "))";
}

// One database of the cluster. A scenario reuses it: create() drops the user
// tables and the extension and makes them again (a new extension means a
// new node id).
class PgPeer : public Peer {
public:
    PgPeer(std::string name, std::string conninfo, std::string dbname, std::string url)
        : Peer(std::move(name)), conninfo_(std::move(conninfo)), dbname_(std::move(dbname)), url_(std::move(url)) {}

    Engine engine() const override { return Engine::Postgres; }
    std::string where() const override { return "database " + dbname_; }
    std::string url() const override { return url_; }
    std::unique_ptr<Conn> connect() const override { return std::make_unique<PgConn>(conninfo_, dbname_); }
    void create() override {
        auto c = std::make_unique<PgConn>(conninfo_, dbname_);
        std::string sql =
            "SET client_min_messages = warning;"
            "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
            "  WHERE datname = current_database() AND pid <> pg_backend_pid();";
        for (const auto& t : tables()) sql += "DROP TABLE IF EXISTS " + t.name + " CASCADE;";
        sql +=
            "DROP EXTENSION IF EXISTS lwwsync CASCADE;"
            "DROP SCHEMA IF EXISTS lwwsync CASCADE;"
            "CREATE EXTENSION lwwsync;";
        for (const auto& t : tables()) sql += pg_table_ddl(t) + ";";
        c->script(sql);
        conns.push_back(std::move(c));
        db = conns[0].get();
    }

    std::string node_id_on(Conn& c) override { return c.text("SELECT lww_node_id()::text"); }
    void track(const std::string& table) override { db->query("SELECT lww_track(?1::regclass)", {Val::text(table)}); }
    std::string apply(const std::string& cs) override {
        return db->text("SELECT lww_apply(?1)::text", {Val::text(cs)});
    }
    std::string sync(const std::string& url, const std::string& options) override {
        if (options.empty()) return db->text("SELECT lww_sync(?1)::text", {Val::text(url)});
        return db->text("SELECT lww_sync(?1, ?2::jsonb)::text", {Val::text(url), Val::text(options)});
    }
    std::string alter(const std::string& ddl, bool) override {
        db->exec(ddl);
        return "";
    }
    std::string int_type() const override { return "int8"; }

private:
    std::string conninfo_, dbname_, url_;
};

// The databases lwwconv_<pid>_<slot> of a running cluster, in UTF8 with
// collation C, made once per run (CREATE DATABASE is slow).
class PgDatabases : public PgCluster {
public:
    std::string open(const std::string& conninfo, const std::vector<std::string>& slots) override {
        conninfo_ = conninfo;
        slots_ = slots;
        prefix_ = "lwwconv_" + std::to_string(getpid()) + "_";
        try {
            PgConn c(conninfo_, "");
            auto s = [](const char* p) { return std::string(p ? p : ""); };
            host_ = s(PQhost(c.raw()));
            port_ = s(PQport(c.raw()));
            user_ = s(PQuser(c.raw()));
            password_ = s(PQpass(c.raw()));
        } catch (const std::exception& e) {
            return "cannot connect to --pg \"" + conninfo_ + "\": " + e.what();
        }
        std::string err = setup(true);
        if (!err.empty()) {
            setup(false);
            return "cannot set up the Postgres databases: " + err;
        }
        return std::string();
    }
    void close(bool keep) override {
        if (keep) {
            std::printf("--keep: the Postgres databases %s* (as the last scenario left them) are not dropped\n",
                        prefix_.c_str());
            return;
        }
        std::string err = setup(false);
        if (!err.empty()) std::printf("warning: could not drop the databases %s*: %s\n", prefix_.c_str(), err.c_str());
    }
    std::string describe() const override { return "pg \"" + conninfo_ + "\", databases " + prefix_ + "*"; }
    std::unique_ptr<Peer> peer(const std::string& name) override {
        return std::make_unique<PgPeer>(name, conninfo_, prefix_ + name, url(prefix_ + name));
    }

private:
    // What lww_sync in another database of the cluster is given.
    std::string url(const std::string& db) const {
        std::string u = "postgresql:///" + url_encode(db) + "?";
        std::string sep;
        auto add = [&](const char* k, const std::string& v) {
            if (v.empty()) return;
            u += sep + k + "=" + url_encode(v);
            sep = "&";
        };
        add("host", host_);
        add("port", port_);
        add("user", user_);
        add("password", password_);
        return u;
    }

    // Creates (or, with create = false, drops) the databases of this run.
    std::string setup(bool create) {
        try {
            PgConn admin(conninfo_, "");
            if (create) {
                Rows r = admin.query("SELECT count(*)::int4 FROM pg_available_extensions WHERE name = 'lwwsync'", {});
                if (r.empty() || r[0][0].i != 1)
                    return "the lwwsync extension is not installed in this cluster "
                           "(make -C pg_ext && make -C pg_ext install)";
            }
            for (const auto& s : slots_) {
                std::string db = quote_id(prefix_ + s);
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

    std::string conninfo_, prefix_;
    std::vector<std::string> slots_;
    std::string host_, port_, user_, password_;
};

}  // namespace conv
