// Two and three file databases syncing with lww_sync('file:...') and with
// lww_changes / lww_apply: merge semantics, relays, cursors, batches, keys and
// every storage class.
#include <cfloat>
#include <limits>
#include <random>

#include "harness.h"

using namespace lwwt;

namespace {

using V = std::vector<std::string>;

class Sync : public ::testing::Test {
protected:
    Db& peer(const std::string& name, const std::string& schema = kSchemaT, const V& track = {"t"}) {
        return cl.add(name, schema, track);
    }
    Cluster cl;
};

TEST_F(Sync, ConcurrentEditsToDifferentColumnsBothSurvive) {
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO t VALUES (1, 'a0', 'b0', 'c0')");
    b.sync(a);
    a.exec("UPDATE t SET a = 'from A' WHERE id = 1");
    sleep_ms(3);
    b.exec("UPDATE t SET b = 'from B' WHERE id = 1");
    sleep_ms(3);
    a.exec("UPDATE t SET c = 'A again' WHERE id = 1");
    std::string st = a.sync(b);
    const V want{"int:1 | text:'from A' | text:'from B' | text:'A again'"};
    EXPECT_EQ(a.table("t"), want) << st;
    EXPECT_EQ(b.table("t"), want);
}

// lww_apply's statistics tell a register already held (duplicate) from one
// that lost to a newer write here (lost) and from one that replaced a write
// of ours the sender had not seen (overwrote, a conflict this side lost).
TEST_F(Sync, ApplyStatsTellDuplicatesLossesAndOverwrites) {
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO t VALUES (1, 'a0', 'b0', 'c0')");
    b.sync(a);
    a.exec("UPDATE t SET a = 'from A' WHERE id = 1");
    const std::string from_a = a.changes(0);
    sleep_ms(3);
    b.exec("UPDATE t SET a = 'from B' WHERE id = 1");
    const std::string from_b = b.changes(0);

    std::string st = a.apply(from_b);  // B's later edit replaces A's unsent one
    EXPECT_EQ(json_int(st, "applied"), 1) << st;
    EXPECT_EQ(json_int(st, "overwrote"), 1) << st;
    EXPECT_EQ(json_int(st, "duplicate"), 3) << st;  // row register and columns b, c: held already
    EXPECT_EQ(json_int(st, "lost"), 0) << st;
    EXPECT_EQ(json_int(st, "ignored"), 3) << st;
    st = b.apply(from_a);  // A's older edit loses to B's
    EXPECT_EQ(json_int(st, "applied"), 0) << st;
    EXPECT_EQ(json_int(st, "lost"), 1) << st;
    EXPECT_EQ(json_int(st, "duplicate"), 3) << st;
    EXPECT_EQ(json_int(st, "overwrote"), 0) << st;
    st = a.apply(from_b);  // a redelivery: every register held
    EXPECT_EQ(json_int(st, "applied"), 0) << st;
    EXPECT_EQ(json_int(st, "duplicate"), 4) << st;
    EXPECT_EQ(json_int(st, "received"), 4) << st;
    const V want{"int:1 | text:'from B' | text:'b0' | text:'c0'"};
    EXPECT_EQ(a.table("t"), want);
    EXPECT_EQ(b.table("t"), want);
}

// Over lww_sync the receiver knows what the sender holds of it (the cursors):
// an edit the sender had received before it wrote over it is no conflict.
TEST_F(Sync, SyncStatsCountConflictsOnBothSides) {
    Db& c = peer("c");
    Db& d = peer("d");
    c.exec("INSERT INTO t VALUES (1, 'a0', 'b0', 'c0'), (2, 'x', NULL, NULL)");
    d.sync(c);
    c.exec("UPDATE t SET a = 'C' WHERE id = 1");
    sleep_ms(3);
    d.exec("UPDATE t SET a = 'D' WHERE id = 1");
    std::string st = d.sync(c);
    EXPECT_EQ(json_int(st, "sent.overwrote"), 1) << st;  // D's edit replaced C's unsent one, at c
    EXPECT_EQ(json_int(st, "received.lost"), 1) << st;   // C's edit arrives older than D's
    EXPECT_EQ(json_int(st, "received.overwrote"), 0) << st;
    // Sequential edits are no conflict: d writes over C's edit of row 2 after receiving it.
    c.exec("UPDATE t SET a = 'C2' WHERE id = 2");
    d.sync(c);
    sleep_ms(3);
    d.exec("UPDATE t SET a = 'D2' WHERE id = 2");
    st = d.sync(c);
    EXPECT_EQ(json_int(st, "sent.applied"), 1) << st;
    EXPECT_EQ(json_int(st, "sent.overwrote"), 0) << st;
    const V want{"int:1 | text:'D' | text:'b0' | text:'c0'", "int:2 | text:'D2' | NULL | NULL"};
    EXPECT_EQ(c.table("t"), want);
    EXPECT_EQ(d.table("t"), want);
}

// The conflict log: with lww_config('conflict_log', 1) every conflict a
// merge settles is a row of lww_conflicts, with both values and stamps.
TEST_F(Sync, ConflictLogTellsTheAppWhatWasReplaced) {
    auto rows = [](Db& db, const std::string& sql) {
        V out;
        for (const auto& r : db.rows(sql)) out.push_back(row_repr(r));
        return out;
    };
    Db& phone = peer("phone");
    Db& server = peer("server");
    phone.exec("INSERT INTO t VALUES (1, 'draft', 'b0', 'c0'), (2, 'keep', NULL, NULL)");
    server.sync(phone);
    EXPECT_EQ(phone.i64("SELECT lww_config('conflict_log', 1)"), 1);
    EXPECT_EQ(server.i64("SELECT lww_config('conflict_log', 1)"), 1);
    phone.exec("UPDATE t SET a = 'my offline edit' WHERE id = 1");
    phone.exec("UPDATE t SET b = 'phone b' WHERE id = 2");
    sleep_ms(3);
    server.exec("UPDATE t SET a = 'edited on the server' WHERE id = 1");
    server.exec("DELETE FROM t WHERE id = 2");
    std::string st = phone.sync(server);
    EXPECT_EQ(json_int(st, "received.overwrote"), 2) << st;  // column a of row 1, and row 2 deleted
    EXPECT_EQ(json_int(st, "sent.lost"), 2) << st;           // what the server makes of the phone's edits
    const V want_phone{
        "text:'t' | text:'[1]' | text:'a' | text:'overwrote' | text:'my offline edit' | text:'edited on the server'",
        "text:'t' | text:'[2]' | NULL | text:'overwrote' | text:'present' | text:'deleted'"};
    EXPECT_EQ(rows(phone, "SELECT tbl, key, col, kind, ours, theirs FROM lww_conflicts ORDER BY key"), want_phone);
    EXPECT_EQ(phone.i64("SELECT count(*) FROM lww_conflicts WHERE our_node = lww_node_id() AND their_node = ?",
                        {server.node_id()}),
              2);
    const V want_server{
        "text:'t' | text:'[1]' | text:'a' | text:'lost' | text:'edited on the server' | text:'my offline edit'",
        "text:'t' | text:'[2]' | NULL | text:'lost' | text:'deleted' | text:'present'"};
    EXPECT_EQ(rows(server, "SELECT tbl, key, col, kind, ours, theirs FROM lww_conflicts ORDER BY key"), want_server);
    // Bounded: past conflict_log_rows the oldest go.
    phone.exec("SELECT lww_config('conflict_log_rows', 1)");
    server.exec("UPDATE t SET c = 'server c' WHERE id = 1");
    sleep_ms(3);
    phone.exec("UPDATE t SET c = 'phone c' WHERE id = 1");
    server.exec("UPDATE t SET c = 'server c2' WHERE id = 1");  // later still: wins at the phone
    phone.sync(server);
    EXPECT_EQ(phone.i64("SELECT count(*) FROM lww_conflicts"), 1);
    EXPECT_EQ(phone.text("SELECT ours || ' -> ' || theirs FROM lww_conflicts"), "phone c -> server c2");
    // Off: nothing more is recorded; what is there stays for the app.
    phone.exec("SELECT lww_config('conflict_log', 0)");
    phone.exec("UPDATE t SET c = 'phone c2' WHERE id = 1");
    sleep_ms(3);
    server.exec("UPDATE t SET c = 'server c3' WHERE id = 1");
    phone.sync(server);
    EXPECT_EQ(phone.i64("SELECT count(*) FROM lww_conflicts"), 1);
    EXPECT_EQ(phone.table("t"), server.table("t"));
}

TEST_F(Sync, DeleteBeatsConcurrentUpdate) {
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO t VALUES (1, 'x', 'y', 'z'), (2, 'keep', NULL, NULL)");
    b.sync(a);
    a.exec("DELETE FROM t WHERE id = 1");
    sleep_ms(5);
    b.exec("UPDATE t SET a = 'later update', b = 'more' WHERE id = 1");  // later stamp, older generation
    b.sync(a);
    const V want{"int:2 | text:'keep' | NULL | NULL"};
    EXPECT_EQ(a.table("t"), want);
    EXPECT_EQ(b.table("t"), want);
    // The other order of arrival gives the same.
    Db& c = peer("c");
    c.apply(b.changes(0));
    EXPECT_EQ(c.table("t"), want);
}

TEST_F(Sync, ReinsertAfterDeleteBeatsBoth) {
    Db& a = peer("a");
    Db& b = peer("b");
    Db& c = peer("c");
    a.exec("INSERT INTO t VALUES (1, 'orig', 'orig', 'orig')");
    b.sync(a);
    c.sync(a);
    c.exec("DELETE FROM t WHERE id = 1");                     // gen 2
    a.sync(c);                                                // A sees the delete...
    a.exec("INSERT INTO t VALUES (1, 'reborn', NULL, 'r')");  // ...and re-inserts: gen 3
    sleep_ms(5);
    b.exec("UPDATE t SET b = 'concurrent', c = 'cc' WHERE id = 1");  // gen 1, latest stamp of all
    b.sync(c);                                                       // B learns the delete first
    EXPECT_TRUE(b.table("t").empty());
    b.sync(a);
    c.sync(a);
    c.sync(b);
    const V want{"int:1 | text:'reborn' | NULL | text:'r'"};
    EXPECT_EQ(a.table("t"), want);
    EXPECT_EQ(b.table("t"), want);
    EXPECT_EQ(c.table("t"), want);
}

TEST_F(Sync, EqualGenerationLaterStampWins) {
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO t VALUES (1, 'a0', 'b0', NULL)");
    b.sync(a);
    a.exec("UPDATE t SET a = 'A first' WHERE id = 1");
    b.exec("UPDATE t SET b = 'B first' WHERE id = 1");
    sleep_ms(5);
    b.exec("UPDATE t SET a = 'B later' WHERE id = 1");
    a.exec("UPDATE t SET b = 'A later' WHERE id = 1");
    a.sync(b);
    const V want{"int:1 | text:'B later' | text:'A later' | NULL"};
    EXPECT_EQ(a.table("t"), want);
    EXPECT_EQ(b.table("t"), want);
}

TEST_F(Sync, EqualStampsAreBrokenByNodeId) {
    // Same generation, same hlc, different nodes: the greater node id wins,
    // whatever the order of arrival.
    const uint64_t h = hlc_at(now_ms() - 1000);
    const std::string one = craft_cs(
        kNode1, {kNode1}, {craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[1]", 1, h, 0, true, "[[0,\"n1\"]]"}})});
    const std::string two = craft_cs(
        kNode2, {kNode2}, {craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[1]", 1, h, 0, true, "[[0,\"n2\"]]"}})});
    Db& x = peer("x");
    Db& y = peer("y");
    x.apply(one);
    x.apply(two);
    y.apply(two);
    EXPECT_EQ(json_int(y.apply(one), "applied"), 0);
    const V want{"int:1 | text:'n2' | NULL | NULL"};
    EXPECT_EQ(x.table("t"), want);
    EXPECT_EQ(y.table("t"), want);
}

TEST_F(Sync, RelayReachesPeerWhoseCursorIsPastTheStamps) {
    Db& a = peer("a");
    Db& b = peer("b");
    Db& c = peer("c");
    a.exec("INSERT INTO t VALUES (1, 'from a', NULL, NULL), (2, 'from a', NULL, NULL)");  // old stamps
    sleep_ms(5);
    b.exec("INSERT INTO t VALUES (100, 'from b', NULL, NULL)");
    c.sync(b);  // C's cursor on B now covers everything B had
    EXPECT_EQ(c.table("t"), (V{"int:100 | text:'from b' | NULL | NULL"}));
    a.sync(b);  // B merges A's older-stamped rows
    c.sync(b);
    const V want{"int:1 | text:'from a' | NULL | NULL", "int:2 | text:'from a' | NULL | NULL",
                 "int:100 | text:'from b' | NULL | NULL"};
    EXPECT_EQ(c.table("t"), want);
    EXPECT_EQ(b.table("t"), want);
    EXPECT_EQ(a.table("t"), want);

    // A later edit on A travels the same path.
    a.exec("UPDATE t SET b = 'edit' WHERE id = 2");
    a.sync(b);
    c.sync(b);
    EXPECT_EQ(c.table("t"), a.table("t"));

    // Going to A directly now brings nothing C lacks.
    std::string st = c.sync(a);
    EXPECT_EQ(json_int(st, "received.applied"), 0) << st;
    EXPECT_EQ(json_int(st, "sent.applied"), 0) << st;
    EXPECT_EQ(c.table("t"), a.table("t"));
}

// No echo (docs/PROTOCOL.md): registers a database merged from a peer go no
// further back to that peer — neither a client's pulled rows in its next
// push, nor a relay's pushed rows in the server's next answer.
TEST_F(Sync, PulledRowsAreNotPushedBack) {
    Db& a = peer("a");
    Db& b = peer("b");
    Db& c = peer("c");
    a.exec("INSERT INTO t VALUES (1, 'a1', 'b1', 'c1'), (2, 'a2', NULL, NULL), (3, 'a3', NULL, NULL)");
    a.exec("DELETE FROM t WHERE id = 3");
    a.sync(b);
    std::string st = c.sync(b);  // A -> B -> C
    EXPECT_EQ(json_int(st, "pulled"), 3) << st;
    // C -> B: nothing of A's goes back to B, now or later.
    st = c.sync(b);
    EXPECT_EQ(json_int(st, "pushed"), 0) << st;
    EXPECT_EQ(json_int(st, "sent.received"), 0) << st;
    // C's own edit of a pulled row goes, alone.
    c.exec("UPDATE t SET b = 'from c' WHERE id = 2");
    st = c.sync(b);
    EXPECT_EQ(json_int(st, "pushed"), 1) << st;
    EXPECT_EQ(json_int(st, "sent.received"), 1) << st;
    EXPECT_EQ(json_int(st, "sent.applied"), 1) << st;
    // ...and A gets it through B, without B's rows of A's coming back to A.
    st = a.sync(b);
    EXPECT_EQ(json_int(st, "received.received"), 1) << st;
    EXPECT_EQ(a.table("t"), c.table("t"));
    EXPECT_EQ(b.table("t"), c.table("t"));
    st = a.sync(b);
    EXPECT_EQ(json_int(st, "pushed"), 0) << st;
    EXPECT_EQ(json_int(st, "received.received"), 0) << st;
    // The rows merged from B stay B's to skip only: a new peer D gets them all from C.
    Db& d = peer("d");
    st = d.sync(c);
    EXPECT_EQ(json_int(st, "pulled"), 3) << st;
    EXPECT_EQ(d.table("t"), a.table("t"));
}

TEST_F(Sync, RelayedPushIsNotSentBackToTheRelay) {
    Db& a = peer("a");
    Db& b = peer("b");
    Db& c = peer("c");
    a.exec("INSERT INTO t VALUES (1, 'a1', NULL, NULL), (2, 'a2', NULL, NULL)");
    c.sync(a);  // C holds A's rows
    c.exec("INSERT INTO t VALUES (10, 'c10', NULL, NULL)");
    // C relays A's rows to B with its own; B's answers carry none of them back.
    std::string st = c.sync(b);
    EXPECT_EQ(json_int(st, "pushed"), 3) << st;
    EXPECT_EQ(json_int(st, "sent.applied"), 12) << st;  // the row and its three columns, per row
    EXPECT_EQ(json_int(st, "received.received"), 0) << st;
    EXPECT_EQ(b.table("t"), c.table("t"));
    st = c.sync(b);
    EXPECT_EQ(json_int(st, "pushed"), 0) << st;
    EXPECT_EQ(json_int(st, "received.received"), 0) << st;
    // Another peer of B gets everything from it.
    Db& d = peer("d");
    st = d.sync(b);
    EXPECT_EQ(json_int(st, "pulled"), 3) << st;
    EXPECT_EQ(d.table("t"), c.table("t"));
}

TEST_F(Sync, CursorsOnBothSides) {
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL), (2, 'a', NULL, NULL)");
    b.exec("INSERT INTO t VALUES (3, 'b', NULL, NULL)");
    const int64_t a_before = a.seq();
    std::string st = a.sync(b);
    EXPECT_EQ(json_int(st, "sent.rows"), 2) << st;
    EXPECT_EQ(json_int(st, "received.rows"), 1) << st;
    EXPECT_EQ(a.text("SELECT json_extract(?, '$.peer')", {st}), b.node_id());

    // A's cursor on B covers all of B; B's cursor on A covers at least what
    // A had before (and at most all of A, whose merged rows are B's own).
    EXPECT_EQ(a.i64("SELECT received FROM lww_peers WHERE node = ?", {b.node_id()}), b.seq());
    const int64_t b_on_a = b.i64("SELECT received FROM lww_peers WHERE node = ?", {a.node_id()});
    EXPECT_GE(b_on_a, a_before);
    EXPECT_LE(b_on_a, a.seq());
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww_peers"), 1);
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_peers"), 1);
    EXPECT_EQ(a.one("SELECT typeof(synced_at) FROM lww_peers").s, "text");

    // Syncing again moves nothing and changes no row.
    const V rows = a.table("t");
    st = b.sync(a);
    EXPECT_EQ(json_int(st, "sent.rows"), 0) << st;
    EXPECT_EQ(json_int(st, "received.rows"), 0) << st;
    EXPECT_EQ(a.table("t"), rows);
    EXPECT_EQ(b.table("t"), rows);

    // New writes on either side travel (see ResyncMovesOnlyWhatThePeerLacks
    // for how much travels).
    a.exec("UPDATE t SET b = 'new' WHERE id = 1");
    b.exec("DELETE FROM t WHERE id = 3");
    st = b.sync(a);
    EXPECT_EQ(a.table("t"), b.table("t"));
    EXPECT_EQ(a.table("t"), (V{"int:1 | text:'a' | text:'new' | NULL", "int:2 | text:'a' | NULL | NULL"}));
}

TEST_F(Sync, ResyncMovesOnlyWhatThePeerLacks) {
    // The cursors say what each side holds: a later sync carries only the
    // registers written since, in both directions.
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO t VALUES (1, 'a', 'b', 'c'), (2, 'a', 'b', 'c')");
    b.exec("INSERT INTO t VALUES (3, 'a', 'b', 'c')");
    b.sync(a);
    a.exec("UPDATE t SET b = 'new' WHERE id = 1");
    b.exec("UPDATE t SET c = 'new' WHERE id = 3");
    std::string st = b.sync(a);
    EXPECT_EQ(a.table("t"), b.table("t"));
    EXPECT_EQ(json_int(st, "received.rows"), 1) << st;
    EXPECT_EQ(json_int(st, "received.received"), 1) << st;
    EXPECT_EQ(json_int(st, "received.ignored"), 0) << st;
    EXPECT_EQ(json_int(st, "sent.rows"), 1) << st;
    EXPECT_EQ(json_int(st, "sent.received"), 1) << st;
    EXPECT_EQ(json_int(st, "sent.ignored"), 0) << st;
}

TEST_F(Sync, SmallBatchesGiveTheSameResult) {
    auto writes_a = [](Db& d) {
        for (int i = 1; i <= 30; ++i)
            d.exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'a" + std::to_string(i) + "', " +
                   std::to_string(i * 10) + ", NULL)");
        d.exec("UPDATE t SET c = 'upd' WHERE id % 3 = 0");
        d.exec("DELETE FROM t WHERE id % 7 = 0");
        d.exec("UPDATE t SET id = id + 1000 WHERE id = 5");
    };
    auto writes_b = [](Db& d) {
        for (int i = 100; i < 112; ++i) d.exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'b', NULL, NULL)");
        d.exec("DELETE FROM t WHERE id = 101");
    };
    Db& a = peer("a");
    Db& b1 = peer("b1");
    Db& b2 = peer("b2");
    writes_a(a);
    writes_b(b1);
    writes_b(b2);
    std::string s1 = b1.sync(a);
    std::string s2 = b2.sync(a, "{\"batch_rows\":1}");
    EXPECT_EQ(b1.table("t"), a.table("t"));
    EXPECT_EQ(b2.table("t"), a.table("t"));
    EXPECT_EQ(a.table("t").size(), 30u - 4u + 11u);
    EXPECT_GT(json_int(s2, "batches"), json_int(s1, "batches")) << s1 << "\n" << s2;

    // A third peer pulling in batches of 3 from b2 ends the same.
    Db& b3 = peer("b3");
    b3.sync(b2, "{\"batch_rows\":3}");
    EXPECT_EQ(b3.table("t"), a.table("t"));
}

TEST_F(Sync, BatchedSyncCarriesOlderRegistersOfRowsUpdatedLater) {
    // Minimal form of the above: a row inserted early and updated late must
    // arrive whole, however the batches fall.
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO t VALUES (1, 'x', 'y', NULL)");
    a.exec("INSERT INTO t VALUES (2, 'p', 'q', NULL)");
    a.exec("INSERT INTO t VALUES (3, 'r', 's', NULL)");
    a.exec("UPDATE t SET b = 'Y' WHERE id = 1");
    b.sync(a, "{\"batch_rows\":1}");
    EXPECT_EQ(b.table("t"), a.table("t"));
    EXPECT_EQ(b.rows("SELECT * FROM t WHERE id = 1")[0], (Row{Val(1), Val("x"), Val("Y"), Val()}));
}

TEST_F(Sync, BatchRowsBoundsEveryBatch) {
    Db& a = peer("a");
    for (int i = 1; i <= 10; ++i) a.exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'v', NULL, NULL)");
    Db& b = peer("b");
    // One round trip moves at most one batch each way, so a round trip per
    // batch_rows rows at least.
    std::string st = b.sync(a, "{\"batch_rows\":1}");
    EXPECT_EQ(b.table("t"), a.table("t"));
    EXPECT_EQ(json_int(st, "received.rows"), 10) << st;
    EXPECT_GE(json_int(st, "batches"), 10) << "a batch carried more than batch_rows rows: " << st;
    Db& c = peer("c");
    st = c.sync(a, "{\"batch_rows\":3}");
    EXPECT_EQ(c.table("t"), a.table("t"));
    EXPECT_GE(json_int(st, "batches"), 4) << "a batch carried more than batch_rows rows: " << st;
    // Sending is bounded the same way.
    Db& d = peer("d");
    st = a.sync(d, "{\"batch_rows\":2}");
    EXPECT_EQ(d.table("t"), a.table("t"));
    EXPECT_EQ(json_int(st, "sent.rows"), 10) << st;
    EXPECT_GE(json_int(st, "batches"), 5) << "a batch carried more than batch_rows rows: " << st;
}

TEST_F(Sync, ForeignKeysAndCascadesSync) {
    // Receivers enforce foreign keys: a parent and its child arriving in one
    // set must both land, and a cascaded delete must reach peers.
    const std::string schema =
        "PRAGMA foreign_keys = ON;"
        "CREATE TABLE parent(id INTEGER PRIMARY KEY, name);"
        "CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id REFERENCES parent(id) ON DELETE CASCADE, v);";
    Db& a = peer("a", schema, {"parent", "child"});
    Db& b = peer("b", schema, {"parent", "child"});
    a.exec("INSERT INTO parent VALUES (1, 'p1'), (2, 'p2'); INSERT INTO child VALUES (10, 1, 'c'), (20, 2, 'd');");
    Outcome o = b.run("SELECT lww_sync(?)", {a.url()});
    EXPECT_TRUE(o.ok) << o.err;
    EXPECT_EQ(b.table("child"), a.table("child"));
    a.exec("DELETE FROM parent WHERE id = 1");  // cascades to child 10
    ASSERT_EQ(a.table("child"), (V{"int:20 | int:2 | text:'d'"}));
    o = b.run("SELECT lww_sync(?)", {a.url()});
    EXPECT_TRUE(o.ok) << o.err;
    EXPECT_EQ(b.table("parent"), a.table("parent"));
    EXPECT_EQ(b.table("child"), a.table("child"));
}

TEST_F(Sync, RefusedRowIsParkedAndSyncContinues) {
    // The receiver has a UNIQUE constraint the sender lacks: the row with the
    // duplicate is parked in lww_rejected, every other batch lands and the
    // cursor moves past it; once the sender fixes the row, the next sync
    // lands it and lww_rejected is empty again.
    Db& a = peer("a", "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT);", {"u"});
    Db& b = peer("b", "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE);", {"u"});
    for (int i = 1; i <= 10; ++i)
        a.exec("INSERT INTO u VALUES (" + std::to_string(i) + ", '" +
               (i == 8 ? std::string("e3") : "e" + std::to_string(i)) + "')");
    std::string st = b.sync(a, "{\"batch_rows\":1}");
    EXPECT_EQ(json_int(st, "received.rejected"), 2) << st;
    EXPECT_EQ(b.table("u").size(), 9u);
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected WHERE tbl = 'u' AND key = '[8]' AND reason LIKE '%UNIQUE%'"), 1);
    const int64_t cursor = b.i64("SELECT received FROM lww_peers WHERE node = ?", {a.node_id()});
    EXPECT_EQ(cursor, a.seq());
    // Nothing new: a sync moves nothing and the row stays parked.
    st = b.sync(a, "{\"batch_rows\":1}");
    EXPECT_EQ(json_int(st, "received.rejected"), 0) << st;
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected"), 1);

    a.exec("UPDATE u SET email = 'e8' WHERE id = 8");
    st = b.sync(a, "{\"batch_rows\":1}");
    EXPECT_EQ(b.table("u"), a.table("u"));
    EXPECT_EQ(b.table("u").size(), 10u);
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected"), 0);
    // b merged row 8 whole (its insert and a's fix): a peer of b gets it all.
    Db& c = peer("c", "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE);", {"u"});
    c.sync(b);
    EXPECT_EQ(c.table("u"), a.table("u"));
}

TEST_F(Sync, CompositePrimaryKeyTextInteger) {
    const std::string schema = "CREATE TABLE p(label, k1 TEXT, weight REAL, k2 INTEGER, note, PRIMARY KEY(k1, k2));";
    Db& a = peer("a", schema, {"p"});
    Db& b = peer("b", schema, {"p"});
    a.exec("INSERT INTO p VALUES ('one', 'x', 1.5, 1, NULL), ('two', 'x', 2.5, 2, 'n'), ('three', 'y', 3.5, 1, NULL)");
    b.exec("INSERT INTO p VALUES ('b-one', 'x', 9.5, 3, NULL), ('dup', 'y', 0, 1, 'from b')");
    ParsedCS cs = parse_cs(a.changes(0));
    ASSERT_FALSE(cs.rows.empty());
    rapidjson::Document d = parse_json(a.changes(0));
    EXPECT_EQ(std::string(d["tables"][0]["key"][0].GetString()), "k1");
    EXPECT_EQ(std::string(d["tables"][0]["key"][1].GetString()), "k2");
    EXPECT_TRUE(cs.row("text:'x' / int:2") != nullptr);
    a.sync(b);
    EXPECT_EQ(a.table("p"), b.table("p"));
    EXPECT_EQ(a.table("p").size(), 4u);

    a.exec("UPDATE p SET k2 = 20 WHERE k1 = 'x' AND k2 = 2");
    b.exec("UPDATE p SET note = 'b note' WHERE k1 = 'x' AND k2 = 1");
    a.exec("DELETE FROM p WHERE k1 = 'x' AND k2 = 3");
    b.exec("INSERT INTO p VALUES ('new', 'z', NULL, 7, NULL)");
    a.sync(b, "{\"batch_rows\":2}");
    EXPECT_EQ(a.table("p"), b.table("p"));
    EXPECT_EQ(b.i64("SELECT count(*) FROM p WHERE k1 = 'x' AND k2 = 20"), 1);
    EXPECT_EQ(b.i64("SELECT count(*) FROM p WHERE k1 = 'x' AND k2 = 3"), 0);
}

TEST_F(Sync, WithoutRowidTables) {
    const std::string schema =
        "CREATE TABLE w(k1 TEXT, k2 INTEGER, v, PRIMARY KEY(k2, k1)) WITHOUT ROWID;"
        "CREATE TABLE w1(name TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;";
    Db& a = peer("a", schema, {"w", "w1"});
    Db& b = peer("b", schema, {"w", "w1"});
    a.exec("INSERT INTO w VALUES ('a', 1, 'x'), ('b', 1, 'y'), ('a', 2, 'z')");
    a.exec("INSERT INTO w1 VALUES ('n1', x'0001'), ('n2', NULL)");
    b.exec("INSERT INTO w VALUES ('c', 5, 'from b')");
    a.sync(b);
    a.exec("UPDATE w SET v = 'x2' WHERE k1 = 'a' AND k2 = 1");
    a.exec("DELETE FROM w1 WHERE name = 'n2'");
    b.exec("UPDATE w SET k1 = 'cc' WHERE k2 = 5");
    b.sync(a);
    EXPECT_EQ(a.table("w"), b.table("w"));
    EXPECT_EQ(a.table("w1"), b.table("w1"));
    EXPECT_EQ(b.table("w"), (V{"text:'a' | int:1 | text:'x2'", "text:'a' | int:2 | text:'z'",
                               "text:'b' | int:1 | text:'y'", "text:'cc' | int:5 | text:'from b'"}));
    EXPECT_EQ(b.table("w1"), (V{"text:'n1' | blob:x'0001'"}));
}

std::vector<Val> every_storage_class() {
    std::vector<Val> v;
    for (long long i : {std::numeric_limits<long long>::min(), std::numeric_limits<long long>::max(), 0LL, -1LL,
                        9007199254740992LL, 9007199254740993LL, -9007199254740993LL, 4294967296LL})
        v.push_back(Val(i));
    for (double d : {0.0, -0.0, 1.0, 1.5, -2.25, 0.1, 1.0 / 3.0, 123456789.123456789, DBL_MAX, -DBL_MAX, DBL_MIN,
                     DBL_TRUE_MIN, 9.2233720368547758e18, 1e-300, HUGE_VAL, -HUGE_VAL})
        v.push_back(Val(d));
    std::mt19937_64 rng(42);
    for (int i = 0; i < 20; ++i) {  // random bit patterns (NaNs skipped: SQLite stores NULL for NaN)
        uint64_t bits = rng();
        double d;
        std::memcpy(&d, &bits, sizeof d);
        if (!std::isnan(d)) v.push_back(Val(d));
    }
    v.push_back(Val::text(""));
    v.push_back(Val::text("h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"));
    v.push_back(Val::text(std::string("a\0b", 3)));
    v.push_back(Val::text("\t\n\r\x01\x1f\x7f quotes ' \" \\ </script>"));
    v.push_back(Val::text(std::string(100000, 'L')));
    v.push_back(Val::blob(""));
    v.push_back(Val::blob(std::string("\0", 1)));
    v.push_back(Val::blob(std::string("\0\xff\0abc\x80", 7)));
    std::string rnd;
    for (int i = 0; i < 1000; ++i) rnd.push_back(static_cast<char>(rng() & 0xff));
    v.push_back(Val::blob(rnd));
    v.push_back(Val());
    return v;
}

TEST_F(Sync, EveryStorageClassRoundTripsExactly) {
    const std::string schema = "CREATE TABLE vals(id INTEGER PRIMARY KEY, v, t TEXT, r REAL, i INTEGER, bl BLOB);";
    Db& a = peer("a", schema, {"vals"});
    const auto vals = every_storage_class();
    for (size_t i = 0; i < vals.size(); ++i)
        a.run("INSERT INTO vals(id, v, bl) VALUES (?, ?, ?)", {Val(static_cast<long long>(i)), vals[i], vals[i]});
    a.run("INSERT INTO vals(id, v) VALUES (?, ?)", {Val(1000LL), Val(std::nan(""))});
    a.exec(
        "INSERT INTO vals(id, t, r, i) VALUES (2000, 12, '1.25', '77'), (2001, 1.5, 3, 'x'), (2002, x'41', 2.0, 2.0)");

    // What SQLite itself keeps (sanity for the expectations below).
    for (size_t i = 0; i < vals.size(); ++i) {
        Val stored = a.one("SELECT v FROM vals WHERE id = ?", {Val(static_cast<long long>(i))});
        ASSERT_EQ(stored, vals[i]) << "SQLite did not keep value " << i;
    }
    ASSERT_EQ(a.one("SELECT v FROM vals WHERE id = 1000"), Val());  // NaN becomes NULL in SQLite

    // Through lww_sync...
    Db& b = peer("b", schema, {"vals"});
    b.sync(a, "{\"batch_rows\":7}");
    EXPECT_EQ(b.table("vals"), a.table("vals"));
    // ...and through lww_changes / lww_apply.
    Db& c = peer("c", schema, {"vals"});
    c.apply(a.changes(0));
    EXPECT_EQ(c.table("vals"), a.table("vals"));

    // The change set itself carries each value exactly.
    ParsedCS cs = parse_cs(a.changes(0));
    for (size_t i = 0; i < vals.size(); ++i) {
        const ParsedRow* r = cs.row(Val(static_cast<long long>(i)).repr());
        ASSERT_NE(r, nullptr);
        EXPECT_EQ(r->cols.at("v"), vals[i]) << "value " << i;
    }

    // Updates to every class travel too (each value moves three rows on; no
    // value lands next to one SQL calls equal, see Triggers.ChangeOfStorageClassOrCaseIsAChange).
    for (size_t i = 0; i < vals.size(); ++i)
        a.run("UPDATE vals SET v = ? WHERE id = ?", {vals[(i + 3) % vals.size()], Val(static_cast<long long>(i))});
    b.sync(a);
    EXPECT_EQ(b.table("vals"), a.table("vals"));
}

TEST_F(Sync, KeysOfEveryStorageClass) {
    const std::string schema = "CREATE TABLE k(key PRIMARY KEY, v);";  // untyped key: any class
    Db& a = peer("a", schema, {"k"});
    Db& b = peer("b", schema, {"k"});
    std::vector<Val> keys{Val(std::numeric_limits<long long>::min()),
                          Val(std::numeric_limits<long long>::max()),
                          Val(0LL),
                          Val(1.5),
                          Val(-HUGE_VAL),
                          Val::text(""),
                          Val::text("1"),
                          Val::text("\xe6\x97\xa5\xe6\x9c\xac"),
                          Val::blob(""),
                          Val::blob(std::string("\0\x01", 2)),
                          Val::blob("1")};
    for (size_t i = 0; i < keys.size(); ++i)
        a.run("INSERT INTO k VALUES (?, ?)", {keys[i], Val(static_cast<long long>(i))});
    b.sync(a);
    EXPECT_EQ(b.table("k"), a.table("k"));
    EXPECT_EQ(b.table("k").size(), keys.size());
    for (size_t i = 0; i < keys.size(); i += 2) a.run("UPDATE k SET v = 'upd' WHERE key = ?", {keys[i]});
    a.run("DELETE FROM k WHERE key = ?", {keys[1]});
    a.run("DELETE FROM k WHERE key = ?", {keys[8]});
    b.sync(a);
    EXPECT_EQ(b.table("k"), a.table("k"));
    EXPECT_EQ(b.table("k").size(), keys.size() - 2);
}

TEST_F(Sync, ThreePeersInAnyTopologyConverge) {
    Db& a = peer("a");
    Db& b = peer("b");
    Db& c = peer("c");
    for (int round = 0; round < 3; ++round) {
        const std::string r = std::to_string(round);
        a.exec("INSERT OR REPLACE INTO t VALUES (1, 'a" + r + "', NULL, " + r + ")");
        b.exec("INSERT OR REPLACE INTO t VALUES (" + std::to_string(10 + round) + ", 'b', 'b" + r + "', NULL)");
        c.exec("DELETE FROM t WHERE id = " + std::to_string(10 + round - 1));
        c.exec("INSERT OR IGNORE INTO t VALUES (1, 'c', 'c" + r + "', NULL)");
        sleep_ms(2);
        b.exec("UPDATE t SET b = 'b touches 1 in round " + r + "' WHERE id = 1");
        if (round == 0) {  // star around b
            a.sync(b);
            c.sync(b);
            a.sync(b);
        } else if (round == 1) {  // chain a - b - c
            a.sync(b);
            b.sync(c);
            b.sync(a);
        } else {  // mesh
            c.sync(a);
            b.sync(a);
            c.sync(b);
            a.sync(c);
        }
        EXPECT_EQ(a.table("t"), b.table("t")) << "round " << round;
        EXPECT_EQ(b.table("t"), c.table("t")) << "round " << round;
    }
}

TEST_F(Sync, WriteAfterMergeBeatsMergedStampEvenAfterReopen) {
    // A stamp two minutes ahead (within the default drift) is merged; a later
    // local write must still beat it, also after the database is reopened.
    const uint64_t ahead = hlc_at(now_ms() + 120000, 7);
    const std::string cs =
        craft_cs(kNode1, {kNode1},
                 {craft_table("\"t\"", "[\"id\"]", "[\"a\",\"b\",\"c\"]",
                              {{"[1]", 1, ahead, 0, true, "[[0,\"remote a\"],[1,\"remote b\"],[2,\"remote c\"]]"}})});
    Db& b = peer("b");
    b.apply(cs);
    {
        Db& a = peer("a");
        a.apply(cs);
        a.exec("UPDATE t SET a = 'local a' WHERE id = 1");
        ParsedCS mine = parse_cs(a.changes(a.seq() - 1));
        ASSERT_EQ(mine.regs.size(), 1u);
        EXPECT_GT(mine.regs[0].hlc, ahead);
    }
    auto a2 = cl.connect("a");
    a2->exec("UPDATE t SET b = 'local b' WHERE id = 1");
    ParsedCS mine = parse_cs(a2->changes(a2->seq() - 1));
    ASSERT_EQ(mine.regs.size(), 1u);
    EXPECT_GT(mine.regs[0].hlc, ahead);
    b.sync(*a2);
    const V want{"int:1 | text:'local a' | text:'local b' | text:'remote c'"};
    EXPECT_EQ(b.table("t"), want);
    EXPECT_EQ(a2->table("t"), want);
}

TEST_F(Sync, ChangesOfOnePeerApplyToAnother) {
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO t VALUES (1, 'x', NULL, NULL), (2, 'y', NULL, NULL)");
    std::string st = b.apply(a.changes(0));
    EXPECT_EQ(json_int(st, "rows"), 2);
    EXPECT_EQ(json_int(st, "received"), 8);  // 2 row registers + 6 columns
    EXPECT_EQ(json_int(st, "applied"), 8);
    EXPECT_EQ(json_int(st, "ignored"), 0);
    EXPECT_EQ(b.table("t"), a.table("t"));
    // Registers merged in are passed on by B, stamped with A's node.
    ParsedCS relay = parse_cs(b.changes(0));
    EXPECT_EQ(relay.origin, b.node_id());
    ASSERT_EQ(relay.regs.size(), 8u);
    for (const auto& r : relay.regs) EXPECT_EQ(r.node, a.node_id());
}

}  // namespace
