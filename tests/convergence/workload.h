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

#include "../common/sql_harness.h"

namespace conv {

// ---------------------------------------------------------------- errors

// SQL errors and failed checks alike end a scenario.
using Failure = lwwtest::SqlError;

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
        return valid() ? lwwtest::json_at(doc_, path) : nullptr;
    }
    rapidjson::Document doc_;
};

// ---------------------------------------------------------------- values and statements

using lwwtest::exec;
using lwwtest::Rng;
using lwwtest::Stmt;
using lwwtest::Val;

std::string query_text(sqlite3* db, const std::string& sql, const std::vector<Val>& args = {},
                       bool allow_null = false) {
    Stmt s(db, sql);
    s.bind_all(args);
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
    for (size_t i = 0; i < k.size(); ++i) o += (i ? ", " : "") + k[i].repr();
    return o + ")";
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
