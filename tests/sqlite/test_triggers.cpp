// What the triggers record for each kind of local write, observed through
// lww_changes(since) and through a second database that receives it.
#include "harness.h"

using namespace lwwt;

namespace {

class Triggers : public ::testing::Test {
protected:
    void SetUp() override {
        a = &cl.add("a", kSchemaT, {"t"});
        b = &cl.add("b", kSchemaT, {"t"});
        self = a->node_id();
    }
    // Registers written after `since`, as "key col" / "key ROW" strings.
    std::vector<std::string> regs_since(int64_t since) {
        std::vector<std::string> out;
        for (const auto& r : parse_cs(a->changes(since)).regs)
            out.push_back(r.key + " " + (r.is_row ? std::string("ROW") : r.col) + " gen" + std::to_string(r.gen));
        std::sort(out.begin(), out.end());
        return out;
    }
    void converge() {
        b->sync(*a);
        EXPECT_EQ(b->table("t"), a->table("t"));
    }
    Cluster cl;
    Db* a = nullptr;
    Db* b = nullptr;
    std::string self;
};

using V = std::vector<std::string>;

TEST_F(Triggers, InsertStampsEveryColumn) {
    int64_t s = a->seq();
    a->exec("INSERT INTO t(id, a) VALUES (1, 'x')");  // b and c NULL: still written
    EXPECT_EQ(regs_since(s), (V{"int:1 ROW gen1", "int:1 a gen1", "int:1 b gen1", "int:1 c gen1"}));
    ParsedCS cs = parse_cs(a->changes(s));
    uint64_t hlc = cs.regs[0].hlc;
    EXPECT_GT(hlc, 0u);
    for (const auto& r : cs.regs) {
        EXPECT_EQ(r.hlc, hlc);  // one write, one stamp
        EXPECT_EQ(r.node, self);
    }
    EXPECT_EQ(cs.row("int:1")->cols.at("a"), Val("x"));
    EXPECT_EQ(cs.row("int:1")->cols.at("b"), Val());
    // The stamp's millisecond part is the wall clock (within reason).
    EXPECT_LE((hlc >> 16), now_ms() + 1000);
    EXPECT_GE((hlc >> 16) + 60000, now_ms());
    converge();
}

TEST_F(Triggers, UpdateRecordsOnlyChangedColumns) {
    a->exec("INSERT INTO t VALUES (1, 'x', 'y', 'z'), (2, 'p', 'q', 'r')");
    converge();
    int64_t s = a->seq();
    a->exec("UPDATE t SET b = 'Y' WHERE id = 1");
    EXPECT_EQ(regs_since(s), (V{"int:1 b gen1"}));
    ParsedCS cs = parse_cs(a->changes(s));
    ASSERT_EQ(cs.regs.size(), 1u);
    EXPECT_EQ(cs.regs[0].value, Val("Y"));

    // Setting several columns, some to their current value: only real changes count.
    s = a->seq();
    a->exec("UPDATE t SET a = 'x', b = 'Y', c = 'Z' WHERE id = 1");
    EXPECT_EQ(regs_since(s), (V{"int:1 c gen1"}));
    // NULL-aware: NULL -> value and value -> NULL are changes.
    s = a->seq();
    a->exec("UPDATE t SET a = NULL WHERE id = 2");
    EXPECT_EQ(regs_since(s), (V{"int:2 a gen1"}));
    s = a->seq();
    a->exec("UPDATE t SET a = 'back' WHERE id = 2");
    EXPECT_EQ(regs_since(s), (V{"int:2 a gen1"}));
    converge();
}

TEST_F(Triggers, UpdateToSameValuesRecordsNothing) {
    a->exec("INSERT INTO t VALUES (1, 'x', 2, NULL), (2, x'00', 2.5, 'q')");
    const int64_t s = a->seq();
    const auto before = a->dump();
    a->exec("UPDATE t SET a = a, b = b, c = c");
    a->exec("UPDATE t SET a = 'x', b = 2, c = NULL WHERE id = 1");
    a->exec("UPDATE t SET b = 2.5 WHERE id = 2");
    EXPECT_EQ(a->seq(), s);
    EXPECT_TRUE(parse_cs(a->changes(s)).regs.empty());
    EXPECT_EQ(a->dump(), before) << dump_diff(before, a->dump());
}

TEST_F(Triggers, DeleteRaisesGenerationAndCarriesNoColumns) {
    a->exec("INSERT INTO t VALUES (1, 'x', 'y', 'z')");
    converge();
    int64_t s = a->seq();
    a->exec("DELETE FROM t WHERE id = 1");
    EXPECT_EQ(regs_since(s), (V{"int:1 ROW gen2"}));
    ParsedCS cs = parse_cs(a->changes(0));
    ASSERT_EQ(cs.rows.size(), 1u);
    EXPECT_EQ(cs.rows[0].gen, 2u);
    EXPECT_TRUE(cs.rows[0].cols.empty());
    converge();
    EXPECT_TRUE(b->table("t").empty());
}

TEST_F(Triggers, ReinsertAfterDeleteIsGenerationThree) {
    a->exec("INSERT INTO t VALUES (1, 'x', 'y', 'z')");
    a->exec("DELETE FROM t WHERE id = 1");
    int64_t s = a->seq();
    a->exec("INSERT INTO t(id, a) VALUES (1, 'again')");
    EXPECT_EQ(regs_since(s), (V{"int:1 ROW gen3", "int:1 a gen3", "int:1 b gen3", "int:1 c gen3"}));
    a->exec("DELETE FROM t WHERE id = 1");
    s = a->seq();
    a->exec("INSERT INTO t VALUES (1, 'fifth', NULL, NULL)");
    EXPECT_EQ(regs_since(s), (V{"int:1 ROW gen5", "int:1 a gen5", "int:1 b gen5", "int:1 c gen5"}));
    converge();
    EXPECT_EQ(b->table("t"), (V{"int:1 | text:'fifth' | NULL | NULL"}));
}

TEST_F(Triggers, PrimaryKeyChangeIsDeletePlusInsert) {
    a->exec("INSERT INTO t VALUES (1, 'x', 'y', 'z')");
    converge();
    int64_t s = a->seq();
    a->exec("UPDATE t SET id = 10, b = 'moved' WHERE id = 1");
    EXPECT_EQ(regs_since(s),
              (V{"int:1 ROW gen2", "int:10 ROW gen1", "int:10 a gen1", "int:10 b gen1", "int:10 c gen1"}));
    ParsedCS cs = parse_cs(a->changes(s));
    EXPECT_EQ(cs.row("int:10")->cols.at("b"), Val("moved"));
    EXPECT_TRUE(cs.row("int:1")->cols.empty());
    converge();
    EXPECT_EQ(b->table("t"), (V{"int:10 | text:'x' | text:'moved' | text:'z'"}));

    // Moving onto a key that was deleted earlier brings it back one generation later.
    s = a->seq();
    a->exec("UPDATE t SET id = 1 WHERE id = 10");
    EXPECT_EQ(regs_since(s), (V{"int:1 ROW gen3", "int:1 a gen3", "int:1 b gen3", "int:1 c gen3", "int:10 ROW gen2"}));
    converge();
    EXPECT_EQ(b->table("t"), (V{"int:1 | text:'x' | text:'moved' | text:'z'"}));

    // The key trigger fires only for an UPDATE naming a key column: an
    // INTEGER PRIMARY KEY changes through each name of the rowid too.
    int gen = 1;  // of key 20; key 1 is three above it
    for (const char* name : {"rowid", "oid", "_rowid_"}) {
        SCOPED_TRACE(name);
        s = a->seq();
        a->exec(std::string("UPDATE t SET ") + name + " = 20 WHERE id = 1");
        const std::string g = std::to_string(gen);
        EXPECT_EQ(regs_since(s), (V{"int:1 ROW gen" + std::to_string(gen + 3), "int:20 ROW gen" + g, "int:20 a gen" + g,
                                    "int:20 b gen" + g, "int:20 c gen" + g}));
        gen += 2;
        converge();
        EXPECT_EQ(b->table("t"), (V{"int:20 | text:'x' | text:'moved' | text:'z'"}));
        a->exec("UPDATE t SET id = 1 WHERE id = 20");
        converge();
        s = a->seq();
    }
}

TEST_F(Triggers, InsertOrReplaceWritesTheWholeRow) {
    a->exec("INSERT INTO t VALUES (1, 'x', 'y', 'z')");
    converge();
    int64_t s = a->seq();
    a->exec("INSERT OR REPLACE INTO t(id, a) VALUES (1, 'new')");  // b, c become NULL
    V regs = regs_since(s);
    // Every column is written (whatever generation the replace counts as).
    int cols = 0;
    for (const auto& r : regs)
        if (r.find("int:1 a ") == 0 || r.find("int:1 b ") == 0 || r.find("int:1 c ") == 0) ++cols;
    EXPECT_EQ(cols, 3) << ::testing::PrintToString(regs);
    converge();
    EXPECT_EQ(b->table("t"), (V{"int:1 | text:'new' | NULL | NULL"}));

    // REPLACE of a fresh key is a plain insert.
    s = a->seq();
    a->exec("REPLACE INTO t VALUES (2, 'p', 'q', 'r')");
    EXPECT_EQ(regs_since(s), (V{"int:2 ROW gen1", "int:2 a gen1", "int:2 b gen1", "int:2 c gen1"}));
    converge();
}

TEST_F(Triggers, InsertOrReplaceThatEvictsAnotherRowViaUniqueIsRecorded) {
    // REPLACE resolving a UNIQUE conflict on a non-key column deletes the
    // other row; that delete is a local write and must reach peers.
    const char* schema = "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE, n);";
    Db& x = cl.add("x", schema, {"u"});
    Db& y = cl.add("y", schema, {"u"});
    x.exec("INSERT INTO u VALUES (1, 'a@x', 1), (2, 'b@x', 2)");
    y.sync(x);
    x.exec("INSERT OR REPLACE INTO u VALUES (3, 'a@x', 3)");  // evicts row 1
    EXPECT_EQ(x.table("u"), (V{"int:2 | text:'b@x' | int:2", "int:3 | text:'a@x' | int:3"}));
    Outcome o = y.run("SELECT lww_sync(?)", {x.url()});
    EXPECT_TRUE(o.ok) << o.err;
    EXPECT_EQ(y.table("u"), x.table("u"));
}

TEST_F(Triggers, UpsertRecordsOnlyChangedColumns) {
    a->exec("INSERT INTO t VALUES (1, 'x', 'y', 'z')");
    int64_t s = a->seq();
    a->exec(
        "INSERT INTO t VALUES (1, 'x', 'Y', 'z') ON CONFLICT(id) DO UPDATE SET a = excluded.a, b = excluded.b, "
        "c = excluded.c");
    EXPECT_EQ(regs_since(s), (V{"int:1 b gen1"}));
    converge();
}

TEST_F(Triggers, TransactionRollbackRecordsNothing) {
    a->exec("INSERT INTO t VALUES (1, 'x', 'y', 'z')");
    const int64_t s = a->seq();
    const auto before = a->dump();
    a->exec(
        "BEGIN; UPDATE t SET a = 'no'; INSERT INTO t VALUES (2, 'no', NULL, NULL); DELETE FROM t WHERE id = 1; "
        "ROLLBACK;");
    EXPECT_EQ(a->seq(), s);
    EXPECT_EQ(a->dump(), before) << dump_diff(before, a->dump());
    // Savepoint partially rolled back: only the kept part is recorded.
    a->exec(
        "BEGIN; UPDATE t SET a = 'kept' WHERE id = 1; SAVEPOINT sp; UPDATE t SET b = 'gone' WHERE id = 1; "
        "ROLLBACK TO sp; RELEASE sp; COMMIT;");
    EXPECT_EQ(regs_since(s), (V{"int:1 a gen1"}));
    converge();
    EXPECT_EQ(b->table("t"), (V{"int:1 | text:'kept' | text:'y' | text:'z'"}));
}

TEST_F(Triggers, ChangeOfStorageClassOrCaseIsAChange) {
    // Values that SQL compares as equal but that differ in the canonical
    // value model: the new value must still reach the peer byte for byte.
    Db& x = cl.add("x", "CREATE TABLE n(id INTEGER PRIMARY KEY, v, w TEXT COLLATE NOCASE);", {"n"});
    Db& y = cl.add("y", "CREATE TABLE n(id INTEGER PRIMARY KEY, v, w TEXT COLLATE NOCASE);", {"n"});
    x.exec("INSERT INTO n VALUES (1, 1, 'abc'), (2, 0.0, 'x')");
    y.sync(x);
    x.exec("UPDATE n SET v = 1.0 WHERE id = 1");    // integer 1 -> real 1.0
    x.exec("UPDATE n SET w = 'ABC' WHERE id = 1");  // same under NOCASE, different text
    x.exec("UPDATE n SET v = -0.0 WHERE id = 2");   // 0.0 -> -0.0
    ASSERT_EQ(x.table("n"),
              (V{"int:1 | real:1[3ff0000000000000] | text:'ABC'", "int:2 | real:-0[8000000000000000] | text:'x'"}));
    y.sync(x);
    EXPECT_EQ(y.table("n"), x.table("n"));
}

TEST_F(Triggers, KeyOnlyTable) {
    const char* schema = "CREATE TABLE tags(name TEXT PRIMARY KEY) WITHOUT ROWID;";
    Db& x = cl.add("x", schema, {"tags"});
    Db& y = cl.add("y", schema, {"tags"});
    x.exec("INSERT INTO tags VALUES ('a'), ('b'), ('c')");
    x.exec("DELETE FROM tags WHERE name = 'b'");
    x.exec("UPDATE tags SET name = 'z' WHERE name = 'c'");
    y.sync(x);
    EXPECT_EQ(y.table("tags"), (V{"text:'a'", "text:'z'"}));
}

TEST_F(Triggers, MultiRowStatementsStampEachRow) {
    for (int i = 1; i <= 50; ++i) a->exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'v', 0, NULL)");
    int64_t s = a->seq();
    a->exec("UPDATE t SET b = b + 1 WHERE id % 2 = 0");
    ParsedCS cs = parse_cs(a->changes(s));
    EXPECT_EQ(cs.rows.size(), 25u);
    std::set<uint64_t> stamps;
    for (const auto& r : cs.regs) {
        EXPECT_EQ(r.col, "b");
        stamps.insert(r.hlc);
    }
    EXPECT_EQ(stamps.size(), 25u);  // one write per row, each its own stamp
    s = a->seq();
    a->exec("DELETE FROM t WHERE id > 40");
    EXPECT_EQ(parse_cs(a->changes(s)).rows.size(), 10u);
    converge();
}

}  // namespace
