// Copies and restores (docs/PROTOCOL.md, "Copies and restores"): a database
// file copied to a second device, a seed shipped to many, a server put back
// from an older copy, and lww_reset_node. Every write made on any copy
// reaches every peer; nothing is lost.
#include <set>

#include "harness.h"

using namespace lwwt;

namespace {

using V = std::vector<std::string>;

class Restore : public ::testing::Test {
protected:
    // Most tests here copy files with the file check off (inherited by the
    // copies), so that the exchange alone must find the copy.
    Db& peer(const std::string& name, bool detect_files = false) {
        Db& d = cl.add(name, kSchemaT, {"t"});
        if (!detect_files) d.exec("SELECT lww_config('detect_copies', 0)");
        return d;
    }
    // A byte copy of `from`'s database, as a backup or a copied app folder makes it.
    Db& copy(Db& from, const std::string& name) {
        const std::string path = cl.file(name + ".db");
        from.exec("VACUUM INTO '" + path + "'");
        copies.push_back(std::make_unique<Db>(path));
        return *copies.back();
    }
    Cluster cl;
    std::vector<std::unique_ptr<Db>> copies;
};

// Every row, then every tracked table equal on all peers.
void expect_converged(const std::vector<Db*>& peers, const V& want) {
    for (Db* p : peers) EXPECT_EQ(p->table("t"), want) << p->path();
}

TEST_F(Restore, CopiedFileWritesBeforeAndAfterTheCopyOnBothCopies) {
    Db& s = peer("server");
    Db& a = peer("a");
    a.exec("INSERT INTO t VALUES (1, 'synced before the copy', NULL, NULL)");
    a.sync(s);
    a.exec("INSERT INTO t VALUES (2, 'unsynced at the copy', NULL, NULL)");
    Db& b = copy(a, "b");
    EXPECT_EQ(b.node_id(), a.node_id());
    // Both write after the copy, as many rows and to the same row.
    a.exec("INSERT INTO t VALUES (10, 'a after', NULL, NULL); UPDATE t SET b = 'a edits' WHERE id = 1");
    sleep_ms(2);
    b.exec("INSERT INTO t VALUES (20, 'b after', NULL, NULL); UPDATE t SET c = 'b edits' WHERE id = 1");
    const std::string old = a.node_id();
    a.sync(s);
    const std::string st = b.sync(s);  // the copy finds out and takes a new id
    EXPECT_NE(b.node_id(), old) << st;
    EXPECT_EQ(a.node_id(), old);
    EXPECT_TRUE(st.find("\"reset_node\":1") != std::string::npos) << st;
    a.sync(s);
    b.sync(s);
    const V want{"int:1 | text:'synced before the copy' | text:'a edits' | text:'b edits'",
                 "int:2 | text:'unsynced at the copy' | NULL | NULL", "int:10 | text:'a after' | NULL | NULL",
                 "int:20 | text:'b after' | NULL | NULL"};
    expect_converged({&s, &a, &b}, want);
    // Later writes flow both ways as usual.
    b.exec("INSERT INTO t VALUES (21, 'b later', NULL, NULL)");
    a.exec("INSERT INTO t VALUES (11, 'a later', NULL, NULL)");
    b.sync(s);
    a.sync(s);
    b.sync(s);
    EXPECT_EQ(a.table("t"), b.table("t"));
    EXPECT_EQ(a.table("t"), s.table("t"));
    EXPECT_EQ(a.table("t").size(), 6u);
}

TEST_F(Restore, TheCopySyncsFirstAndTheOriginalFindsOut) {
    Db& s = peer("server");
    Db& a = peer("a");
    a.exec("INSERT INTO t VALUES (1, 'x', NULL, NULL)");
    a.sync(s);
    Db& b = copy(a, "b");
    // The copy writes more than the original, and syncs first: the server's
    // cursor on the node id goes past everything the original made.
    for (int i = 0; i < 5; ++i) b.exec("INSERT INTO t VALUES (" + std::to_string(100 + i) + ", 'b', NULL, NULL)");
    a.exec("INSERT INTO t VALUES (50, 'a', NULL, NULL)");
    const std::string id = a.node_id();
    b.sync(s);
    const std::string st = a.sync(s);
    EXPECT_NE(a.node_id(), id) << st;
    b.sync(s);
    EXPECT_EQ(a.table("t").size(), 7u);
    expect_converged({&s, &a, &b}, s.table("t"));
}

TEST_F(Restore, BothCopiesWroteTheSameNumberOfChanges) {
    // Equal sequences on both copies: only the push ids tell them apart.
    Db& s = peer("server");
    Db& a = peer("a");
    a.exec("INSERT INTO t VALUES (1, 'x', NULL, NULL)");
    a.sync(s);
    Db& b = copy(a, "b");
    a.exec("INSERT INTO t VALUES (2, 'from a', NULL, NULL)");
    b.exec("INSERT INTO t VALUES (3, 'from b', NULL, NULL)");
    EXPECT_EQ(a.seq(), b.seq());
    a.sync(s);
    b.sync(s);
    a.sync(s);
    const V want{"int:1 | text:'x' | NULL | NULL", "int:2 | text:'from a' | NULL | NULL",
                 "int:3 | text:'from b' | NULL | NULL"};
    expect_converged({&s, &a, &b}, want);
    EXPECT_NE(a.node_id(), b.node_id());
}

TEST_F(Restore, CopiesSyncingWithEachOtherAndAThirdFile) {
    Db& a = peer("a");
    Db& c = peer("c");
    a.exec("INSERT INTO t VALUES (1, 'x', NULL, NULL)");
    a.sync(c);
    Db& b = copy(a, "b");
    a.exec("INSERT INTO t VALUES (2, 'a', NULL, NULL)");
    b.exec("INSERT INTO t VALUES (3, 'b', NULL, NULL)");
    c.sync(a);  // c pulls from a and pushes to it
    b.sync(c);  // b pushes to c, which holds a's changes under the same id
    a.sync(c);
    b.sync(a);
    c.sync(b);
    a.sync(c);
    const V want{"int:1 | text:'x' | NULL | NULL", "int:2 | text:'a' | NULL | NULL", "int:3 | text:'b' | NULL | NULL"};
    expect_converged({&a, &b, &c}, want);
}

TEST_F(Restore, ShippedSeedOnFiveDevices) {
    for (bool seed_synced : {false, true}) {
        SCOPED_TRACE(seed_synced ? "the seed synced before shipping" : "a seed never synced");
        Cluster local;
        Db& s = local.add("server", kSchemaT, {"t"});
        Db& seed = local.add("seed", kSchemaT, {"t"});
        seed.exec("SELECT lww_config('detect_copies', 0)");
        seed.exec("INSERT INTO t VALUES (1, 'seed row', NULL, NULL), (2, 'seed row 2', NULL, NULL)");
        if (seed_synced) seed.sync(s);
        std::vector<std::unique_ptr<Db>> devices;
        for (int d = 0; d < 5; ++d) {
            const std::string path = local.file("device" + std::to_string(d) + ".db");
            seed.exec("VACUUM INTO '" + path + "'");
            devices.push_back(std::make_unique<Db>(path));
        }
        // Every device writes before its first sync: its own row and an edit of a seed row.
        for (int d = 0; d < 5; ++d) {
            devices[d]->exec("INSERT INTO t VALUES (" + std::to_string(10 + d) + ", 'device " + std::to_string(d) +
                             "', NULL, NULL)");
            if (d == 2) devices[d]->exec("UPDATE t SET b = 'device 2 edit' WHERE id = 1");
            if (d == 4) devices[d]->exec("UPDATE t SET c = 'device 4 edit' WHERE id = 2");
        }
        for (int round = 0; round < 2; ++round)
            for (auto& d : devices) d->sync(s);
        std::set<std::string> ids;
        for (auto& d : devices) ids.insert(d->node_id());
        EXPECT_EQ(ids.size(), 5u);
        const V want{"int:1 | text:'seed row' | text:'device 2 edit' | NULL",
                     "int:2 | text:'seed row 2' | NULL | text:'device 4 edit'",
                     "int:10 | text:'device 0' | NULL | NULL",
                     "int:11 | text:'device 1' | NULL | NULL",
                     "int:12 | text:'device 2' | NULL | NULL",
                     "int:13 | text:'device 3' | NULL | NULL",
                     "int:14 | text:'device 4' | NULL | NULL"};
        EXPECT_EQ(s.table("t"), want);
        for (auto& d : devices) EXPECT_EQ(d->table("t"), want) << d->path();
        // The metadata converged too: every device sends what the others hold.
        for (auto& d : devices) EXPECT_EQ(d->changes(0).size() > 0, true);
    }
}

TEST_F(Restore, ACopiedFileTakesANewIdWhenFirstUsed) {
    // The file check on (the default): a file found where its node id was
    // not made takes a new one before it syncs; the original keeps its own.
    Db& s = peer("server", true);
    Db& a = peer("a", true);
    EXPECT_EQ(a.i64("SELECT lww_config('detect_copies')"), 1);
    a.exec("INSERT INTO t VALUES (1, 'x', NULL, NULL)");
    a.sync(s);
    const std::string id = a.node_id();
    a.exec("INSERT INTO t VALUES (2, 'unsynced at the copy', NULL, NULL)");
    Db& b = copy(a, "b");
    b.exec("INSERT INTO t VALUES (3, 'written on the copy before any lwwsync call', NULL, NULL)");
    EXPECT_NE(b.node_id(), id);
    EXPECT_EQ(a.node_id(), id);
    a.exec("INSERT INTO t VALUES (4, 'a', NULL, NULL)");
    b.exec("INSERT INTO t VALUES (5, 'b', NULL, NULL)");
    b.sync(s);
    a.sync(s);
    b.sync(s);
    // The copy pulls from the original directly and from a third file too.
    Db& c = peer("c", true);
    c.sync(b);
    c.sync(a);
    const V want{"int:1 | text:'x' | NULL | NULL", "int:2 | text:'unsynced at the copy' | NULL | NULL",
                 "int:3 | text:'written on the copy before any lwwsync call' | NULL | NULL",
                 "int:4 | text:'a' | NULL | NULL", "int:5 | text:'b' | NULL | NULL"};
    expect_converged({&s, &a, &b, &c}, want);
    // Reopening the original, or the copy where it now lives, keeps the ids.
    const std::string bid = b.node_id();
    Db again(b.path());
    EXPECT_EQ(again.node_id(), bid);
    EXPECT_FALSE(a.run("SELECT lww_config('detect_copies', 2)").ok);
}

TEST_F(Restore, ServerPutBackFromAnOlderCopy) {
    Db& s = peer("server");
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL)");
    a.sync(s);
    b.sync(s);
    const std::string backup = cl.file("server-backup.db");
    s.exec("VACUUM INTO '" + backup + "'");
    // After the backup: the server writes, a device pushes, the other pulls.
    s.exec("INSERT INTO t VALUES (2, 'server after the backup', NULL, NULL)");
    a.exec("INSERT INTO t VALUES (3, 'a after the backup', NULL, NULL)");
    a.sync(s);
    b.sync(s);
    const std::string old_id = s.node_id();
    // The server's file is put back from the backup.
    {
        Db old(backup);
        old.exec("VACUUM INTO '" + cl.file("server-restored.db") + "'");
    }
    Db restored(cl.file("server-restored.db"));
    b.sync(restored);
    a.sync(restored);
    b.sync(restored);
    EXPECT_NE(restored.node_id(), old_id);
    const V want{"int:1 | text:'a' | NULL | NULL", "int:2 | text:'server after the backup' | NULL | NULL",
                 "int:3 | text:'a after the backup' | NULL | NULL"};
    EXPECT_EQ(restored.table("t"), want);
    EXPECT_EQ(a.table("t"), want);
    EXPECT_EQ(b.table("t"), want);
}

TEST_F(Restore, ResetNode) {
    Db& a = peer("a");
    Db& b = peer("b");
    a.exec("INSERT INTO t VALUES (1, 'synced', NULL, NULL)");
    a.sync(b);
    a.exec("INSERT INTO t VALUES (2, 'not yet synced', NULL, NULL)");
    const std::string old = a.node_id();
    const std::string fresh = a.text("SELECT lww_reset_node()");
    EXPECT_NE(fresh, old);
    EXPECT_EQ(a.node_id(), fresh);
    EXPECT_EQ(fresh.size(), 36u);
    EXPECT_EQ(fresh[14], '8');  // derived from a new key
    // Its writes, those from before the reset included, go out under the new id.
    const std::string cs = a.changes(0);
    EXPECT_NE(cs.find("\"origin\":\"" + fresh + "\""), std::string::npos) << cs;
    EXPECT_EQ(cs.find(old), std::string::npos) << cs;
    a.exec("INSERT INTO t VALUES (3, 'after the reset', NULL, NULL)");
    a.sync(b);
    EXPECT_EQ(b.table("t"), a.table("t"));
    EXPECT_EQ(b.table("t").size(), 3u);
    // The old id is another node now; a second reset works the same.
    EXPECT_EQ(a.i64("SELECT count(*) FROM lww_nodes WHERE id = ?", {old}), 1);
    EXPECT_NE(a.text("SELECT lww_reset_node()"), fresh);
    b.exec("UPDATE t SET b = 'b' WHERE id = 1");
    b.sync(a);
    EXPECT_EQ(b.table("t"), a.table("t"));
    // Not inside a trigger or a view: a direct-only function.
    EXPECT_FALSE(a.run("CREATE VIEW v AS SELECT lww_reset_node()").ok && a.run("SELECT * FROM v").ok);
}

TEST_F(Restore, RefusesMalformedPushIds) {
    Db& s = peer("server");
    const std::string node = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427";
    for (const char* bad : {"\"\"", "\"XYZ\"", "12", "\"0123456789abcdef0123456789abcdef0\""}) {
        const std::string req = std::string("{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"") + node +
                                "\",\"push_id\":" + bad + "}";
        Outcome o = s.run("SELECT lww_exchange(?)", {req});
        EXPECT_FALSE(o.ok) << bad;
        EXPECT_NE(o.err.find("push_id"), std::string::npos) << o.err;
    }
}

}  // namespace
