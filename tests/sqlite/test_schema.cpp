// Schema evolution in SQLite (docs/SCHEMA.md): ADD, DROP, RENAME COLUMN,
// DROP TABLE and new tables while peers hold unsynced edits; registers for
// tables and columns a peer does not have are held in lww_pending and land
// when it adds them; backfilled defaults converge; lww_alter.
#include "harness.h"

using namespace lwwt;

namespace {

using V = std::vector<std::string>;

const char* kDoc = "CREATE TABLE doc(id INTEGER PRIMARY KEY, title TEXT, body TEXT);";

class Schema : public ::testing::Test {
protected:
    Db& peer(const std::string& name, const std::string& schema = kDoc, const V& track = {"doc"}) {
        return cl.add(name, schema, track);
    }
    static void same(Db& a, Db& b, const std::string& table) {
        EXPECT_EQ(a.table(table), b.table(table)) << dump_diff(a.table(table), b.table(table));
    }
    Cluster cl;
};

TEST_F(Schema, ClientFirstAddColumnIsHeldThenLands) {
    Db& server = peer("server");
    Db& client = peer("client");
    server.exec("INSERT INTO doc VALUES (1, 'one', 'b1'), (2, 'two', 'b2')");
    client.sync(server);
    // The client ships a new version first and writes the new column.
    EXPECT_EQ(client.text("SELECT lww_alter('ALTER TABLE doc ADD COLUMN tag TEXT')"),
              "{\"altered\":[\"doc\"],\"added\":1,\"dropped\":0,\"renamed\":0,\"untracked\":0,\"landed\":0}");
    client.exec("UPDATE doc SET tag = 'urgent', title = 'ONE' WHERE id = 1");
    client.exec("INSERT INTO doc VALUES (3, 'three', 'b3', 'new')");
    std::string st = client.sync(server);
    // The server takes everything it has columns for and holds the rest.
    // Three rows' "tag": the update, the insert, and row 2's backfill.
    EXPECT_EQ(json_int(st, "sent.pending"), 3) << st;
    EXPECT_EQ(server.table("doc"), (V{"int:1 | text:'ONE' | text:'b1'", "int:2 | text:'two' | text:'b2'",
                                      "int:3 | text:'three' | text:'b3'"}));
    EXPECT_EQ(server.i64("SELECT count(*) FROM lww_pending WHERE tbl = 'doc' AND columns = '[\"tag\"]'"), 3);
    // The server keeps syncing with everyone meanwhile.
    server.exec("UPDATE doc SET body = 'server edit' WHERE id = 2");
    client.sync(server);
    EXPECT_EQ(client.one("SELECT body FROM doc WHERE id = 2"), Val("server edit"));
    // The server adds the column (a plain ALTER: noticed at the next lwwsync call).
    server.exec("ALTER TABLE doc ADD COLUMN tag TEXT");
    EXPECT_EQ(server.i64("SELECT lww_seq() > 0"), 1);
    EXPECT_EQ(server.i64("SELECT count(*) FROM lww_pending"), 0);
    EXPECT_EQ(server.table("doc"),
              (V{"int:1 | text:'ONE' | text:'b1' | text:'urgent'", "int:2 | text:'two' | text:'server edit' | NULL",
                 "int:3 | text:'three' | text:'b3' | text:'new'"}));
    client.sync(server);
    same(client, server, "doc");
}

TEST_F(Schema, ServerFirstAddColumnWithDefaultConvergesAndEditsBeatTheBackfill) {
    Db& server = peer("server");
    Db& client = peer("client");
    server.exec("INSERT INTO doc VALUES (1, 'one', NULL), (2, 'two', NULL)");
    client.sync(server);
    // Through lww_alter: the triggers know the column before the next write
    // (a plain ALTER is noticed at the next lwwsync call only; docs/SCHEMA.md).
    server.exec("SELECT lww_alter('ALTER TABLE doc ADD COLUMN prio INTEGER DEFAULT 42')");
    server.exec("UPDATE doc SET prio = 5 WHERE id = 2");
    // A client without the column keeps syncing; the registers wait in lww_pending.
    client.exec("UPDATE doc SET title = 'client edit' WHERE id = 1");
    std::string st = client.sync(server);
    EXPECT_EQ(json_int(st, "received.pending"), 2) << st;
    EXPECT_EQ(server.one("SELECT title FROM doc WHERE id = 1"), Val("client edit"));
    // Offline, before it syncs again, the client upgrades and edits the new column.
    client.exec("SELECT lww_alter('ALTER TABLE doc ADD COLUMN prio INTEGER DEFAULT 42')");
    client.exec("UPDATE doc SET prio = 7 WHERE id = 1");
    client.sync(server);
    const V want{"int:1 | text:'client edit' | NULL | int:7", "int:2 | text:'two' | NULL | int:5"};
    EXPECT_EQ(client.table("doc"), want);
    server.sync(client);
    EXPECT_EQ(server.table("doc"), want);
}

TEST_F(Schema, DifferentBackfillsConvergeByStampOrder) {
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO doc VALUES (1, 'one', NULL)");
    b.sync(a);
    a.exec("ALTER TABLE doc ADD COLUMN prio INTEGER DEFAULT 1");
    b.exec("ALTER TABLE doc ADD COLUMN prio INTEGER DEFAULT 2");
    a.sync(b);
    b.sync(a);
    same(a, b, "doc");
    const Val p = a.one("SELECT prio FROM doc");
    EXPECT_TRUE(p == Val(1) || p == Val(2)) << p;
}

TEST_F(Schema, DropColumnNeedsLwwAlterAndKeepsOtherRegistersInPlace) {
    Db& a = peer("a", "CREATE TABLE doc(id INTEGER PRIMARY KEY, title TEXT, body TEXT, note TEXT);");
    Db& b = peer("b", "CREATE TABLE doc(id INTEGER PRIMARY KEY, title TEXT, body TEXT, note TEXT);");
    a.exec("INSERT INTO doc VALUES (1, 't', 'b', 'n')");
    b.sync(a);
    a.exec("UPDATE doc SET note = 'a note' WHERE id = 1");  // a register after the one dropped
    Outcome raw = a.run("ALTER TABLE doc DROP COLUMN body");
    EXPECT_FALSE(raw.ok);
    EXPECT_NE(raw.err.find("no such column"), std::string::npos) << raw.err;
    EXPECT_EQ(a.text("SELECT lww_alter('ALTER TABLE doc DROP COLUMN body')"),
              "{\"altered\":[\"doc\"],\"added\":0,\"dropped\":1,\"renamed\":0,\"untracked\":0,\"landed\":0}");
    EXPECT_EQ(a.text("SELECT columns FROM lww_tables WHERE name = 'doc'"), "[\"title\",\"note\"]");
    // Writes go on; peers with the column keep their values and take the rest.
    a.exec("UPDATE doc SET title = 'after drop' WHERE id = 1");
    b.exec("UPDATE doc SET body = 'b edits body' WHERE id = 1");
    std::string st = b.sync(a);
    EXPECT_EQ(json_int(st, "sent.pending"), 1) << st;
    EXPECT_EQ(b.table("doc"), (V{"int:1 | text:'after drop' | text:'b edits body' | text:'a note'"}));
    EXPECT_EQ(a.table("doc"), (V{"int:1 | text:'after drop' | text:'a note'"}));
    b.exec("SELECT lww_alter('ALTER TABLE doc DROP COLUMN body')");
    b.exec("UPDATE doc SET note = 'b note' WHERE id = 1");
    b.sync(a);
    same(a, b, "doc");
    EXPECT_EQ(a.table("doc"), (V{"int:1 | text:'after drop' | text:'b note'"}));
}

TEST_F(Schema, RenameColumnKeepsItsRegisters) {
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO doc VALUES (1, 't', 'b')");
    b.sync(a);
    a.exec("ALTER TABLE doc RENAME COLUMN body TO text");  // SQLite rewrites the triggers itself
    a.exec("UPDATE doc SET text = 'renamed' WHERE id = 1");
    b.exec("SELECT lww_alter('ALTER TABLE doc RENAME COLUMN body TO text')");
    EXPECT_EQ(b.text("SELECT columns FROM lww_tables WHERE name = 'doc'"), "[\"title\",\"text\"]");
    b.exec("UPDATE doc SET title = 'b title' WHERE id = 1");
    b.sync(a);
    same(a, b, "doc");
    EXPECT_EQ(a.table("doc"), (V{"int:1 | text:'b title' | text:'renamed'"}));
    EXPECT_EQ(a.text("SELECT columns FROM lww_tables WHERE name = 'doc'"), "[\"title\",\"text\"]");
}

TEST_F(Schema, NewTableOnOnePeerIsHeldUntilTracked) {
    Db& server = peer("server");
    Db& client = peer("client");
    server.exec("CREATE TABLE tags(name TEXT PRIMARY KEY, color TEXT)");
    server.track("tags");
    server.exec("INSERT INTO tags VALUES ('red', '#f00'), ('blue', '#00f')");
    server.exec("INSERT INTO doc VALUES (1, 'still syncs', NULL)");
    std::string st = client.sync(server);
    EXPECT_EQ(json_int(st, "received.pending"), 4) << st;  // row and color of two rows
    EXPECT_EQ(client.table("doc"), (V{"int:1 | text:'still syncs' | NULL"}));
    client.exec("CREATE TABLE tags(name TEXT PRIMARY KEY, color TEXT)");
    client.track("tags");
    EXPECT_EQ(client.i64("SELECT count(*) FROM lww_pending"), 0);
    same(client, server, "tags");
    // A later change of a held row merges through the rule: the newest wins.
    server.exec("UPDATE tags SET color = '#e00' WHERE name = 'red'");
    client.sync(server);
    same(client, server, "tags");
}

TEST_F(Schema, DropTableUntracksIt) {
    Db& a = peer("a", std::string(kDoc) + "CREATE TABLE other(id INTEGER PRIMARY KEY, v);", {"doc", "other"});
    a.exec("INSERT INTO doc VALUES (1, 'x', NULL); INSERT INTO other VALUES (1, 2)");
    a.exec("DROP TABLE other");
    a.exec("INSERT INTO doc VALUES (2, 'y', NULL)");
    ParsedCS cs = parse_cs(a.changes(0));  // noticed here
    EXPECT_EQ(a.text("SELECT group_concat(name) FROM lww_tables"), "doc");
    for (const auto& r : cs.rows) EXPECT_EQ(r.table, "doc");
    EXPECT_EQ(cs.rows.size(), 2u);
    EXPECT_EQ(a.i64("SELECT count(*) FROM sqlite_master WHERE name = 'lww__other'"), 0);
}

TEST_F(Schema, LwwAlterRefusesWhatItCannotDo) {
    Db& a = peer("a");
    Outcome o = a.run("SELECT lww_alter('UPDATE doc SET title = 1')");
    EXPECT_FALSE(o.ok);
    EXPECT_EQ(
        o.err,
        "lww_alter: lww_alter runs schema changes only (ALTER, CREATE, DROP); run \"UPDATE doc SET title = 1\" on "
        "its own, where the triggers record it");
    o = a.run(
        "SELECT lww_alter('CREATE TABLE doc2(k TEXT PRIMARY KEY, title TEXT, body TEXT); DROP TABLE doc; "
        "ALTER TABLE doc2 RENAME TO doc')");
    EXPECT_FALSE(o.ok);
    EXPECT_EQ(o.err,
              "lww_alter: the primary key of tracked table \"doc\" changed; lwwsync names rows by their key: "
              "lww_untrack the table, change the key, lww_track it again (peers must make the same change)");
    // Nothing of it stayed: the table, its triggers and its tracking are as they were.
    a.exec("INSERT INTO doc VALUES (1, 'x', 'y')");
    EXPECT_EQ(parse_cs(a.changes(0)).rows.size(), 1u);
}

}  // namespace

namespace {

TEST_F(Schema, RetrackStampsOnlyWhatChangedWhileUntracked) {
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO doc VALUES (1, 't1', 'b1'), (2, 't2', 'b2'), (3, 't3', 'b3')");
    b.sync(a);
    EXPECT_EQ(a.i64("SELECT lww_untrack('doc')"), 1);
    a.exec("UPDATE doc SET title = 't1 untracked' WHERE id = 1");
    a.exec("UPDATE doc SET body = body WHERE id = 2");  // no change in value
    a.exec("DELETE FROM doc WHERE id = 3");
    a.exec("ALTER TABLE doc ADD COLUMN tag TEXT DEFAULT 'x'");
    sleep_ms(3);
    b.exec("UPDATE doc SET body = 'from b' WHERE id IN (1, 2)");  // later than a's edits
    b.exec("UPDATE doc SET title = 't2 from b' WHERE id = 2");
    b.exec("SELECT lww_alter('ALTER TABLE doc ADD COLUMN tag TEXT DEFAULT ''x''')");
    const int64_t seq = a.seq();
    EXPECT_EQ(a.track("doc"), 1);  // row 1's title; row 2 untouched
    ParsedCS cs = parse_cs(a.changes(seq));
    std::vector<std::string> regs;
    for (const auto& r : cs.regs)
        regs.push_back(r.key + (r.is_row ? " row" : " " + r.col) + (r.hlc == 1 ? " backfill" : ""));
    std::sort(regs.begin(), regs.end());
    EXPECT_EQ(regs, (V{"int:1 tag backfill", "int:1 title", "int:2 tag backfill", "int:3 row"}));
    b.sync(a);
    same(a, b, "doc");
    // a's untracked edit is stamped when lww_track notices it; b's writes to
    // every column a did not change survive (a full re-stamp overwrote them).
    EXPECT_EQ(a.table("doc"), (V{"int:1 | text:'t1 untracked' | text:'from b' | text:'x'",
                                 "int:2 | text:'t2 from b' | text:'from b' | text:'x'"}));
}

}  // namespace

namespace {

TEST_F(Schema, PendingStoreIsBoundedPerNode) {
    Db& r = peer("r");
    const uint64_t h = hlc_at(now_ms());
    EXPECT_EQ(r.i64("SELECT lww_config('pending_max_rows', 2)"), 2);
    auto held = [&](const std::string& origin, int key) {
        return craft_cs(origin, {origin},
                        {craft_table("\"later\"", "[\"id\"]", "[\"v\"]",
                                     {{"[" + std::to_string(key) + "]", 1, h, 0, true, "[[0,1]]"}})});
    };
    r.apply(held(kNode1, 1));
    r.apply(held(kNode1, 2));
    r.apply(held(kNode1, 2));  // the same row again: not held twice
    Outcome o = r.run("SELECT lww_apply(?)", {held(kNode1, 3)});
    EXPECT_FALSE(o.ok);
    EXPECT_EQ(o.err, "lww_apply: the pending store already holds 2 rows (" +
                         std::to_string(r.i64("SELECT sum(length(CAST(changeset AS BLOB))) FROM lww_pending")) +
                         " bytes) from node " + kNode1 +
                         " for tables or columns this database does not have (limit 2 rows, 64 MiB per node); add the "
                         "missing tables and columns (ALTER TABLE, lww_track) so they land, then sync again "
                         "(docs/SCHEMA.md)");
    // Another node has its own allowance; the refused batch left nothing.
    r.apply(held(kNode2, 3));
    EXPECT_EQ(
        r.text("SELECT group_concat(origin || ':' || registers, ' ') FROM (SELECT * FROM lww_pending ORDER BY id)"),
        kNode1 + ":2 " + kNode1 + ":2 " + kNode2 + ":2");
}

}  // namespace

namespace {

TEST_F(Schema, AHeldRowTheNewColumnRefusesStaysHeld) {
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO doc VALUES (1, 'one', NULL), (2, 'two', NULL)");
    b.sync(a);
    a.exec("SELECT lww_alter('ALTER TABLE doc ADD COLUMN prio INTEGER')");
    a.exec("UPDATE doc SET prio = 500 WHERE id = 1; UPDATE doc SET prio = 5 WHERE id = 2");
    b.sync(a);
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_pending"), 2);
    // b's column refuses 500: that row is parked in lww_rejected (retried
    // every sync), the other lands, the ALTER stands.
    EXPECT_EQ(b.text("SELECT lww_alter('ALTER TABLE doc ADD COLUMN prio INTEGER CHECK (prio < 100)')"),
              "{\"altered\":[\"doc\"],\"added\":1,\"dropped\":0,\"renamed\":0,\"untracked\":0,\"landed\":1}");
    EXPECT_EQ(b.table("doc"), (V{"int:1 | text:'one' | NULL | NULL", "int:2 | text:'two' | NULL | int:5"}));
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_pending"), 0);
    EXPECT_EQ(b.text("SELECT key || ' ' || reason FROM lww_rejected"), "[1] CHECK constraint failed: prio < 100");
}

}  // namespace
