// lwwsync inside a real app's schema: foreign keys (rows delivered in any
// order, orphans, cascades), the app's own triggers firing while lww_apply
// merges, and rows the receiver refuses (parked in lww_rejected, never
// blocking a sync).
#include "harness.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

using namespace lwwt;

namespace {

using V = std::vector<std::string>;

// The change set with its tables in the order `perm` (indexes into the original).
std::string reorder_tables(const std::string& cs, const std::vector<size_t>& perm) {
    rapidjson::Document d = parse_json(cs);
    rapidjson::Value tables(rapidjson::kArrayType);
    auto& src = d["tables"];
    std::vector<rapidjson::Value> copy;
    for (auto& t : src.GetArray()) copy.emplace_back(t, d.GetAllocator());
    for (size_t i : perm) tables.PushBack(rapidjson::Value(copy.at(i), d.GetAllocator()), d.GetAllocator());
    d["tables"] = tables;
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    d.Accept(w);
    return buf.GetString();
}

// The rows of the change set reversed in every table (a child before its parent).
std::string reverse_rows(const std::string& cs) {
    rapidjson::Document d = parse_json(cs);
    for (auto& t : d["tables"].GetArray()) {
        auto rows = t["rows"].GetArray();
        for (rapidjson::SizeType i = 0, j = rows.Size() ? rows.Size() - 1 : 0; i < j; ++i, --j) rows[i].Swap(rows[j]);
    }
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    d.Accept(w);
    return buf.GetString();
}

size_t table_count(const std::string& cs) { return parse_json(cs)["tables"].Size(); }

// Everything `from` holds, applied by `to` on its own connection (with its
// foreign keys on): an idempotent full delivery.
std::string deliver(Db& from, Db& to) { return to.apply(from.changes(0)); }

// grand <- parent <- kid. Table names sort against the dependency order.
std::string chain_schema(bool deferred) {
    const std::string d = deferred ? " DEFERRABLE INITIALLY DEFERRED" : "";
    return "PRAGMA foreign_keys = ON;"
           "CREATE TABLE zgrand(id INTEGER PRIMARY KEY, name TEXT);"
           "CREATE TABLE mparent(id INTEGER PRIMARY KEY, grand INTEGER REFERENCES zgrand(id)" +
           d +
           ", name TEXT);"
           "CREATE TABLE akid(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES mparent(id)" +
           d + ", name TEXT);";
}
const V kChain = {"zgrand", "mparent", "akid"};

void fill_chain(Db& db) {
    db.exec(
        "INSERT INTO zgrand VALUES (1, 'g1'), (2, 'g2');"
        "INSERT INTO mparent VALUES (10, 1, 'p10'), (11, 2, 'p11'), (12, 1, 'p12');"
        "INSERT INTO akid VALUES (100, 10, 'k100'), (101, 11, 'k101'), (102, 12, 'k102'), (103, NULL, 'k103');");
}

class FkChain : public ::testing::TestWithParam<bool> {};

TEST_P(FkChain, InsertsAndDeletesInEveryOrderOfDelivery) {
    const bool deferred = GetParam();
    Cluster cl;
    Db& src = cl.add("src", chain_schema(deferred), kChain);
    fill_chain(src);
    // A parent updated after its children were inserted: in its table, the
    // parent's row comes after theirs.
    src.exec("UPDATE mparent SET name = 'p10 again' WHERE id = 10");
    const std::string inserts = src.changes(0);
    ASSERT_EQ(table_count(inserts), 3u);
    std::map<std::string, V> full;
    for (const auto& t : kChain) full[t] = src.table(t);
    const int64_t mark = src.seq();
    src.exec("DELETE FROM akid; DELETE FROM mparent; DELETE FROM zgrand;");
    const std::string deletes = src.changes(mark);
    std::vector<size_t> perm = {0, 1, 2};
    int n = 0;
    do {
        for (bool reversed : {false, true}) {
            SCOPED_TRACE("order " + std::to_string(perm[0]) + std::to_string(perm[1]) + std::to_string(perm[2]) +
                         (reversed ? " rows reversed" : ""));
            Db& dst = cl.add("dst" + std::to_string(n++), chain_schema(deferred), kChain);
            std::string ins = reorder_tables(inserts, perm);
            if (reversed) ins = reverse_rows(ins);
            const std::string st = dst.apply(ins);
            EXPECT_EQ(json_int(st, "rejected"), 0) << st;
            for (const auto& t : kChain) EXPECT_EQ(dst.table(t), full[t]) << t;
            EXPECT_EQ(dst.table("akid").size(), 4u);
            EXPECT_EQ(dst.one("SELECT name FROM mparent WHERE id = 10"), Val("p10 again"));
            EXPECT_TRUE(dst.rows("PRAGMA foreign_key_check").empty());
            EXPECT_EQ(dst.i64("SELECT count(*) FROM lww_rejected"), 0);
            // The deletes, in the same order: children go before their parents.
            std::string del = reorder_tables(deletes, perm);
            if (reversed) del = reverse_rows(del);
            const std::string st2 = dst.apply(del);
            EXPECT_EQ(json_int(st2, "rejected"), 0) << st2;
            for (const auto& t : kChain) EXPECT_TRUE(dst.table(t).empty()) << t;
            EXPECT_EQ(dst.i64("SELECT count(*) FROM lww_rejected"), 0);
            // Nothing was written locally: every register came from src.
            EXPECT_TRUE(parse_cs(dst.changes(0)).regs.size() > 0);
            for (const auto& r : parse_cs(dst.changes(0)).regs) EXPECT_EQ(r.node, src.node_id());
        }
    } while (std::next_permutation(perm.begin(), perm.end()));
}

INSTANTIATE_TEST_SUITE_P(ImmediateAndDeferred, FkChain, ::testing::Values(false, true), [](const auto& info) {
    return info.param ? std::string("Deferred") : std::string("Immediate");
});

TEST(FkOrder, SelfReferenceInAnyRowOrder) {
    Cluster cl;
    const std::string schema =
        "PRAGMA foreign_keys = ON; CREATE TABLE node(id INTEGER PRIMARY KEY, up INTEGER REFERENCES node(id), v);";
    Db& src = cl.add("src", schema, {"node"});
    src.exec("INSERT INTO node VALUES (1, NULL, 'root'), (2, 1, 'a'), (3, 2, 'b'), (4, 3, 'c')");
    src.exec("UPDATE node SET v = 'root!' WHERE id = 1");  // the root now comes last
    const std::string inserts = src.changes(0);
    const V full = src.table("node");
    const int64_t m = src.seq();
    src.exec(
        "DELETE FROM node WHERE id = 4; DELETE FROM node WHERE id = 3; DELETE FROM node WHERE id = 2;"
        "DELETE FROM node WHERE id = 1;");
    const std::string deletes = src.changes(m);
    for (bool reversed : {false, true}) {
        Db& dst = cl.add(reversed ? "r" : "f", schema, {"node"});
        const std::string st = dst.apply(reversed ? reverse_rows(inserts) : inserts);
        EXPECT_EQ(json_int(st, "rejected"), 0) << st;
        EXPECT_EQ(dst.table("node"), full);
        // Leaf first or root first: all go.
        EXPECT_EQ(json_int(dst.apply(reversed ? reverse_rows(deletes) : deletes), "rejected"), 0);
        EXPECT_TRUE(dst.table("node").empty());
        EXPECT_EQ(dst.i64("SELECT count(*) FROM lww_rejected"), 0);
    }
}

TEST(FkOrder, LongChainRowByRowStaysBounded) {
    // A refused row sends the batch row by row, where foreign keys are
    // checked at once: a 300-row self-referencing chain in the worst order
    // still lands in one apply; an orphaned one is parked whole, quickly.
    Cluster cl;
    const std::string schema =
        "PRAGMA foreign_keys = ON;"
        "CREATE TABLE node(id INTEGER PRIMARY KEY, up INTEGER REFERENCES node(id), tag TEXT UNIQUE);";
    Db& dst = cl.add("dst", schema, {"node"});
    dst.exec("INSERT INTO node VALUES (0, NULL, 'taken')");
    const uint64_t h = hlc_at(now_ms());
    std::vector<CraftRow> rows;
    for (int i = 300; i >= 1; --i)
        rows.push_back({"[" + std::to_string(i) + "]", 1, h, 0, true, "[[0," + std::to_string(i - 1) + "],[1,null]]"});
    rows.push_back({"[1000]", 1, h, 0, true, "[[0,null],[1,\"taken\"]]"});  // refused: UNIQUE
    auto t0 = std::chrono::steady_clock::now();
    std::string st =
        dst.apply(craft_cs(kNode1, {kNode1}, {craft_table("\"node\"", "[\"id\"]", "[\"up\",\"tag\"]", rows)}));
    EXPECT_EQ(json_int(st, "rejected"), 3) << st;
    EXPECT_EQ(dst.i64("SELECT count(*) FROM node"), 301);
    // The same chain hanging from a parent that is not here: all parked.
    rows.clear();
    for (int i = 2300; i >= 2001; --i)
        rows.push_back({"[" + std::to_string(i) + "]", 1, h, 0, true, "[[0," + std::to_string(i - 1) + "],[1,null]]"});
    st = dst.apply(craft_cs(kNode1, {kNode1}, {craft_table("\"node\"", "[\"id\"]", "[\"up\",\"tag\"]", rows)}));
    EXPECT_EQ(json_int(st, "rejected"), 900) << st;
    EXPECT_EQ(dst.i64("SELECT count(*) FROM lww_rejected"), 301);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(secs, 20.0);
    // Its root arrives: retried with the next apply, the chain lands.
    st = dst.apply(
        craft_cs(kNode1, {kNode1},
                 {craft_table("\"node\"", "[\"id\"]", "[\"up\",\"tag\"]", {{"[2000]", 1, h, 0, true, "[[0,null]]"}})}));
    EXPECT_EQ(dst.i64("SELECT count(*) FROM lww_rejected"), 1);  // the UNIQUE clash
    EXPECT_EQ(dst.i64("SELECT count(*) FROM node"), 602);
}

TEST(FkOrder, CycleOfDeferredKeysLandsInOneBatch) {
    Cluster cl;
    const std::string schema =
        "PRAGMA foreign_keys = ON;"
        "CREATE TABLE a(id INTEGER PRIMARY KEY, b INTEGER REFERENCES b(id) DEFERRABLE INITIALLY DEFERRED);"
        "CREATE TABLE b(id INTEGER PRIMARY KEY, a INTEGER REFERENCES a(id) DEFERRABLE INITIALLY DEFERRED);";
    Db& src = cl.add("src", schema, {"a", "b"});
    src.exec("BEGIN; INSERT INTO a VALUES (1, 1); INSERT INTO b VALUES (1, 1); COMMIT;");
    Db& dst = cl.add("dst", schema, {"a", "b"});
    EXPECT_EQ(json_int(deliver(src, dst), "rejected"), 0);
    EXPECT_EQ(dst.table("a"), src.table("a"));
    EXPECT_EQ(dst.table("b"), src.table("b"));
    // defer_foreign_keys is back as it was.
    EXPECT_EQ(dst.i64("PRAGMA defer_foreign_keys"), 0);
}

TEST(FkOrder, CompositeKeysWithoutRowidDeferred) {
    Cluster cl;
    const std::string schema =
        "PRAGMA foreign_keys = ON;"
        "CREATE TABLE folder(owner TEXT, name TEXT, PRIMARY KEY(owner, name)) WITHOUT ROWID;"
        "CREATE TABLE doc(id TEXT PRIMARY KEY, owner TEXT, folder TEXT, body,"
        " FOREIGN KEY(owner, folder) REFERENCES folder(owner, name) DEFERRABLE INITIALLY DEFERRED) WITHOUT ROWID;";
    Db& src = cl.add("src", schema, {"folder", "doc"});
    src.exec(
        "INSERT INTO folder VALUES ('ann', 'inbox'), ('bob', 'inbox');"
        "INSERT INTO doc VALUES ('d1', 'ann', 'inbox', 'x'), ('d2', 'bob', 'inbox', 'y');");
    Db& dst = cl.add("dst", schema, {"folder", "doc"});
    EXPECT_EQ(json_int(dst.apply(reorder_tables(src.changes(0), {1, 0})), "rejected"), 0);
    EXPECT_EQ(dst.table("doc"), src.table("doc"));
    // bob's folder goes at src; dst, meanwhile, filed a new doc in it.
    dst.exec("INSERT INTO doc VALUES ('d3', 'bob', 'inbox', 'z')");
    const int64_t m = src.seq();
    src.exec("DELETE FROM doc WHERE owner = 'bob'; DELETE FROM folder WHERE owner = 'bob';");
    const std::string st = dst.apply(src.changes(m));
    EXPECT_EQ(json_int(st, "rejected"), 1) << st;  // the folder's delete: d3 still lives in it
    EXPECT_EQ(dst.rows("SELECT tbl, key FROM lww_rejected"), (Rows{{Val("folder"), Val("[\"bob\",\"inbox\"]")}}));
    EXPECT_EQ(dst.rows("SELECT id FROM doc ORDER BY id"), (Rows{{Val("d1")}, {Val("d3")}}));
    EXPECT_TRUE(dst.rows("PRAGMA foreign_key_check").empty());
    // Once d3 moves, the retried delete lands.
    dst.exec("UPDATE doc SET owner = 'ann' WHERE id = 'd3'");
    EXPECT_EQ(json_int(dst.apply(craft_cs(kNode1, {kNode1}, {})), "rejected"), 0);
    EXPECT_EQ(dst.i64("SELECT count(*) FROM lww_rejected"), 0);
    EXPECT_EQ(dst.rows("SELECT owner FROM folder"), (Rows{{Val("ann")}}));
}

TEST(FkOrder, UpdateOfAReferencedUniqueColumnIsParkedWhileReferenced) {
    Cluster cl;
    const std::string schema =
        "PRAGMA foreign_keys = ON; CREATE TABLE acct(id INTEGER PRIMARY KEY, code TEXT UNIQUE);"
        "CREATE TABLE entry(id INTEGER PRIMARY KEY, code TEXT REFERENCES acct(code));";
    Db& a = cl.add("a", schema, {"acct", "entry"});
    Db& b = cl.add("b", schema, {"acct", "entry"});
    a.exec("INSERT INTO acct VALUES (1, 'old')");
    deliver(a, b);
    b.exec("INSERT INTO entry VALUES (5, 'old')");  // b books on the old code
    a.exec("UPDATE acct SET code = 'new' WHERE id = 1");
    const std::string st = deliver(a, b);
    EXPECT_EQ(json_int(st, "rejected"), 2) << st;  // the row's registers (row and code)
    EXPECT_EQ(b.rows("SELECT code FROM acct"), (Rows{{Val("old")}}));
    EXPECT_EQ(b.rows("SELECT tbl, key FROM lww_rejected"), (Rows{{Val("acct"), Val("[1]")}}));
    EXPECT_TRUE(b.rows("PRAGMA foreign_key_check").empty());
    b.exec("DELETE FROM entry");
    b.apply(craft_cs(kNode1, {kNode1}, {}));
    EXPECT_EQ(b.rows("SELECT code FROM acct"), (Rows{{Val("new")}}));
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected"), 0);
}

TEST(FkOrder, UntrackedChildHoldsAMergedDelete) {
    Cluster cl;
    const std::string schema =
        "PRAGMA foreign_keys = ON; CREATE TABLE p(id INTEGER PRIMARY KEY, v);"
        "CREATE TABLE local_only(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id));";
    Db& a = cl.add("a", schema, {"p"});
    Db& b = cl.add("b", schema, {"p"});
    a.exec("INSERT INTO p VALUES (1, 'one'), (2, 'two')");
    deliver(a, b);
    b.exec("INSERT INTO local_only VALUES (10, 1)");  // untracked, references p 1
    a.exec("DELETE FROM p");
    const std::string st = deliver(a, b);
    EXPECT_EQ(json_int(st, "rejected"), 1) << st;
    EXPECT_EQ(b.rows("SELECT id FROM p"), (Rows{{Val(1)}}));
    EXPECT_EQ(b.rows("SELECT key, reason FROM lww_rejected"),
              (Rows{{Val("[1]"), Val("FOREIGN KEY constraint failed")}}));
}

// ------------------------------------------------------------------ orphans

const char* kOrphanSchema =
    "PRAGMA foreign_keys = ON;"
    "CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT);"
    "CREATE TABLE child(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id), name TEXT);"
    "CREATE TABLE other(id INTEGER PRIMARY KEY, v);";

struct Orphan {
    Cluster cl;
    Db& a = cl.add("a", kOrphanSchema, {"parent", "child", "other"});
    Db& server = cl.add("s", kOrphanSchema, {"parent", "child", "other"});
    Db& d = cl.add("d", kOrphanSchema, {"parent", "child", "other"});
    Orphan() {
        a.exec("INSERT INTO parent VALUES (1, 'p1')");
        deliver(a, server);
        deliver(server, d);
        // a deletes the parent; d, offline, adds a child under it.
        a.exec("DELETE FROM parent WHERE id = 1");
        d.exec("INSERT INTO child VALUES (7, 1, 'offline child')");
        deliver(a, server);
    }
};

TEST(Orphans, ChildUnderDeletedParentIsParkedAndLaterSyncsGoOn) {
    Orphan o;
    // The server gets the orphan: parked, the rest of the set lands.
    o.d.exec("INSERT INTO other VALUES (1, 'fine')");
    std::string st = deliver(o.d, o.server);
    EXPECT_EQ(json_int(st, "rejected"), 3) << st;
    EXPECT_EQ(o.server.table("other"), o.d.table("other"));
    EXPECT_TRUE(o.server.table("child").empty());
    EXPECT_EQ(o.server.rows("SELECT tbl, key, reason, origin FROM lww_rejected"),
              (Rows{{Val("child"), Val("[7]"), Val("FOREIGN KEY constraint failed"), Val(o.d.node_id())}}));
    // Its registers were not merged: no metadata, nothing to send on.
    EXPECT_EQ(o.server.i64("SELECT count(*) FROM lww__child"), 0);
    EXPECT_EQ(parse_cs(o.server.changes(0)).row("int:7", "child"), nullptr);
    // Later deliveries keep working and keep it parked (first_seen stays).
    const int64_t first = o.server.i64("SELECT first_seen FROM lww_rejected");
    sleep_ms(5);
    o.d.exec("INSERT INTO other VALUES (2, 'still fine')");
    st = deliver(o.d, o.server);
    EXPECT_EQ(o.server.table("other"), o.d.table("other"));
    EXPECT_EQ(o.server.i64("SELECT first_seen FROM lww_rejected"), first);
    EXPECT_GT(o.server.i64("SELECT last_seen FROM lww_rejected"), first);
    // d takes the parent's delete: its own child still points at it, so
    // the delete is what d parks.
    st = deliver(o.server, o.d);
    EXPECT_EQ(json_int(st, "rejected"), 1) << st;
    EXPECT_EQ(o.d.rows("SELECT tbl, key FROM lww_rejected"), (Rows{{Val("parent"), Val("[1]")}}));
    EXPECT_EQ(o.d.table("parent").size(), 1u);
    EXPECT_TRUE(o.d.rows("PRAGMA foreign_key_check").empty());
}

TEST(Orphans, AppliedOnceTheParentReturns) {
    Orphan o;
    deliver(o.d, o.server);
    deliver(o.server, o.d);
    ASSERT_EQ(o.server.i64("SELECT count(*) FROM lww_rejected"), 1);
    // a brings the parent back: the server's parked child lands with it, d's
    // parked delete is superseded by the newer generation.
    o.a.exec("INSERT INTO parent VALUES (1, 'p1 again')");
    std::string st = deliver(o.a, o.server);
    EXPECT_EQ(json_int(st, "rejected"), 0) << st;
    EXPECT_EQ(o.server.i64("SELECT count(*) FROM lww_rejected"), 0);
    EXPECT_EQ(o.server.table("child"), o.d.table("child"));
    deliver(o.server, o.d);
    EXPECT_EQ(o.d.i64("SELECT count(*) FROM lww_rejected"), 0);
    deliver(o.server, o.a);
    for (Db* db : {&o.a, &o.d})
        for (const char* t : {"parent", "child", "other"}) EXPECT_EQ(db->table(t), o.server.table(t)) << t;
    EXPECT_EQ(o.a.one("SELECT name FROM parent"), Val("p1 again"));
    // The server merged the child: it flows on to a, which never talked to d.
    EXPECT_EQ(o.a.table("child").size(), 1u);
}

TEST(Orphans, DroppedOnceSupersededByALocalDelete) {
    Orphan o;
    deliver(o.d, o.server);
    deliver(o.server, o.d);
    // d gives up its child: the tombstone supersedes the server's parked
    // child, and d's parked parent delete now lands.
    o.d.exec("DELETE FROM child WHERE id = 7");
    EXPECT_EQ(o.d.i64("SELECT count(*) FROM lww_rejected"), 1);  // retried at the next apply
    deliver(o.server, o.d);
    EXPECT_EQ(o.d.i64("SELECT count(*) FROM lww_rejected"), 0);
    EXPECT_TRUE(o.d.table("parent").empty());
    std::string st = deliver(o.d, o.server);
    EXPECT_EQ(json_int(st, "rejected"), 0) << st;
    EXPECT_EQ(o.server.i64("SELECT count(*) FROM lww_rejected"), 0);
    for (Db* db : {&o.a, &o.d, &o.server}) {
        EXPECT_TRUE(db->table("parent").empty());
        EXPECT_TRUE(db->table("child").empty());
    }
}

TEST(Orphans, CascadeWritesDuringApplyAreLocalWrites) {
    const std::string schema =
        "PRAGMA foreign_keys = ON;"
        "CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE child(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id) ON DELETE CASCADE, name);"
        "CREATE TABLE note(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id) ON DELETE SET NULL, t);";
    Cluster cl;
    Db& a = cl.add("a", schema, {"parent", "child", "note"});
    Db& d = cl.add("d", schema, {"parent", "child", "note"});
    a.exec("INSERT INTO parent VALUES (1, 'p')");
    deliver(a, d);
    d.exec("INSERT INTO child VALUES (5, 1, 'offline'); INSERT INTO note VALUES (6, 1, 'n');");
    a.exec("DELETE FROM parent WHERE id = 1");
    const int64_t before = d.seq();
    EXPECT_EQ(json_int(deliver(a, d), "rejected"), 0);
    EXPECT_TRUE(d.table("child").empty());
    EXPECT_EQ(d.rows("SELECT id, parent FROM note"), (Rows{{Val(6), Val()}}));
    // The cascade's delete and SET NULL are d's own writes: they go out.
    ParsedCS cs = parse_cs(d.changes(before));
    ASSERT_NE(cs.row("int:5", "child"), nullptr);
    EXPECT_EQ(cs.row("int:5", "child")->gen, 2u);
    ASSERT_NE(cs.row("int:6", "note"), nullptr);
    EXPECT_EQ(cs.row("int:6", "note")->cols.at("parent"), Val());
    ASSERT_NE(cs.row("int:1", "parent"), nullptr);  // the merged delete goes on, as a's write
    EXPECT_EQ(cs.regs_of("int:1").front().node, a.node_id());
    deliver(d, a);
    for (const char* t : {"parent", "child", "note"}) EXPECT_EQ(a.table(t), d.table(t)) << t;
}

// ------------------------------------------------------------------ app triggers

const char* kCounterSchema = "CREATE TABLE t(id INTEGER PRIMARY KEY, title TEXT, edits INTEGER NOT NULL DEFAULT 0);";
const char* kCounter =
    "CREATE TRIGGER count_edits AFTER UPDATE OF title ON t %s BEGIN"
    " UPDATE t SET edits = edits + 1 WHERE id = NEW.id; END;";

std::string counter(bool when) {
    char buf[256];
    std::snprintf(buf, sizeof buf, kCounter, when ? "WHEN NOT lww_applying()" : "");
    return buf;
}

TEST(AppTriggers, CounterWithoutWhenIsCapturedAndPeersConverge) {
    Cluster cl;
    Db& a = cl.add("a", kCounterSchema, {"t"});
    Db& b = cl.add("b", kCounterSchema, {"t"});
    // Created after lww_track and before it: both fire orders are covered.
    a.exec(counter(false));
    b.exec("DROP TRIGGER IF EXISTS count_edits; SELECT lww_untrack('t');" + counter(false) + "SELECT lww_track('t');");
    a.exec("INSERT INTO t(id, title) VALUES (1, 'draft')");
    deliver(a, b);
    a.exec("UPDATE t SET title = 'final' WHERE id = 1");
    EXPECT_EQ(a.rows("SELECT title, edits FROM t"), (Rows{{Val("final"), Val(1)}}));
    const int64_t before = b.seq();
    deliver(a, b);
    // The trigger fired on b during the merge: its write is b's own.
    EXPECT_EQ(b.rows("SELECT title, edits FROM t"), (Rows{{Val("final"), Val(2)}}));
    ParsedCS mine = parse_cs(b.changes(before));
    std::vector<std::string> regs;
    for (const auto& r : mine.regs)
        if (r.node == b.node_id()) regs.push_back(r.is_row ? "ROW" : r.col);
    EXPECT_EQ(regs, (V{"edits"}));  // the counter, not the merged title
    deliver(b, a);
    deliver(a, b);
    EXPECT_EQ(a.table("t"), b.table("t"));
    EXPECT_EQ(a.rows("SELECT title, edits FROM t"), (Rows{{Val("final"), Val(2)}}));
    // The other way round: a's counter was made after lww_track.
    b.exec("UPDATE t SET title = 'b title' WHERE id = 1");
    EXPECT_EQ(b.rows("SELECT edits FROM t"), (Rows{{Val(3)}}));
    const int64_t a_before = a.seq();
    deliver(b, a);
    EXPECT_EQ(a.rows("SELECT title, edits FROM t"), (Rows{{Val("b title"), Val(4)}}));
    regs.clear();
    for (const auto& r : parse_cs(a.changes(a_before)).regs)
        if (r.node == a.node_id()) regs.push_back(r.is_row ? "ROW" : r.col);
    EXPECT_EQ(regs, (V{"edits"}));
    deliver(a, b);
    EXPECT_EQ(a.table("t"), b.table("t"));
}

// The merge writes a counter at INT64_MAX with the title; the counter
// trigger's + 1 makes it a REAL 2^63, which converts to the same double as
// INT64_MAX but is another value: b's own write, captured and sent
// (convergence seed 694619012715 diverged on it).
TEST(AppTriggers, CounterPastInt64MaxDuringMergeIsCaptured) {
    Cluster cl;
    Db& writer = cl.add("writer", kCounterSchema, {"t"});  // no trigger: sends INT64_MAX as it is
    Db& b = cl.add("b", kCounterSchema, {"t"});
    b.exec(counter(false));
    writer.exec("INSERT INTO t(id, title) VALUES (1, 'draft')");
    deliver(writer, b);
    writer.exec("UPDATE t SET title = 'final', edits = 9223372036854775807 WHERE id = 1");
    const int64_t before = b.seq();
    deliver(writer, b);
    EXPECT_EQ(b.rows("SELECT title, edits, typeof(edits) FROM t"),
              (Rows{{Val("final"), Val(9223372036854775808.0), Val("real")}}));
    std::vector<std::string> regs;
    for (const auto& r : parse_cs(b.changes(before)).regs)
        if (r.node == b.node_id()) regs.push_back(r.is_row ? "ROW" : r.col);
    EXPECT_EQ(regs, (V{"edits"}));
    deliver(b, writer);
    EXPECT_EQ(writer.table("t"), b.table("t"));
}

TEST(AppTriggers, CounterWithWhenNotApplyingStaysQuiet) {
    Cluster cl;
    Db& a = cl.add("a", kCounterSchema + counter(true), {"t"});
    Db& b = cl.add("b", kCounterSchema + counter(true), {"t"});
    EXPECT_EQ(a.i64("SELECT lww_applying()"), 0);
    a.exec("INSERT INTO t(id, title) VALUES (1, 'draft')");
    deliver(a, b);
    a.exec("UPDATE t SET title = 'final' WHERE id = 1");
    const int64_t before = b.seq();
    deliver(a, b);
    EXPECT_EQ(b.table("t"), a.table("t"));
    EXPECT_EQ(b.rows("SELECT edits FROM t"), (Rows{{Val(1)}}));
    for (const auto& r : parse_cs(b.changes(before)).regs) EXPECT_NE(r.node, b.node_id());
    b.exec("UPDATE t SET title = 'b edit' WHERE id = 1");  // a local edit still counts
    EXPECT_EQ(b.rows("SELECT edits FROM t"), (Rows{{Val(2)}}));
}

TEST(AppTriggers, NormaliserOnTheMergedRowIsCaptured) {
    const std::string schema =
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TRIGGER trim_name AFTER INSERT ON t BEGIN UPDATE t SET name = trim(name) WHERE id = NEW.id; END;";
    Cluster cl;
    Db& a = cl.add("a", "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);", {"t"});
    Db& b = cl.add("b", schema, {"t"});
    a.exec("INSERT INTO t VALUES (1, '  padded  ')");
    deliver(a, b);
    EXPECT_EQ(b.one("SELECT name FROM t"), Val("padded"));
    deliver(b, a);
    EXPECT_EQ(a.table("t"), b.table("t"));
}

TEST(AppTriggers, AuditRowInsertedByATriggerDuringApplyIsCaptured) {
    const std::string schema =
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT);"
        "CREATE TABLE audit(id TEXT PRIMARY KEY, order_id INTEGER, note TEXT);"
        "CREATE TRIGGER audit_orders AFTER INSERT ON orders BEGIN"
        " INSERT INTO audit VALUES (lww_node_id() || ':' || NEW.id, NEW.id, 'seen ' || NEW.item); END;";
    Cluster cl;
    Db& a = cl.add("a", schema, {"orders", "audit"});
    Db& b = cl.add("b", schema, {"orders", "audit"});
    a.exec("INSERT INTO orders VALUES (1, 'tea')");
    const int64_t before = b.seq();
    deliver(a, b);
    // b's trigger wrote b's audit row while merging the order: captured.
    const std::string key = "text:'" + b.node_id() + ":1'";
    ParsedCS cs = parse_cs(b.changes(before));
    ASSERT_NE(cs.row(key, "audit"), nullptr);
    EXPECT_EQ(cs.regs_of(key).front().node, b.node_id());
    for (const auto& r : cs.regs) {  // the merged order is a's write, not b's
        if (r.table == "orders") {
            EXPECT_EQ(r.node, a.node_id());
        }
    }
    deliver(b, a);
    EXPECT_EQ(a.table("audit"), b.table("audit"));
    EXPECT_EQ(a.table("audit").size(), 2u);
    EXPECT_EQ(a.table("orders"), b.table("orders"));
}

TEST(AppTriggers, RaiseAbortParksTheRow) {
    const std::string schema =
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER);"
        "CREATE TRIGGER no_negative BEFORE INSERT ON t WHEN NEW.v < 0 BEGIN SELECT RAISE(ABORT, 'no negatives'); END;";
    Cluster cl;
    Db& a = cl.add("a", "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER);", {"t"});
    Db& b = cl.add("b", schema, {"t"});
    a.exec("INSERT INTO t VALUES (1, 5), (2, -1), (3, 7)");
    const std::string st = deliver(a, b);
    EXPECT_EQ(json_int(st, "rejected"), 2) << st;
    EXPECT_EQ(b.rows("SELECT id FROM t ORDER BY id"), (Rows{{Val(1)}, {Val(3)}}));
    EXPECT_EQ(b.rows("SELECT key, reason FROM lww_rejected"), (Rows{{Val("[2]"), Val("no negatives")}}));
}

TEST(AppTriggers, RaiseIgnoreParksTheRowInsteadOfClaimingIt) {
    const std::string schema =
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER);"
        "CREATE TRIGGER skip_13 BEFORE INSERT ON t WHEN NEW.v = 13 BEGIN SELECT RAISE(IGNORE); END;";
    Cluster cl;
    Db& a = cl.add("a", "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER);", {"t"});
    Db& b = cl.add("b", schema, {"t"});
    a.exec("INSERT INTO t VALUES (1, 13), (2, 2)");
    const std::string st = deliver(a, b);
    EXPECT_EQ(json_int(st, "rejected"), 2) << st;
    EXPECT_EQ(b.rows("SELECT id FROM t"), (Rows{{Val(2)}}));
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww__t WHERE k0 = 1"), 0);  // nothing claims row 1 merged
    EXPECT_NE(b.text("SELECT reason FROM lww_rejected").find("ignored"), std::string::npos);
}

// ------------------------------------------------------------------ lww_rejected

const char* kUniqueSchema = "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE, n INTEGER CHECK (n >= 0));";

TEST(Rejected, UniqueClashAmongGoodRowsRetriedAndLanded) {
    Cluster cl;
    Db& a = cl.add("a", "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT, n INTEGER);", {"u"});
    Db& b = cl.add("b", kUniqueSchema, {"u"});
    b.exec("INSERT INTO u VALUES (50, 'x@y', 0)");
    a.exec("INSERT INTO u VALUES (1, 'a@y', 1), (2, 'x@y', 2), (3, 'c@y', 3), (4, 'd@y', -4)");
    const int64_t b_seq = b.seq();
    std::string st = deliver(a, b);
    EXPECT_EQ(json_int(st, "rows"), 4) << st;
    EXPECT_EQ(json_int(st, "rejected"), 6) << st;
    EXPECT_EQ(json_int(st, "received"), 12) << st;  // 3 registers a row, parked ones included
    EXPECT_EQ(json_int(st, "applied"), 6) << st;
    EXPECT_EQ(b.rows("SELECT id FROM u ORDER BY id"), (Rows{{Val(1)}, {Val(3)}, {Val(50)}}));
    Rows rej = b.rows(
        "SELECT tbl, key, reason, origin, first_seen <= last_seen, last_seen >= ? FROM lww_rejected ORDER BY key",
        {Val(static_cast<long long>(now_ms() - 60000))});
    ASSERT_EQ(rej.size(), 2u);
    EXPECT_EQ(rej[0],
              (Row{Val("u"), Val("[2]"), Val("UNIQUE constraint failed: u.email"), Val(a.node_id()), Val(1), Val(1)}));
    EXPECT_EQ(rej[1][1], Val("[4]"));
    EXPECT_NE(rej[1][2].s.find("CHECK constraint failed"), std::string::npos) << rej[1][2];
    // The parked registers: a one-row change set another database can apply.
    const std::string parked = b.text("SELECT changeset FROM lww_rejected WHERE key = '[2]'");
    ParsedCS p = parse_cs(parked);
    ASSERT_EQ(p.rows.size(), 1u);
    EXPECT_EQ(p.origin, a.node_id());
    EXPECT_EQ(p.rows[0].cols.at("email"), Val("x@y"));
    Db& c = cl.add("c", "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT, n INTEGER);", {"u"});
    c.apply(parked);
    EXPECT_EQ(c.rows("SELECT * FROM u"), (Rows{{Val(2), Val("x@y"), Val(2)}}));
    // Nothing of them was merged: b's feed holds only what landed.
    for (const auto& r : parse_cs(b.changes(b_seq)).rows) EXPECT_TRUE(r.key == "int:1" || r.key == "int:3") << r.key;

    // b frees the address; the next apply (of anything) lands row 2.
    b.exec("UPDATE u SET email = 'moved@y' WHERE id = 50");
    st = b.apply(craft_cs(kNode1, {kNode1}, {}));
    EXPECT_EQ(json_int(st, "rejected"), 0) << st;
    EXPECT_EQ(json_int(st, "applied"), 3) << st;  // the retried row's registers
    EXPECT_EQ(b.rows("SELECT email FROM u WHERE id = 2"), (Rows{{Val("x@y")}}));
    EXPECT_EQ(b.rows("SELECT key FROM lww_rejected"), (Rows{{Val("[4]")}}));
    // Once merged, row 2 goes on from b like any merged row.
    ParsedCS out = parse_cs(b.changes(b_seq));
    EXPECT_NE(out.row("int:2"), nullptr);
}

TEST(Rejected, DroppedWhenANewerVersionLands) {
    Cluster cl;
    Db& a = cl.add("a", "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT, n INTEGER);", {"u"});
    Db& b = cl.add("b", kUniqueSchema, {"u"});
    a.exec("INSERT INTO u VALUES (1, 'a@y', -1)");
    EXPECT_EQ(json_int(deliver(a, b), "rejected"), 3);
    // A newer version of the row (every column written again) lands and
    // supersedes the parked one.
    a.exec("DELETE FROM u WHERE id = 1; INSERT INTO u VALUES (1, 'a@y', 1);");
    std::string st = deliver(a, b);
    EXPECT_EQ(json_int(st, "rejected"), 0) << st;
    EXPECT_EQ(b.table("u"), a.table("u"));
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected"), 0);
}

TEST(Rejected, ParkedTwiceKeepsTheJoinOfBothVersions) {
    Cluster cl;
    Db& a = cl.add("a", "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT, n INTEGER);", {"u"});
    Db& b =
        cl.add("b", "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT, n INTEGER NOT NULL CHECK (n >= 0));", {"u"});
    a.exec("INSERT INTO u VALUES (1, 'a@y', -1)");
    deliver(a, b);
    const int64_t m = a.seq();
    a.exec("UPDATE u SET email = 'new@y' WHERE id = 1");  // still n = -1
    EXPECT_EQ(json_int(b.apply(a.changes(m)), "rejected"), 1);
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected"), 1);
    ParsedCS p = parse_cs(b.text("SELECT changeset FROM lww_rejected"));
    ASSERT_EQ(p.rows.size(), 1u);
    EXPECT_TRUE(p.rows[0].has_row);
    EXPECT_EQ(p.rows[0].cols.at("email"), Val("new@y"));
    EXPECT_EQ(p.rows[0].cols.at("n"), Val(-1));
    // Fixed at the source: everything lands as at a.
    a.exec("UPDATE u SET n = 1 WHERE id = 1");
    deliver(a, b);
    EXPECT_EQ(b.table("u"), a.table("u"));
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected"), 0);
}

TEST(Rejected, BoundedToTheNewestRows) {
    Cluster cl;
    Db& b = cl.add("b", kUniqueSchema, {"u"});
    const uint64_t h = hlc_at(now_ms());
    std::vector<CraftRow> rows;
    for (int i = 1; i <= 1010; ++i) rows.push_back({"[" + std::to_string(i) + "]", 1, h, 0, true, "[[0,-1]]"});
    rows.push_back({"[5000]", 1, h, 0, true, "[[0,1]]"});
    const std::string st = b.apply(craft_cs(kNode1, {kNode1}, {craft_table("\"u\"", "[\"id\"]", "[\"n\"]", rows)}));
    EXPECT_EQ(json_int(st, "rejected"), 2020) << st;
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected"), 1000);
    EXPECT_EQ(b.rows("SELECT id FROM u"), (Rows{{Val(5000)}}));
}

TEST(Rejected, SyncReportsAndRetries) {
    Cluster cl;
    Db& a = cl.add("a", "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT, n INTEGER);", {"u"});
    Db& b = cl.add("b", kUniqueSchema, {"u"});
    a.exec("INSERT INTO u VALUES (1, 'a@y', -1), (2, 'b@y', 2)");
    std::string st = b.sync(a);
    EXPECT_EQ(json_int(st, "received.rejected"), 3) << st;
    EXPECT_EQ(b.i64("SELECT count(*) FROM u"), 1);
    // The pushing side sees it too.
    Db& c = cl.add("c", "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT, n INTEGER);", {"u"});
    c.exec("INSERT INTO u VALUES (3, 'c@y', -3)");
    st = c.sync(b);
    EXPECT_EQ(json_int(st, "sent.rejected"), 3) << st;
    // b relaxes its rule; the next sync lands both parked rows.
    b.exec(
        "CREATE TABLE u2(id INTEGER PRIMARY KEY, email TEXT UNIQUE, n INTEGER);"
        "INSERT INTO u2 SELECT * FROM u; SELECT lww_untrack('u'); DROP TABLE u; ALTER TABLE u2 RENAME TO u;"
        "SELECT lww_track('u');");
    b.sync(a);
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected"), 0);
    EXPECT_EQ(b.i64("SELECT count(*) FROM u"), 3);
}

}  // namespace

namespace {

// A batch that parks a row and holds registers of a column the receiver
// lacks: the run that starts over (row by row) must not drop the held
// registers (found by the convergence program, seed 839527626721).
TEST(Rejected, HeldRegistersSurviveARefusedRowInTheirBatch) {
    Cluster cl;
    Db& a = cl.add("a", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, x2 INTEGER);", {"t"});
    Db& b = cl.add("b", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT CHECK (v <> 'bad'));", {"t"});
    a.exec("INSERT INTO t VALUES (1, 'bad', NULL), (2, 'good', 7)");
    const std::string st = b.sync(a);
    EXPECT_EQ(json_int(st, "received.rejected"), 2) << st;
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected"), 1);
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_pending"), 2);  // x2 of both rows
    b.exec("SELECT lww_alter('ALTER TABLE t ADD COLUMN x2 INTEGER')");
    // Row 1's x2 lands although its v stays parked: the row appears with
    // what this database accepts of it (docs/SCHEMA.md, limits).
    EXPECT_EQ(b.rows("SELECT id, v, x2 FROM t ORDER BY id"),
              (Rows{{Val(1), Val(), Val()}, {Val(2), Val("good"), Val(7)}}));
    EXPECT_EQ(b.i64("SELECT count(*) FROM lww_rejected"), 1);
}

}  // namespace
