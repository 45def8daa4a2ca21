// Merge properties seen from SQL: idempotence, order independence, and
// lww_changes(since) touching only what changed since.
#include "harness.h"

using namespace lwwt;

namespace {

using V = std::vector<std::string>;

TEST(MergeProps, ApplyingTheSameSetTwiceChangesNothing) {
    Cluster cl;
    Db& a = cl.add("a", kSchemaT, {"t"});
    Db& b = cl.add("b", kSchemaT, {"t"});
    a.exec("INSERT INTO t VALUES (1, 'x', 1, x'00'), (2, 'y', 2, NULL), (3, 'z', 3, NULL)");
    a.exec("UPDATE t SET b = 20 WHERE id = 2; DELETE FROM t WHERE id = 3; UPDATE t SET id = 4 WHERE id = 1;");
    b.exec("INSERT INTO t VALUES (9, 'b', NULL, NULL)");
    const std::string cs = a.changes(0);

    std::string first = b.apply(cs);
    EXPECT_GT(json_int(first, "applied"), 0) << first;
    const auto d1 = b.dump();
    const int64_t s1 = b.seq();
    std::string second = b.apply(cs);
    EXPECT_EQ(json_int(second, "applied"), 0) << second;
    EXPECT_EQ(json_int(second, "ignored"), json_int(second, "received")) << second;
    EXPECT_EQ(json_int(second, "received"), json_int(first, "received"));
    EXPECT_EQ(b.seq(), s1);
    EXPECT_EQ(b.dump(), d1) << dump_diff(d1, b.dump());
    EXPECT_TRUE(parse_cs(b.changes(s1)).rows.empty());
    EXPECT_EQ(b.table("t"), (V{"int:2 | text:'y' | int:20 | NULL", "int:4 | text:'x' | int:1 | blob:x'00'",
                               "int:9 | text:'b' | NULL | NULL"}));
}

// Two peers with concurrent, conflicting histories.
struct TwoHistories {
    Cluster cl;
    Db* a;
    Db* b;
    std::string cs_a, cs_b, cs_a_early;
    TwoHistories() {
        a = &cl.add("a", kSchemaT, {"t"});
        b = &cl.add("b", kSchemaT, {"t"});
        a->exec(
            "INSERT INTO t VALUES (1, 'base', 'base', 'base'), (2, 'base', NULL, NULL), (3, 'base', NULL, NULL),"
            " (4, 'base', NULL, NULL)");
        b->sync(*a);
        a->exec("UPDATE t SET a = 'A' WHERE id = 1");
        b->exec("UPDATE t SET b = 'B' WHERE id = 1");
        b->exec("DELETE FROM t WHERE id = 2");
        a->exec("UPDATE t SET c = 'A edits 2' WHERE id = 2");
        cs_a_early = a->changes(0);
        sleep_ms(3);
        a->exec("DELETE FROM t WHERE id = 3");
        a->exec("INSERT INTO t VALUES (3, 'A reborn', NULL, NULL)");
        b->exec("UPDATE t SET a = 'B later' WHERE id = 3");
        b->exec("UPDATE t SET id = 40 WHERE id = 4");
        a->exec("UPDATE t SET b = 'A on 4' WHERE id = 4");
        a->exec("INSERT INTO t VALUES (5, 'A', NULL, NULL)");
        sleep_ms(3);
        b->exec("INSERT INTO t VALUES (5, 'B', 'b', NULL)");  // same new key on both, B later
        cs_a = a->changes(0);
        cs_b = b->changes(0);
    }
};

TEST(MergeProps, EitherOrderGivesTheSameRows) {
    TwoHistories h;
    Db& x = h.cl.add("x", kSchemaT, {"t"});
    Db& y = h.cl.add("y", kSchemaT, {"t"});
    Db& z = h.cl.add("z", kSchemaT, {"t"});
    x.apply(h.cs_a);
    x.apply(h.cs_b);
    y.apply(h.cs_b);
    y.apply(h.cs_a);
    // Stale and duplicate deliveries in a scrambled order change nothing.
    z.apply(h.cs_b);
    z.apply(h.cs_a_early);
    z.apply(h.cs_a);
    z.apply(h.cs_b);
    z.apply(h.cs_a_early);
    const V want{"int:1 | text:'A' | text:'B' | text:'base'", "int:3 | text:'A reborn' | NULL | NULL",
                 "int:40 | text:'base' | NULL | NULL", "int:5 | text:'B' | text:'b' | NULL"};
    EXPECT_EQ(x.table("t"), y.table("t"));
    EXPECT_EQ(x.table("t"), z.table("t"));
    h.a->sync(*h.b);
    EXPECT_EQ(h.a->table("t"), x.table("t"));
    EXPECT_EQ(h.b->table("t"), x.table("t"));
    V sorted = want;
    std::sort(sorted.begin(), sorted.end());
    V got = x.table("t");
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, sorted);
}

TEST(MergeProps, ApplyingToTheAuthorsPeersInEitherOrder) {
    // The same two sets applied to the two authors (each gets the other's).
    TwoHistories h;
    Db& x = h.cl.add("x", kSchemaT, {"t"});
    x.apply(h.cs_b);
    x.apply(h.cs_a);
    h.a->apply(h.cs_b);
    h.b->apply(h.cs_a);
    EXPECT_EQ(h.a->table("t"), x.table("t"));
    EXPECT_EQ(h.b->table("t"), x.table("t"));
}

TEST(MergeProps, ChangesSinceReturnsOnlyWhatChanged) {
    Db db(":memory:");
    db.exec(kSchemaT);
    db.track("t");
    db.exec("BEGIN");
    db.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
        "INSERT INTO t SELECT i, 'row ' || i, i, NULL FROM n");
    db.exec("COMMIT");
    EXPECT_EQ(parse_cs(db.changes(0)).rows.size(), 20000u);
    const int64_t before = db.seq();
    EXPECT_GE(before, 20000);
    db.exec("UPDATE t SET a = 'u1' WHERE id = 7");
    db.exec("UPDATE t SET b = -1 WHERE id = 19999");
    db.exec("UPDATE t SET c = x'ff' WHERE id = 12345");
    db.exec("DELETE FROM t WHERE id = 1");
    db.exec("UPDATE t SET a = 'u1 again', b = 0 WHERE id = 7");  // same row again: still one row
    db.exec("INSERT INTO t VALUES (20001, 'new', NULL, NULL)");
    ParsedCS cs = parse_cs(db.changes(before));
    EXPECT_EQ(cs.rows.size(), 5u);
    V keys;
    for (const auto& r : cs.rows) keys.push_back(r.key);
    std::sort(keys.begin(), keys.end());
    EXPECT_EQ(keys, (V{"int:1", "int:12345", "int:19999", "int:20001", "int:7"}));
    ASSERT_NE(cs.row("int:7"), nullptr);
    EXPECT_EQ(cs.row("int:7")->cols.size(), 2u);  // a and b, not c
    EXPECT_EQ(cs.row("int:12345")->cols.size(), 1u);
    EXPECT_EQ(cs.regs_of("int:19999").size(), 1u);
    EXPECT_EQ(parse_cs(db.changes(db.seq())).rows.size(), 0u);
}

}  // namespace
