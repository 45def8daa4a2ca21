// The capture log (sqlite_ext/capture_log.h): a local UPDATE appends to
// lww_log and the metadata catches up before anything reads it. What it must
// give is exactly what rewriting the metadata in the trigger gave: the
// oracle is a database with the update triggers lwwsync 0.8 made (metadata
// rewritten in the trigger, the key trigger firing on every UPDATE), the
// same statements on both from one start and one pinned clock. (The
// CaptureOracle cases were written by an attack on the log; every one held.)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>

#include "harness.h"

using namespace lwwt;

namespace {

const char* kShapes =
    "CREATE TABLE t(id TEXT PRIMARY KEY, a TEXT, b INTEGER, c REAL);"
    "CREATE TABLE u(id INTEGER PRIMARY KEY, x TEXT, y INTEGER);"
    "CREATE TABLE w(k1 TEXT, k2 INTEGER, v TEXT, n INTEGER, PRIMARY KEY (k1, k2));";

const std::vector<std::string> kTables = {"t", "u", "w"};

// Rewrites every lww upd / upd_key trigger of `db` back to the 0.8 shape:
// upd rewrites the metadata in place, upd_key fires on every UPDATE.
void old_capture(Db& db) {
    for (const Row& r : db.rows("SELECT name, key_columns FROM lww_tables")) {
        const std::string t = r[0].s;
        std::vector<std::string> key;
        for (const Row& k : db.rows("SELECT value FROM json_each(?)", {r[1]})) key.push_back(k[0].s);
        const std::string upd = "lww__" + t + "__upd";
        Rows s = db.rows("SELECT sql FROM sqlite_master WHERE name = ?", {Val::text(upd)});
        if (!s.empty()) {
            std::string sql = s[0][0].s;
            std::string match;
            for (size_t i = 0; i < key.size(); ++i)
                match += (i ? " AND k" : "k") + std::to_string(i) + " = NEW." + quote_id(key[i]);
            sql = sql.substr(0, sql.find(" BEGIN ")) + " BEGIN UPDATE " + quote_id("lww__" + t) +
                  " SET cols = lww_cols_set(cols), max_seq = lww_write_seq() WHERE " + match + "; END";
            db.exec("DROP TRIGGER " + quote_id(upd));
            db.exec(sql);
        }
        const std::string uk = "lww__" + t + "__upd_key";
        Rows s2 = db.rows("SELECT sql FROM sqlite_master WHERE name = ?", {Val::text(uk)});
        if (!s2.empty()) {
            std::string sql = s2[0][0].s;
            size_t of = sql.find(" AFTER UPDATE OF ");
            size_t on = sql.find("_rowid_ ON ", of);
            if (of != std::string::npos && on != std::string::npos)
                sql = sql.substr(0, of) + " AFTER UPDATE ON " + sql.substr(on + 11);
            db.exec("DROP TRIGGER " + quote_id(uk));
            db.exec(sql);
        }
    }
}

std::vector<std::string> state_of(Db& db, const std::vector<std::string>& tables) {
    std::vector<std::string> out;
    for (const auto& t : tables)
        for (const std::string& name : {t, std::string("lww__") + t})
            for (const auto& r : db.table(name)) out.push_back(name + ": " + r);
    return out;
}

void pin_clock(Db& db, uint64_t pin) {
    db.exec("CREATE TABLE IF NOT EXISTS pin(id INTEGER PRIMARY KEY, v TEXT)");
    db.track("pin");
    db.apply(craft_cs(kNode1, {kNode1},
                      {craft_table("\"pin\"", "[\"id\"]", "[\"v\"]", {{"[1]", 1, pin, 0, true, "[[0,\"p\"]]"}})}));
}

Db& tracked(Cluster& cl, const std::string& name, uint64_t pin_hlc = hlc_at(now_ms() + 120000)) {
    Db& db = cl.add(name, kShapes, kTables);
    pin_clock(db, pin_hlc);
    return db;
}

// One random statement; the same seed gives the same statement everywhere.
std::pair<std::string, std::vector<Val>> random_write(std::mt19937_64& rng) {
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
    const std::string key = "k" + std::to_string(pick(12));
    const int64_t ikey = pick(12), other = pick(12);
    const Val text = Val::text("v" + std::to_string(pick(5)));
    const Val num(static_cast<long long>(pick(4)));
    switch (pick(11)) {
        case 0:
            return {"INSERT OR REPLACE INTO t VALUES (?, ?, ?, ?)", {Val::text(key), text, num, Val(0.5 * pick(3))}};
        case 1: return {"UPDATE t SET a = ? WHERE id = ?", {text, Val::text(key)}};
        case 2: return {"UPDATE t SET b = b + 1, c = ? WHERE id >= ?", {Val(0.25 * pick(3)), Val::text(key)}};
        case 3: return {"DELETE FROM t WHERE id = ?", {Val::text(key)}};
        case 4:
            return {"UPDATE OR IGNORE t SET id = ? WHERE id = ?",
                    {Val::text("k" + std::to_string(other)), Val::text(key)}};
        case 5:
            return {"INSERT INTO t VALUES (?, ?, 1, NULL) ON CONFLICT(id) DO UPDATE SET a = excluded.a",
                    {Val::text(key), text}};
        case 6: return {"INSERT OR REPLACE INTO u VALUES (?, ?, ?)", {Val(static_cast<long long>(ikey)), text, num}};
        case 7: return {"UPDATE u SET y = ? WHERE id <= ?", {num, Val(static_cast<long long>(ikey))}};
        case 8: return {"DELETE FROM u WHERE id = ?", {Val(static_cast<long long>(ikey))}};
        case 9:
            return {"INSERT OR REPLACE INTO w VALUES (?, ?, ?, ?)",
                    {Val::text(key), Val(static_cast<long long>(ikey % 2)), text, num}};
        default: return {"UPDATE w SET n = coalesce(n, 0) + 1, v = ? WHERE k1 = ?", {text, Val::text(key)}};
    }
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
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww_log WHERE tbl = 't' AND k0 = 'x' AND seq = ?",
                    {Val(static_cast<long long>(s + 1))}),
              1);
    const ParsedCS cs = parse_cs(a.changes(s));
    ASSERT_EQ(cs.regs.size(), 1u);
    EXPECT_EQ(cs.regs[0].col, "b");
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww_log"), 0);
    EXPECT_EQ(a.i64("SELECT max_seq FROM lww__t WHERE k0 = 'x'"), s + 1);
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
        old_capture(old);
        old.exec("DROP TABLE lww_log; UPDATE lww_state SET value = 4 WHERE key = 'schema'");
        old.exec("INSERT INTO t VALUES ('x', 'a', 1, 1.5); UPDATE t SET a = 'b' WHERE id = 'x'");
    }
    auto db = cl.connect("old");
    EXPECT_EQ(db->node_id().size(), 36u);  // any call upgrades
    EXPECT_EQ(db->i64("SELECT value FROM lww_state WHERE key = 'schema'"), 6);
    EXPECT_NE(db->text("SELECT sql FROM sqlite_master WHERE name = 'lww__t__upd'").find("INSERT INTO lww_log"),
              std::string::npos);
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
    EXPECT_EQ(regs,
              (std::vector<std::string>{"ROW", "a own text:'b'", "b row's int:1", "c own real:2.5[4004000000000000]"}));
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
        old_capture(direct);
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
        const auto want = state_of(direct, kTables);
        EXPECT_EQ(state_of(often, kTables), want);
        EXPECT_EQ(state_of(late, kTables), want);
        EXPECT_EQ(state_of(bounded, kTables), want);
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
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_changes(0)", {},
                             "lww_changes:", "a capture log entry names a column its table lacks"));
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
        EXPECT_TRUE(
            FailsCleanly(*other, "UPDATE t SET a = 'q'", {}, "", std::string("the capture log holds sequence ") + seq));
        EXPECT_TRUE(FailsCleanly(a, "SELECT lww_changes(0)", {},
                                 "lww_changes:", std::string("the capture log holds sequence ") + seq));
        a.exec("DELETE FROM lww_log");
    }
    EXPECT_EQ(a.table("lww__t"), meta);
    // The fold's helper is for lwwsync's own statements only.
    EXPECT_TRUE(
        FailsCleanly(a, "SELECT lww_fold_cols(NULL, 100000, x'01', 1, 1)", {}, "lww_fold_cols:", "ncols out of range"));
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
    EXPECT_TRUE(FailsCleanly(*reader, "SELECT lww_changes(0)", {},
                             "lww_changes:", "local updates wait in the capture log (lww_log)"));
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
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_config('log_fold_rows', 0)", {},
                             "lww_config:", "log_fold_rows must be between 1 and"));
    a.exec("SELECT lww_config('log_fold_rows', 100)");
    a.exec(
        "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 50) INSERT INTO t SELECT 'k' || v, "
        "'a', v, 0.5 FROM n");
    int64_t most = 0;
    for (int i = 0; i < 20; ++i) {
        a.exec("UPDATE t SET b = b + 1");
        most = std::max(most, a.i64("SELECT count(*) FROM lww_log"));
    }
    EXPECT_LE(most, 100);
    EXPECT_GT(most, 50);
    // Nothing lost: every row's last update is what its metadata says.
    a.changes(0);
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww__t WHERE max_seq = (SELECT max(max_seq) FROM lww__t)"), 1);
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww__t WHERE max_seq > ?", {Val(static_cast<long long>(a.seq() - 50))}), 50);
}

// ---------------------------------------------------------------- oracle comparisons

namespace {

// Two databases from one start, one with the 0.8 triggers; `step` runs the
// same thing on both; their tables and metadata must stay byte-identical.
struct Pair {
    Cluster cl;
    Db* log = nullptr;
    Db* old = nullptr;
    std::vector<std::string> tables;
    Pair(const std::string& schema, const std::vector<std::string>& track) : tables(track) {
        const uint64_t pin = hlc_at(now_ms() + 120000);
        log = &cl.add("log", schema, track);
        old = &cl.add("old", schema, track);
        pin_clock(*log, pin);
        pin_clock(*old, pin);
        old_capture(*old);
    }
    void both(const std::string& sql, const std::vector<Val>& p = {}) {
        const Outcome a = log->run(sql, p), b = old->run(sql, p);
        EXPECT_EQ(a.ok, b.ok) << sql << ": log=" << a.err << " old=" << b.err;
        if (a.ok && b.ok && !a.rows.empty() && !b.rows.empty() && a.rows[0][0].kind == Val::Text &&
            a.rows[0][0].s.rfind("{\"format\"", 0) != 0) {
            EXPECT_EQ(a.rows[0][0].s, b.rows[0][0].s) << sql;
        }
    }
    void check(const char* where) {
        log->changes(0);
        old->changes(0);
        EXPECT_EQ(log->i64("SELECT count(*) FROM lww_log"), 0);
        const auto a = state_of(*log, tables), b = state_of(*old, tables);
        EXPECT_EQ(a, b) << where << "\n" << dump_diff(b, a);
    }
};

}  // namespace

// App triggers fired by lww_apply update other tracked rows (and the merged
// row itself) which later rows of the same set merge.
TEST(CaptureOracle, AppTriggersDuringApplyMatchOldCapture) {
    Pair p(
        "CREATE TABLE p(id TEXT PRIMARY KEY, v TEXT, n INTEGER);"
        "CREATE TABLE q(id TEXT PRIMARY KEY, total INTEGER, note TEXT);",
        {"p", "q"});
    for (Db* d : {p.log, p.old}) {
        d->exec(
            "INSERT INTO p VALUES ('a', 'x', 0), ('b', 'y', 0), ('c', 'z', 0); INSERT INTO q VALUES ('sum', 0, 'n')");
        d->exec(
            "CREATE TRIGGER app_p AFTER UPDATE OF v ON p BEGIN "
            "UPDATE q SET total = total + 1, note = NEW.v WHERE id = 'sum'; "
            "UPDATE p SET n = n + 1 WHERE id = NEW.id; "
            "UPDATE p SET n = n + 10 WHERE id = 'c' AND NEW.id <> 'c'; END;"
            "CREATE TRIGGER app_q AFTER UPDATE OF note ON q BEGIN "
            "UPDATE p SET n = -1 WHERE id = 'b'; UPDATE q SET total = total * 2 WHERE id = NEW.id; END;");
        d->exec("UPDATE p SET v = 'x2' WHERE id = 'a'");  // pending in the log of `log`
    }
    const uint64_t base = hlc_at(now_ms() + 60000);
    const uint64_t ahead = hlc_at(now_ms() + 240000);
    for (uint64_t h : {base, ahead}) {
        const std::string cs = craft_cs(kNode2, {kNode2},
                                        {craft_table("\"p\"", "[\"id\"]", "[\"v\",\"n\"]",
                                                     {{"[\"a\"]", 1, h, 0, false, "[[0,\"ra\"]]"},
                                                      {"[\"c\"]", 1, h + 1, 0, false, "[[0,\"rc\"],[1,5]]"},
                                                      {"[\"b\"]", 1, h + 2, 0, false, "[[1,7]]"}}),
                                         craft_table("\"q\"", "[\"id\"]", "[\"total\",\"note\"]",
                                                     {{"[\"sum\"]", 1, h + 3, 0, false, "[[0,100],[1,\"remote\"]]"}})});
        p.both("SELECT lww_apply(?)", {Val::text(cs)});
        p.both("UPDATE p SET v = v || '!' WHERE id = 'c'");
    }
    p.check("after applies");
}

// FK ON UPDATE CASCADE changes a child's key column (part of its PK).
TEST(CaptureOracle, CascadedKeyChangeMatchesOldCapture) {
    Pair p(
        "PRAGMA foreign_keys = ON;"
        "CREATE TABLE par(id TEXT PRIMARY KEY, v TEXT);"
        "CREATE TABLE ch(pid TEXT REFERENCES par(id) ON UPDATE CASCADE, n INTEGER, v TEXT, PRIMARY KEY(pid, n));",
        {"par", "ch"});
    for (Db* d : {p.log, p.old}) d->exec("PRAGMA foreign_keys = ON");
    p.both("INSERT INTO par VALUES ('a', 'x')");
    p.both("INSERT INTO ch VALUES ('a', 1, 'c1'), ('a', 2, 'c2')");
    p.both("UPDATE ch SET v = 'c1b' WHERE n = 1");
    p.both("UPDATE par SET id = 'b' WHERE id = 'a'");
    p.both("UPDATE ch SET v = 'c2b' WHERE n = 2");
    p.check("after cascade");
    EXPECT_EQ(p.log->table("lww__ch").size(), 4u);
}

// Wide table (> 63 columns: lww_begin_update_mask), NOCASE text key,
// WITHOUT ROWID, blob and real keys.
TEST(CaptureOracle, AssortedShapesMatchOldCapture) {
    std::string wide = "CREATE TABLE wide(id TEXT COLLATE NOCASE PRIMARY KEY";
    for (int i = 0; i < 70; ++i) wide += ", c" + std::to_string(i);
    wide += ");";
    Pair p(wide +
               "CREATE TABLE wr(a TEXT, b BLOB, v, PRIMARY KEY(a, b)) WITHOUT ROWID;"
               "CREATE TABLE rk(id REAL PRIMARY KEY, v); CREATE TABLE nk(id PRIMARY KEY, v);",
           {"wide", "wr", "rk", "nk"});
    std::mt19937_64 rng(42);
    for (int i = 0; i < 300; ++i) {
        const int k = static_cast<int>(rng() % 6);
        const int c = static_cast<int>(rng() % 70);
        switch (rng() % 12) {
            case 0:
                p.both("INSERT OR REPLACE INTO wide(id, c" + std::to_string(c) + ") VALUES (?, ?)",
                       {Val::text(k % 2 ? "k" + std::to_string(k) : "K" + std::to_string(k)),
                        Val(static_cast<long long>(i))});
                break;
            case 1:
                p.both("UPDATE wide SET c" + std::to_string(c) + " = ?, c" + std::to_string((c + 7) % 70) +
                           " = ? WHERE id = ?",
                       {Val(static_cast<long long>(i)), Val(0.5), Val::text("k" + std::to_string(k))});
                break;
            case 2:
                p.both("UPDATE wide SET id = ? WHERE id = ?",
                       {Val::text(rng() % 2 ? "K" + std::to_string(k) : "k" + std::to_string((k + 1) % 6)),
                        Val::text("k" + std::to_string(k))});
                break;
            case 3:
                p.both("INSERT OR REPLACE INTO wr VALUES (?, ?, ?)",
                       {Val::text("a" + std::to_string(k)), Val::blob(std::string(1, static_cast<char>(k))),
                        Val(static_cast<long long>(i))});
                break;
            case 4:
                p.both("UPDATE wr SET v = ? WHERE a = ?",
                       {Val(static_cast<long long>(i)), Val::text("a" + std::to_string(k))});
                break;
            case 5:
                p.both("UPDATE wr SET b = ? WHERE a = ? AND b = ?",
                       {Val::blob(std::string(1, static_cast<char>(k + 1))), Val::text("a" + std::to_string(k)),
                        Val::blob(std::string(1, static_cast<char>(k)))});
                break;
            case 6:
                p.both("INSERT OR REPLACE INTO rk VALUES (?, ?)", {Val(k * 0.5), Val(static_cast<long long>(i))});
                break;
            case 7:
                p.both("UPDATE rk SET v = ? WHERE id = ?",
                       {Val(static_cast<long long>(i)), Val(static_cast<long long>(k))});
                break;
            case 8:
                p.both("INSERT OR REPLACE INTO nk VALUES (?, ?)",
                       {k % 2 ? Val::text(std::to_string(k)) : Val(static_cast<long long>(k)),
                        Val(static_cast<long long>(i))});
                break;
            case 9:
                p.both("UPDATE nk SET v = ? WHERE id = ?",
                       {Val(static_cast<long long>(i)),
                        k % 3 ? Val::text(std::to_string(k)) : Val(static_cast<long long>(k))});
                break;
            case 10:
                p.both("UPDATE nk SET id = ?, v = v WHERE id = ?", {Val(k * 1.0), Val(static_cast<long long>(k))});
                break;
            default: p.both("DELETE FROM wide WHERE id = ?", {Val::text("K" + std::to_string(k))}); break;
        }
        if (rng() % 17 == 0) p.log->changes(0);
    }
    p.check("after random");
}

// Pending updates survive ALTER TABLE ADD COLUMN / RENAME COLUMN and lww_alter.
TEST(CaptureOracle, SchemaChangesWithPendingLogMatchOldCapture) {
    Pair p("CREATE TABLE t(id TEXT PRIMARY KEY, a, b, c);", {"t"});
    p.both("INSERT INTO t VALUES ('x', 1, 2, 3), ('y', 1, 2, 3)");
    p.both("UPDATE t SET c = 30 WHERE id = 'x'");
    p.both("ALTER TABLE t ADD COLUMN aa");
    p.both("UPDATE t SET b = 20, aa = 5 WHERE id = 'y'");
    p.both("ALTER TABLE t RENAME COLUMN b TO bb");
    p.both("UPDATE t SET c = 31 WHERE id = 'y'");
    p.both("SELECT lww_seq()");
    p.both("UPDATE t SET a = 11 WHERE id = 'x'");
    p.both("SELECT lww_alter('ALTER TABLE t DROP COLUMN a')");
    old_capture(*p.old);
    p.both("UPDATE t SET c = 32 WHERE id = 'x'");
    p.both("SELECT lww_untrack('t')");
    p.both("UPDATE t SET c = 33 WHERE id = 'y'");
    p.both("SELECT lww_track('t')");
    old_capture(*p.old);
    p.both("UPDATE t SET bb = 34 WHERE id = 'y'");
    p.both("SELECT lww_purge(0)");
    p.both("SELECT lww_reset_node() IS NOT NULL");
    p.both("UPDATE t SET bb = 35 WHERE id = 'x'");
    p.tables = {"t"};
    // old_capture again: lww_alter/track rebuilt the triggers of `old`
    p.check("after schema changes");
}

TEST(CaptureOracle, FoldRolledBackWithTheCallersTransaction) {
    Cluster cl;
    Db& a = cl.add("a", "CREATE TABLE t(id TEXT PRIMARY KEY, v TEXT, w TEXT)", {"t"});
    a.exec("INSERT INTO t VALUES ('x', 'a', 'b')");
    const int64_t s = a.seq();
    a.exec("BEGIN; UPDATE t SET v = 'v1' WHERE id = 'x'; SAVEPOINT sp;");
    a.changes(0);
    a.exec("ROLLBACK TO sp; RELEASE sp; UPDATE t SET w = 'w1' WHERE id = 'x'; COMMIT");
    ParsedCS cs = parse_cs(a.changes(s));
    std::set<std::string> cols;
    for (const auto& r : cs.regs) cols.insert(r.col + "=" + r.value.repr());
    EXPECT_EQ(cols, (std::set<std::string>{"v=text:'v1'", "w=text:'w1'"}));
    const int64_t s2 = a.seq();
    a.exec("BEGIN; UPDATE t SET v = 'gone' WHERE id = 'x';");
    a.changes(0);
    a.exec("ROLLBACK");
    EXPECT_EQ(parse_cs(a.changes(s2)).regs.size(), 0u);
    a.exec("UPDATE t SET v = 'v3' WHERE id = 'x'");
    ParsedCS c3 = parse_cs(a.changes(s2));
    ASSERT_EQ(c3.regs.size(), 1u);
    EXPECT_EQ(c3.regs[0].value, Val("v3"));
}
