// Every public function: results, idempotence, refusals and their messages.
#include <regex>

#include "harness.h"

using namespace lwwt;

namespace {

// A node id is a UUID derived from the database's key (version 8).
const std::regex kUuidV4("^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");

int64_t trigger_count(Db& db, const std::string& table) {
    return db.i64("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", {table});
}

TEST(Api, LoadsAndReportsVersion) {
    Db db(":memory:");
    std::string v = db.text("SELECT lww_version()");
    EXPECT_TRUE(std::regex_match(v, std::regex("^[0-9]+\\.[0-9]+(\\.[0-9]+)?([-+][0-9A-Za-z.-]+)?$"))) << v;
    // Loading through SQL works too, once loading is enabled.
    Db other(":memory:", false);
    sqlite3_enable_load_extension(other.handle(), 1);
    Outcome loaded = other.run("SELECT load_extension(?, 'sqlite3_lwwsync_init')", {ext_path()});
    ASSERT_TRUE(loaded.ok) << loaded.err;
    EXPECT_EQ(other.text("SELECT lww_version()"), v);
}

TEST(Api, NodeIdIsUuidV4StableAcrossReopen) {
    Cluster cl;
    std::string id;
    {
        Db& a = cl.add("a");
        id = a.node_id();
        EXPECT_TRUE(std::regex_match(id, kUuidV4)) << id;
        EXPECT_EQ(a.node_id(), id);  // same connection, asked twice
    }
    auto again = cl.connect("a");
    EXPECT_EQ(again->node_id(), id);
    auto third = cl.connect("a");
    EXPECT_EQ(third->node_id(), id);

    Db& b = cl.add("b");
    std::string idb = b.node_id();
    EXPECT_TRUE(std::regex_match(idb, kUuidV4)) << idb;
    EXPECT_NE(idb, id);
}

TEST(Api, TrackReturnsRowsStampedAndIsIdempotent) {
    Db db(":memory:");
    db.exec(kSchemaT);
    db.exec("INSERT INTO t VALUES (1,'a',1,NULL),(2,'b',2,NULL),(3,'c',3,NULL)");
    EXPECT_EQ(db.track("t"), 3);
    EXPECT_EQ(trigger_count(db, "t"), 4);
    const auto after_first = db.dump();
    EXPECT_EQ(db.track("t"), 0);
    EXPECT_EQ(trigger_count(db, "t"), 4);
    EXPECT_EQ(db.dump(), after_first) << dump_diff(after_first, db.dump());

    // One insert is one write: one row in the change set, registers not doubled.
    const int64_t s0 = db.seq();
    db.exec("INSERT INTO t VALUES (4,'d',4,NULL)");
    EXPECT_GT(db.seq(), s0);
    ParsedCS cs = parse_cs(db.changes(s0));
    ASSERT_EQ(cs.rows.size(), 1u);
    EXPECT_EQ(cs.rows[0].key, "int:4");
    EXPECT_EQ(cs.regs.size(), 4u);  // row register + a, b, c
}

TEST(Api, TrackEmptyTableReturnsZero) {
    Db db(":memory:");
    db.exec(kSchemaT);
    EXPECT_EQ(db.track("t"), 0);
    EXPECT_EQ(db.track("t"), 0);
}

TEST(Api, TrackRefusesTableWithoutPrimaryKey) {
    Db db(":memory:");
    db.exec("CREATE TABLE nopk(a, b); INSERT INTO nopk VALUES (1, 2);");
    db.node_id();  // metadata exists, so the dump comparison covers it too
    EXPECT_TRUE(FailsCleanly(db, "SELECT lww_track('nopk')", {}, "lww_track: ", "has no PRIMARY KEY"));
    EXPECT_TRUE(FailsCleanly(db, "SELECT lww_track('nopk')", {}, "lww_track: ", "nopk"));
    EXPECT_EQ(trigger_count(db, "nopk"), 0);
}

TEST(Api, TrackRefusesUnknownTable) {
    Db db(":memory:");
    db.node_id();
    EXPECT_TRUE(FailsCleanly(db, "SELECT lww_track('nosuch')", {}, "lww_track: ", "nosuch"));
    EXPECT_TRUE(FailsCleanly(db, "SELECT lww_track(42)", {}, "lww_track: ", "table name must be text"));
}

TEST(Api, TrackRefusesItsOwnMetadataTables) {
    Db db(":memory:");
    db.node_id();
    EXPECT_TRUE(FailsCleanly(db, "SELECT lww_track('lww_state')", {}, "lww_track: ", "metadata"));
}

TEST(Api, RowsPresentBeforeTrackSync) {
    Cluster cl;
    Db& a = cl.add("a", kSchemaT);
    a.exec("INSERT INTO t VALUES (1,'x',1.5,x'00ff'),(2,'y',NULL,-7)");
    EXPECT_EQ(a.track("t"), 2);
    Db& b = cl.add("b", kSchemaT, {"t"});
    b.sync(a);
    EXPECT_EQ(b.table("t"), a.table("t"));
    ASSERT_EQ(b.table("t").size(), 2u);

    // And through lww_changes / lww_apply.
    Db& c = cl.add("c", kSchemaT, {"t"});
    ParsedCS cs = parse_cs(a.changes(0));
    EXPECT_EQ(cs.rows.size(), 2u);
    c.apply(a.changes(0));
    EXPECT_EQ(c.table("t"), a.table("t"));
}

TEST(Api, UntrackLeavesDataAndStopsStamping) {
    Db db(":memory:");
    db.exec(kSchemaT);
    db.track("t");
    db.exec("INSERT INTO t VALUES (1,'a',NULL,NULL),(2,'b',NULL,NULL)");
    const auto rows_before = db.table("t");
    const std::string schema_before = db.text("SELECT sql FROM sqlite_master WHERE name = 't'");
    const int64_t s_before = db.seq();

    EXPECT_EQ(db.i64("SELECT lww_untrack('t')"), 1);
    EXPECT_EQ(db.table("t"), rows_before);
    EXPECT_EQ(db.text("SELECT sql FROM sqlite_master WHERE name = 't'"), schema_before);
    EXPECT_EQ(trigger_count(db, "t"), 0);
    EXPECT_EQ(db.i64("SELECT count(*) FROM lww_tables"), 0);
    EXPECT_GE(db.seq(), s_before);

    // No more stamping: writes change nothing lwwsync reports.
    const int64_t s_untracked = db.seq();
    db.exec("INSERT INTO t VALUES (3,'c',NULL,NULL); UPDATE t SET a = 'z' WHERE id = 1; DELETE FROM t WHERE id = 2;");
    EXPECT_EQ(db.seq(), s_untracked);
    ParsedCS cs = parse_cs(db.changes(0));
    EXPECT_TRUE(cs.rows.empty());

    // Untracking again (or an untracked table) reports 0.
    EXPECT_EQ(db.i64("SELECT lww_untrack('t')"), 0);
    EXPECT_EQ(db.i64("SELECT lww_untrack('never_was')"), 0);
}

TEST(Api, SeqNeverGoesBackwardsAcrossUntrackAndRetrack) {
    Cluster cl;
    int64_t high = 0;
    {
        Db& a = cl.add("a", kSchemaT + std::string("CREATE TABLE u(id INTEGER PRIMARY KEY, v);"), {"t", "u"});
        for (int i = 0; i < 10; ++i) a.exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'v', NULL, NULL)");
        a.exec("INSERT INTO u VALUES (1, 'u')");
        high = a.seq();
        EXPECT_GE(high, 11);
        EXPECT_EQ(a.i64("SELECT lww_untrack('t')"), 1);
        EXPECT_GE(a.seq(), high);
        high = a.seq();
    }
    // A fresh connection still knows how far the sequence went.
    auto a2 = cl.connect("a");
    EXPECT_GE(a2->seq(), high);
    a2->exec("INSERT INTO u VALUES (2, 'u2')");
    EXPECT_GT(a2->seq(), high);
    high = a2->seq();
    ParsedCS only_new = parse_cs(a2->changes(high - 1));
    ASSERT_EQ(only_new.rows.size(), 1u);
    EXPECT_EQ(only_new.rows[0].key, "int:2");

    // Retracking stamps every row changed while untracked (here: all of
    // them), at new sequences; unchanged rows keep their stamps (docs/SCHEMA.md).
    a2->exec("UPDATE t SET a = 'w'");
    EXPECT_EQ(a2->track("t"), 10);
    EXPECT_GT(a2->seq(), high);
    ParsedCS cs = parse_cs(a2->changes(high));
    EXPECT_EQ(cs.rows.size(), 10u);
    for (const auto& r : cs.rows) EXPECT_EQ(r.table, "t");

    // Untrack everything: lww_seq stays put.
    const int64_t before = a2->seq();
    EXPECT_EQ(a2->i64("SELECT lww_untrack('t')"), 1);
    EXPECT_EQ(a2->i64("SELECT lww_untrack('u')"), 1);
    EXPECT_GE(a2->seq(), before);
    auto a3 = cl.connect("a");
    EXPECT_GE(a3->seq(), before);
}

TEST(Api, RetrackAfterAddColumnKeepsSyncing) {
    Cluster cl;
    Db& a = cl.add("a", kSchemaT, {"t"});
    Db& b = cl.add("b", kSchemaT, {"t"});
    a.exec("INSERT INTO t VALUES (1,'a','b','c')");
    b.sync(a);
    for (Db* d : {&a, &b}) {
        d->exec("ALTER TABLE t ADD COLUMN d");
        EXPECT_EQ(d->track("t"), 0);
        EXPECT_EQ(trigger_count(*d, "t"), 4);
    }
    a.exec("UPDATE t SET d = 'dd', a = 'A' WHERE id = 1");
    a.exec("INSERT INTO t VALUES (2,'x','y','z','w')");
    b.sync(a);
    EXPECT_EQ(b.table("t"), a.table("t"));
    EXPECT_EQ(b.table("t"), (std::vector<std::string>{"int:1 | text:'A' | text:'b' | text:'c' | text:'dd'",
                                                      "int:2 | text:'x' | text:'y' | text:'z' | text:'w'"}));
}

// lww_untrack keeps the metadata; lww_track resumes from it, so a key
// re-inserted before (generation 3 at a peer) does not come back at
// generation 1 and lose, and deletes made while untracked reach the peers.
TEST(Api, RetrackResumesGenerationsAndRecordsUntrackedWrites) {
    Cluster cl;
    Db& a = cl.add("a", kSchemaT, {"t"});
    Db& b = cl.add("b", kSchemaT, {"t"});
    a.exec("INSERT INTO t VALUES (1,'one',NULL,NULL),(2,'two',NULL,NULL),(3,'three',NULL,NULL)");
    a.exec("DELETE FROM t WHERE id = 2; INSERT INTO t VALUES (2,'again',NULL,NULL)");
    b.sync(a);
    EXPECT_EQ(a.i64("SELECT lww_untrack('t')"), 1);
    a.exec(
        "DELETE FROM t WHERE id = 1; UPDATE t SET a = 'x' WHERE id = 3;"
        "DELETE FROM t WHERE id = 2; INSERT INTO t VALUES (2,'third',NULL,NULL)");
    EXPECT_EQ(a.track("t"), 2);  // rows 2 and 3 written anew; row 1 recorded as deleted
    b.sync(a);
    EXPECT_EQ(b.table("t"), a.table("t"));
    EXPECT_EQ(b.table("t"),
              (std::vector<std::string>{"int:2 | text:'third' | NULL | NULL", "int:3 | text:'x' | NULL | NULL"}));
}

TEST(Api, ChangesArgumentErrors) {
    Db db(":memory:");
    db.exec(kSchemaT);
    db.track("t");
    EXPECT_TRUE(FailsCleanly(db, "SELECT lww_changes(-1)", {}, "lww_changes: ", "non-negative"));
    EXPECT_TRUE(FailsCleanly(db, "SELECT lww_changes('0')", {}, "lww_changes: ", "non-negative"));
    EXPECT_TRUE(FailsCleanly(db, "SELECT lww_changes(0, 0)", {}, "lww_changes: ", "limit"));
}

TEST(Api, ChangesFormatFields) {
    Db db(":memory:");
    db.exec(kSchemaT);
    db.track("t");
    db.exec("INSERT INTO t VALUES (1, 'a', 9007199254740993, NULL)");
    std::string json = db.changes(0);
    ParsedCS cs = parse_cs(json);
    EXPECT_EQ(cs.format, "lwwsync.changeset");
    EXPECT_EQ(cs.version, 1);
    EXPECT_EQ(cs.origin, db.node_id());
    EXPECT_EQ(cs.since, 0u);
    EXPECT_EQ(cs.upto, static_cast<uint64_t>(db.seq()));
    ASSERT_EQ(cs.nodes.size(), 1u);
    EXPECT_EQ(cs.nodes[0], db.node_id());
    // No bare JSON number above 2^53 anywhere (a JavaScript reader must stay exact).
    std::regex big("[^\"0-9.eE+-]([0-9]{16,})[^\"0-9]");
    EXPECT_FALSE(std::regex_search(json, big)) << json;
    const ParsedRow* r = cs.row("int:1");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->cols.at("b"), Val(9007199254740993LL));
    rapidjson::Document d = parse_json(json);
    ASSERT_TRUE(d["tables"][0].HasMember("key"));
    EXPECT_EQ(std::string(d["tables"][0]["key"][0].GetString()), "id");
    EXPECT_EQ(d["tables"][0]["columns"].Size(), 3u);

    // since beyond everything: nothing, and upto never goes below since.
    ParsedCS later = parse_cs(db.changes(1000));
    EXPECT_TRUE(later.rows.empty());
    EXPECT_GE(later.upto, 1000u);
}

TEST(Api, ChangesLimitBoundsRowsAndPagesWithoutGaps) {
    Db db(":memory:");
    db.exec(kSchemaT);
    db.track("t");
    for (int i = 1; i <= 7; ++i) db.exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'v', NULL, NULL)");
    std::set<std::string> seen;
    int nonempty = 0;
    page_changes(db, 0, 2, [&](const std::string&, const ParsedCS& cs) {
        EXPECT_LE(cs.rows.size(), 2u) << "lww_changes(" << cs.since << ", 2) returned " << cs.rows.size() << " rows";
        for (const auto& r : cs.rows) EXPECT_TRUE(seen.insert(r.key).second) << "duplicate " << r.key;
        nonempty += !cs.rows.empty();
    });
    EXPECT_EQ(seen.size(), 7u);
    EXPECT_GE(nonempty, 4);
}

TEST(Api, ChangesPagingCarriesEveryRegister) {
    // Paging with a limit and feeding each page to a peer must give the
    // peer every register, including older ones of rows updated later.
    Db db(":memory:");
    db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a, b);");
    db.track("t");
    db.exec("INSERT INTO t VALUES (1, 'x', 'y')");
    db.exec("INSERT INTO t VALUES (2, 'p', 'q')");
    db.exec("INSERT INTO t VALUES (3, 'r', 's')");
    db.exec("UPDATE t SET b = 'Y' WHERE id = 1");
    Db peer(":memory:");
    peer.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a, b);");
    peer.track("t");
    page_changes(db, 0, 1, [&](const std::string& cs, const ParsedCS&) { peer.apply(cs); });
    EXPECT_EQ(peer.table("t"), db.table("t"));
    EXPECT_EQ(peer.table("t")[0], "int:1 | text:'x' | text:'Y'");
    // Paging from a later point too.
    Db peer2(":memory:");
    peer2.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a, b);");
    peer2.track("t");
    page_changes(db, 0, 1000, [&](const std::string& cs, const ParsedCS&) { peer2.apply(cs); });
    const int64_t mark = db.seq();
    db.exec("INSERT INTO t VALUES (4, 'n', 'n')");
    db.exec("INSERT INTO t VALUES (5, 'n', 'n')");
    db.exec("UPDATE t SET a = 'A' WHERE id = 4");
    db.exec("UPDATE t SET a = 'A3' WHERE id = 3");
    page_changes(db, mark, 1, [&](const std::string& cs, const ParsedCS&) { peer2.apply(cs); });
    EXPECT_EQ(peer2.table("t"), db.table("t"));
}

TEST(Api, GeneratedColumnsAreLeftToEachDatabase) {
    const std::string schema = "CREATE TABLE g(id INTEGER PRIMARY KEY, a, b AS (a * 2) VIRTUAL, c AS (a + 1) STORED);";
    Cluster cl;
    Db& a = cl.add("a", schema, {"g"});
    Db& b = cl.add("b", schema, {"g"});
    a.exec("INSERT INTO g(id, a) VALUES (1, 5), (2, 7); UPDATE g SET a = 6 WHERE id = 1;");
    ParsedCS cs = parse_cs(a.changes(0));
    for (const auto& r : cs.regs) EXPECT_TRUE(r.is_row || r.col == "a") << r.col;
    b.sync(a);
    EXPECT_EQ(b.table("g"),
              (std::vector<std::string>{"int:1 | int:6 | int:12 | int:7", "int:2 | int:7 | int:14 | int:8"}));
}

TEST(Api, RolledBackConfigIsNotInEffect) {
    Cluster cl;
    Db& a = cl.add("a", kSchemaT, {"t"});
    a.exec("BEGIN; SELECT lww_config('max_drift_ms', 3600000); ROLLBACK;");
    EXPECT_EQ(a.i64("SELECT lww_config('max_drift_ms')"), 300000);
    // The guard is the committed one: a stamp 10 minutes ahead is still refused.
    const std::string cs = craft_cs(
        kNode1, {kNode1},
        {craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[1]", 1, hlc_at(now_ms() + 600000), 0, true, "[[0,\"x\"]]"}})});
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_apply(?)", {cs}, "lww_apply: ", "ahead"));
}

TEST(Api, ApplyAndSyncArgumentErrors) {
    Cluster cl;
    Db& a = cl.add("a", kSchemaT, {"t"});
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL)");
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_apply(NULL)", {}, "lww_apply: ", "JSON text"));
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_apply(x'7b7d')", {}, "lww_apply: ", "JSON text"));
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_sync('ftp://example.invalid/')", {}, "lww_sync: ", "unsupported URL"));
    EXPECT_TRUE(
        FailsCleanly(a, "SELECT lww_sync(?)", {"file:" + cl.file("missing.db")}, "lww_sync: ", "cannot open peer"));
    EXPECT_FALSE(std::filesystem::exists(cl.file("missing.db")));  // never creates a peer
    Db& plain = cl.add("plain", kSchemaT);
    (void)plain;
    EXPECT_TRUE(
        FailsCleanly(a, "SELECT lww_sync(?)", {"file:" + cl.file("plain.db")}, "lww_sync: ", "no lwwsync metadata"));
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_sync(?)", {a.url()}, "lww_sync: ", a.node_id()));  // itself
    Db& b = cl.add("b", kSchemaT, {"t"});
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_sync(?, '{\"batch_rows\":0}')", {b.url()}, "lww_sync: ", "batch_rows"));
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_sync(?, '{\"speed\":1}')", {b.url()}, "lww_sync: ", "speed"));
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_sync(?, 'nope')", {b.url()}, "lww_sync: ", "JSON object"));
}

TEST(Api, ConfigMaxDrift) {
    Cluster cl;
    {
        Db& a = cl.add("a");
        EXPECT_EQ(a.i64("SELECT lww_config('max_drift_ms')"), 300000);
        EXPECT_EQ(a.i64("SELECT lww_config('max_drift_ms', 1000)"), 1000);
        EXPECT_EQ(a.i64("SELECT lww_config('max_drift_ms')"), 1000);
        EXPECT_TRUE(FailsCleanly(a, "SELECT lww_config('max_drift_ms', -5)", {},
                                 "lww_config: ", "max_drift_ms must be between 0 and 1099511627776"));
        EXPECT_TRUE(
            FailsCleanly(a, "SELECT lww_config('max_drift_ms', 1099511627777)", {}, "lww_config: ", "must be between"));
        EXPECT_TRUE(
            FailsCleanly(a, "SELECT lww_config('max_drift_ms', 'x')", {}, "lww_config: ", "must be an integer"));
        EXPECT_TRUE(FailsCleanly(a, "SELECT lww_config('colour')", {}, "lww_config: ",
                                 "unknown setting \"colour\" (known: max_drift_ms, pending_max_rows, detect_copies, "
                                 "conflict_log, tombstone_ttl_ms, conflict_log_rows, log_fold_rows)"));
    }
    auto again = cl.connect("a");  // a per-database setting: it persists
    EXPECT_EQ(again->i64("SELECT lww_config('max_drift_ms')"), 1000);
}

TEST(Api, SeqStartsAtZeroAndCountsWrites) {
    Db db(":memory:");
    EXPECT_EQ(db.seq(), 0);
    db.exec(kSchemaT);
    db.track("t");
    EXPECT_EQ(db.seq(), 0);
    db.exec("INSERT INTO t VALUES (1,'a',NULL,NULL)");
    const int64_t s1 = db.seq();
    EXPECT_GT(s1, 0);
    db.exec("UPDATE t SET a = 'b' WHERE id = 1");
    EXPECT_GT(db.seq(), s1);
    // A rolled-back write leaves no committed sequence behind.
    const int64_t s2 = db.seq();
    db.exec("BEGIN; INSERT INTO t VALUES (2,'x',NULL,NULL); ROLLBACK;");
    EXPECT_EQ(db.seq(), s2);
    EXPECT_TRUE(parse_cs(db.changes(s2)).rows.empty());
}

TEST(Api, QuotedIdentifiersEverywhere) {
    // Table and column names that would break unquoted SQL text.
    const std::string schema =
        "CREATE TABLE \"we\"\"ird tab'le\"(\"k\"\"ey\" TEXT PRIMARY KEY, \"co'l 1\", \"select\", \"a;b\");";
    Cluster cl;
    Db& a = cl.add("a", schema, {"we\"ird tab'le"});
    Db& b = cl.add("b", schema, {"we\"ird tab'le"});
    a.exec("INSERT INTO \"we\"\"ird tab'le\" VALUES ('k''1', 'x', 'y', 'z')");
    a.exec("UPDATE \"we\"\"ird tab'le\" SET \"select\" = 'yy'");
    b.exec("INSERT INTO \"we\"\"ird tab'le\" VALUES ('k2', '1', '2', '3')");
    b.sync(a);
    EXPECT_EQ(a.table("we\"ird tab'le"), b.table("we\"ird tab'le"));
    EXPECT_EQ(a.table("we\"ird tab'le").size(), 2u);
    a.exec("UPDATE \"we\"\"ird tab'le\" SET \"k\"\"ey\" = 'k3' WHERE \"k\"\"ey\" = 'k2'");
    a.exec("DELETE FROM \"we\"\"ird tab'le\" WHERE \"k\"\"ey\" = 'k''1'");
    b.sync(a, "{\"batch_rows\":1}");
    EXPECT_EQ(a.table("we\"ird tab'le"), b.table("we\"ird tab'le"));
    EXPECT_EQ(b.table("we\"ird tab'le"), (std::vector<std::string>{"text:'k3' | text:'1' | text:'2' | text:'3'"}));
}

}  // namespace
