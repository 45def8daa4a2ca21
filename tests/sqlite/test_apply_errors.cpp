// lww_apply is atomic: every bad input gets a clear error, and the database
// (user tables and lwwsync's own metadata) is left exactly as it was.
#include "harness.h"

using namespace lwwt;

namespace {

using V = std::vector<std::string>;

class ApplyErrors : public ::testing::Test {
protected:
    void SetUp() override {
        r = &cl.add("r", kSchemaT + std::string("CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE, n);"),
                    {"t", "u"});
        s = &cl.add("s", kSchemaT + std::string("CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT, n);"), {"t", "u"});
        r->exec("INSERT INTO t VALUES (1, 'r1', NULL, NULL), (2, 'r2', NULL, NULL)");
        s->exec("INSERT INTO t VALUES (10, 's10', NULL, NULL)");
        r->sync(*s);  // both sides now have peers, nodes, merged rows
        s->exec("INSERT INTO t VALUES (11, 's11', 'x', 'y'); UPDATE t SET a = 'r1 by s' WHERE id = 1;");
        valid = s->changes(r->i64("SELECT received FROM lww_peers WHERE node = ?", {s->node_id()}));
        ASSERT_EQ(parse_cs(valid).rows.size(), 2u);
    }
    ::testing::AssertionResult apply_fails(const std::string& cs, const std::string& substr) {
        return FailsCleanly(*r, "SELECT lww_apply(?)", {cs}, "lww_apply: ", substr);
    }
    // After every refusal the database still accepts a good set.
    void TearDown() override {
        if (!HasFatalFailure() && !valid.empty()) {
            Outcome o = r->run("SELECT lww_apply(?)", {valid});
            EXPECT_TRUE(o.ok) << o.err;
        }
    }
    std::string row_t(uint64_t hlc, const std::string& node_idx = "0") {
        return "{\"key\":[1],\"gen\":1,\"stamp\":[\"" + std::to_string(hlc) + "\"," + node_idx +
               "],\"cols\":[[0,\"crafted\"]]}";
    }
    Cluster cl;
    Db* r = nullptr;
    Db* s = nullptr;
    std::string valid;
};

TEST_F(ApplyErrors, MalformedJson) {
    EXPECT_TRUE(apply_fails("{not json", "malformed JSON"));
    EXPECT_TRUE(apply_fails("", "malformed JSON"));
    EXPECT_TRUE(apply_fails(valid + "x", "malformed JSON"));
    EXPECT_TRUE(apply_fails("[]", "invalid change set"));
    EXPECT_TRUE(apply_fails("null", "invalid change set"));
    EXPECT_TRUE(apply_fails("{}", "not an lwwsync change set"));
    EXPECT_TRUE(apply_fails(std::string("{\"format\":\"lwwsync.changeset\xff\"}"), "invalid change set"));
}

TEST_F(ApplyErrors, TruncatedDocument) {
    EXPECT_TRUE(apply_fails(valid.substr(0, valid.size() / 2), "malformed JSON"));
    // Every cut point fails cleanly, not only the middle.
    for (size_t cut = 1; cut < valid.size(); cut += std::max<size_t>(1, valid.size() / 37))
        EXPECT_TRUE(apply_fails(valid.substr(0, cut), "invalid change set")) << "cut at " << cut;
}

TEST_F(ApplyErrors, UnknownFormatVersion) {
    std::string v2 = valid;
    const std::string from = "\"version\":1";
    size_t at = v2.find(from);
    ASSERT_NE(at, std::string::npos);
    v2.replace(at, from.size(), "\"version\":2");
    EXPECT_TRUE(apply_fails(v2, "unsupported change set version 2"));
    v2.replace(at, from.size(), "\"version\":\"1\"");
    EXPECT_TRUE(apply_fails(v2, "version"));
}

// Tables and columns this database does not have are held in lww_pending
// (docs/SCHEMA.md), never refused and never written anywhere else.
TEST_F(ApplyErrors, UnknownTableIsHeldNotRefused) {
    const uint64_t h = hlc_at(now_ms());
    std::string good = craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[50]", 1, h, 0, true, "[[0,\"new\"]]"}});
    std::string bad = craft_table("\"x\"", "[\"id\"]", "[\"a\"]", {{"[1]", 1, h, 0, true, "[[0,\"v\"]]"}});
    std::string st = r->apply(craft_cs(kNode1, {kNode1}, {good, bad}));
    EXPECT_EQ(st,
              "{\"rows\":1,\"received\":2,\"applied\":2,\"duplicate\":0,\"lost\":0,\"overwrote\":0,\"ignored\":0,"
              "\"rejected\":0,\"pending\":2}");
    EXPECT_EQ(r->one("SELECT a FROM t WHERE id = 50"), Val("new"));
    EXPECT_EQ(r->table("lww_pending").size(), 1u);
    EXPECT_EQ(r->text("SELECT tbl || ' ' || columns || ' ' || origin || ' ' || registers FROM lww_pending"),
              "x [\"a\"] " + kNode1 + " 2");
    // An existing but untracked table is unknown too, and so is a metadata
    // table: held, never written.
    r->exec("CREATE TABLE plain(id INTEGER PRIMARY KEY, a)");
    std::string plain = craft_table("\"plain\"", "[\"id\"]", "[\"a\"]", {{"[1]", 1, h, 0, true, "[[0,\"v\"]]"}});
    std::string meta = craft_table("\"lww_state\"", "[\"key\"]", "[\"value\"]",
                                   {{"[\"node_id\"]", 1, h, 0, true, "[[0,\"hijack\"]]"}});
    const std::string id = r->node_id();
    r->apply(craft_cs(kNode1, {kNode1}, {plain, meta}));
    EXPECT_EQ(r->i64("SELECT count(*) FROM plain"), 0);
    EXPECT_EQ(r->node_id(), id);
    EXPECT_EQ(r->i64("SELECT count(*) FROM lww_pending"), 3);
    // Tracking the table lands what was held for it, through the merge rule.
    r->track("plain");
    EXPECT_EQ(r->table("plain"), (V{"int:1 | text:'v'"}));
    EXPECT_EQ(r->i64("SELECT count(*) FROM lww_pending"), 2);
}

TEST_F(ApplyErrors, UnknownColumnIsHeldKeyMismatchRefused) {
    const uint64_t h = hlc_at(now_ms());
    std::string good = craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[50]", 1, h, 0, true, "[[0,\"new\"]]"}});
    std::string bad = craft_table("\"u\"", "[\"id\"]", "[\"email\",\"zzz\"]", {{"[1]", 1, h, 0, true, "[[1,\"v\"]]"}});
    std::string st = r->apply(craft_cs(kNode1, {kNode1}, {good, bad}));
    EXPECT_EQ(st,
              "{\"rows\":2,\"received\":3,\"applied\":3,\"duplicate\":0,\"lost\":0,\"overwrote\":0,\"ignored\":0,"
              "\"rejected\":0,\"pending\":1}");
    EXPECT_EQ(r->table("u"), (V{"int:1 | NULL | NULL"}));
    EXPECT_EQ(r->text("SELECT columns FROM lww_pending WHERE tbl = 'u'"), "[\"zzz\"]");
    std::string keyed = craft_table("\"t\"", "[\"a\"]", "[\"b\"]", {{"[1]", 1, h, 0, true, "[[0,\"v\"]]"}});
    EXPECT_TRUE(apply_fails(craft_cs(kNode1, {kNode1}, {keyed}), "key columns"));
    // One table named twice in a set is malformed, whatever each says.
    EXPECT_TRUE(apply_fails(craft_cs(kNode1, {kNode1}, {good, keyed}), "table \"t\" appears twice"));
    std::string two = craft_table("\"t\"", "[\"id\",\"a\"]", "[\"b\"]", {{"[1,2]", 1, h, 0, true, "[[0,\"v\"]]"}});
    EXPECT_TRUE(apply_fails(craft_cs(kNode1, {kNode1}, {two}), "key columns"));
    // A NULL key is malformed in a table this database does not have too.
    std::string nullkey = craft_table("\"x\"", "[\"id\"]", "[\"a\"]", {{"[null]", 1, h, 0, true, "[[0,\"v\"]]"}});
    EXPECT_TRUE(apply_fails(craft_cs(kNode1, {kNode1}, {good, nullkey}), "table \"x\": a key value is NULL"));
}

TEST_F(ApplyErrors, HostileIdentifiersNeverReachSql) {
    const uint64_t h = hlc_at(now_ms());
    std::string t1 =
        craft_table("\"t\\\"; DROP TABLE t; --\"", "[\"id\"]", "[\"a\"]", {{"[1]", 1, h, 0, true, "[[0,\"v\"]]"}});
    std::string t2 =
        craft_table("\"t\"", "[\"id\"]", "[\"a\\\" = 1; DROP TABLE u; --\"]", {{"[1]", 1, h, 0, true, "[[0,\"v\"]]"}});
    r->apply(craft_cs(kNode1, {kNode1}, {t1}));
    r->apply(craft_cs(kNode1, {kNode1}, {t2}));
    EXPECT_EQ(r->i64("SELECT count(*) FROM sqlite_master WHERE name IN ('t', 'u')"), 2);
    EXPECT_EQ(r->text("SELECT group_concat(tbl, '|') FROM (SELECT tbl FROM lww_pending ORDER BY id)"),
              "t\"; DROP TABLE t; --|t");
    std::string t3 = craft_table("\"t\"", "[\"id\\\" OR 1=1 --\"]", "[\"a\"]", {{"[1]", 1, h, 0, true, "[[0,\"v\"]]"}});
    EXPECT_TRUE(apply_fails(craft_cs(kNode1, {kNode1}, {t3}), "key columns"));
    // Values are data, whatever they contain.
    std::string t4 =
        craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[77]", 1, h, 0, true, "[[0,\"'); DROP TABLE t; --\"]]"}});
    r->apply(craft_cs(kNode1, {kNode1}, {t4}));
    EXPECT_EQ(r->one("SELECT a FROM t WHERE id = 77"), Val("'); DROP TABLE t; --"));
}

TEST_F(ApplyErrors, MalformedParts) {
    const uint64_t h = hlc_at(now_ms());
    auto with_row = [&](const std::string& row) {
        return craft_cs(kNode1, {kNode1},
                        {"{\"name\":\"t\",\"key\":[\"id\"],\"columns\":[\"a\",\"b\"],\"rows\":[{\"key\":[60],\"gen\":1,"
                         "\"stamp\":[\"" +
                         std::to_string(h) + "\",0],\"row\":true,\"cols\":[[0,\"ok\"]]}," + row + "]}"});
    };
    const std::string st = "\"stamp\":[\"" + std::to_string(h) + "\",0]";
    EXPECT_TRUE(apply_fails(with_row("{\"key\":[1],\"gen\":0," + st + ",\"row\":true}"), "gen"));
    EXPECT_TRUE(apply_fails(with_row("{\"key\":[1],\"gen\":-1," + st + ",\"row\":true}"), "gen"));
    EXPECT_TRUE(apply_fails(with_row("{\"key\":[1,2],\"gen\":1," + st + ",\"row\":true}"), "key"));
    EXPECT_TRUE(apply_fails(with_row("{\"key\":[null],\"gen\":1," + st + ",\"row\":true}"), "NULL"));
    EXPECT_TRUE(apply_fails(with_row("{\"key\":[1],\"gen\":1,\"stamp\":[\"0\",0],\"row\":true}"), "hlc out of range"));
    EXPECT_TRUE(apply_fails(
        with_row("{\"key\":[1],\"gen\":1,\"stamp\":[\"" + std::to_string(h) + "\",5],\"row\":true}"), "node index"));
    EXPECT_TRUE(apply_fails(with_row("{\"key\":[1],\"gen\":1,\"stamp\":[" + std::to_string(h) + ",0],\"row\":true}"),
                            "decimal string"));
    EXPECT_TRUE(apply_fails(with_row("{\"key\":[1],\"gen\":1," + st + ",\"cols\":[[9,\"v\"]]}"), "column index"));
    EXPECT_TRUE(apply_fails(with_row("{\"key\":[1],\"gen\":1," + st + ",\"cols\":[[0,1.5]]}"), "bare number"));
    EXPECT_TRUE(apply_fails(with_row("{\"key\":[1],\"gen\":1," + st + ",\"cols\":[[0,{\"real\":\"x\"}]]}"), "real"));
    EXPECT_TRUE(
        apply_fails(with_row("{\"key\":[1],\"gen\":1," + st + ",\"cols\":[[0,{\"bytes\":\"***\"}]]}"), "base64"));
    EXPECT_TRUE(apply_fails(
        with_row("{\"key\":[1],\"gen\":1," + st + ",\"cols\":[[0,{\"int\":\"9223372036854775808\"}]]}"), "int64"));
    EXPECT_TRUE(apply_fails(with_row("{\"key\":[1],\"gen\":1," + st + ",\"cols\":[[0,{\"date\":\"x\"}]]}"), "value"));
    EXPECT_TRUE(apply_fails(with_row("{\"key\":[1],\"gen\":1," + st + "}"), "row register or some columns"));
    EXPECT_TRUE(apply_fails(with_row("{\"key\":[1],\"gen\":1,\"row\":true}"), "stamp"));
    EXPECT_TRUE(
        apply_fails(with_row("{\"key\":[1],\"gen\":1," + st + ",\"cols\":[[0,\"v\",\"" + std::to_string(h) + "\",3]]}"),
                    "node index"));
    std::string bad_origin = valid;
    const std::string o = "\"origin\":\"" + s->node_id() + "\"";
    ASSERT_NE(bad_origin.find(o), std::string::npos);
    bad_origin.replace(bad_origin.find(o), o.size(), "\"origin\":\"not-a-uuid\"");
    EXPECT_TRUE(apply_fails(bad_origin, "origin"));
}

TEST_F(ApplyErrors, StampBeyondDriftGuardNamesTheNode) {
    const uint64_t ahead = hlc_at(now_ms() + 10 * 60 * 1000);
    const uint64_t fine = hlc_at(now_ms());
    std::string both =
        craft_table("\"t\"", "[\"id\"]", "[\"a\"]",
                    {{"[50]", 1, fine, 0, true, "[[0,\"new\"]]"}, {"[51]", 1, ahead, 1, true, "[[0,\"future\"]]"}});
    ::testing::AssertionResult res =
        apply_fails(craft_cs(kNode1, {kNode1, kNode3}, {both}), "stamp from node " + kNode3);
    EXPECT_TRUE(res);
    // A column register from the future is refused as well, naming its own node.
    std::string col =
        "{\"name\":\"t\",\"key\":[\"id\"],\"columns\":[\"a\"],\"rows\":[{\"key\":[1],\"gen\":1,\"stamp\":[\"" +
        std::to_string(fine) + "\",0],\"cols\":[[0,\"v\",\"" + std::to_string(ahead) + "\",1]]}]}";
    EXPECT_TRUE(apply_fails(craft_cs(kNode1, {kNode1, kNode2}, {col}), kNode2));
    // Through lww_sync too: a server refuses a pushed batch holding such a
    // stamp, and nothing of it lands. (A client takes its server's clock:
    // see Clock tests in test_http.cpp.)
    Db& bad_peer =
        cl.add("bad", kSchemaT + std::string("CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT, n);"), {"t", "u"});
    bad_peer.apply(craft_cs(
        kNode2, {kNode2}, {craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[1]", 1, fine, 0, true, "[[0,\"ok\"]]"}})}));
    bad_peer.exec("SELECT lww_config('max_drift_ms', 3600000)");
    bad_peer.apply(
        craft_cs(kNode3, {kNode3},
                 {craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[51]", 1, ahead, 0, true, "[[0,\"future\"]]"}})}));
    const auto before = r->table("t");
    // The caller's clock took that stamp: the server refuses the caller by name.
    EXPECT_TRUE(FailsCleanly(bad_peer, "SELECT lww_sync(?, '{\"batch_rows\":1000}')", {r->url()},
                             "lww_sync: ", "the clock of node " + bad_peer.node_id() + " is "));
    EXPECT_EQ(r->table("t"), before);
}

TEST_F(ApplyErrors, ConfiguredDriftIsEnforced) {
    const uint64_t two_s = hlc_at(now_ms() + 2500);
    std::string set = craft_cs(
        kNode2, {kNode2}, {craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[70]", 1, two_s, 0, true, "[[0,\"2s\"]]"}})});
    Db& lenient = cl.add("lenient", kSchemaT, {"t"});
    Outcome ok = lenient.run("SELECT lww_apply(?)", {set});
    EXPECT_TRUE(ok.ok) << ok.err;  // default: 5 minutes
    EXPECT_EQ(r->i64("SELECT lww_config('max_drift_ms', 1000)"), 1000);
    EXPECT_TRUE(apply_fails(set, "stamp from node " + kNode2));
    EXPECT_TRUE(apply_fails(set, "ahead"));
    r->exec("SELECT lww_config('max_drift_ms', 300000)");
    Outcome later = r->run("SELECT lww_apply(?)", {set});
    EXPECT_TRUE(later.ok) << later.err;
}

TEST_F(ApplyErrors, OwnOriginIsRefused) {
    r->exec("INSERT INTO t VALUES (3, 'r3', NULL, NULL)");
    EXPECT_TRUE(apply_fails(r->changes(0), r->node_id()));
    EXPECT_TRUE(apply_fails(r->changes(0), "own"));
    std::string forged = craft_cs(
        r->node_id(), {kNode1},
        {craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[90]", 1, hlc_at(now_ms()), 0, true, "[[0,\"x\"]]"}})});
    EXPECT_TRUE(apply_fails(forged, "own"));
}

TEST_F(ApplyErrors, LateUniqueViolationIsParkedNotFatal) {
    // A row the receiver's constraints refuse is parked in lww_rejected; the
    // rest of the set applies (test_app_life.cpp covers parking in depth).
    r->exec("INSERT INTO u VALUES (100, 'taken@x', 0)");
    Db& src = cl.add("src", "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT, n);", {"u"});
    src.exec("INSERT INTO u VALUES (1, 'a@x', 1), (2, 'b@x', 2), (3, 'c@x', 3)");
    src.exec("INSERT INTO u VALUES (4, 'taken@x', 4)");  // last row of the set
    std::string cs = src.changes(0);
    ASSERT_EQ(parse_cs(cs).rows.back().key, "int:4");
    const std::string st = r->apply(cs);
    EXPECT_EQ(json_int(st, "rejected"), 3) << st;
    EXPECT_EQ(r->i64("SELECT count(*) FROM u"), 4);  // 100 and 1..3
    EXPECT_EQ(r->rows("SELECT tbl, key FROM lww_rejected"), (Rows{{Val("u"), Val("[4]")}}));
    EXPECT_NE(r->text("SELECT reason FROM lww_rejected").find("UNIQUE constraint failed"), std::string::npos);
    // A NOT NULL / CHECK / STRICT type failure in a late row: parked the same way.
    Db& q = cl.add("q", "CREATE TABLE s(id INTEGER PRIMARY KEY, n INTEGER NOT NULL CHECK (n < 100), i INTEGER) STRICT;",
                   {"s"});
    const uint64_t h = hlc_at(now_ms());
    auto rows = [&](int key, const std::string& last) {
        return craft_cs(kNode1, {kNode1},
                        {craft_table("\"s\"", "[\"id\"]", "[\"n\",\"i\"]",
                                     {{"[1]", 1, h, 0, true, "[[0,1],[1,1]]"},
                                      {"[2]", 1, h, 0, true, "[[0,2],[1,2]]"},
                                      {"[" + std::to_string(key) + "]", 1, h, 0, true, last}})});
    };
    q.exec("INSERT INTO s VALUES (50, 50, 50)");
    const std::vector<std::pair<std::string, std::string>> refused = {
        {"[[0,null],[1,3]]", "NOT NULL"}, {"[[0,500],[1,3]]", "CHECK"}, {"[[0,3],[1,\"three\"]]", "cannot store"}};
    int key = 3;
    for (const auto& [last, why] : refused) {
        const std::string res = q.apply(rows(key, last));
        EXPECT_EQ(json_int(res, "rejected"), 3) << why << ": " << res;
        EXPECT_NE(q.text("SELECT reason FROM lww_rejected WHERE key = ?", {"[" + std::to_string(key) + "]"}).find(why),
                  std::string::npos)
            << why;
        ++key;
    }
    EXPECT_EQ(q.table("s").size(), 3u);  // 50, 1, 2
    EXPECT_EQ(q.i64("SELECT count(*) FROM lww_rejected"), 3);
    Outcome ok = q.run("SELECT lww_apply(?)", {rows(key, "[[0,3],[1,3]]")});
    EXPECT_TRUE(ok.ok) << ok.err;
    EXPECT_EQ(q.table("s").size(), 4u);
}

TEST_F(ApplyErrors, FailedApplyInsideUserTransactionKeepsUserWrites) {
    // The merge fails half-way (the second row raises a generation by more
    // than 2^32: hostile, so fatal) inside the user's own transaction: only
    // the change set is undone.
    const uint64_t h = hlc_at(now_ms());
    std::string cs = craft_cs(kNode1, {kNode1},
                              {craft_table("\"u\"", "[\"id\"]", "[\"email\"]",
                                           {{"[1]", 1, h, 0, true, "[[0,\"one@x\"]]"},
                                            {"[2]", 8589934593ull, h, 0, true, "[[0,\"two@x\"]]"}})});
    r->exec("BEGIN; INSERT INTO t VALUES (5, 'mine', NULL, NULL);");
    Outcome o = r->run("SELECT lww_apply(?)", {cs});
    EXPECT_FALSE(o.ok);
    EXPECT_NE(o.err.find("2^32"), std::string::npos) << o.err;
    EXPECT_EQ(sqlite3_get_autocommit(r->handle()), 0);  // still inside the user's transaction
    r->exec("INSERT INTO u VALUES (200, 'mine@x', 1)");
    r->exec("COMMIT");
    EXPECT_EQ(r->one("SELECT a FROM t WHERE id = 5"), Val("mine"));
    EXPECT_EQ(r->i64("SELECT count(*) FROM u"), 1);
    ParsedCS mine = parse_cs(r->changes(0));
    EXPECT_NE(mine.row("int:5", "t"), nullptr);
    EXPECT_NE(mine.row("int:200", "u"), nullptr);
    EXPECT_EQ(mine.row("int:1", "u"), nullptr);
}

TEST_F(ApplyErrors, ParkedRowInsideUserTransaction) {
    // A refused row inside the user's transaction: the rest applies, the
    // user's own writes stay, and the transaction commits.
    const uint64_t h = hlc_at(now_ms());
    std::string cs =
        craft_cs(kNode1, {kNode1},
                 {craft_table("\"u\"", "[\"id\"]", "[\"email\"]",
                              {{"[1]", 1, h, 0, true, "[[0,\"dup@x\"]]"}, {"[2]", 1, h, 0, true, "[[0,\"dup@x\"]]"}})});
    r->exec("BEGIN; INSERT INTO t VALUES (5, 'mine', NULL, NULL);");
    const std::string st = r->apply(cs);
    EXPECT_EQ(json_int(st, "rejected"), 2) << st;
    EXPECT_EQ(sqlite3_get_autocommit(r->handle()), 0);
    r->exec("COMMIT");
    EXPECT_EQ(r->one("SELECT a FROM t WHERE id = 5"), Val("mine"));
    EXPECT_EQ(r->rows("SELECT id, email FROM u"), (Rows{{Val(1), Val("dup@x")}}));
    EXPECT_EQ(r->rows("SELECT key FROM lww_rejected"), (Rows{{Val("[2]")}}));
}

TEST_F(ApplyErrors, ChangeSetOfAnotherShapeMapsColumnsByName) {
    // Columns listed in another order, and only some of them: mapped by name.
    const uint64_t h = hlc_at(now_ms());
    std::string cs = craft_cs(
        kNode1, {kNode1},
        {craft_table("\"t\"", "[\"id\"]", "[\"c\",\"a\"]", {{"[40]", 1, h, 0, true, "[[0,\"is c\"],[1,\"is a\"]]"}})});
    r->apply(cs);
    EXPECT_EQ(r->rows("SELECT * FROM t WHERE id = 40")[0], (Row{Val(40), Val("is a"), Val(), Val("is c")}));
}

}  // namespace
