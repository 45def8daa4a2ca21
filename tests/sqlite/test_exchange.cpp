// lww_exchange: the server side of one sync round trip, driven from SQL the
// way an HTTP gateway would drive it. One transaction: a refused request
// changes nothing.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "harness.h"

using namespace lwwt;

namespace {

using V = std::vector<std::string>;

// The keys of the test's databases, by node id: a request naming a keyed
// node id carries its key, as lww_sync sends it.
std::map<std::string, std::string>& node_keys() {
    static std::map<std::string, std::string> keys;
    return keys;
}
void remember_key(Db& db) {
    Outcome o = db.run("SELECT value FROM lww_state WHERE key = 'node_key'");
    if (o.ok && !o.rows.empty()) node_keys()[db.node_id()] = lww::base64_encode(o.rows[0][0].s);
}

// `floor` (when below `received`): the sender's sequence after which the
// caller may still lack registers, because the last pull was cut by a limit.
std::string request(const std::string& node, uint64_t received, const std::string& push = "", int64_t limit = 1000,
                    uint64_t floor = UINT64_MAX) {
    std::string r = "{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"" + node + "\",\"received\":\"" +
                    std::to_string(received) + "\",\"limit\":" + std::to_string(limit);
    auto key = node_keys().find(node);
    if (key != node_keys().end()) r += ",\"node_key\":\"" + key->second + "\"";
    if (floor < received) r += ",\"received_floor\":\"" + std::to_string(floor) + "\"";
    if (!push.empty()) r += ",\"push\":" + push;
    return r + "}";
}

std::string member_json(const std::string& doc, const char* name) {
    rapidjson::Document d = parse_json(doc);
    if (!d.HasMember(name)) throw std::runtime_error(std::string("no ") + name + " in " + doc);
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    d[name].Accept(w);
    return std::string(buf.GetString(), buf.GetSize());
}

std::string member_text(const std::string& doc, const char* name) {
    rapidjson::Document d = parse_json(doc);
    if (!d.HasMember(name) || !d[name].IsString()) throw std::runtime_error(std::string("no ") + name + " in " + doc);
    return d[name].GetString();
}

class Exchange : public ::testing::Test {
protected:
    void SetUp() override {
        server = &cl.add("server", kSchemaT, {"t"});
        client = &cl.add("client", kSchemaT, {"t"});
        remember_key(*client);
        server->exec("INSERT INTO t VALUES (1, 'server', NULL, NULL), (2, 'server', NULL, NULL)");
        client->exec("INSERT INTO t VALUES (3, 'client', NULL, NULL)");
    }
    std::string exchange(const std::string& req) { return server->text("SELECT lww_exchange(?)", {req}); }
    Cluster cl;
    Db* server = nullptr;
    Db* client = nullptr;
};

TEST_F(Exchange, OneRoundTripMovesBothWays) {
    const std::string push = client->changes(0);
    const std::string resp = exchange(request(client->node_id(), 0, push));
    EXPECT_EQ(member_text(resp, "format"), "lwwsync.exchange");
    EXPECT_EQ(member_text(resp, "node"), server->node_id());
    EXPECT_EQ(member_text(resp, "acked"), std::to_string(parse_cs(push).upto));
    EXPECT_EQ(json_int(member_json(resp, "applied"), "rows"), 1);
    // The server holds the pushed row, with the cursor committed alongside.
    EXPECT_EQ(server->i64("SELECT received FROM lww_peers WHERE node = ?", {client->node_id()}),
              static_cast<int64_t>(parse_cs(push).upto));
    // The pull carries the server's rows and not the client's own.
    const std::string pull = member_json(resp, "pull");
    ParsedCS pcs = parse_cs(pull);
    EXPECT_EQ(pcs.origin, server->node_id());
    EXPECT_EQ(pcs.rows.size(), 2u);
    for (const auto& r : pcs.regs) EXPECT_EQ(r.node, server->node_id());
    client->apply(pull);
    EXPECT_EQ(client->table("t"), server->table("t"));
    EXPECT_EQ(client->table("t").size(), 3u);
}

TEST_F(Exchange, PullRespectsReceivedAndLimit) {
    server->exec("INSERT INTO t VALUES (4, 'server', NULL, NULL), (5, 'server', NULL, NULL)");
    const std::string first = member_json(exchange(request(client->node_id(), 0, "", 2)), "pull");
    ParsedCS f = parse_cs(first);
    EXPECT_LE(f.rows.size(), 2u) << first;
    client->apply(first);
    const std::string rest =
        member_json(exchange(request(client->node_id(), f.upto, "", 1000, f.complete ? f.upto : f.since)), "pull");
    ParsedCS r = parse_cs(rest);
    EXPECT_EQ(r.after, f.upto);
    EXPECT_EQ(f.rows.size() + r.rows.size(), 4u);
    client->apply(rest);
    EXPECT_EQ(client->table("t").size(), 5u);
}

TEST_F(Exchange, RefusedRequestsChangeNothing) {
    const std::string me = client->node_id();
    const std::string push = client->changes(0);
    EXPECT_TRUE(FailsCleanly(*server, "SELECT lww_exchange(?)", {"{nope"}, "lww_exchange: ", "malformed JSON"));
    EXPECT_TRUE(FailsCleanly(*server, "SELECT lww_exchange(?)", {request(me, 0, push).substr(0, 60)},
                             "lww_exchange: ", "malformed JSON"));
    std::string v2 = request(me, 0, push);
    v2.replace(v2.find("\"version\":1"), 11, "\"version\":2");
    EXPECT_TRUE(FailsCleanly(*server, "SELECT lww_exchange(?)", {v2}, "lww_exchange: ", "version"));
    // A push that names another origin than the caller.
    EXPECT_TRUE(
        FailsCleanly(*server, "SELECT lww_exchange(?)", {request(kNode1, 0, push)}, "lww_exchange: ", "origin"));
    // A caller claiming the server's own node id.
    EXPECT_TRUE(FailsCleanly(*server, "SELECT lww_exchange(?)", {request(server->node_id(), 0)},
                             "lww_exchange: ", server->node_id()));
    // A pushed set with a table whose key does not match: nothing of it, and no cursor, lands.
    const std::string bad = craft_cs(
        me, {me},
        {craft_table("\"nope\"", "[\"id\"]", "[\"a\"]", {{"[9]", 1, hlc_at(now_ms()), 0, true, "[[0,\"x\"]]"}}),
         craft_table("\"t\"", "[\"k\"]", "[\"a\"]", {{"[1]", 1, hlc_at(now_ms()), 0, true, "[[0,\"x\"]]"}})});
    EXPECT_TRUE(FailsCleanly(*server, "SELECT lww_exchange(?)", {request(me, 0, bad)},
                             "lww_exchange: ", "key columns do not match"));
    // A push from the future.
    const std::string future = craft_cs(
        me, {me, kNode3},
        {craft_table("\"t\"", "[\"id\"]", "[\"a\"]", {{"[9]", 1, hlc_at(now_ms() + 600000), 1, true, "[[0,\"x\"]]"}})});
    EXPECT_TRUE(FailsCleanly(*server, "SELECT lww_exchange(?)", {request(me, 0, future)}, "lww_exchange: ", kNode3));
}

TEST_F(Exchange, PushBeyondTheCursorIsNotApplied) {
    // A push that starts after what the server holds would leave a gap.
    client->exec("INSERT INTO t VALUES (4, 'client', NULL, NULL)");
    const int64_t mid = client->seq() - 1;
    const auto before = server->table("t");
    const std::string resp = exchange(request(client->node_id(), 0, client->changes(mid)));
    EXPECT_EQ(member_text(resp, "acked"), "0");
    EXPECT_EQ(server->table("t"), before);
    // Resending from the acked cursor works.
    exchange(request(client->node_id(), 0, client->changes(0)));
    EXPECT_EQ(server->i64("SELECT count(*) FROM t"), 4);
}

}  // namespace
