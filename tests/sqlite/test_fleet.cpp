// What a write or a small pull costs must not grow with the nodes a database
// has met or the tables it tracks (issue 10). Counted in SQL statements run on
// the connection (sqlite3_trace_v2): the same with one node and one tracked
// table as with 100 000 nodes and 51 tables.
#include <functional>

#include "harness.h"

using namespace lwwt;

namespace {

int count_statement(unsigned, void* ctx, void*, void*) {
    ++*static_cast<int64_t*>(ctx);
    return 0;
}

// Statements `work` runs, those of triggers and of lwwsync included.
int64_t statements(Db& db, const std::function<void()>& work) {
    int64_t n = 0;
    sqlite3_trace_v2(db.handle(), SQLITE_TRACE_STMT, count_statement, &n);
    work();
    sqlite3_trace_v2(db.handle(), 0, nullptr, nullptr);
    return n;
}

int64_t statements(Db& db, const std::string& sql) {
    return statements(db, [&] { db.exec(sql); });
}

struct Device {
    Db* db;
    std::map<std::string, int64_t> cost;
};

// `nodes` node ids and `tables` tracked tables besides t; row 1 of t holds a
// register of the peer's, so writing it decodes a node other than this one.
void prepare(Cluster& cl, Device& d, const std::string& name, int nodes, int tables, Db& peer) {
    d.db = &cl.add(name, kSchemaT, {"t"});
    for (int i = 0; i < tables; ++i) {
        d.db->exec("CREATE TABLE x" + std::to_string(i) + "(id INTEGER PRIMARY KEY, v)");
        d.db->track("x" + std::to_string(i));
    }
    if (nodes > 1)
        d.db->exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
                   std::to_string(nodes - 1) +
                   ") INSERT INTO lww_nodes(idx, id) SELECT i, printf('00000000-0000-4000-8000-%012d', i) FROM n");
    d.db->apply(peer.changes(0));
    ASSERT_EQ(d.db->i64("SELECT count(*) FROM lww_nodes"), nodes + 1);
    d.db->exec("INSERT INTO t VALUES (100, 'warm', NULL, NULL)");
}

void measure(Device& d, Db& peer, int64_t peer_seq) {
    Db& db = *d.db;
    d.cost["insert"] = statements(db, "INSERT INTO t VALUES (2, 'x', 'y', 'z')");
    d.cost["update of the peer's row"] = statements(db, "UPDATE t SET a = 'mine' WHERE id = 1");
    d.cost["update, a transaction of two"] =
        statements(db, "BEGIN; UPDATE t SET b = 'b' WHERE id = 2; UPDATE t SET c = 'c' WHERE id = 1; COMMIT");
    d.cost["delete"] = statements(db, "DELETE FROM t WHERE id = 2");
    const int64_t seq = db.seq();
    d.cost["changes of one row"] = statements(db, "SELECT lww_changes(" + std::to_string(seq - 1) + ")");
    const std::string one = peer.changes(peer_seq);
    d.cost["apply of one row"] = statements(db, [&] { db.apply(one); });
}

TEST(Fleet, AWriteAndASmallPullCostTheSameWith100000NodesAnd51Tables) {
    Cluster cl;
    Db& peer = cl.add("peer", kSchemaT, {"t"});
    peer.exec("INSERT INTO t VALUES (1, 'peer', 'p', 'p')");
    Device small, big;
    prepare(cl, small, "small", 1, 0, peer);
    prepare(cl, big, "big", 100000, 50, peer);
    const int64_t peer_seq = peer.seq();
    peer.exec("INSERT INTO t VALUES (3, 'later', NULL, NULL)");
    measure(small, peer, peer_seq);
    measure(big, peer, peer_seq);
    for (const auto& [what, n] : small.cost) {
        EXPECT_GT(n, 0) << what;
        EXPECT_EQ(big.cost[what], n) << what << ": " << n << " statements with 1 node and 1 table, " << big.cost[what]
                                     << " with 100 000 nodes and 51 tables";
    }
    // Both converged on what they were sent, node names included.
    EXPECT_EQ(small.db->table("t"), big.db->table("t"));
}

}  // namespace
