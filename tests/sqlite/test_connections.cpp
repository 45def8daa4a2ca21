// Several connections to one database file, each with the extension loaded:
// one sequence, one clock, nothing skipped.
#include <functional>

#include "harness.h"

using namespace lwwt;

namespace {

using V = std::vector<std::string>;

class Connections : public ::testing::TestWithParam<const char*> {
protected:
    void SetUp() override {
        m1 = &cl.add("m", kSchemaT, {"t"});
        m1->exec(std::string("PRAGMA journal_mode=") + GetParam());
        m2 = cl.connect("m");
        p = &cl.add("p", kSchemaT, {"t"});
    }
    Cluster cl;
    Db* m1 = nullptr;
    std::unique_ptr<Db> m2;
    Db* p = nullptr;
};

TEST_P(Connections, InterleavedWritesGetDistinctIncreasingSeqsAndStamps) {
    Db* conns[2] = {m1, m2.get()};
    int64_t prev = m1->seq();
    for (int i = 0; i < 40; ++i) {
        Db& w = *conns[i % 2];
        Db& other = *conns[(i + 1) % 2];
        if (i % 5 == 4) w.exec("BEGIN IMMEDIATE");
        w.exec("INSERT INTO t VALUES (" + std::to_string(i) + ", 'conn" + std::to_string(i % 2) + "', NULL, NULL)");
        if (i % 5 == 4) w.exec("COMMIT");
        const int64_t s = other.seq();  // seen from the other connection
        EXPECT_GT(s, prev) << "write " << i;
        ParsedCS cs = parse_cs(other.changes(prev));
        ASSERT_EQ(cs.rows.size(), 1u) << "write " << i;
        EXPECT_EQ(cs.rows[0].key, "int:" + std::to_string(i));
        prev = s;
    }
    // Stamps follow the order of the writes, whichever connection made them.
    ParsedCS all = parse_cs(m2->changes(0));
    ASSERT_EQ(all.rows.size(), 40u);
    std::map<int64_t, uint64_t> row_hlc;
    std::set<uint64_t> distinct;
    for (const auto& r : all.regs) {
        EXPECT_EQ(r.node, m1->node_id());
        if (r.is_row) {
            row_hlc[std::stoll(r.key.substr(4))] = r.hlc;
            distinct.insert(r.hlc);
        }
    }
    EXPECT_EQ(distinct.size(), 40u);
    uint64_t last = 0;
    for (const auto& [id, h] : row_hlc) {
        EXPECT_GT(h, last) << "row " << id << " is stamped before the row written ahead of it";
        last = h;
    }
}

TEST_P(Connections, LaterWriteWinsWhicheverConnectionMadeIt) {
    Db* conns[2] = {m1, m2.get()};
    m1->exec("INSERT INTO t VALUES (0, 'start', 0, NULL)");
    p->sync(*m1);
    for (int j = 1; j <= 30; ++j) {
        Db& w = *conns[j % 2];
        w.exec("UPDATE t SET b = " + std::to_string(j) + ", a = 'conn" + std::to_string(j % 2) + "' WHERE id = 0");
        if (j % 3 == 0 || j > 25) {
            p->sync(*m1);
            EXPECT_EQ(p->one("SELECT b FROM t WHERE id = 0"), Val(j)) << "after write " << j;
        }
    }
    // Also through a peer that pulls with its own connection.
    Db& q = cl.add("q", kSchemaT, {"t"});
    EXPECT_EQ(m2->text("SELECT json_extract(lww_sync(?), '$.peer')", {q.url()}), q.node_id());
    EXPECT_EQ(q.table("t"), m1->table("t"));
    EXPECT_EQ(p->table("t"), m1->table("t"));
}

TEST_P(Connections, AppliesOnBothConnectionsKeepNodesApart) {
    const uint64_t h = hlc_at(now_ms() - 5000);
    auto set_from = [&](const std::string& node, int id) {
        return craft_cs(
            node, {node},
            {craft_table("\"t\"", "[\"id\"]", "[\"a\"]",
                         {{"[" + std::to_string(id) + "]", 1, h + id, 0, true, "[[0,\"" + node + "\"]]"}})});
    };
    m1->apply(set_from(kNode1, 1));
    m2->apply(set_from(kNode2, 2));
    m1->apply(set_from(kNode3, 3));
    m2->exec("INSERT INTO t VALUES (4, 'local', NULL, NULL)");
    const std::string self = m1->node_id();
    for (Db* d : {m1, m2.get()}) {
        ParsedCS cs = parse_cs(d->changes(0));
        ASSERT_EQ(cs.rows.size(), 4u);
        for (const auto& r : cs.regs) {
            const std::string want = r.key == "int:1"   ? kNode1
                                     : r.key == "int:2" ? kNode2
                                     : r.key == "int:3" ? kNode3
                                                        : self;
            EXPECT_EQ(r.node, want) << r.key;
        }
    }
    auto fresh = cl.connect("m");
    ParsedCS cs = parse_cs(fresh->changes(0));
    for (const auto& r : cs.regs) {
        if (r.key == "int:2") {
            EXPECT_EQ(r.node, kNode2);
        }
    }
    p->sync(*fresh);
    EXPECT_EQ(p->table("t"), m1->table("t"));
}

TEST_P(Connections, WriteAfterMergeOnTheOtherConnectionBeatsIt) {
    const uint64_t ahead = hlc_at(now_ms() + 120000, 3);
    const std::string cs =
        craft_cs(kNode1, {kNode1},
                 {craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[1]", 1, ahead, 0, true, "[[0,\"merged\"]]"}})});
    m1->exec("INSERT INTO t VALUES (2, 'x', NULL, NULL)");
    m2->seq();  // m2 has loaded its state before the merge
    m1->apply(cs);
    p->apply(cs);
    m2->exec("UPDATE t SET a = 'written after' WHERE id = 1");
    ParsedCS mine = parse_cs(m2->changes(m2->seq() - 1));
    ASSERT_EQ(mine.regs.size(), 1u);
    EXPECT_GT(mine.regs[0].hlc, ahead);
    p->sync(*m1);
    EXPECT_EQ(p->one("SELECT a FROM t WHERE id = 1"), Val("written after"));
}

TEST_P(Connections, DriftSettingOfOneConnectionHoldsOnTheOther) {
    m2->seq();  // m2 has loaded its state before the change
    EXPECT_EQ(m1->i64("SELECT lww_config('max_drift_ms', 1000)"), 1000);
    EXPECT_EQ(m2->i64("SELECT lww_config('max_drift_ms')"), 1000);
    const std::string cs = craft_cs(
        kNode2, {kNode2},
        {craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[1]", 1, hlc_at(now_ms() + 2500), 0, true, "[[0,\"x\"]]"}})});
    EXPECT_TRUE(FailsCleanly(*m2, "SELECT lww_apply(?)", {cs}, "lww_apply: ", kNode2));
}

INSTANTIATE_TEST_SUITE_P(JournalModes, Connections, ::testing::Values("WAL", "DELETE"));

// ------------------------------------------------------------------ races
//
// A progress handler on one connection runs a write on another connection
// at the k-th VM step of a call, for every k: a deterministic sweep over
// every point at which a concurrent transaction can commit.

struct Injector {
    int countdown = 0;
    bool fired = false;
    std::function<void()> action;
    static int cb(void* p) {
        auto* in = static_cast<Injector*>(p);
        if (!in->fired && --in->countdown == 0) {
            in->fired = true;
            in->action();
        }
        return 0;
    }
    void arm(Db& db, int k, std::function<void()> f) {
        countdown = k;
        fired = false;
        action = std::move(f);
        sqlite3_progress_handler(db.handle(), 1, &Injector::cb, this);
    }
    static void disarm(Db& db) { sqlite3_progress_handler(db.handle(), 0, nullptr, nullptr); }
};

class Races : public ::testing::Test {
protected:
    void SetUp() override {
        m = &cl.add("m", kSchemaT, {"t"});
        m->exec("PRAGMA journal_mode=WAL");
        other = cl.connect("m");
        sqlite3_busy_timeout(other->handle(), 0);  // never wait inside the handler
        p = &cl.add("p", kSchemaT, {"t"});
    }
    // The peer pulls everything after its cursor from connection `from`.
    void pull(Db& from) {
        std::string cs = from.changes(since);
        p->apply(cs);
        since = static_cast<int64_t>(parse_cs(cs).upto);
    }
    Cluster cl;
    Db* m = nullptr;
    std::unique_ptr<Db> other;
    Db* p = nullptr;
    int64_t since = 0;
};

TEST_F(Races, ChangesTakenWhileAnotherConnectionCommitsLoseNothing) {
    Injector inj;
    int injected = 0;
    bool failed = false;
    for (int k = 1; k < 5000; ++k) {
        const std::string id = std::to_string(k);
        m->exec("INSERT INTO t VALUES (" + id + ", 'a0', 'b0', NULL)");
        pull(*m);
        m->exec("UPDATE t SET a = 'a1' WHERE id = " + id);
        bool wrote = false;
        inj.arm(*m, k, [&] { wrote = other->run("UPDATE t SET b = 'b1' WHERE id = " + id).ok; });
        std::string cs = m->changes(since);
        Injector::disarm(*m);
        p->apply(cs);
        since = static_cast<int64_t>(parse_cs(cs).upto);
        if (!wrote) other->exec("UPDATE t SET b = 'b1' WHERE id = " + id);
        injected += wrote;
        pull(*m);
        const V want{"int:" + id + " | text:'a1' | text:'b1' | NULL"};
        V got = p->rows("SELECT * FROM t WHERE id = " + id).empty()
                    ? V{}
                    : V{row_repr(p->rows("SELECT * FROM t WHERE id = " + id)[0])};
        if (got != want) {
            ADD_FAILURE() << "a write committed by another connection at step " << k
                          << " of lww_changes() was lost for the puller: peer has "
                          << (got.empty() ? "nothing" : got[0]) << ", want " << want[0];
            failed = true;
            break;
        }
        if (!inj.fired) break;  // k went past the end of the call: every point covered
    }
    if (!failed) {
        EXPECT_GT(injected, 10);
    }
}

TEST_F(Races, ApplyWhileAnotherConnectionCommitsLosesNothing) {
    Injector inj;
    int injected = 0;
    bool failed = false;
    const uint64_t h = hlc_at(now_ms() - 60000);
    for (int k = 1; k < 5000; ++k) {
        const std::string set =
            craft_cs(kNode1, {kNode1},
                     {craft_table("\"t\"", "[\"id\"]", "[\"a\"]",
                                  {{"[" + std::to_string(100000 + k) + "]", 1, h + k, 0, true, "[[0,\"merged\"]]"}})});
        const std::string local = std::to_string(200000 + k);
        bool wrote = false;
        inj.arm(*m, k, [&] {
            // Another connection commits a local write, and the peer pulls
            // right away through that connection.
            wrote = other->run("INSERT INTO t VALUES (" + local + ", 'local', NULL, NULL)").ok;
            if (wrote) pull(*other);
        });
        Outcome o = m->run("SELECT lww_apply(?)", {set});
        Injector::disarm(*m);
        if (!o.ok) {  // a busy/snapshot error is fine; it must leave nothing behind
            EXPECT_NE(o.err.find("lock"), std::string::npos) << o.err;
            m->apply(set);
        }
        if (!wrote) other->exec("INSERT INTO t VALUES (" + local + ", 'local', NULL, NULL)");
        injected += wrote;
        pull(*m);
        if (p->table("t") != m->table("t")) {
            ADD_FAILURE() << "after a commit by another connection at step " << k
                          << " of lww_apply(), the peer misses rows:\n"
                          << dump_diff(m->table("t"), p->table("t"));
            failed = true;
            break;
        }
        if (!inj.fired) break;
    }
    if (!failed) {
        EXPECT_GT(injected, 10);
    }
    std::set<int64_t> seqs;
    // Distinct sequences: every row here was written exactly once.
    for (const Row& r : m->rows("SELECT max_seq FROM lww__t"))
        EXPECT_TRUE(seqs.insert(r[0].i).second) << "seq " << r[0].i << " used twice";
}

}  // namespace
