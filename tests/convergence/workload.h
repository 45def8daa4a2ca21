// Shared by the lwwsync convergence tests (convergence.cpp: SQLite peers only;
// mixed.cpp: PostgreSQL and SQLite peers): the deterministic random number
// generator, the canonical value model and its exact rendering, the SQLite
// statement helper, the schema description, the value and key generators, and
// row dumps with their comparison. Everything lives in namespace conv; each
// program is a single translation unit and defines conv::tables().
#pragma once

#include <sqlite3.h>

#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <filesystem>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <rapidjson/document.h>

namespace conv {

// ---------------------------------------------------------------- rng

// splitmix64: tiny, portable and fully deterministic across platforms.
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed ^ 0x6a09e667f3bcc909ULL) {}
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

// ---------------------------------------------------------------- errors

struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------- JSON

// lwwsync's documents (change sets, stats), read with RapidJSON as the core
// and the SQLite tests read them. A member by dotted path ("sent.applied").
class JsonDoc {
public:
    explicit JsonDoc(const std::string& text) { doc_.Parse(text.c_str(), text.size()); }
    bool valid() const { return !doc_.HasParseError() && doc_.IsObject(); }
    // An integer member, a JSON number or a decimal string (64-bit
    // quantities travel as strings); `dflt` when absent or null.
    int64_t integer(const std::string& path, int64_t dflt) const {
        const rapidjson::Value* v = at(path);
        if (!v || v->IsNull()) return dflt;
        if (v->IsInt64()) return v->GetInt64();
        int64_t out = 0;
        if (v->IsString()) {
            const char* b = v->GetString();
            const char* e = b + v->GetStringLength();
            auto r = std::from_chars(b, e, out);
            if (r.ec == std::errc() && r.ptr == e) return out;
        }
        throw Failure(path + " is not an integer");
    }
    bool boolean(const std::string& path, bool dflt) const {
        const rapidjson::Value* v = at(path);
        if (!v || v->IsNull()) return dflt;
        if (!v->IsBool()) throw Failure(path + " is not a boolean");
        return v->GetBool();
    }
    std::string text(const std::string& path) const {
        const rapidjson::Value* v = at(path);
        return v && v->IsString() ? std::string(v->GetString(), v->GetStringLength()) : std::string();
    }

private:
    const rapidjson::Value* at(const std::string& path) const {
        if (!valid()) return nullptr;
        const rapidjson::Value* v = &doc_;
        size_t pos = 0;
        while (pos <= path.size()) {
            const size_t dot = path.find('.', pos);
            const std::string key = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
            if (!v->IsObject()) return nullptr;
            auto m = v->FindMember(key.c_str());
            if (m == v->MemberEnd()) return nullptr;
            v = &m->value;
            if (dot == std::string::npos) break;
            pos = dot + 1;
        }
        return v;
    }
    rapidjson::Document doc_;
};

// ---------------------------------------------------------------- values

enum class VT { Null, Int, Real, Text, Blob };

struct Val {
    VT t = VT::Null;
    int64_t i = 0;
    double r = 0;
    std::string s;  // text or blob bytes
    static Val null() { return Val{}; }
    static Val integer(int64_t v) {
        Val x;
        x.t = VT::Int;
        x.i = v;
        return x;
    }
    static Val real(double v) {
        Val x;
        x.t = VT::Real;
        x.r = v;
        return x;
    }
    static Val text(std::string v) {
        Val x;
        x.t = VT::Text;
        x.s = std::move(v);
        return x;
    }
    static Val blob(std::string v) {
        Val x;
        x.t = VT::Blob;
        x.s = std::move(v);
        return x;
    }
};

std::string hex_bytes(const std::string& b) {
    static const char* d = "0123456789abcdef";
    std::string o;
    o.reserve(b.size() * 2);
    for (unsigned char c : b) {
        o += d[c >> 4];
        o += d[c & 15];
    }
    return o;
}

// Exact, injective rendering of a value: the storage class plus its exact
// bytes.  Reals are rendered as their IEEE-754 bit pattern (plus %.17g for
// humans); text keeps UTF-8 bytes and escapes control characters.
std::string render(const Val& v) {
    char buf[96];
    switch (v.t) {
        case VT::Null: return "NULL";
        case VT::Int: std::snprintf(buf, sizeof buf, "%" PRId64, v.i); return buf;
        case VT::Real: {
            uint64_t bits;
            std::memcpy(&bits, &v.r, 8);
            std::snprintf(buf, sizeof buf, "real:%.17g[%016" PRIx64 "]", v.r, bits);
            return buf;
        }
        case VT::Text: {
            std::string o = "'";
            for (unsigned char c : v.s) {
                if (c == '\'') o += "''";
                else if (c == '\\') o += "\\\\";
                else if (c < 0x20 || c == 0x7f) {
                    std::snprintf(buf, sizeof buf, "\\x%02x", c);
                    o += buf;
                } else o += static_cast<char>(c);
            }
            return o + "'";
        }
        case VT::Blob: return "x'" + hex_bytes(v.s) + "'";
    }
    return "?";
}

// ---------------------------------------------------------------- sqlite helpers

class Stmt {
public:
    Stmt(sqlite3* db, const std::string& sql) : db_(db), sql_(sql) {
        if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st_, nullptr) != SQLITE_OK)
            throw Failure("prepare failed: " + std::string(sqlite3_errmsg(db)) + " [" + sql + "]");
    }
    ~Stmt() { sqlite3_finalize(st_); }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    void bind(int idx, const Val& v) {
        int rc = SQLITE_OK;
        switch (v.t) {
            case VT::Null: rc = sqlite3_bind_null(st_, idx); break;
            case VT::Int: rc = sqlite3_bind_int64(st_, idx, v.i); break;
            case VT::Real: rc = sqlite3_bind_double(st_, idx, v.r); break;
            case VT::Text:
                rc = sqlite3_bind_text(st_, idx, v.s.data(), static_cast<int>(v.s.size()), SQLITE_TRANSIENT);
                break;
            case VT::Blob:
                rc = sqlite3_bind_blob(st_, idx, v.s.data(), static_cast<int>(v.s.size()), SQLITE_TRANSIENT);
                break;
        }
        if (rc != SQLITE_OK) throw Failure("bind failed: " + std::string(sqlite3_errmsg(db_)));
    }
    void bind_text(int idx, const std::string& s) { bind(idx, Val::text(s)); }
    void bind_int(int idx, int64_t i) { bind(idx, Val::integer(i)); }

    // true = a row is available
    bool step() {
        int rc = sqlite3_step(st_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        std::string msg = sqlite3_errmsg(db_);
        sqlite3_reset(st_);
        throw Failure("step failed (" + std::to_string(rc) + "): " + msg + " [" + sql_ + "]");
    }
    void run() {
        while (step()) {
        }
        sqlite3_reset(st_);
    }

    Val col(int i) const {
        switch (sqlite3_column_type(st_, i)) {
            case SQLITE_INTEGER: return Val::integer(sqlite3_column_int64(st_, i));
            case SQLITE_FLOAT: return Val::real(sqlite3_column_double(st_, i));
            case SQLITE_TEXT: {
                const unsigned char* p = sqlite3_column_text(st_, i);
                int n = sqlite3_column_bytes(st_, i);
                return Val::text(std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)));
            }
            case SQLITE_BLOB: {
                const void* p = sqlite3_column_blob(st_, i);
                int n = sqlite3_column_bytes(st_, i);
                return Val::blob(n ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string());
            }
            default: return Val::null();
        }
    }
    std::string col_text(int i) const {
        const unsigned char* p = sqlite3_column_text(st_, i);
        int n = sqlite3_column_bytes(st_, i);
        return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
    }
    int64_t col_int(int i) const { return sqlite3_column_int64(st_, i); }
    int ncols() const { return sqlite3_column_count(st_); }
    bool col_is_null(int i) const { return sqlite3_column_type(st_, i) == SQLITE_NULL; }

private:
    sqlite3* db_;
    std::string sql_;
    sqlite3_stmt* st_ = nullptr;
};

void exec(sqlite3* db, const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string m = err ? err : sqlite3_errmsg(db);
        sqlite3_free(err);
        throw Failure("exec failed: " + m + " [" + sql + "]");
    }
}

std::string query_text(sqlite3* db, const std::string& sql, const std::vector<Val>& args = {},
                       bool allow_null = false) {
    Stmt s(db, sql);
    for (size_t i = 0; i < args.size(); ++i) s.bind(static_cast<int>(i + 1), args[i]);
    if (!s.step()) throw Failure("no row from [" + sql + "]");
    if (s.col_is_null(0) && !allow_null) throw Failure("NULL result from [" + sql + "]");
    std::string r = s.col_text(0);
    s.run();
    return r;
}

// ---------------------------------------------------------------- schema

enum class Kind { Int, Real, Text, Blob, Any };

struct Col {
    std::string name;
    Kind kind;
};

struct Table {
    std::string name;
    std::vector<Col> keys;
    std::vector<Col> cols;
    std::string ddl;

    std::string key_list() const {
        std::string o;
        for (size_t i = 0; i < keys.size(); ++i) o += (i ? ", " : "") + keys[i].name;
        return o;
    }
    // "k1 = ?B AND k2 = ?B+1"
    std::string key_where(int first) const {
        std::string o;
        for (size_t i = 0; i < keys.size(); ++i)
            o += (i ? " AND " : "") + keys[i].name + " = ?" + std::to_string(first + static_cast<int>(i));
        return o;
    }
};

// Each program defines its own schema (the SQLite test: any-typed columns;
// the mixed test: columns typed the same way in both engines).
const std::vector<Table>& tables();

// ---------------------------------------------------------------- value generators

struct Gen {
    Rng& rng;
    bool edge;
    // Only values of each column's own kind (the mixed test: Postgres columns
    // are typed, so an off-type value would not mean the same in both engines).
    bool typed_only = false;

    std::string rand_ascii(size_t n) {
        static const char* a = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,:;!?";
        std::string s;
        for (size_t i = 0; i < n; ++i) s += a[rng.below(std::strlen(a))];
        return s;
    }
    std::string rand_mixed(size_t n) {
        static const std::vector<std::string> parts = {"a",  "Z", " ",  "é",  "ß",  "Ж", "中", "文", "😀", "🎉",
                                                       "\"", "'", "\\", "\n", "\t", "0", "{",  "}",  "ﬀ", "א"};
        std::string s;
        for (size_t i = 0; i < n; ++i) s += rng.pick(parts);
        return s;
    }
    std::string text() {
        static const std::vector<std::string> pool = {"",
                                                      "a",
                                                      "hello world",
                                                      "ünïcödé",
                                                      "日本語テキスト",
                                                      "emoji 😀🎉",
                                                      "quote ' \" \\ /",
                                                      "line\nbreak\ttab",
                                                      "ctl \x01\x1f\x7f",
                                                      "123",
                                                      "1e5",
                                                      "-0",
                                                      "  spaced  ",
                                                      "null",
                                                      "NULL",
                                                      "{\"json\": [1,2]}",
                                                      "\xe2\x80\xa8 sep \xe2\x80\xa9",
                                                      "Ω≈ç√∫˜µ≤≥÷"};
        switch (rng.below(4)) {
            case 0: return rand_ascii(static_cast<size_t>(rng.range(1, 10)));
            case 1: return rand_mixed(static_cast<size_t>(rng.chance(15) ? rng.range(100, 400) : rng.range(1, 12)));
            default: return rng.pick(pool);
        }
    }
    double real() {
        static const std::vector<double> pool = {0.0,
                                                 1.5,
                                                 -2.25,
                                                 0.1,
                                                 -0.1,
                                                 3.141592653589793,
                                                 2.718281828459045e-10,
                                                 1e300,
                                                 -1e300,
                                                 1.7976931348623157e308,
                                                 -1.7976931348623157e308,
                                                 4.9406564584124654e-324,
                                                 2.2250738585072014e-308,
                                                 1e15 + 0.3,
                                                 123456789.12345679,
                                                 -7.0,
                                                 2.0,
                                                 9007199254740992.0,
                                                 1e22,
                                                 5e-7,
                                                 -123.456e-100,
                                                 0.30000000000000004,
                                                 1.0 / 3.0};
        switch (rng.below(4)) {
            case 0: {  // random finite bit pattern
                for (;;) {
                    uint64_t bits = rng.next();
                    double d;
                    std::memcpy(&d, &bits, 8);
                    if (std::isfinite(d) && d != 0.0) return d;
                }
            }
            case 1: {  // moderate magnitude with many significant digits
                double m = static_cast<double>(rng.next() >> 11) / 9007199254740992.0;
                double d = std::ldexp(m, static_cast<int>(rng.range(-40, 60)));
                if (d == 0.0) return 1.25;  // never produce -0.0 (it compares equal to 0.0)
                return rng.chance(50) ? -d : d;
            }
            default:
                if (edge && rng.chance(10))
                    return rng.chance(50) ? std::numeric_limits<double>::infinity()
                                          : -std::numeric_limits<double>::infinity();
                return rng.pick(pool);
        }
    }
    int64_t integer() {
        static const std::vector<int64_t> pool = {0,
                                                  1,
                                                  -1,
                                                  42,
                                                  -42,
                                                  std::numeric_limits<int64_t>::max(),
                                                  std::numeric_limits<int64_t>::min(),
                                                  std::numeric_limits<int64_t>::max() - 1,
                                                  std::numeric_limits<int64_t>::min() + 1,
                                                  9007199254740992LL,
                                                  9007199254740993LL,
                                                  -9007199254740993LL,
                                                  4294967296LL,
                                                  2147483647LL,
                                                  -2147483648LL,
                                                  1234567890123456789LL};
        switch (rng.below(4)) {
            case 0: return static_cast<int64_t>(rng.next());
            case 1: return rng.range(-1000, 1000);
            default: return rng.pick(pool);
        }
    }
    std::string blob() {
        static const std::vector<std::string> pool = {std::string(),
                                                      std::string(1, '\0'),
                                                      std::string(4, '\0'),
                                                      std::string("\x00\xff\x00", 3),
                                                      std::string("abc"),
                                                      std::string("\xc3\x28", 2),
                                                      std::string("\xff\xfe\xfd", 3),
                                                      std::string("\x00"
                                                                  "a\x00"
                                                                  "b",
                                                                  4)};
        if (rng.chance(50)) return rng.pick(pool);
        size_t n = static_cast<size_t>(rng.range(0, rng.chance(10) ? 300 : 24));
        std::string b;
        for (size_t i = 0; i < n; ++i) b += static_cast<char>(rng.chance(30) ? 0 : static_cast<int>(rng.below(256)));
        return b;
    }
    Val of_kind(Kind k) {
        switch (k) {
            case Kind::Int: return Val::integer(integer());
            case Kind::Real: return Val::real(real());
            case Kind::Text: return Val::text(text());
            case Kind::Blob: return Val::blob(blob());
            case Kind::Any: break;
        }
        static const Kind kinds[] = {Kind::Int, Kind::Real, Kind::Text, Kind::Blob};
        return of_kind(kinds[rng.below(4)]);
    }
    Val value(Kind k) {
        if (rng.chance(12)) return Val::null();
        if (!typed_only && k != Kind::Any && rng.chance(5)) return of_kind(Kind::Any);  // off-type value
        return of_kind(k);
    }

    // Small key spaces so that different peers collide on keys.
    Val key(const Col& c, const Table& t) {
        if (t.name == "items") {
            static const std::vector<int64_t> rare = {0, -5, std::numeric_limits<int64_t>::max(),
                                                      std::numeric_limits<int64_t>::min(), 9007199254740993LL};
            if (rng.chance(12)) return Val::integer(rng.pick(rare));
            return Val::integer(rng.range(1, 6));
        }
        if (c.name == "k1") {
            static const std::vector<std::string> common = {"a", "b", "日本"};
            static const std::vector<std::string> rare = {"", "ü", "x y", "😀"};
            return Val::text(rng.chance(15) ? rng.pick(rare) : rng.pick(common));
        }
        static const std::vector<int64_t> rare = {-1, 9007199254740993LL, std::numeric_limits<int64_t>::min()};
        if (rng.chance(15)) return Val::integer(rng.pick(rare));
        return Val::integer(rng.range(0, 1));
    }
    std::vector<Val> key(const Table& t) {
        std::vector<Val> k;
        for (const auto& c : t.keys) k.push_back(key(c, t));
        return k;
    }
};

std::string render_key(const Table& t, const std::vector<Val>& k) {
    std::string o = t.name + "(";
    for (size_t i = 0; i < k.size(); ++i) o += (i ? ", " : "") + render(k[i]);
    return o + ")";
}

// ---------------------------------------------------------------- extension loading

std::string load_ext(sqlite3* db, const std::string& ext) {
    sqlite3_enable_load_extension(db, 1);
    char* err = nullptr;
    if (sqlite3_load_extension(db, ext.c_str(), "sqlite3_lwwsync_init", &err) != SQLITE_OK) {
        std::string m = err ? err : "unknown error";
        sqlite3_free(err);
        return m;
    }
    return std::string();
}

// ---------------------------------------------------------------- dumps

struct Row {
    std::string key;                // rendered key
    std::vector<std::string> vals;  // rendered non-key columns
    std::string full;               // rendered key + all columns (exact; used for comparison)
};

// Shorten very long renderings for display only (comparison uses full text).
std::string shorten(const std::string& s) {
    if (s.size() <= 120) return s;
    uint64_t h = 1469598103934665603ULL;  // FNV-1a, to tell long values apart
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
    char buf[64];
    std::snprintf(buf, sizeof buf, "...(%zu chars, fnv %016" PRIx64 ")", s.size(), h);
    size_t cut = 60;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // keep UTF-8 whole
    return s.substr(0, cut) + buf;
}

std::string display(const Table& t, const Row& r) {
    std::string o = r.key + " {";
    for (size_t i = 0; i < r.vals.size(); ++i) {
        // Values past the table's columns are of columns added mid-run.
        const std::string name = i < t.cols.size() ? t.cols[i].name : "added#" + std::to_string(i - t.cols.size() + 1);
        o += (i ? ", " : "") + name + "=" + shorten(r.vals[i]);
    }
    return o + "}";
}

using Dump = std::vector<std::vector<Row>>;  // per table

bool dumps_equal(const Dump& a, const Dump& b) {
    if (a.size() != b.size()) return false;
    for (size_t t = 0; t < a.size(); ++t) {
        if (a[t].size() != b[t].size()) return false;
        for (size_t i = 0; i < a[t].size(); ++i)
            if (a[t][i].full != b[t][i].full) return false;
    }
    return true;
}

// Describe up to `limit` differences between two dumps (by key).
std::string diff_dumps(const std::string& an, const Dump& a, const std::string& bn, const Dump& b, int limit = 6) {
    std::string out;
    int shown = 0;
    for (size_t t = 0; t < a.size() && shown < limit; ++t) {
        std::map<std::string, const Row*> ma, mb;
        for (const auto& r : a[t]) ma[r.key] = &r;
        for (const auto& r : b[t]) mb[r.key] = &r;
        std::set<std::string> keys;
        for (auto& kv : ma) keys.insert(kv.first);
        for (auto& kv : mb) keys.insert(kv.first);
        size_t ndiff = 0;
        for (const auto& k : keys) {
            auto ia = ma.find(k), ib = mb.find(k);
            if (ia != ma.end() && ib != mb.end() && ia->second->full == ib->second->full) continue;
            ++ndiff;
            if (shown < limit) {
                const Table& tb = tables()[t];
                out += "    " + an + ": " + (ia == ma.end() ? k + " (absent)" : display(tb, *ia->second)) + "\n";
                out += "    " + bn + ": " + (ib == mb.end() ? k + " (absent)" : display(tb, *ib->second)) + "\n";
                ++shown;
            }
        }
        if (ndiff)
            out += "    (" + tables()[t].name + ": " + std::to_string(ndiff) + " differing key(s); " + an + " has " +
                   std::to_string(a[t].size()) + " rows, " + bn + " has " + std::to_string(b[t].size()) + ")\n";
    }
    return out;
}
// ---------------------------------------------------------------- scenario runner

struct RunOptions {
    uint64_t seed = 0;  // scenario i runs with seed + i, so one seed replays alone
    uint64_t scenarios = 0;
    bool fork_each = true;  // a crash or hang fails only its own scenario
    int timeout = 120;      // seconds per forked scenario
    bool keep = false;      // keep the files of passing scenarios too
    bool verbose = false;
    std::string count_flag;   // the flag that sets the count, for the repro line
    std::string repro_extra;  // other non-default flags, for the repro line
};

struct RunTotals {
    uint64_t passed = 0, failed = 0;
};

// Runs the scenarios in directories under `root`; `run_one(seed, dir)`
// returns whether the scenario converged. A failure prints its seed and a
// one-line repro. Stops early when *stop becomes non-zero (an interrupt).
template <class RunOne>
RunTotals run_scenarios(const RunOptions& o, const std::string& root, const char* argv0, RunOne&& run_one,
                        const volatile std::sig_atomic_t* stop = nullptr) {
    RunTotals totals;
    for (uint64_t i = 0; i < o.scenarios && !(stop && *stop); ++i) {
        const uint64_t seed = o.seed + i;
        const std::string dir = root + "/s" + std::to_string(seed);
        std::filesystem::create_directories(dir);
        if (o.verbose) std::printf("scenario %" PRIu64 " seed %" PRIu64 "\n", i, seed);
        std::fflush(stdout);
        std::fflush(stderr);

        bool ok = false;
        std::string why;
        if (o.fork_each) {
            pid_t pid = fork();
            if (pid < 0) {
                std::perror("fork");
                ++totals.failed;
                break;
            }
            if (pid == 0) {
                signal(SIGINT, SIG_DFL);
                signal(SIGTERM, SIG_DFL);
                alarm(static_cast<unsigned>(o.timeout));
                const bool r = run_one(seed, dir);
                std::fflush(stdout);
                std::fflush(stderr);
                _exit(r ? 0 : 1);
            }
            int status = 0;
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ok = true;
            else if (WIFEXITED(status)) why = "divergence or error (details above)";
            else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
                why = "timed out after " + std::to_string(o.timeout) + "s";
            else if (WIFSIGNALED(status))
                why = "crashed with signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) +
                      ")";
            else why = "unknown child status";
        } else {
            ok = run_one(seed, dir);
            if (!ok) why = "divergence or error (details above)";
        }
        if (stop && *stop && !ok) break;  // the child died of the interrupt: not a verdict

        if (!ok && why.rfind("divergence or error", 0) == 0) {
            if (FILE* f = std::fopen((dir + "/reason.txt").c_str(), "r")) {
                char line[4096];
                if (std::fgets(line, sizeof line, f)) why = line;
                std::fclose(f);
            }
        }
        if (ok) {
            ++totals.passed;
            if (!o.keep) {
                std::error_code ec;
                std::filesystem::remove_all(dir, ec);
            }
        } else {
            ++totals.failed;
            std::printf("FAIL scenario %" PRIu64 " seed %" PRIu64 ": %s; files kept in %s; repro: %s --seed %" PRIu64
                        " %s 1%s\n",
                        i, seed, why.c_str(), dir.c_str(), argv0, seed, o.count_flag.c_str(), o.repro_extra.c_str());
        }
        std::fflush(stdout);
    }
    return totals;
}

}  // namespace conv
