// The capture log against the capture it replaced: pairs of databases from
// one start and one pinned clock, one with the update triggers lwwsync 0.8
// made (metadata rewritten in the trigger, the key trigger firing on every
// UPDATE); the same statements on both must leave the tables and the
// metadata byte for byte the same. (Written by an attack on the log; every
// case held.)
#include <random>
#include <set>

#include "harness.h"

using namespace lwwt;

namespace {

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
            for (size_t i = 0; i < key.size(); ++i) match += (i ? " AND k" : "k") + std::to_string(i) + " = NEW." + quote_id(key[i]);
            sql = sql.substr(0, sql.find(" BEGIN ")) + " BEGIN UPDATE " + quote_id("lww__" + t) +
                  " SET cols = lww_cols_set(cols), seq = lww_write_seq() WHERE " + match + "; END";
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

}  // namespace

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
    Pair p("CREATE TABLE p(id TEXT PRIMARY KEY, v TEXT, n INTEGER);"
           "CREATE TABLE q(id TEXT PRIMARY KEY, total INTEGER, note TEXT);",
           {"p", "q"});
    for (Db* d : {p.log, p.old}) {
        d->exec("INSERT INTO p VALUES ('a', 'x', 0), ('b', 'y', 0), ('c', 'z', 0); INSERT INTO q VALUES ('sum', 0, 'n')");
        d->exec("CREATE TRIGGER app_p AFTER UPDATE OF v ON p BEGIN "
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
    Pair p("PRAGMA foreign_keys = ON;"
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
    Pair p(wide + "CREATE TABLE wr(a TEXT, b BLOB, v, PRIMARY KEY(a, b)) WITHOUT ROWID;"
                  "CREATE TABLE rk(id REAL PRIMARY KEY, v); CREATE TABLE nk(id PRIMARY KEY, v);",
           {"wide", "wr", "rk", "nk"});
    std::mt19937_64 rng(42);
    for (int i = 0; i < 300; ++i) {
        const int k = static_cast<int>(rng() % 6);
        const int c = static_cast<int>(rng() % 70);
        switch (rng() % 12) {
            case 0: p.both("INSERT OR REPLACE INTO wide(id, c" + std::to_string(c) + ") VALUES (?, ?)", {Val::text(k % 2 ? "k" + std::to_string(k) : "K" + std::to_string(k)), Val(static_cast<long long>(i))}); break;
            case 1: p.both("UPDATE wide SET c" + std::to_string(c) + " = ?, c" + std::to_string((c + 7) % 70) + " = ? WHERE id = ?", {Val(static_cast<long long>(i)), Val(0.5), Val::text("k" + std::to_string(k))}); break;
            case 2: p.both("UPDATE wide SET id = ? WHERE id = ?", {Val::text(rng() % 2 ? "K" + std::to_string(k) : "k" + std::to_string((k + 1) % 6)), Val::text("k" + std::to_string(k))}); break;
            case 3: p.both("INSERT OR REPLACE INTO wr VALUES (?, ?, ?)", {Val::text("a" + std::to_string(k)), Val::blob(std::string(1, static_cast<char>(k))), Val(static_cast<long long>(i))}); break;
            case 4: p.both("UPDATE wr SET v = ? WHERE a = ?", {Val(static_cast<long long>(i)), Val::text("a" + std::to_string(k))}); break;
            case 5: p.both("UPDATE wr SET b = ? WHERE a = ? AND b = ?", {Val::blob(std::string(1, static_cast<char>(k + 1))), Val::text("a" + std::to_string(k)), Val::blob(std::string(1, static_cast<char>(k)))}); break;
            case 6: p.both("INSERT OR REPLACE INTO rk VALUES (?, ?)", {Val(k * 0.5), Val(static_cast<long long>(i))}); break;
            case 7: p.both("UPDATE rk SET v = ? WHERE id = ?", {Val(static_cast<long long>(i)), Val(static_cast<long long>(k))}); break;
            case 8: p.both("INSERT OR REPLACE INTO nk VALUES (?, ?)", {k % 2 ? Val::text(std::to_string(k)) : Val(static_cast<long long>(k)), Val(static_cast<long long>(i))}); break;
            case 9: p.both("UPDATE nk SET v = ? WHERE id = ?", {Val(static_cast<long long>(i)), k % 3 ? Val::text(std::to_string(k)) : Val(static_cast<long long>(k))}); break;
            case 10: p.both("UPDATE nk SET id = ?, v = v WHERE id = ?", {Val(k * 1.0), Val(static_cast<long long>(k))}); break;
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
