// What an app's rolled-back transaction (or savepoint) undoes, lwwsync's
// caches on that connection forget: a rollback moves no data version, so
// nothing else would tell them (Conn::forget_rolled_back).
#include "harness.h"

using namespace lwwt;

namespace {

const char* kSchemaTU = "CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE TABLE u(id INTEGER PRIMARY KEY, v);";

std::vector<std::string> tables_in(const ParsedCS& cs) {
    std::vector<std::string> out;
    for (const auto& r : cs.rows)
        if (out.empty() || out.back() != r.table) out.push_back(r.table);
    return out;
}

}  // namespace

TEST(Rollback, ATrackRolledBackLeavesTheTableUntracked) {
    for (const std::string how : {"transaction", "savepoint"}) {
        SCOPED_TRACE(how);
        Cluster cl;
        Db& a = cl.add("a", kSchemaTU, {"u"});
        a.exec("INSERT INTO t VALUES (1, 'before')");
        if (how == "transaction") {
            a.exec("BEGIN");
            EXPECT_EQ(a.track("t"), 1);
            a.exec("ROLLBACK");
        } else {
            a.exec("BEGIN; SAVEPOINT s");
            EXPECT_EQ(a.track("t"), 1);
            a.exec("ROLLBACK TO s; RELEASE s; COMMIT");
        }
        EXPECT_EQ(a.i64("SELECT count(*) FROM lww_tables"), 1);
        // Read before anything commits (a commit would move the data version).
        EXPECT_TRUE(parse_cs(a.changes(0)).rows.empty());
        a.exec("INSERT INTO u VALUES (1, 'u1')");
        EXPECT_GE(a.seq(), 1);  // the rolled-back sequences are skipped, never handed out twice
        EXPECT_EQ(tables_in(parse_cs(a.changes(0))), std::vector<std::string>{"u"});
        // Tracked for good this time: its row and the next write travel.
        EXPECT_EQ(a.track("t"), 1);
        a.exec("UPDATE t SET v = 'after' WHERE id = 1");
        const ParsedCS cs = parse_cs(a.changes(0));
        EXPECT_EQ(tables_in(cs), (std::vector<std::string>{"t", "u"}));
        EXPECT_EQ(cs.row("int:1", "t")->cols.at("v"), Val("after"));
    }
}

TEST(Rollback, NodesMetInARolledBackApplyAreMetAgain) {
    Cluster cl;
    Db& a = cl.add("a", kSchemaTU, {"t", "u"});
    Db& b = cl.add("b", kSchemaTU, {"t", "u"});
    Db& c = cl.add("c", kSchemaTU, {"t", "u"});
    b.exec("INSERT INTO t VALUES (1, 'from b'), (2, 'b2')");
    c.exec("INSERT INTO u VALUES (1, 'from c')");
    const std::string from_b = b.changes(0), from_c = c.changes(0);

    a.exec("BEGIN");
    a.apply(from_b);
    a.exec("ROLLBACK");
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww_nodes"), 1);
    EXPECT_EQ(a.i64("SELECT count(*) FROM t"), 0);
    a.apply(from_b);  // b again: its node is interned again, not taken from the cache

    // The same inside a transaction that goes on: a savepoint rolled back.
    a.exec("BEGIN; SAVEPOINT s");
    a.apply(from_c);
    a.exec("ROLLBACK TO s; RELEASE s");
    a.apply(from_c);
    a.exec("COMMIT");

    EXPECT_EQ(a.i64("SELECT count(*) FROM lww_nodes"), 3);
    const ParsedCS all = parse_cs(a.changes(0));  // every stamp names a node lww_nodes holds
    EXPECT_EQ(all.rows.size(), 3u);
    EXPECT_EQ(all.row("int:1", "t")->cols.at("v"), Val("from b"));
    EXPECT_EQ(all.row("int:1", "u")->cols.at("v"), Val("from c"));
    // And a device that syncs from it holds the same, byte for byte.
    Db& d = cl.add("d", kSchemaTU, {"t", "u"});
    d.sync(a);
    EXPECT_EQ(d.table("t"), b.table("t"));
    EXPECT_EQ(d.table("u"), c.table("u"));
    EXPECT_EQ(d.table("t"), a.table("t"));
}
