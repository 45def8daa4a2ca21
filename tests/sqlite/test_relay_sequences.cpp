// No echo (lww_relayed) must never skip a register the peer lacks: the
// sequences it names are never handed out again (found by an attack on it).
#include "harness.h"

using namespace lwwt;

namespace {

const char* kTwo = "CREATE TABLE t(id INTEGER PRIMARY KEY, a, b, c); CREATE TABLE t2(id INTEGER PRIMARY KEY, x);";

// A DROP TABLE of a tracked table drops its metadata; a new connection that
// recovered a lower last sequence would hand out again sequences lww_relayed
// still names for a peer, and a row merged later from ANOTHER server taking
// such a sequence would be skipped in the push to the first one. The drop
// raises seq_floor (as lww_untrack does), and recovery never goes below
// the ranges either.
TEST(NoEcho, SequencesOfADroppedTableAreNotReusedForAnotherServersRows) {
    Cluster cl;
    Db& s = cl.add("s", kTwo, {"t", "t2"});  // server 1
    Db& q = cl.add("q", kTwo, {"t", "t2"});  // server 2
    Db& n = cl.add("n", kTwo, {"t", "t2"});  // a device of server 1
    Db& m = cl.add("m", kTwo, {"t", "t2"});  // a device of server 2
    Db& a = cl.add("a", kTwo, {"t", "t2"});  // syncs with both servers
    n.exec("INSERT INTO t2 VALUES (1, 'from n')");
    n.sync(s);
    a.sync(s);  // A pulls N's row: lww_relayed names A's sequence 1 for S
    ASSERT_EQ(a.i64("SELECT count(*) FROM lww_relayed"), 1);
    a.exec("DROP TABLE t2");
    a.exec("SELECT lww_node_id()");  // the drop is detected: t2's metadata goes
    m.exec("INSERT INTO t VALUES (5, 'from m', NULL, NULL)");
    m.sync(q);
    {
        auto a2 = cl.connect("a");  // the app restarts
        const int64_t before = a2->seq();
        std::string st = a2->sync(q);
        EXPECT_EQ(a2->table("t"), q.table("t")) << st;
        EXPECT_GT(a2->seq(), 1) << "sequence " << before << " reused";
        st = a2->sync(s);  // M's row must reach S through A
        st = a2->sync(s);
        EXPECT_EQ(s.table("t"), a2->table("t")) << st;
    }
}

// Parent and child; where foreign keys are enforced (kStrict) a child whose
// parent is missing waits parked.
const char* kLoose =
    "CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT);"
    "CREATE TABLE child(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id), name TEXT,"
    " extra TEXT);";
const std::string kStrict = std::string("PRAGMA foreign_keys = ON;") + kLoose;

// A row pulled while its parent is missing waits parked; when it lands at
// the retry that opens the next sync (its parent written here meanwhile),
// it counts as relayed by the server it came from: the push that follows
// carries only this database's own row, not the server's back to it.
TEST(NoEcho, ARowThatLandsAtTheRetryOfASyncIsNotPushedBack) {
    Cluster cl;
    Db& s = cl.add("s", kLoose, {"parent", "child"});
    Db& w = cl.add("w", kLoose, {"parent", "child"});
    Db& c = cl.add("c", kStrict, {"parent", "child"});
    w.exec("INSERT INTO child VALUES (1, 1, 'before its parent', NULL)");  // no foreign keys enforced there
    w.sync(s);
    std::string st = c.sync(s);
    ASSERT_TRUE(c.table("child").empty()) << st;
    ASSERT_EQ(c.i64("SELECT count(*) FROM lww_rejected"), 1) << st;
    c.exec("INSERT INTO parent VALUES (1, 'by c')");
    st = c.sync(s);
    EXPECT_EQ(c.i64("SELECT count(*) FROM lww_rejected"), 0) << st;
    EXPECT_EQ(c.table("child"), std::vector<std::string>{"int:1 | int:1 | text:'before its parent' | NULL"}) << st;
    EXPECT_EQ(json_int(st, "pushed"), 1) << "the child went back: " << st;
    EXPECT_EQ(s.table("parent"), c.table("parent"));
    EXPECT_EQ(s.table("child"), c.table("child"));
}

// Two servers' rows of one key parked on a device are joined into one
// parked row; when it lands it counts as relayed by neither server, or the
// device would never push one server's registers to the other (found by an
// attack on the change above).
void converge_joined_parked_row(bool newest_at_x) {
    Cluster cl;
    Db& c = cl.add("c", kStrict, {"parent", "child"});
    Db& x = cl.add("x", kLoose, {"parent", "child"});
    Db& y = cl.add("y", kLoose, {"parent", "child"});
    if (newest_at_x) {
        x.exec("INSERT INTO child VALUES (1, 1, 'x', 'x')");
        y.exec("INSERT INTO child VALUES (1, 1, 'y', 'y')");
        x.exec("UPDATE child SET name = 'x2' WHERE id = 1");
    } else {
        y.exec("INSERT INTO child VALUES (1, 1, 'y', 'y')");
        x.exec("INSERT INTO child VALUES (1, 1, 'x', 'x')");
    }
    std::string st = c.sync(x);
    st = c.sync(y);
    ASSERT_EQ(c.i64("SELECT count(*) FROM lww_rejected"), 1) << st;  // one row of both
    c.exec("INSERT INTO parent VALUES (1, 'by c')");
    for (int i = 0; i < 4; ++i) {
        st = c.sync(y);
        c.sync(x);
    }
    EXPECT_EQ(c.i64("SELECT count(*) FROM lww_rejected"), 0) << st;
    EXPECT_EQ(c.table("child"), x.table("child"));
    EXPECT_EQ(c.table("child"), y.table("child")) << st;
    EXPECT_EQ(c.table("parent"), y.table("parent"));
}

TEST(NoEcho, AParkedRowJoinedFromTwoServersReachesBoth) {
    converge_joined_parked_row(true);
    converge_joined_parked_row(false);
}

}  // namespace
