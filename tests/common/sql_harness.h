// Values, statements and JSON look-ups shared by the SQLite tests
// (tests/sqlite/harness.h), the convergence drivers (tests/convergence/
// workload.h) and the benchmark (bench/bench.cpp): one value model for
// every test program, so a value is bound, read back and rendered one way.
#pragma once

#include <sqlite3.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <rapidjson/document.h>

namespace lwwtest {

// ---------------------------------------------------------------- errors

// A failed SQLite call. what() says what was being done; `message` is
// SQLite's own text and `code` its extended result code, for tests that
// check them.
struct SqlError : std::runtime_error {
    SqlError(const std::string& what, std::string msg = std::string(), int rc = SQLITE_ERROR)
        : std::runtime_error(what), message(msg.empty() ? what : std::move(msg)), code(rc) {}
    std::string message;
    int code;
};

// ---------------------------------------------------------------- values

// One SQLite value: its storage class and its exact content.
struct Val {
    enum Kind { Null, Int, Real, Text, Blob };
    Kind kind = Null;
    int64_t i = 0;
    double d = 0;
    std::string s;  // text or blob bytes

    Val() = default;
    Val(std::nullptr_t) {}
    Val(int v) : kind(Int), i(v) {}
    Val(long v) : kind(Int), i(v) {}
    Val(long long v) : kind(Int), i(v) {}
    Val(unsigned v) : kind(Int), i(v) {}
    Val(double v) : kind(Real), d(v) {}
    Val(const char* v) : kind(Text), s(v) {}
    Val(std::string v) : kind(Text), s(std::move(v)) {}
    static Val null() { return Val(); }
    static Val integer(int64_t v) { return Val(static_cast<long long>(v)); }
    static Val real(double v) { return Val(v); }
    static Val text(std::string v) { return Val(std::move(v)); }
    static Val blob(std::string v) {
        Val x;
        x.kind = Blob;
        x.s = std::move(v);
        return x;
    }

    // Exact and injective: two values render the same iff they have the same
    // storage class and the same bytes (a real by its IEEE-754 bit pattern,
    // %.17g beside it for people).
    std::string repr() const {
        char buf[64];
        switch (kind) {
            case Null: return "NULL";
            case Int: return "int:" + std::to_string(i);
            case Real: {
                uint64_t bits;
                std::memcpy(&bits, &d, sizeof bits);
                std::snprintf(buf, sizeof buf, "real:%.17g[%016" PRIx64 "]", d, bits);
                return buf;
            }
            case Text: {
                std::string out = "text:'";
                for (unsigned char c : s) {
                    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') out.push_back(static_cast<char>(c));
                    else {
                        std::snprintf(buf, sizeof buf, "\\x%02x", c);
                        out += buf;
                    }
                }
                return out + "'";
            }
            case Blob: return "blob:x'" + hex(s) + "'";
        }
        return "?";
    }
    bool operator==(const Val& o) const { return repr() == o.repr(); }
    bool operator!=(const Val& o) const { return !(*this == o); }

    static std::string hex(const std::string& bytes) {
        static const char* digits = "0123456789abcdef";
        std::string o;
        o.reserve(bytes.size() * 2);
        for (unsigned char c : bytes) {
            o += digits[c >> 4];
            o += digits[c & 15];
        }
        return o;
    }
};

inline std::ostream& operator<<(std::ostream& os, const Val& v) { return os << v.repr(); }

using Row = std::vector<Val>;
using Rows = std::vector<Row>;

inline std::string row_repr(const Row& r) {
    std::string s;
    for (size_t i = 0; i < r.size(); ++i) s += (i ? " | " : "") + r[i].repr();
    return s;
}

inline Val column_val(sqlite3_stmt* st, int i) {
    switch (sqlite3_column_type(st, i)) {
        case SQLITE_INTEGER: return Val::integer(sqlite3_column_int64(st, i));
        case SQLITE_FLOAT: return Val::real(sqlite3_column_double(st, i));
        case SQLITE_TEXT: {
            const unsigned char* p = sqlite3_column_text(st, i);
            return Val::text(std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(st, i)));
        }
        case SQLITE_BLOB: {
            const void* p = sqlite3_column_blob(st, i);
            const int n = sqlite3_column_bytes(st, i);
            return Val::blob(p ? std::string(static_cast<const char*>(p), n) : std::string());
        }
        default: return Val();
    }
}

inline int bind_val(sqlite3_stmt* st, int i, const Val& v) {
    switch (v.kind) {
        case Val::Null: return sqlite3_bind_null(st, i);
        case Val::Int: return sqlite3_bind_int64(st, i, v.i);
        case Val::Real: return sqlite3_bind_double(st, i, v.d);
        case Val::Text: return sqlite3_bind_text64(st, i, v.s.data(), v.s.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
        case Val::Blob: return sqlite3_bind_blob64(st, i, v.s.data(), v.s.size(), SQLITE_TRANSIENT);
    }
    return SQLITE_MISUSE;
}

// "name" with inner quotes doubled.
inline std::string quote_id(const std::string& n) {
    std::string o = "\"";
    for (char c : n) {
        if (c == '"') o.push_back('"');
        o.push_back(c);
    }
    return o + "\"";
}

// ---------------------------------------------------------------- statements

// A prepared statement that finalizes itself. Every failure throws SqlError
// with SQLite's message and code; a failed step resets the statement.
class Stmt {
public:
    Stmt(sqlite3* db, const std::string& sql) : db_(db), sql_(sql) {
        if (sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &st_, nullptr) != SQLITE_OK)
            fail("prepare");
    }
    ~Stmt() { sqlite3_finalize(st_); }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    sqlite3_stmt* get() const { return st_; }

    void bind(int idx, const Val& v) {
        if (bind_val(st_, idx, v) != SQLITE_OK) fail("bind");
    }
    void bind_all(const std::vector<Val>& args) {
        for (size_t i = 0; i < args.size(); ++i) bind(static_cast<int>(i + 1), args[i]);
    }

    // true: a row is available.
    bool step() {
        const int rc = sqlite3_step(st_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        fail("step");
    }
    // Steps to the end and resets, ready for the next bindings.
    void run() {
        while (step()) {
        }
        sqlite3_reset(st_);
    }
    void reset() { sqlite3_reset(st_); }

    Val col(int i) const { return column_val(st_, i); }
    std::string col_text(int i) const {
        const unsigned char* p = sqlite3_column_text(st_, i);
        return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(st_, i)))
                 : std::string();
    }
    int64_t col_int(int i) const { return sqlite3_column_int64(st_, i); }
    bool col_is_null(int i) const { return sqlite3_column_type(st_, i) == SQLITE_NULL; }
    int ncols() const { return sqlite3_column_count(st_); }

private:
    [[noreturn]] void fail(const char* what) {
        const int code = sqlite3_extended_errcode(db_);
        std::string msg = sqlite3_errmsg(db_);
        if (st_) sqlite3_reset(st_);
        throw SqlError(
            std::string(what) + " failed (" + std::to_string(code) + "): " + msg + " [" + sql_.substr(0, 300) + "]",
            msg, code);
    }

    sqlite3* db_;
    std::string sql_;
    sqlite3_stmt* st_ = nullptr;
};

// Runs one or more statements.
inline void exec(sqlite3* db, const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string m = err ? err : sqlite3_errmsg(db);
        sqlite3_free(err);
        throw SqlError("exec failed: " + m + " [" + sql.substr(0, 300) + "]", m, sqlite3_extended_errcode(db));
    }
}

// Loads the lwwsync extension into `db`; returns SQLite's message on failure
// and an empty string on success.
inline std::string load_lwwsync(sqlite3* db, const std::string& path) {
    sqlite3_enable_load_extension(db, 1);
    char* err = nullptr;
    if (sqlite3_load_extension(db, path.c_str(), "sqlite3_lwwsync_init", &err) != SQLITE_OK) {
        std::string m = err ? err : sqlite3_errmsg(db);
        sqlite3_free(err);
        return m.empty() ? std::string("unknown error") : m;
    }
    return std::string();
}

// ---------------------------------------------------------------- random numbers

// splitmix64: tiny, portable and deterministic on every platform, so a
// printed seed replays a run.
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed) {}
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    // uniform in [0, n)
    uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
    // uniform in [lo, hi]
    int64_t range(int64_t lo, int64_t hi) {
        return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
    }
    // uniform in [0, 1)
    double unit() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
    bool chance(unsigned percent) { return below(100) < percent; }
    template <class T>
    const T& pick(const std::vector<T>& v) {
        return v[below(v.size())];
    }
    template <class T>
    void shuffle(std::vector<T>& v) {
        for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
    }
};

// ---------------------------------------------------------------- JSON

// The member at a dotted path ("sent.applied") of a parsed document, or null.
inline const rapidjson::Value* json_at(const rapidjson::Value& root, const std::string& path) {
    const rapidjson::Value* v = &root;
    size_t pos = 0;
    for (;;) {
        const size_t dot = path.find('.', pos);
        const std::string key = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
        if (!v->IsObject()) return nullptr;
        auto m = v->FindMember(key.c_str());
        if (m == v->MemberEnd()) return nullptr;
        v = &m->value;
        if (dot == std::string::npos) return v;
        pos = dot + 1;
    }
}

}  // namespace lwwtest
