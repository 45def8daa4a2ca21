// Test harness for the lwwsync SQLite function tests.
//
// Black box: the extension is loaded at run time from $LWWSYNC_EXT (default
// ./lwwsync.so, the tests run from the repository root) and reached only
// through SQL. Values are compared in an exact rendering: storage class plus
// the exact bytes (for a real, its IEEE-754 bit pattern).
#pragma once

#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "../../common/base64.h"
#include "../common/sql_harness.h"

namespace lwwt {

inline std::string ext_path() {
    const char* p = std::getenv("LWWSYNC_EXT");
    return p && *p ? std::string(p) : std::string("./lwwsync.so");
}

inline uint64_t now_ms() {
    using namespace std::chrono;
    return static_cast<uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

inline void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// ------------------------------------------------------------------ values

using lwwtest::quote_id;
using lwwtest::Row;
using lwwtest::row_repr;
using lwwtest::Rows;
using lwwtest::Val;

// ------------------------------------------------------------------ temp dir

class TempDir {
public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "lwwsqlt-XXXXXX").string();
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
        path_ = buf.data();
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// ------------------------------------------------------------------ database

struct Outcome {
    bool ok = false;
    std::string err;
    int code = SQLITE_OK;  // extended result code of the error
    Rows rows;
};

class Db {
public:
    explicit Db(const std::string& path, bool load = true) : path_(path) {
        int rc =
            sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, nullptr);
        if (rc != SQLITE_OK) {
            std::string m = db_ ? sqlite3_errmsg(db_) : "out of memory";
            sqlite3_close(db_);
            throw std::runtime_error("open " + path + ": " + m);
        }
        sqlite3_busy_timeout(db_, 10000);
        if (load) load_ext();
    }
    ~Db() {
        if (db_) sqlite3_close_v2(db_);
    }
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    void load_ext() {
        const std::string err = lwwtest::load_lwwsync(db_, ext_path());
        if (!err.empty()) throw std::runtime_error("cannot load " + ext_path() + ": " + err);
    }

    sqlite3* handle() const { return db_; }
    const std::string& path() const { return path_; }
    std::string url() const { return "file:" + path_; }

    Outcome run(const std::string& sql, const std::vector<Val>& params = {}) {
        Outcome o;
        try {
            lwwtest::Stmt st(db_, sql);
            st.bind_all(params);
            while (st.step()) {
                Row r;
                for (int c = 0; c < st.ncols(); ++c) r.push_back(st.col(c));
                o.rows.push_back(std::move(r));
            }
            o.ok = true;
        } catch (const lwwtest::SqlError& e) {
            o.err = e.message;
            o.code = e.code;
        }
        return o;
    }

    // Runs one or more statements; throws on error.
    void exec(const std::string& sql) { lwwtest::exec(db_, sql); }

    Rows rows(const std::string& sql, const std::vector<Val>& params = {}) {
        Outcome o = run(sql, params);
        if (!o.ok) throw std::runtime_error("SQL failed: " + sql.substr(0, 300) + "\n  error: " + o.err);
        return o.rows;
    }

    Val one(const std::string& sql, const std::vector<Val>& params = {}) {
        Rows r = rows(sql, params);
        if (r.empty() || r[0].empty()) throw std::runtime_error("no result: " + sql);
        return r[0][0];
    }

    int64_t i64(const std::string& sql, const std::vector<Val>& params = {}) {
        Val v = one(sql, params);
        if (v.kind != Val::Int) throw std::runtime_error("not an integer (" + v.repr() + "): " + sql);
        return v.i;
    }

    std::string text(const std::string& sql, const std::vector<Val>& params = {}) {
        Val v = one(sql, params);
        if (v.kind != Val::Text) throw std::runtime_error("not text (" + v.repr() + "): " + sql);
        return v.s;
    }

    // ---- the public API
    std::string node_id() { return text("SELECT lww_node_id()"); }
    int64_t seq() { return i64("SELECT lww_seq()"); }
    int64_t track(const std::string& t) { return i64("SELECT lww_track(?)", {t}); }
    std::string changes(int64_t since) { return text("SELECT lww_changes(?)", {Val(static_cast<long long>(since))}); }
    std::string changes(int64_t since, int64_t limit) {
        return text("SELECT lww_changes(?, ?)",
                    {Val(static_cast<long long>(since)), Val(static_cast<long long>(limit))});
    }
    std::string apply(const std::string& cs) { return text("SELECT lww_apply(?)", {cs}); }
    std::string sync(const Db& peer, const std::string& options = "") {
        if (options.empty()) return text("SELECT lww_sync(?)", {peer.url()});
        return text("SELECT lww_sync(?, ?)", {peer.url(), options});
    }

    // Column names of a table (or of any SELECT).
    std::vector<std::string> columns_of(const std::string& sql) {
        lwwtest::Stmt st(db_, sql);
        std::vector<std::string> out;
        for (int i = 0; i < st.ncols(); ++i) out.push_back(sqlite3_column_name(st.get(), i));
        return out;
    }

    // Every row of a table, exactly rendered, in a deterministic order.
    std::vector<std::string> table(const std::string& name) {
        const std::string q = "SELECT * FROM " + quote_id(name);
        const size_t n = columns_of(q).size();
        std::string order;
        for (size_t i = 1; i <= n; ++i) order += (i > 1 ? ", " : "") + std::to_string(i);
        std::vector<std::string> out;
        for (const Row& r : rows(q + " ORDER BY " + order)) out.push_back(row_repr(r));
        return out;
    }

    // The whole database: schema plus every table, user tables and the
    // extension's metadata alike.
    std::vector<std::string> dump() {
        std::vector<std::string> out;
        std::vector<std::string> tables;
        for (const Row& r : rows("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")) {
            out.push_back("schema: " + row_repr(r));
            if (r[0].s == "table") tables.push_back(r[1].s);
        }
        for (const auto& t : tables)
            for (const auto& line : table(t)) out.push_back(t + ": " + line);
        return out;
    }

private:
    sqlite3* db_ = nullptr;
    std::string path_;
};

// Lines present in one dump and not the other, for failure messages.
inline std::string dump_diff(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    std::multiset<std::string> sa(a.begin(), a.end()), sb(b.begin(), b.end());
    std::string out;
    int shown = 0;
    for (const auto& l : sa)
        if (!sb.count(l) && shown++ < 20) out += "  - " + l.substr(0, 300) + "\n";
    for (const auto& l : sb)
        if (!sa.count(l) && shown++ < 40) out += "  + " + l.substr(0, 300) + "\n";
    return out;
}

// `sql` must fail with an error that starts with `prefix` and contains
// `substr`, and the database must be exactly as it was before the call.
inline ::testing::AssertionResult FailsCleanly(Db& db, const std::string& sql, const std::vector<Val>& params,
                                               const std::string& prefix, const std::string& substr) {
    const auto before = db.dump();
    Outcome o = db.run(sql, params);
    const auto after = db.dump();
    if (o.ok) {
        auto f = ::testing::AssertionFailure() << "expected an error, but it succeeded: " << sql.substr(0, 200);
        if (!o.rows.empty()) f << " -> " << row_repr(o.rows[0]).substr(0, 300);
        return f;
    }
    if (o.err.rfind(prefix, 0) != 0)
        return ::testing::AssertionFailure() << "error \"" << o.err << "\" does not start with \"" << prefix << "\"";
    if (o.err.find(substr) == std::string::npos)
        return ::testing::AssertionFailure() << "error \"" << o.err << "\" does not contain \"" << substr << "\"";
    if (before != after)
        return ::testing::AssertionFailure() << "the database changed although the call failed (" << o.err << "):\n"
                                             << dump_diff(before, after);
    return ::testing::AssertionSuccess() << o.err;
}

// ------------------------------------------------------------------ JSON

inline rapidjson::Document parse_json(const std::string& s) {
    rapidjson::Document d;
    d.Parse<rapidjson::kParseFullPrecisionFlag>(s.c_str(), s.size());
    if (d.HasParseError()) throw std::runtime_error("test: not JSON: " + s.substr(0, 200));
    return d;
}

// An integer member at a dotted path ("sent.rows") of a JSON object.
inline int64_t json_int(const std::string& json, const std::string& path) {
    const rapidjson::Document d = parse_json(json);
    const rapidjson::Value* v = lwwtest::json_at(d, path);
    if (!v) throw std::runtime_error("no " + path + " in " + json);
    if (!v->IsInt64()) throw std::runtime_error(path + " is not an integer in " + json);
    return v->GetInt64();
}

// A value as the change-set format writes it (see common/changeset.cpp).
inline Val json_value(const rapidjson::Value& v) {
    if (v.IsNull()) return Val();
    if (v.IsString()) return Val::text(std::string(v.GetString(), v.GetStringLength()));
    if (v.IsInt64()) return Val(static_cast<long long>(v.GetInt64()));
    if (v.IsObject() && v.MemberCount() == 1) {
        const auto& m = *v.MemberBegin();
        std::string tag = m.name.GetString();
        if (tag == "int") return Val(static_cast<long long>(std::stoll(m.value.GetString())));
        if (tag == "real") {
            if (m.value.IsNumber()) return Val(m.value.GetDouble());
            std::string s = m.value.GetString();
            if (s == "NaN") return Val(std::nan(""));
            if (s == "Infinity") return Val(HUGE_VAL);
            if (s == "-Infinity") return Val(-HUGE_VAL);
        }
        if (tag == "bytes") {
            std::string out;
            if (!lww::base64_decode(m.value.GetString(), out)) throw std::runtime_error("test: bad base64");
            return Val::blob(out);
        }
    }
    throw std::runtime_error("test: not a change-set value");
}

// One register of a parsed change set.
struct Reg {
    std::string table;
    std::string key;  // rendered key values, "int:1" or "text:'a' / int:2"
    uint64_t gen = 0;
    bool is_row = false;  // the row register (insert/delete)
    std::string col;      // column name for a column register
    Val value;
    uint64_t hlc = 0;
    std::string node;
};

struct ParsedRow {
    std::string table;
    std::string key;
    uint64_t gen = 0;
    bool has_row = false;
    std::map<std::string, Val> cols;
};

struct ParsedCS {
    std::string format;
    int version = 0;
    std::string origin;
    uint64_t since = 0, upto = 0;
    uint64_t after = 0;    // "after" when present, else since
    bool complete = true;  // false when a row limit cut the set
    std::vector<std::string> nodes;
    std::vector<Reg> regs;
    std::vector<ParsedRow> rows;

    std::vector<Reg> regs_of(const std::string& key) const {
        std::vector<Reg> out;
        for (const auto& r : regs)
            if (r.key == key) out.push_back(r);
        return out;
    }
    const ParsedRow* row(const std::string& key, const std::string& table = "") const {
        for (const auto& r : rows)
            if (r.key == key && (table.empty() || r.table == table)) return &r;
        return nullptr;
    }
};

inline uint64_t dec_u64(const rapidjson::Value& v) {
    if (!v.IsString()) throw std::runtime_error("test: a 64-bit quantity is not a decimal string");
    return std::stoull(v.GetString());
}

inline ParsedCS parse_cs(const std::string& json) {
    rapidjson::Document d = parse_json(json);
    ParsedCS cs;
    cs.format = d["format"].GetString();
    cs.version = d["version"].GetInt();
    cs.origin = d["origin"].GetString();
    cs.since = dec_u64(d["since"]);
    cs.upto = dec_u64(d["upto"]);
    cs.after = d.HasMember("after") ? dec_u64(d["after"]) : cs.since;
    if (d.HasMember("complete")) cs.complete = d["complete"].GetBool();
    for (const auto& n : d["nodes"].GetArray()) cs.nodes.push_back(n.GetString());
    for (const auto& t : d["tables"].GetArray()) {
        std::string tname = t["name"].GetString();
        std::vector<std::string> cols;
        for (const auto& c : t["columns"].GetArray()) cols.push_back(c.GetString());
        for (const auto& r : t["rows"].GetArray()) {
            ParsedRow pr;
            pr.table = tname;
            // A row written as an array is [key, gen, hlc, node, value per column].
            const bool array = r.IsArray();
            for (const auto& k : (array ? r[0] : r["key"]).GetArray())
                pr.key += (pr.key.empty() ? "" : " / ") + json_value(k).repr();
            pr.gen = (array ? r[1] : r["gen"]).GetUint64();
            uint64_t base_hlc = 0;
            std::string base_node;
            if (array || r.HasMember("stamp")) {
                base_hlc = dec_u64(array ? r[2] : r["stamp"][0]);
                base_node = cs.nodes.at((array ? r[3] : r["stamp"][1]).GetUint());
            }
            auto add = [&](bool is_row, const std::string& col, const Val& value, uint64_t hlc,
                           const std::string& node) {
                Reg g;
                g.table = tname;
                g.key = pr.key;
                g.gen = pr.gen;
                g.is_row = is_row;
                g.col = col;
                g.value = value;
                g.hlc = hlc;
                g.node = node;
                if (!is_row) pr.cols[col] = value;
                cs.regs.push_back(g);
            };
            if (array || (r.HasMember("row") && r["row"].GetBool())) {
                pr.has_row = true;
                add(true, "", Val(), base_hlc, base_node);
            }
            if (array)
                for (size_t i = 0; i < cols.size(); ++i)
                    add(false, cols[i], json_value(r[static_cast<rapidjson::SizeType>(4 + i)]), base_hlc, base_node);
            else if (r.HasMember("cols"))
                for (const auto& c : r["cols"].GetArray())
                    add(false, cols.at(c[0].GetUint()), json_value(c[1]), c.Size() == 4 ? dec_u64(c[2]) : base_hlc,
                        c.Size() == 4 ? cs.nodes.at(c[3].GetUint()) : base_node);
            cs.rows.push_back(pr);
        }
    }
    return cs;
}

// Reads every change of `db` after `since` in pages of at most `limit` rows,
// the way a client pages: a complete page moves `since` to its upto; a page
// cut by the limit keeps `since` and continues after its upto (the third
// argument of lww_changes). Calls `page` with each change set.
template <class F>
int page_changes(Db& db, int64_t since, int64_t limit, F&& page) {
    int64_t after = since;
    int pages = 0;
    for (; pages < 100000; ++pages) {
        std::string cs = after == since ? db.changes(since, limit)
                                        : db.text("SELECT lww_changes(?, ?, ?)", {Val(static_cast<long long>(since)),
                                                                                  Val(static_cast<long long>(limit)),
                                                                                  Val(static_cast<long long>(after))});
        ParsedCS p = parse_cs(cs);
        page(cs, p);
        if (static_cast<int64_t>(p.upto) <= after) break;
        after = static_cast<int64_t>(p.upto);
        if (p.complete) since = after;
    }
    return pages;
}

// ------------------------------------------------------------------ crafting change sets

// Hand-written change sets, for inputs a real peer would never produce.
struct CraftRow {
    std::string key;  // JSON array text, e.g. "[1]"
    uint64_t gen = 1;
    uint64_t hlc = 0;
    unsigned node = 0;  // index into the set's nodes
    bool row = true;
    std::string cols;  // JSON array text of [idx, value] entries, e.g. "[[0,\"x\"]]"
};

inline std::string craft_table(const std::string& name_json, const std::string& key_json, const std::string& cols_json,
                               const std::vector<CraftRow>& rows) {
    std::string s = "{\"name\":" + name_json + ",\"key\":" + key_json + ",\"columns\":" + cols_json + ",\"rows\":[";
    for (size_t i = 0; i < rows.size(); ++i) {
        const CraftRow& r = rows[i];
        s += (i ? "," : "") + std::string("{\"key\":") + r.key + ",\"gen\":" + std::to_string(r.gen) +
             ",\"stamp\":[\"" + std::to_string(r.hlc) + "\"," + std::to_string(r.node) + "]";
        if (r.row) s += ",\"row\":true";
        if (!r.cols.empty()) s += ",\"cols\":" + r.cols;
        s += "}";
    }
    return s + "]}";
}

inline std::string craft_cs(const std::string& origin, const std::vector<std::string>& nodes,
                            const std::vector<std::string>& tables, int version = 1) {
    std::string s = "{\"format\":\"lwwsync.changeset\",\"version\":" + std::to_string(version) + ",\"origin\":\"" +
                    origin + "\",\"since\":\"0\",\"tables\":[";
    for (size_t i = 0; i < tables.size(); ++i) s += (i ? "," : "") + tables[i];
    s += "],\"upto\":\"1\",\"nodes\":[";
    for (size_t i = 0; i < nodes.size(); ++i) s += (i ? "," : "") + std::string("\"") + nodes[i] + "\"";
    return s + "]}";
}

// Fixed node ids for crafted sets (valid v4 UUIDs, ordered n1 < n2 < n3).
inline const std::string kNode1 = "00000000-0000-4000-8000-000000000001";
inline const std::string kNode2 = "00000000-0000-4000-8000-000000000002";
inline const std::string kNode3 = "00000000-0000-4000-8000-000000000003";

inline uint64_t hlc_at(uint64_t ms, uint16_t counter = 0) { return (ms << 16) | counter; }

// ------------------------------------------------------------------ fixtures

// A set of file databases in one temporary directory, each with the
// extension loaded.
class Cluster {
public:
    Db& add(const std::string& name, const std::string& schema = "", const std::vector<std::string>& track = {}) {
        auto db = std::make_unique<Db>(dir_.file(name + ".db"));
        if (!schema.empty()) db->exec(schema);
        for (const auto& t : track) db->track(t);
        dbs_.push_back(std::move(db));
        return *dbs_.back();
    }
    // Another connection to an existing database file.
    std::unique_ptr<Db> connect(const std::string& name, bool load = true) {
        return std::make_unique<Db>(dir_.file(name + ".db"), load);
    }
    std::string file(const std::string& name) const { return dir_.file(name); }

private:
    TempDir dir_;
    std::vector<std::unique_ptr<Db>> dbs_;
};

inline const char* kSchemaT = "CREATE TABLE t(id INTEGER PRIMARY KEY, a, b, c);";

}  // namespace lwwt
