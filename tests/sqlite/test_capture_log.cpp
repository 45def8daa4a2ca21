// The capture log (sqlite_ext/capture_log.h): a local UPDATE appends to
// lww_log and the metadata catches up before anything reads it. What it must
// give is exactly what rewriting the metadata in the trigger gave.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "harness.h"

using namespace lwwt;

namespace {

const char* kShapes =
    "CREATE TABLE t(id TEXT PRIMARY KEY, a TEXT, b INTEGER, c REAL);"
    "CREATE TABLE u(id INTEGER PRIMARY KEY, x TEXT, y INTEGER);"
    "CREATE TABLE w(k1 TEXT, k2 INTEGER, v TEXT, n INTEGER, PRIMARY KEY (k1, k2));";

struct Shape {
    const char* name;
    std::vector<std::string> key, cols;
};
const std::vector<Shape> kTables = {{"t", {"id"}, {"a", "b", "c"}}, {"u", {"id"}, {"x", "y"}}, {"w", {"k1", "k2"}, {"v", "n"}}};

Db& tracked(Cluster& cl, const std::string& name, uint64_t pin_hlc = hlc_at(now_ms() + 120000)) {
    Db& db = cl.add(name, kShapes, {"t", "u", "w"});
    // Every database's clock ahead of its wall clock by the same stamp, so
    // the same writes take the same stamps in each (HybridClock::tick).
    db.exec("CREATE TABLE pin(id INTEGER PRIMARY KEY, v TEXT)");
    db.track("pin");
    db.apply(craft_cs(kNode1, {kNode1},
                      {craft_table("\"pin\"", "[\"id\"]", "[\"v\"]",
                                   {{"[1]", 1, pin_hlc, 0, true, "[[0,\"p\"]]"}})}));
    return db;
}

// The update trigger as lwwsync 0.8 made it: the metadata row rewritten in place.
void capture_directly(Db& db) {
    for (const Shape& s : kTables) {
        const std::string name = std::string("lww__") + s.name + "__upd";
        std::string sql = db.text("SELECT sql FROM sqlite_master WHERE name = ?", {Val::text(name)});
        std::string match;
        for (size_t i = 0; i < s.key.size(); ++i)
            match += (i ? " AND k" : "k") + std::to_string(i) + " = NEW.\"" + s.key[i] + "\"";
        sql = sql.substr(0, sql.find(" BEGIN ")) + " BEGIN UPDATE \"lww__" + s.name +
              "\" SET cols = lww_cols_set(cols), seq = lww_write_seq() WHERE " + match + "; END";
        db.exec("DROP TRIGGER \"" + name + "\"");
        db.exec(sql);
    }
}

// One random statement; the same seed gives the same statement everywhere.
std::pair<std::string, std::vector<Val>> random_write(std::mt19937_64& rng) {
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
    const std::string key = "k" + std::to_string(pick(12));
    const int64_t ikey = pick(12), other = pick(12);
    const Val text = Val::text("v" + std::to_string(pick(5)));
    const Val num(static_cast<long long>(pick(4)));
    switch (pick(11)) {
        case 0: return {"INSERT OR REPLACE INTO t VALUES (?, ?, ?, ?)", {Val::text(key), text, num, Val(0.5 * pick(3))}};
        case 1: return {"UPDATE t SET a = ? WHERE id = ?", {text, Val::text(key)}};
        case 2: return {"UPDATE t SET b = b + 1, c = ? WHERE id >= ?", {Val(0.25 * pick(3)), Val::text(key)}};
        case 3: return {"DELETE FROM t WHERE id = ?", {Val::text(key)}};
        case 4: return {"UPDATE OR IGNORE t SET id = ? WHERE id = ?", {Val::text("k" + std::to_string(other)), Val::text(key)}};
        case 5: return {"INSERT INTO t VALUES (?, ?, 1, NULL) ON CONFLICT(id) DO UPDATE SET a = excluded.a", {Val::text(key), text}};
        case 6: return {"INSERT OR REPLACE INTO u VALUES (?, ?, ?)", {Val(static_cast<long long>(ikey)), text, num}};
        case 7: return {"UPDATE u SET y = ? WHERE id <= ?", {num, Val(static_cast<long long>(ikey))}};
        case 8: return {"DELETE FROM u WHERE id = ?", {Val(static_cast<long long>(ikey))}};
        case 9: return {"INSERT OR REPLACE INTO w VALUES (?, ?, ?, ?)", {Val::text(key), Val(static_cast<long long>(ikey % 2)), text, num}};
        default: return {"UPDATE w SET n = coalesce(n, 0) + 1, v = ? WHERE k1 = ?", {text, Val::text(key)}};
    }
}

std::vector<std::string> state(Db& db) {
    std::vector<std::string> out;
    for (const Shape& s : kTables)
        for (const std::string& name : {std::string(s.name), std::string("lww__") + s.name})
            for (const auto& r : db.table(name)) out.push_back(name + ": " + r);
    return out;
}

}  // namespace

TEST(CaptureLog, AnUpdateWaitsInTheLogAndIsFoldedBeforeItIsRead) {
    Cluster cl;
    Db& a = tracked(cl, "a");
    a.exec("INSERT INTO t VALUES ('x', 'a', 1, 1.5)");
    const auto before = a.table("lww__t");
    const int64_t s = a.seq();
    a.exec("UPDATE t SET b = 2 WHERE id = 'x'");
    EXPECT_EQ(a.seq(), s + 1);  // the sequence is taken at the write
    EXPECT_EQ(a.table("lww__t"), before);
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww_log WHERE tbl = 't' AND k0 = 'x' AND seq = ?", {Val(static_cast<long long>(s + 1))}), 1);
    const ParsedCS cs = parse_cs(a.changes(s));
    ASSERT_EQ(cs.regs.size(), 1u);
    EXPECT_EQ(cs.regs[0].col, "b");
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww_log"), 0);
    EXPECT_EQ(a.i64("SELECT seq FROM lww__t WHERE k0 = 'x'"), s + 1);
    // A delete after the update: the update's entry is superseded.
    a.exec("UPDATE t SET a = 'z' WHERE id = 'x'; DELETE FROM t WHERE id = 'x'");
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww_log"), 1);
    const ParsedCS gone = parse_cs(a.changes(s + 1));
    ASSERT_EQ(gone.regs.size(), 1u);
    EXPECT_TRUE(gone.regs[0].is_row);
    EXPECT_EQ(gone.regs[0].gen, 2);
}

// A database whose update triggers rewrite the metadata (schema 4, before
// the log) gets the log when the extension next opens it.
TEST(CaptureLog, ADatabaseFromBeforeTheLogGetsItOnOpen) {
    Cluster cl;
    {
        Db& old = tracked(cl, "old");
        capture_directly(old);
        old.exec("DROP TABLE lww_log; UPDATE lww_state SET value = 4 WHERE key = 'schema'");
        old.exec("INSERT INTO t VALUES ('x', 'a', 1, 1.5); UPDATE t SET a = 'b' WHERE id = 'x'");
    }
    auto db = cl.connect("old");
    EXPECT_EQ(db->node_id().size(), 36u);  // any call upgrades
    EXPECT_EQ(db->i64("SELECT value FROM lww_state WHERE key = 'schema'"), 5);
    EXPECT_NE(db->text("SELECT sql FROM sqlite_master WHERE name = 'lww__t__upd'").find("INSERT INTO lww_log"), std::string::npos);
    EXPECT_EQ(db->i64("SELECT count(*) FROM pragma_table_info('lww_log') WHERE name GLOB 'k[0-9]*'"), 2);  // w's key
    const int64_t s = db->seq();
    db->exec("UPDATE t SET c = 2.5 WHERE id = 'x'");
    EXPECT_EQ(db->i64("SELECT count(*) FROM lww_log"), 1);
    const ParsedCS cs = parse_cs(db->changes(0));
    // a (updated under the old trigger) and c (through the log) carry stamps of their own.
    std::vector<std::string> regs;
    uint64_t row_hlc = 0;
    for (const auto& r : cs.regs_of("text:'x'"))
        if (r.is_row) row_hlc = r.hlc;
    for (const auto& r : cs.regs_of("text:'x'"))
        regs.push_back(r.is_row ? "ROW" : r.col + (r.hlc > row_hlc ? " own" : " row's") + " " + r.value.repr());
    EXPECT_EQ(regs, (std::vector<std::string>{"ROW", "a own text:'b'", "b row's int:1", "c own real:2.5[4004000000000000]"}));
    EXPECT_EQ(db->seq(), s + 1);
}

// Random writes on three copies of one start: folded at random points,
// folded once at the end, and captured the old way in the trigger. The
// metadata and the rows must come out byte for byte the same.
TEST(CaptureLog, FoldedAnywhereItEqualsCapturingInTheTrigger) {
    const char* env = std::getenv("LWWSYNC_SEED");
    const uint64_t first = env && *env ? std::stoull(env) : std::random_device{}();
    std::printf("CaptureLog seeds %llu.. (LWWSYNC_SEED reproduces)\n", static_cast<unsigned long long>(first));
    for (uint64_t seed = first; seed < first + 8; ++seed) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        Cluster cl;
        const uint64_t pin = hlc_at(now_ms() + 120000);
        Db& often = tracked(cl, "often", pin);
        Db& late = tracked(cl, "late", pin);
        Db& direct = tracked(cl, "direct", pin);
        Db& bounded = tracked(cl, "bounded", pin);  // folds itself every 3 updates
        bounded.exec("SELECT lww_config('log_fold_rows', 3)");
        capture_directly(direct);
        std::mt19937_64 rng(seed), reads(seed ^ 0x9e3779b97f4a7c15ull);
        for (int i = 0; i < 250; ++i) {
            const auto [sql, params] = random_write(rng);
            for (Db* db : {&often, &late, &direct, &bounded}) {
                const Outcome o = db->run(sql, params);
                ASSERT_TRUE(o.ok) << sql << ": " << o.err;
            }
            if (reads() % 5 == 0) often.changes(0);
        }
        EXPECT_GT(late.i64("SELECT count(*) FROM lww_log"), 0);
        EXPECT_LE(bounded.i64("SELECT count(*) FROM lww_log"), 3);
        for (Db* db : {&often, &late, &bounded}) db->changes(0);
        EXPECT_EQ(late.i64("SELECT count(*) FROM lww_log"), 0);
        const auto want = state(direct);
        EXPECT_EQ(state(often), want);
        EXPECT_EQ(state(late), want);
        EXPECT_EQ(state(bounded), want);
        if (HasFailure()) {
            std::printf("reproduce with seed %llu\n", static_cast<unsigned long long>(seed));
            break;
        }
    }
}

// The log is a table anyone with the file can write: what it holds is
// checked when folded, and a damaged entry stops the read with an error
// (nothing folded, nothing lost).
TEST(CaptureLog, ADamagedEntryIsRefusedByName) {
    Cluster cl;
    Db& a = tracked(cl, "a");
    a.exec("INSERT INTO t VALUES ('x', 'a', 1, 1.5)");
    const auto meta = a.table("lww__t");
    a.exec("INSERT INTO lww_log(seq, tbl, hlc, cols, k0) VALUES (lww_seq() + 1, 't', 5, x'08', 'x')");
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_changes(0)", {}, "lww_changes:", "a capture log entry names a column its table lacks"));
    a.exec("UPDATE lww_log SET cols = x'0000'");
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_changes(0)", {}, "lww_changes:", "names more columns than its table has"));
    a.exec("UPDATE lww_log SET cols = 'text'");
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_changes(0)", {}, "lww_changes:", "a capture log entry is malformed"));
    EXPECT_EQ(a.table("lww__t"), meta);
    // Entries of a table no longer tracked are dropped.
    a.exec("UPDATE lww_log SET tbl = 'gone', cols = x'01'");
    a.changes(0);
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww_log"), 0);
    EXPECT_EQ(a.table("lww__t"), meta);
    // A sequence out of range would wrap the counter: refused, by the next
    // connection to open the file as by the fold.
    for (const char* seq : {"-1", "0", "9223372036854775807"}) {
        SCOPED_TRACE(seq);
        a.exec(std::string("INSERT INTO lww_log(seq, tbl, hlc, cols, k0) VALUES (") + seq + ", 't', 5, x'01', 'x')");
        auto other = cl.connect("a");
        EXPECT_TRUE(FailsCleanly(*other, "UPDATE t SET a = 'q'", {}, "", std::string("the capture log holds sequence ") + seq));
        EXPECT_TRUE(FailsCleanly(a, "SELECT lww_changes(0)", {}, "lww_changes:", std::string("the capture log holds sequence ") + seq));
        a.exec("DELETE FROM lww_log");
    }
    EXPECT_EQ(a.table("lww__t"), meta);
    // The fold's helper is for lwwsync's own statements only.
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_fold_cols(NULL, 100000, x'01', 1, 1)", {}, "lww_fold_cols:", "ncols out of range"));
}

// Reading changes folds the log first, which takes the write lock: a
// connection that cannot write is told why.
TEST(CaptureLog, ReadingChangesWithUpdatesWaitingNeedsTheWriteLock) {
    Cluster cl;
    Db& a = tracked(cl, "a");
    a.exec("INSERT INTO t VALUES ('x', 'a', 1, 1.5)");
    auto reader = cl.connect("a");
    reader->exec("PRAGMA query_only = 1");
    const std::string before = reader->changes(0);  // nothing waits: a read only
    a.exec("UPDATE t SET b = 2");
    EXPECT_TRUE(FailsCleanly(*reader, "SELECT lww_changes(0)", {}, "lww_changes:",
                             "local updates wait in the capture log (lww_log)"));
    reader->exec("PRAGMA query_only = 0");
    EXPECT_NE(reader->changes(0), before);
    reader->exec("PRAGMA query_only = 1");
    EXPECT_EQ(reader->changes(0), a.changes(0));
}

// With nothing reading, the log stays bounded: the update that reaches
// log_fold_rows appends folds the log first.
TEST(CaptureLog, TheLogStaysBoundedWhileNothingReads) {
    Cluster cl;
    Db& a = tracked(cl, "a");
    EXPECT_EQ(a.i64("SELECT lww_config('log_fold_rows')"), 262144);
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_config('log_fold_rows', 0)", {}, "lww_config:", "log_fold_rows must be between 1 and"));
    a.exec("SELECT lww_config('log_fold_rows', 100)");
    a.exec("WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 50) INSERT INTO t SELECT 'k' || v, 'a', v, 0.5 FROM n");
    int64_t most = 0;
    for (int i = 0; i < 20; ++i) {
        a.exec("UPDATE t SET b = b + 1");
        most = std::max(most, a.i64("SELECT count(*) FROM lww_log"));
    }
    EXPECT_LE(most, 100);
    EXPECT_GT(most, 50);
    // Nothing lost: every row's last update is what its metadata says.
    a.changes(0);
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww__t WHERE seq = (SELECT max(seq) FROM lww__t)"), 1);
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww__t WHERE seq > ?", {Val(static_cast<long long>(a.seq() - 50))}), 50);
}
