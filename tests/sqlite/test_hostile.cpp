// Peers that are not honest, against the SQLite extension (issue 8; the
// Postgres side is sql/hostile.sql): text that is not UTF-8, numbers
// out of range, duplicate registers, generations at their limit, a hostile
// server's error bodies and clock. Each of these broke something before.
#include <httplib.h>

#include <atomic>

#include "harness.h"

using namespace lwwt;

namespace {

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// A "server" answering every POST with a fixed status and body.
class FixedServer {
public:
    FixedServer(int status, std::string body) : status_(status), body_(std::move(body)) {
        svr_.Post("/rpc/lww_exchange", [this](const httplib::Request&, httplib::Response& res) {
            ++requests;
            res.status = status_;
            res.set_content(body_, "application/json");
        });
        port_ = svr_.bind_to_any_port("127.0.0.1");
        if (port_ <= 0) throw std::runtime_error("test: cannot bind 127.0.0.1");
        thread_ = std::thread([this] { svr_.listen_after_bind(); });
        while (!svr_.is_running()) sleep_ms(1);
    }
    ~FixedServer() {
        svr_.stop();
        thread_.join();
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/rpc/lww_exchange"; }
    std::atomic<int> requests{0};

private:
    int status_;
    std::string body_;
    httplib::Server svr_;
    int port_ = 0;
    std::thread thread_;
};

class Hostile : public ::testing::Test {
protected:
    void SetUp() override {
        a = std::make_unique<Db>(dir.file("a.db"));
        a->exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
        a->track("t");
    }
    TempDir dir;
    std::unique_ptr<Db> a;
};

std::string exchange_answer(const std::string& clock) {
    return "{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"00000000-0000-4000-8000-0000000000ee\","
           "\"acked\":\"0\",\"clock\":\"" +
           clock + "\",\"more\":false}";
}

}  // namespace

// Item 10: text that is not UTF-8 is refused when written, naming the column,
// instead of poisoning every later change set (a peer refused the whole
// document, so good rows never synced either).
TEST_F(Hostile, TextThatIsNotUtf8IsRefusedAtWriteTime) {
    a->exec("INSERT INTO t VALUES (1, 'fine')");
    EXPECT_TRUE(FailsCleanly(*a, "INSERT INTO t VALUES (2, CAST(x'ff41' AS TEXT))", {}, "",
                             "column \"v\": the text is not valid UTF-8"));
    EXPECT_TRUE(FailsCleanly(*a, "UPDATE t SET v = CAST(x'c0af' AS TEXT) WHERE id = 1", {}, "", "not valid UTF-8"));
    // In a key, too (a text-keyed table), and through a key change.
    a->exec("CREATE TABLE k(name TEXT PRIMARY KEY, n INTEGER)");
    a->track("k");
    EXPECT_TRUE(FailsCleanly(*a, "INSERT INTO k VALUES (CAST(x'80' AS TEXT), 1)", {}, "", "column \"name\""));
    a->exec("INSERT INTO k VALUES ('ok', 1)");
    EXPECT_TRUE(
        FailsCleanly(*a, "UPDATE k SET name = CAST(x'fe' AS TEXT) WHERE name = 'ok'", {}, "", "column \"name\""));
    // Bytes belong in a BLOB, which syncs as bytes.
    a->exec("INSERT INTO t VALUES (3, x'ff41')");
    Db b(dir.file("b.db"));
    b.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
    b.exec("CREATE TABLE k(name TEXT PRIMARY KEY, n INTEGER)");
    b.track("t");
    b.track("k");
    b.sync(*a);
    EXPECT_EQ(a->table("t"), b.table("t"));
    EXPECT_EQ(a->table("k"), b.table("k"));
    EXPECT_EQ(b.one("SELECT typeof(v) FROM t WHERE id = 3").s, "blob");
}

TEST_F(Hostile, TrackRefusesATableHoldingTextThatIsNotUtf8) {
    a->exec("CREATE TABLE old(id INTEGER PRIMARY KEY, v TEXT)");
    a->exec("INSERT INTO old VALUES (1, 'fine'), (2, CAST(x'ff' AS TEXT))");
    EXPECT_TRUE(
        FailsCleanly(*a, "SELECT lww_track('old')", {}, "lww_track:", "column \"v\": the text is not valid UTF-8"));
    a->exec("UPDATE old SET v = x'ff' WHERE id = 2");
    EXPECT_EQ(a->track("old"), 2);
}

// A database whose triggers predate the UTF-8 check (schema 1) gets the
// current ones when the extension next opens it.
TEST_F(Hostile, OlderTriggersAreUpgradedOnOpen) {
    a->exec("DROP TRIGGER \"lww__t__ins\"; UPDATE lww_state SET value = 1 WHERE key = 'schema'");
    a.reset();
    a = std::make_unique<Db>(dir.file("a.db"));
    EXPECT_EQ(a->node_id().size(), 36u);  // any call upgrades
    EXPECT_EQ(a->i64("SELECT value FROM lww_state WHERE key = 'schema'"), 6);
    EXPECT_TRUE(FailsCleanly(*a, "INSERT INTO t VALUES (9, CAST(x'ff' AS TEXT))", {}, "", "not valid UTF-8"));
    const int64_t before = a->seq();
    a->exec("INSERT INTO t VALUES (9, 'captured')");
    EXPECT_GT(a->seq(), before);
}

// Item 14: a negative "after" made a cursor receivers refuse.
TEST_F(Hostile, ChangesRefusesANegativeAfter) {
    a->exec("INSERT INTO t VALUES (1, 'x')");
    EXPECT_TRUE(FailsCleanly(*a, "SELECT lww_changes(0, 1, -1)", {}, "lww_changes:", "after must be >= since"));
}

// Item 6: a local write past the last generation is refused (it used to
// write 2^53, after which every peer refused every sync).
TEST_F(Hostile, GenerationAtItsLimitRefusesLocalWrites) {
    a->exec("INSERT INTO t VALUES (7, 'seven')");
    a->exec("UPDATE lww__t SET gen = 9007199254740991 WHERE k0 = 7");
    EXPECT_TRUE(FailsCleanly(*a, "DELETE FROM t WHERE id = 7", {}, "", "generation reached its limit"));
    EXPECT_EQ(a->text("SELECT v FROM t WHERE id = 7"), "seven");
    // Incoming, a generation may rise by at most 2^32 per register.
    const std::string node = "00000000-0000-4000-8000-0000000000cc";
    const std::string hlc = std::to_string(now_ms() << 16);
    const std::string cs =
        "{\"format\":\"lwwsync.changeset\",\"version\":1,\"origin\":\"" + node +
        "\",\"since\":\"0\",\"upto\":\"1\",\"nodes\":[\"" + node +
        "\"],\"tables\":[{\"name\":\"t\",\"key\":[\"id\"],\"columns\":[\"v\"],\"rows\":[{\"key\":[8],"
        "\"gen\":8589934593,\"stamp\":[\"" +
        hlc + "\",0],\"row\":true,\"cols\":[[0,\"x\"]]}]}]}";
    EXPECT_TRUE(FailsCleanly(*a, "SELECT lww_apply(?)", {cs}, "lww_apply:", "more than 2^32 at once"));
}

// Item 8: two registers for one column used to leave Postgres and SQLite
// holding different values under one stamp. Now malformed, in both.
TEST_F(Hostile, TwoRegistersForOneColumnAreMalformed) {
    const std::string node = "00000000-0000-4000-8000-0000000000cc";
    const uint64_t h = now_ms() << 16;
    const std::string head = "{\"format\":\"lwwsync.changeset\",\"version\":1,\"origin\":\"" + node +
                             "\",\"since\":\"0\",\"upto\":\"1\",\"nodes\":[\"" + node +
                             "\"],\"tables\":[{\"name\":\"t\",";
    const std::string twice = head +
                              "\"key\":[\"id\"],\"columns\":[\"v\"],\"rows\":[{\"key\":[1],\"gen\":1,\"stamp\":[\"" +
                              std::to_string(h) + "\",0],\"cols\":[[0,\"x_winner\",\"" + std::to_string(h + 10) +
                              "\",0],[0,\"y_loser\",\"" + std::to_string(h + 5) + "\",0]]}]}]}";
    EXPECT_TRUE(FailsCleanly(*a, "SELECT lww_apply(?)", {twice}, "lww_apply:", "has two registers in one row"));
    const std::string named_twice = head + "\"key\":[\"id\"],\"columns\":[\"v\",\"v\"],\"rows\":[]}]}";
    EXPECT_TRUE(FailsCleanly(*a, "SELECT lww_apply(?)", {named_twice}, "lww_apply:", "column \"v\" is named twice"));
}

// Item 2: an error body of 200 000 '[' crashed the host process (RapidJSON's
// recursive parser). Now it is an error like any other.
TEST_F(Hostile, DeeplyNestedErrorBodyIsAnError) {
    FixedServer server(400, std::string(200000, '['));
    Outcome o = a->run("SELECT lww_sync(?, '{\"retries\":0}')", {server.url()});
    ASSERT_FALSE(o.ok);
    EXPECT_TRUE(contains(o.err, "refused the exchange (HTTP 400)")) << o.err;
    EXPECT_TRUE(contains(o.err, "[[[[")) << o.err;  // shown as text, not parsed
    EXPECT_LT(o.err.size(), 1000u);
}

// Item 9: a server's clock of 2^64 - 1 wrapped the client's HLC to 0; later
// local writes were stamped 0 and refused everywhere. Now the answer is not
// an exchange response, and a clock more than a day ahead is refused.
TEST_F(Hostile, HostileServerClockIsRefused) {
    a->exec("INSERT INTO t VALUES (1, 'before')");
    {
        FixedServer server(200, exchange_answer("18446744073709551615"));
        Outcome o = a->run("SELECT lww_sync(?)", {server.url()});
        ASSERT_FALSE(o.ok);
        EXPECT_TRUE(contains(o.err, "\"clock\" is out of range")) << o.err;
    }
    {
        const uint64_t two_days = (now_ms() + 2ull * 86400 * 1000) << 16;
        FixedServer server(200, exchange_answer(std::to_string(two_days)));
        Outcome o = a->run("SELECT lww_sync(?)", {server.url()});
        ASSERT_FALSE(o.ok);
        EXPECT_TRUE(contains(o.err, "ahead of this clock")) << o.err;
        EXPECT_TRUE(contains(o.err, "00000000-0000-4000-8000-0000000000ee")) << o.err;
    }
    // The clock is where it was: a new write is stamped now and travels.
    a->exec("INSERT INTO t VALUES (2, 'after')");
    rapidjson::Document d = parse_json(a->changes(0));
    uint64_t newest = 0;
    for (const auto& r : d["tables"][0]["rows"].GetArray())
        newest = std::max<uint64_t>(newest, std::stoull(r["stamp"][0].GetString()));
    EXPECT_LE(newest >> 16, now_ms() + 1000);
    EXPECT_GE(newest >> 16, now_ms() - 60000);
}

// The trigger helpers are innocuous (a database's own triggers call them,
// trusted_schema or not), so a hostile file's views and triggers can call
// them with anything: an error, never a crash or a huge allocation.
TEST_F(Hostile, TriggerHelpersCheckTheirArguments) {
    EXPECT_TRUE(FailsCleanly(*a, "SELECT lww_begin_update_mask()", {}, "lww_begin_update_mask:", "ncols, masks"));
    EXPECT_TRUE(
        FailsCleanly(*a, "SELECT lww_begin_update_mask(68719476736)", {}, "lww_begin_update_mask:", "out of range"));
    EXPECT_TRUE(FailsCleanly(*a, "SELECT lww_begin_update_mask(-1, 1)", {}, "lww_begin_update_mask:", "out of range"));
    EXPECT_TRUE(FailsCleanly(*a, "SELECT lww_valid_text('t')", {}, "lwwsync:", "lww_valid_text(table, offset"));
    EXPECT_TRUE(FailsCleanly(*a, "SELECT lww_cols_set(x'ffffffffffffffffffff')", {}, "lww_cols_set:", "corrupt"));
    EXPECT_EQ(a->i64("SELECT lww_valid_text('nope', -5, 'fine', NULL, 1)"), 1);
    EXPECT_TRUE(
        FailsCleanly(*a, "SELECT lww_valid_text('nope', -5, CAST(x'ff' AS TEXT))", {}, "lwwsync:", "not valid UTF-8"));
    // A hostile peer file whose trigger calls one during a file: sync.
    Db peer(dir.file("peer.db"));
    peer.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
    peer.track("t");
    peer.exec("CREATE TRIGGER boom AFTER INSERT ON t BEGIN SELECT lww_begin_update_mask(); END");
    a->exec("INSERT INTO t VALUES (1, 'x')");
    Outcome o = a->run("SELECT lww_sync(?)", {peer.url()});
    ASSERT_FALSE(o.ok);
    EXPECT_TRUE(contains(o.err, "lww_begin_update_mask")) << o.err;
    EXPECT_EQ(a->text("SELECT v FROM t WHERE id = 1"), "x");
}

// A SQLite database's node id is derived from a key it keeps; a server (here
// another SQLite file serving lww_exchange) refuses the id without the key.
TEST_F(Hostile, NodeIdsAreDerivedFromAKey) {
    const std::string id = a->node_id();
    EXPECT_EQ(id[14], '8') << id;
    Db b(dir.file("b.db"));
    b.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
    b.track("t");
    const std::string hello = "{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"" + id + "\"}";
    EXPECT_TRUE(FailsCleanly(b, "SELECT lww_exchange(?)", {hello}, "lww_exchange:", "must show its key"));
    // lww_sync sends it: file: sync works as before.
    a->exec("INSERT INTO t VALUES (1, 'keyed')");
    b.sync(*a);
    EXPECT_EQ(b.text("SELECT v FROM t WHERE id = 1"), "keyed");
}
