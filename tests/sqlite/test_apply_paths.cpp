// lww_apply's shortcuts (sqlite_ext/apply.cpp): a table's rows merge in key
// order, and a key known to be absent (the metadata empty, or an integer
// first key column above its greatest) is not looked up. Each test names
// the case where a wrong shortcut would change the outcome: a tombstone
// taken for a new key resurrects the row.
#include "harness.h"

using namespace lwwt;

namespace {

const char* kTable = "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);";

// A set from kNode2 with rows {key, gen, hlc, value}; gen even = a delete.
struct SetRow {
    std::string key;
    uint64_t gen;
    uint64_t hlc;
    std::string v;
};

std::string set_of(const std::string& table, const std::vector<SetRow>& rows) {
    std::vector<CraftRow> crafted;
    for (const SetRow& r : rows)
        crafted.push_back({r.key, r.gen, r.hlc, 0, true, r.gen % 2 ? "[[0,\"" + r.v + "\"]]" : ""});
    return craft_cs(kNode2, {kNode2}, {craft_table("\"" + table + "\"", "[\"id\"]", "[\"v\"]", crafted)});
}

Db& fresh(TempDir& dir, std::unique_ptr<Db>& slot, const std::string& schema) {
    slot = std::make_unique<Db>(dir.path() + "/b.db");
    slot->exec(schema);
    slot->track("t");
    return *slot;
}

}  // namespace

// An app trigger deletes a row while the set merges into an empty table:
// its tombstone (generation 2) is newer than the set's row, which must
// stay deleted, although the table had no metadata when the apply began.
TEST(ApplyPaths, TombstoneAnAppTriggerLeftDuringTheApplyIsFound) {
    TempDir dir;
    std::unique_ptr<Db> slot;
    Db& b = fresh(dir, slot,
                  std::string(kTable) +
                      "CREATE TRIGGER app AFTER INSERT ON t WHEN NEW.id = 10 BEGIN"
                      " INSERT INTO t VALUES (15, 'local'); DELETE FROM t WHERE id = 15; END;");
    const uint64_t h = hlc_at(now_ms() - 1000);
    std::vector<SetRow> rows;
    for (int i = 1; i <= 20; ++i) rows.push_back({"[" + std::to_string(i) + "]", 1, h + i, "r" + std::to_string(i)});
    b.apply(set_of("t", rows));
    EXPECT_EQ(b.i64("SELECT count(*) FROM t WHERE id = 15"), 0);
    EXPECT_EQ(b.i64("SELECT gen FROM lww__t WHERE k0 = 15"), 2);
    EXPECT_EQ(b.i64("SELECT count(*) FROM t"), 19);
    EXPECT_EQ(b.one("SELECT v FROM t WHERE id = 16"), Val("r16"));
}

// A second batch mixes keys above the greatest (new) with keys at or below
// it: those merge against their metadata (older loses, newer wins, a
// tombstone holds).
TEST(ApplyPaths, KeysUpToTheGreatestAreMergedAgainstTheirMetadata) {
    TempDir dir;
    std::unique_ptr<Db> slot;
    Db& b = fresh(dir, slot, kTable);
    const uint64_t h = hlc_at(now_ms() - 60000);
    std::vector<SetRow> first;
    for (int i = 1; i <= 10; ++i) first.push_back({"[" + std::to_string(i) + "]", 1, h, "old"});
    b.apply(set_of("t", first));
    b.apply(set_of("t", {{"[4]", 2, h + 5, ""}}));  // row 4 deleted: a tombstone below the greatest key
    b.apply(set_of("t", {{"[20]", 1, h + 10, "new"},
                         {"[5]", 1, h - 10, "older"},
                         {"[6]", 1, h + 10, "newer"},
                         {"[4]", 1, h + 20, "back"},  // generation 1 < 2: stays deleted
                         {"[15]", 1, h + 10, "new"},
                         {"[10]", 1, h + 10, "newer"}}));
    EXPECT_EQ(b.rows("SELECT id, v FROM t ORDER BY id"), (Rows{{Val(1), Val("old")},
                                                               {Val(2), Val("old")},
                                                               {Val(3), Val("old")},
                                                               {Val(5), Val("old")},
                                                               {Val(6), Val("newer")},
                                                               {Val(7), Val("old")},
                                                               {Val(8), Val("old")},
                                                               {Val(9), Val("old")},
                                                               {Val(10), Val("newer")},
                                                               {Val(15), Val("new")},
                                                               {Val(20), Val("new")}}));
    EXPECT_EQ(b.i64("SELECT gen FROM lww__t WHERE k0 = 4"), 2);
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww__t"), 12);
}

// The greatest key is text: integer keys below it in SQLite's order are not
// known absent, and a tombstone among them holds.
TEST(ApplyPaths, TombstoneBelowATextKeyIsFound) {
    TempDir dir;
    std::unique_ptr<Db> slot;
    Db& b = fresh(dir, slot, "CREATE TABLE t(id PRIMARY KEY, v TEXT);");
    b.exec("INSERT INTO t VALUES (5, 'local'), ('z', 'local')");
    b.exec("DELETE FROM t WHERE id = 5");
    const uint64_t h = hlc_at(now_ms() - 60000);
    b.apply(set_of("t", {{"[5]", 1, h, "remote"}, {"[7]", 1, h, "remote"}, {"[\"z\"]", 1, h, "remote"}}));
    EXPECT_EQ(b.rows("SELECT id, v FROM t ORDER BY id"), (Rows{{Val(7), Val("remote")}, {Val("z"), Val("local")}}));
    EXPECT_EQ(b.i64("SELECT gen FROM lww__t WHERE k0 = 5"), 2);
}

// A refused row starts the run over row by row: rows the first run stored
// (and rolled back) are looked up again, nothing is stored twice. The
// parked row (key 9, above every key that landed) comes again, newer: it
// lands in the set's run, and the parked version, retried after it, must
// find it there (older registers: nothing left to retry).
TEST(ApplyPaths, ARunStartedOverAndARetryLookEveryKeyUp) {
    TempDir dir;
    std::unique_ptr<Db> slot;
    Db& b = fresh(dir, slot, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT CHECK (v <> 'bad'));");
    const uint64_t h = hlc_at(now_ms() - 60000);
    const std::string st = b.apply(set_of(
        "t", {{"[1]", 1, h, "a"}, {"[2]", 1, h, "b"}, {"[9]", 1, h, "bad"}, {"[4]", 1, h, "d"}, {"[5]", 1, h, "e"}}));
    EXPECT_EQ(json_int(st, "rejected"), 2) << st;
    EXPECT_EQ(b.i64("SELECT count(*) FROM t"), 4);
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww__t"), 4);
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected"), 1);
    b.apply(set_of("t", {{"[9]", 1, h + 1, "good"}}));
    EXPECT_EQ(b.one("SELECT v FROM t WHERE id = 9"), Val("good"));
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected"), 0);
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww__t"), 5);
}

// Rows merge in key order whatever order the set lists them in (an app
// trigger sees the inserts), and the outcome is the set's.
TEST(ApplyPaths, RowsMergeInKeyOrder) {
    for (const char* key_type : {"INTEGER", "TEXT"}) {
        TempDir dir;
        std::unique_ptr<Db> slot;
        Db& b = fresh(dir, slot,
                      std::string("CREATE TABLE t(id ") + key_type +
                          " PRIMARY KEY, v TEXT); CREATE TABLE seen(n INTEGER PRIMARY KEY AUTOINCREMENT, id);"
                          "CREATE TRIGGER app AFTER INSERT ON t BEGIN INSERT INTO seen(id) VALUES (NEW.id); END;");
        const uint64_t h = hlc_at(now_ms() - 60000);
        const bool text = std::string(key_type) == "TEXT";
        std::vector<SetRow> rows;
        for (int i : {5, 1, 4, 2, 3}) {
            const std::string k = text ? "\"k" + std::to_string(i) + "\"" : std::to_string(i);
            rows.push_back({"[" + k + "]", 1, h + i, "v" + std::to_string(i)});
        }
        b.apply(set_of("t", rows));
        Rows want, want_rows;
        for (int i = 1; i <= 5; ++i) {
            const Val k = text ? Val("k" + std::to_string(i)) : Val(i);
            want.push_back({k});
            want_rows.push_back({k, Val("v" + std::to_string(i))});
        }
        EXPECT_EQ(b.rows("SELECT id FROM seen ORDER BY n"), want) << key_type;
        EXPECT_EQ(b.rows("SELECT id, v FROM t ORDER BY id"), want_rows) << key_type;
    }
}

// lww_sync reuses its statements across batches (StmtCache) and finalizes
// them when it returns: the legacy sqlite3_close, which refuses a connection
// with statements left, then succeeds. Rows that each update another set of
// columns need more statements than the cache keeps (256): it drops its own
// and the sync goes on.
TEST(ApplyPaths, ASyncReusesItsStatementsAndLeavesNoneBehind) {
    TempDir dir;
    std::string schema = "CREATE TABLE t(id INTEGER PRIMARY KEY";
    for (int c = 0; c < 10; ++c) schema += ", c" + std::to_string(c);
    schema += ");";
    Db a(dir.file("a.db"));
    a.exec(schema);
    a.track("t");
    a.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600)"
        " INSERT INTO t(id) SELECT i FROM n");
    sqlite3* b = nullptr;
    ASSERT_EQ(sqlite3_open(dir.file("b.db").c_str(), &b), SQLITE_OK);
    sqlite3_enable_load_extension(b, 1);
    char* err = nullptr;
    ASSERT_EQ(sqlite3_load_extension(b, ext_path().c_str(), nullptr, &err), SQLITE_OK) << (err ? err : "");
    auto run = [&](const std::string& sql) {
        ASSERT_EQ(sqlite3_exec(b, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << sql << ": " << (err ? err : "");
    };
    run(schema + "SELECT lww_track('t');");
    run("SELECT lww_sync('" + a.url() + "', '{\"batch_rows\":50}')");
    // Row i updates the columns of i's bits: 600 rows, 600 column sets.
    for (int i = 1; i <= 600; ++i) {
        std::string sets;
        for (int c = 0; c < 10; ++c)
            if (i >> c & 1)
                sets += (sets.empty() ? "" : ", ") + ("c" + std::to_string(c) + " = " + std::to_string(i * 10 + c));
        if (!sets.empty()) a.exec("UPDATE t SET " + sets + " WHERE id = " + std::to_string(i));
    }
    run("SELECT lww_sync('" + a.url() + "', '{\"batch_rows\":50}')");
    EXPECT_EQ(sqlite3_close(b), SQLITE_OK) << sqlite3_errmsg(b);
    Db again(dir.file("b.db"));
    EXPECT_EQ(again.table("t"), a.table("t"));
    EXPECT_EQ(again.i64("SELECT count(*) FROM t WHERE c9 IS NOT NULL"), 89);
}
