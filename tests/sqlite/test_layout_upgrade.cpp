// A database from before schema 6, whose metadata columns were `mseq` and
// `seq`: read where it cannot be upgraded, then upgraded in place.
#include "harness.h"

using namespace lwwt;

namespace {

// Renames the metadata columns back to their names before schema 6, as a
// file made by lwwsync 0.9 has them (triggers and index follow the rename).
void make_schema_5(const std::string& path) {
    Db plain(path, /*load=*/false);
    for (const char* meta : {"lww__t", "lww__u"})
        plain.exec(std::string("ALTER TABLE ") + meta + " RENAME COLUMN row_seq TO mseq; ALTER TABLE " + meta +
                   " RENAME COLUMN max_seq TO seq");
    plain.exec("UPDATE lww_state SET value = 5 WHERE key = 'schema'");
}

std::vector<std::string> columns(Db& db, const std::string& table) {
    std::vector<std::string> out;
    for (const Row& r : db.rows("SELECT name FROM pragma_table_info(?)", {table})) out.push_back(r[0].s);
    return out;
}

const std::vector<std::string> kOldLayout = {"k0", "gen", "hlc", "node", "mseq", "seq", "cols"};
const std::vector<std::string> kNewLayout = {"k0", "gen", "hlc", "node", "row_seq", "max_seq", "cols"};

}  // namespace

TEST(LayoutUpgrade, AnOlderFileIsReadWhereItCannotBeUpgradedAndRenamedWhereItCan) {
    Cluster cl;
    std::string before;
    int64_t seq = 0;
    {
        Db& a = cl.add("a", "CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE TABLE u(id INTEGER PRIMARY KEY, w);",
                       {"t", "u"});
        a.exec(
            "INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three'); UPDATE t SET v = 'TWO' WHERE id = 2;"
            "DELETE FROM t WHERE id = 3; INSERT INTO u VALUES (7, 'seven')");
        a.exec("SELECT lww_untrack('u')");  // its metadata stays, to resume from
        before = a.changes(0);
        seq = a.seq();
    }
    make_schema_5(cl.file("a.db"));
    ASSERT_EQ(columns(*cl.connect("a", false), "lww__t"), kOldLayout);

    // Read-only: nothing can be renamed; the feed reads the older names.
    Db ro("file:" + cl.file("a.db") + "?mode=ro");
    EXPECT_EQ(ro.changes(0), before);
    EXPECT_EQ(ro.seq(), seq);
    EXPECT_EQ(columns(ro, "lww__t"), kOldLayout);

    // Read-write: any call upgrades, the kept metadata of `u` included.
    auto rw = cl.connect("a");
    EXPECT_EQ(rw->node_id().size(), 36u);
    EXPECT_EQ(rw->i64("SELECT value FROM lww_state WHERE key = 'schema'"), 6);
    EXPECT_EQ(columns(*rw, "lww__t"), kNewLayout);
    std::vector<std::string> u = kNewLayout;
    u.push_back("vh");  // lww_untrack's value hashes
    EXPECT_EQ(columns(*rw, "lww__u"), u);
    EXPECT_NE(rw->text("SELECT sql FROM sqlite_master WHERE name = 'lww__t__seq'").find("max_seq"), std::string::npos);
    EXPECT_EQ(rw->changes(0), before);

    // The read-only connection follows the upgrade made under it.
    EXPECT_EQ(ro.changes(0), before);

    // Writes go on where they were, and the untracked table resumes.
    rw->exec("UPDATE t SET v = 'uno' WHERE id = 1; DELETE FROM t WHERE id = 2");
    EXPECT_EQ(rw->seq(), seq + 2);
    const ParsedCS next = parse_cs(rw->changes(seq));
    EXPECT_EQ(next.rows.size(), 2u);
    EXPECT_EQ(rw->track("u"), 0);
    rw->exec("UPDATE u SET w = 'SEVEN' WHERE id = 7");
    EXPECT_EQ(parse_cs(rw->changes(seq + 2)).row("int:7", "u")->cols.at("w"), Val("SEVEN"));
    EXPECT_EQ(ro.changes(seq), rw->changes(seq));

    // A device syncing from it converges byte for byte.
    Db& b = cl.add("b", "CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE TABLE u(id INTEGER PRIMARY KEY, w);",
                   {"t", "u"});
    b.sync(*rw);
    EXPECT_EQ(b.table("t"), rw->table("t"));
    EXPECT_EQ(b.table("u"), rw->table("u"));
}

// The first call inside an app's transaction upgrades there; a rollback
// undoes the upgrade, and the connection must read the older names again
// and upgrade at its next call.
TEST(LayoutUpgrade, AnUpgradeRolledBackWithTheAppsTransactionIsMadeAgain) {
    Cluster cl;
    std::string before;
    {
        Db& a = cl.add("a", "CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE TABLE u(id INTEGER PRIMARY KEY, w);",
                       {"t", "u"});
        a.exec("INSERT INTO t VALUES (1, 'one'); INSERT INTO u VALUES (7, 'seven')");
        before = a.changes(0);
    }
    make_schema_5(cl.file("a.db"));
    auto rw = cl.connect("a");
    rw->exec("BEGIN");
    EXPECT_EQ(rw->changes(0), before);
    EXPECT_EQ(columns(*rw, "lww__t"), kNewLayout);  // upgraded inside the transaction
    rw->exec("ROLLBACK");
    EXPECT_EQ(columns(*rw, "lww__t"), kOldLayout);
    EXPECT_EQ(rw->changes(0), before);  // upgrades again
    EXPECT_EQ(columns(*rw, "lww__t"), kNewLayout);
    rw->exec("INSERT INTO t VALUES (2, 'two')");
    EXPECT_EQ(parse_cs(rw->changes(0)).rows.size(), 3u);
}
