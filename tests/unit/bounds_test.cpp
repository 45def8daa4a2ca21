// Bounds on every number a peer sends, and on every document's shape
// (issue 8): nothing wraps, overflows, recurses, or produces a value that
// another peer would refuse.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "../../common/changeset.h"
#include "../../common/error.h"
#include "../../common/exchange.h"
#include "../../common/hlc.h"
#include "../../common/http_client.h"
#include "../../common/peer_notices.h"
#include "../../common/json.h"
#include "../../common/merge.h"

using namespace lww;

namespace {

const std::string kNode = "00000000-0000-4000-8000-0000000000aa";

std::string changeset(const std::string& tables, const std::string& range = R"("since":"0","upto":"1")") {
    return R"({"format":"lwwsync.changeset","version":1,"origin":")" + kNode + R"(",)" + range + R"(,"nodes":[")" +
           kNode + R"("],"tables":[)" + tables + "]}";
}

std::string table(const std::string& rows, const std::string& columns = R"(["v"])", const std::string& name = "t") {
    return R"({"name":")" + name + R"(","key":["id"],"columns":)" + columns + R"(,"rows":[)" + rows + "]}";
}

std::string row(const std::string& hlc, const std::string& cols = R"([[0,"x"]])", const std::string& gen = "1") {
    return R"({"key":[1],"gen":)" + gen + R"(,"stamp":[")" + hlc + R"(",0],"cols":)" + cols + "}";
}

std::string error_of(const std::string& json) {
    try {
        decode_changeset(json);
    } catch (const Error& e) {
        return e.what();
    }
    return "(accepted)";
}

const std::string kNow = std::to_string(uint64_t(1700000000000) << 16);

// A database with nothing in it, noting what it observed and whom it authorized.
class EmptyEngine : public SyncEngine {
public:
    NodeId self() override { return NodeId::parse("00000000-0000-4000-8000-0000000000bb"); }
    Cursor cursor_of(const NodeId&) override { return {}; }
    Batch changes(const ChangesRequest&) override { return {}; }
    ApplyCounts apply_from(const NodeId&, const ChangeSet&, Trust, uint64_t) override { return {}; }
    uint64_t clock_now() override { return 0; }
    void observe_clock(uint64_t hlc) override { observed = hlc; }
    uint64_t max_drift_ms() override { return kDefaultMaxDriftMs; }
    void authorize(const NodeId& n, bool) override { authorized = n.str(); }
    uint64_t observed = 0;
    std::string authorized;
};

}  // namespace

TEST(Bounds, SequencesStayBelowTwoToThe63) {
    EXPECT_EQ(error_of(changeset(table(row(kNow)), R"("since":"0","upto":"9223372036854775807")")), "(accepted)");
    EXPECT_NE(error_of(changeset(table(row(kNow)), R"("since":"0","upto":"9223372036854775808")")).find("below 2^63"),
              std::string::npos);
    EXPECT_NE(error_of(changeset(table(row(kNow)), R"("since":"18446744073709551615","upto":"1")")).find("below 2^63"),
              std::string::npos);
    const std::string head = R"({"format":"lwwsync.exchange","version":1,"node":")" + kNode + R"(")";
    EXPECT_THROW(decode_request(head + R"(,"received":"9223372036854775808"})"), Error);
    EXPECT_THROW(decode_response(head + R"(,"acked":"1","acked_floor":"9223372036854775808"})"), Error);
    EXPECT_NO_THROW(decode_response(head + R"(,"acked":"9223372036854775807"})"));
}

TEST(Bounds, StampsAndClocksEndBeforeTheYear6400) {
    const std::string last = std::to_string(hlc_pack(kMaxStampMillis, 0xFFFF));
    const std::string past = std::to_string(hlc_pack(kMaxStampMillis + 1, 0));
    EXPECT_EQ(error_of(changeset(table(row(last)))), "(accepted)");
    EXPECT_NE(error_of(changeset(table(row(past)))).find("hlc out of range"), std::string::npos);
    EXPECT_NE(error_of(changeset(table(row("18446744073709551615")))).find("hlc out of range"), std::string::npos);
    const std::string head = R"({"format":"lwwsync.exchange","version":1,"node":")" + kNode + R"(","acked":"0")";
    EXPECT_THROW(decode_response(head + R"(,"clock":"18446744073709551615"})"), Error);
    EXPECT_THROW(decode_response(head + R"(,"clock":")" + past + R"("})"), Error);
    EXPECT_EQ(decode_response(head + R"(,"clock":")" + last + R"("})").clock, hlc_pack(kMaxStampMillis, 0xFFFF));
}

// A server's purge fields (docs/PROTOCOL.md, "Purge and re-snapshot"), as a
// hostile server may send them: refused whole, with what is wrong.
TEST(Bounds, PurgeFieldsOfAServerAreChecked) {
    const std::string head = R"({"format":"lwwsync.exchange","version":1,"node":")" + kNode + R"(","acked":"0")";
    auto refused = [&](const std::string& tail, const char* want) {
        try {
            decode_response(head + tail + "}");
        } catch (const Error& e) {
            return std::string(e.what()).find(want) != std::string::npos;
        }
        return false;
    };
    const ParsedResponse ok =
        decode_response(head + R"(,"horizon":"12","floors":{"t":"4","u":"9007199254740991"},"absent":[0,3,9999]})");
    EXPECT_EQ(ok.horizon, 12u);
    ASSERT_EQ(ok.floors.size(), 2u);
    EXPECT_EQ(ok.floors[1].second, 9007199254740991u);
    ASSERT_TRUE(ok.absent);
    EXPECT_EQ(ok.absent->size(), 3u);
    EXPECT_TRUE(refused(R"(,"horizon":"9223372036854775808")", "below 2^63"));
    EXPECT_TRUE(refused(R"(,"floors":{"t":"9007199254740992"})", "generations"));  // past 2^53 - 1
    EXPECT_TRUE(refused(R"(,"floors":{"t":4})", "generations"));
    EXPECT_TRUE(refused(R"(,"floors":{"t":"-1"})", "generations"));
    EXPECT_TRUE(refused(R"(,"floors":{"t":"18446744073709551616"})", "generations"));
    EXPECT_TRUE(refused(R"(,"floors":{"":"1"})", "generations"));
    EXPECT_TRUE(refused(R"(,"floors":[1])", "\"floors\" must be an object"));
    EXPECT_TRUE(refused(R"(,"absent":[3,3])", "increasing"));
    EXPECT_TRUE(refused(R"(,"absent":[10000])", "below 10000"));
    EXPECT_TRUE(refused(R"(,"absent":[-1])", "increasing"));
    EXPECT_TRUE(refused(R"(,"absent":{})", "at most 10000"));
    EXPECT_TRUE(refused(R"(,"resnapshot":1)", "true or false"));
    // Numbers of the envelope: too large is out of range, anything else malformed.
    EXPECT_TRUE(refused(R"(,"remaining":"18446744073709551616")", "is out of range"));
    EXPECT_TRUE(refused(R"(,"remaining":"1a")", "must be a decimal string"));
    EXPECT_TRUE(refused(R"(,"remaining":"000000000000000000001")", "must be a decimal string"));
}

TEST(Bounds, TheClockNeverWraps) {
    HybridClock c;
    c.observe(UINT64_MAX);  // not a stamp: ignored
    EXPECT_LT(c.last(), uint64_t(1) << 63);
    c.observe(hlc_pack(kMaxStampMillis, 0xFFFE));
    EXPECT_EQ(c.tick(0), hlc_pack(kMaxStampMillis, 0xFFFF));
    try {
        c.tick(0);
        FAIL() << "a clock at its end ticked";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::limit);
    }
    EXPECT_EQ(c.last(), hlc_pack(kMaxStampMillis, 0xFFFF));
    // A wall clock beyond the range does not push stamps past it either.
    HybridClock d;
    EXPECT_LE(hlc_millis(d.tick(UINT64_MAX >> 8)), kMaxStampMillis);
}

TEST(Bounds, TrustedClockIsADayAtMost) {
    const NodeId server = NodeId::parse(kNode);
    const uint64_t now = 1700000000000;
    EXPECT_NO_THROW(HybridClock::check_drift(hlc_pack(now + 3600 * 1000, 0), now, server, kMaxTrustedAheadMs));
    try {
        HybridClock::check_drift(hlc_pack(now + 2 * kMaxTrustedAheadMs, 0), now, server, kMaxTrustedAheadMs);
        FAIL() << "a clock two days ahead was trusted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(kNode), std::string::npos) << e.what();
    }
}

TEST(Bounds, GenerationsSaturateWithAClearError) {
    EXPECT_EQ(gen_after_delete(kMaxGeneration - 1), kMaxGeneration - 1);  // already dead
    EXPECT_EQ(gen_after_insert(kMaxGeneration - 1), kMaxGeneration);
    EXPECT_THROW(gen_after_delete(kMaxGeneration), Error);
    RowState st(1);
    st.gen = kMaxGeneration;
    try {
        local_delete(st, Stamp{1, NodeId{}}, 1);
        FAIL() << "deleted past the last generation";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::limit);
        EXPECT_NE(std::string(e.what()).find("limit"), std::string::npos);
    }
    EXPECT_EQ(st.gen, kMaxGeneration);
    // Incoming: at most 2^32 generations in one step.
    RowState fresh(1);
    IncomingRow in;
    in.has_row = true;
    in.row = Stamp{1, NodeId{}};
    in.gen = kMaxGenerationStep + 1;
    EXPECT_THROW(merge_row(fresh, in, 1), Error);
    in.gen = kMaxGenerationStep - 1;
    EXPECT_NO_THROW(merge_row(fresh, in, 1));
    in.gen = kMaxGeneration + 2;
    EXPECT_THROW(merge_row(fresh, in, 2), Error);
    EXPECT_NE(error_of(changeset(table(row(kNow, R"([[0,"x"]])", "9007199254740992")))).find("gen"), std::string::npos);
    // A generation raised to a deleted one without saying who deleted it.
    EXPECT_NE(error_of(changeset(table(row(kNow, R"([[0,"x"]])", "4")))).find("must carry its row register"),
              std::string::npos);
}

TEST(Bounds, OneRegisterPerColumnAndUniqueNames) {
    const std::string h1 = std::to_string((uint64_t(1700000000000) << 16) + 10);
    const std::string h2 = std::to_string((uint64_t(1700000000000) << 16) + 5);
    EXPECT_NE(error_of(changeset(table(row(kNow, R"([[0,"a",")" + h1 + R"(",0],[0,"b",")" + h2 + R"(",0]])"))))
                  .find("two registers in one row"),
              std::string::npos);
    // One entry per key: a repeated key could raise a row's generation by
    // 2^32 once per repetition. (A bare 1 and {"int":"1"} are one key.)
    EXPECT_NE(error_of(changeset(table(row(kNow) + "," + row(kNow)))).find("key appears twice"), std::string::npos);
    std::string other = row(kNow);
    other.replace(other.find("[1]"), 3, R"([{"int":"1"}])");
    EXPECT_NE(error_of(changeset(table(row(kNow) + "," + other))).find("key appears twice"), std::string::npos);
    std::string two = row(kNow);
    two.replace(two.find("[1]"), 3, "[2]");
    EXPECT_EQ(error_of(changeset(table(row(kNow) + "," + two))), "(accepted)");
    EXPECT_NE(error_of(changeset(table(row(kNow), R"(["v","v"])"))).find("named twice"), std::string::npos);
    EXPECT_NE(error_of(changeset(table(row(kNow), R"(["id"])"))).find("named twice"), std::string::npos);
    EXPECT_NE(error_of(changeset(table(row(kNow)) + "," + table(row(kNow)))).find("appears twice"), std::string::npos);
    EXPECT_NE(error_of(changeset(table(row(kNow), R"(["v\u0000"])"))).find("NUL"), std::string::npos);
    EXPECT_NE(error_of(changeset(table(row(kNow), "[\"" + std::string(1001, 'c') + "\"]"))).find("1000 bytes"),
              std::string::npos);
}

TEST(Bounds, NestingIsBoundedWhileParsing) {
    rapidjson::Document d;
    std::string error;
    const std::string deep32 = std::string(32, '[') + std::string(32, ']');
    EXPECT_TRUE(parse_json(d, deep32, error)) << error;
    const std::string deep33 = std::string(33, '[') + std::string(33, ']');
    EXPECT_FALSE(parse_json(d, deep33, error));
    EXPECT_NE(error.find("nested deeper than 32"), std::string::npos) << error;
    EXPECT_TRUE(d.IsNull());
    // A million levels: refused at level 33, without recursion or a huge DOM.
    EXPECT_FALSE(parse_json(d, std::string(1000000, '['), error));
    EXPECT_NE(error_of(std::string(100000, '[')).find("nested deeper"), std::string::npos);
    EXPECT_THROW(decode_request(std::string(100000, '{') + "\"a\":"), Error);
}

// An HTTP error body is bounded in size and depth before it is parsed.
TEST(Bounds, HttpErrorBodies) {
    EXPECT_EQ(http_error_message(R"({"message":"nope"})"), "nope");
    const std::string deep = std::string(200000, '[');
    const std::string shown = http_error_message(deep);
    EXPECT_EQ(shown, std::string(300, '['));
    EXPECT_EQ(http_error_message(R"({"message":)" + std::string(100, '[') + "}"),
              R"({"message":)" + std::string(100, '[') + "}");
    EXPECT_EQ(http_error_message("line one\nline two\r\n"), "line one line two");
    EXPECT_EQ(http_error_message(""), "no message");
    // A server's text reaches terminals and logs: no escapes, UTF-8 only.
    EXPECT_EQ(http_error_message("{\"message\":\"\\u001b[31mred\"}"), "[31mred");
    EXPECT_EQ(http_error_message("caf\xc3\xa9 \xff"), "caf\xc3\xa9 ?");
    EXPECT_EQ(http_error_message(R"({"message":""})"), "no message");
    // A huge message is cut.
    EXPECT_EQ(http_error_message(R"({"message":")" + std::string(5000, 'm') + R"("})").size(), 1200u);
    // A proxy's HTML page is one line: its title.
    EXPECT_EQ(
        http_error_message("<html>\r\n<head><TITLE>413 Request Entity Too Large</TITLE></head>\r\n<body>\r\n"
                           "<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n"
                           "</body>\r\n</html>\r\n"),
        "413 Request Entity Too Large");
    EXPECT_EQ(http_error_message("<html><body>no title</body></html>"), "<html><body>no title</body></html>");
}

// What a libpq peer says outside a result is kept, bounded, one printable
// line each, for the adapter to route — never printed by libpq.
TEST(Bounds, PeerNoticesAreKeptBoundedAndPrintable) {
    PeerNotices n;
    EXPECT_EQ(n.said(), "");
    n.add("DEBUG", "StartTransaction(1) name: unnamed;\n blockState: DEFAULT");
    EXPECT_EQ(n.said(), "") << "debug lines are not the peer's words on an error";
    n.add("WARNING", "you asked for it\n\x1b[31m");
    n.add("FATAL", "terminating connection due to administrator command\n");
    EXPECT_EQ(n.said(),
              " (the peer said: WARNING: you asked for it [31m; FATAL: terminating connection due to"
              " administrator command)");
    std::vector<PeerNotice> got = n.take();
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].level, PeerNotice::Level::debug);
    EXPECT_EQ(got[1].level, PeerNotice::Level::warning);
    EXPECT_EQ(got[2].level, PeerNotice::Level::fatal);
    EXPECT_TRUE(n.take().empty()) << "take returns each notice once";
    for (int i = 0; i < 100; ++i) n.add("NOTICE", std::string(5000, 'x').c_str());
    got = n.take();
    EXPECT_EQ(got.size(), PeerNotices::kKept);
    EXPECT_EQ(got.back().text.size(), PeerNotices::kChars);
    n.add(nullptr, nullptr);
    EXPECT_EQ(n.take().at(0).text, "");
}

// Item 9: a hostile server's clock of 2^64 - 1 (or a day ahead) never
// reaches the client's clock.
TEST(Bounds, RunSyncRefusesAHostileServerClock) {
    EmptyEngine engine;
    auto answer = [](const std::string& clock) {
        return [clock](const std::string&) {
            return R"({"format":"lwwsync.exchange","version":1,"node":")" + kNode + R"(","acked":"0","clock":")" +
                   clock + R"(","more":false})";
        };
    };
    EXPECT_THROW(run_sync(engine, answer("18446744073709551615"), BatchLimits{}), Error);
    const uint64_t two_days = hlc_pack(wall_clock_ms() + 2 * kMaxTrustedAheadMs, 0);
    EXPECT_THROW(run_sync(engine, answer(std::to_string(two_days)), BatchLimits{}), Error);
    EXPECT_EQ(engine.observed, 0u);
    const uint64_t an_hour = hlc_pack(wall_clock_ms() + 3600 * 1000, 0);
    EXPECT_NO_THROW(run_sync(engine, answer(std::to_string(an_hour)), BatchLimits{}));
    EXPECT_EQ(engine.observed, an_hour);  // a client behind by an hour still adopts its server's clock
}

// A node id derived from a key is only its key holder's (SECURITY.md).
TEST(NodeKeys, KeyedIdsNeedTheirKey) {
    const std::string key(NodeId::kKeyBytes, '\x01');
    const NodeId id = NodeId::from_key(key);
    EXPECT_TRUE(id.keyed());
    EXPECT_EQ(id.str()[14], '8');  // a version 8 UUID
    EXPECT_EQ(NodeId::from_key(key), id);
    EXPECT_NE(NodeId::from_key(std::string(NodeId::kKeyBytes, '\x02')), id);
    EXPECT_FALSE(NodeId::random_v4().keyed());
    EXPECT_THROW(NodeId::from_key("short"), Error);
    EXPECT_NE(NodeId::random_key(), NodeId::random_key());

    EmptyEngine server;
    auto request = [](const NodeId& node, const std::string& k) {
        ExchangeRequest r;
        r.node = node;
        r.node_key = k;
        return encode_request(r);
    };
    auto refusal = [&](const std::string& req) -> std::string {
        try {
            serve_exchange(server, req);
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::permission) << e.what();
            return e.what();
        }
        return "(served)";
    };
    EXPECT_NE(refusal(request(id, "")).find("must show its key"), std::string::npos);
    EXPECT_NE(refusal(request(id, std::string(NodeId::kKeyBytes, '\x02'))).find("does not belong"), std::string::npos);
    EXPECT_TRUE(server.authorized.empty());
    EXPECT_EQ(refusal(request(id, key)), "(served)");
    EXPECT_EQ(server.authorized, id.str());
    // A random (version 4) id, from before keys, needs none.
    const NodeId old = NodeId::random_v4();
    EXPECT_EQ(refusal(request(old, "")), "(served)");
    const std::string head = R"({"format":"lwwsync.exchange","version":1,"node":")" + id.str() + R"(","node_key":)";
    EXPECT_THROW(decode_request(head + R"("AQID"})"), Error);  // 3 bytes
    EXPECT_THROW(decode_request(head + R"(17})"), Error);
}

// Found by fuzzing (tests/security/findings/README.md, F1-F4).
TEST(Bounds, NumbersAreReadExactlyOrRefused) {
    rapidjson::Document d;
    std::string error;
    // RapidJSON 1.1.0's full-precision path crashed on the first, read garbage
    // for the next two; numbers are now converted with std::from_chars.
    EXPECT_FALSE(parse_json(d, "[128.74836467836484838364836483643636483648e-336]", error));
    EXPECT_NE(error.find("out of the range of a double"), std::string::npos) << error;
    ASSERT_TRUE(parse_json(
        d, "[0e80, 0.184467440737095516159, 5e-324, -0.0, 18446744073709551615, -9223372036854775808, 1e20]", error))
        << error;
    EXPECT_EQ(d[0].GetDouble(), 0.0);
    EXPECT_EQ(d[1].GetDouble(), 0.184467440737095516159);
    EXPECT_EQ(d[2].GetDouble(), 5e-324);
    EXPECT_TRUE(std::signbit(d[3].GetDouble()));
    EXPECT_EQ(d[4].GetUint64(), UINT64_MAX);
    EXPECT_EQ(d[5].GetInt64(), INT64_MIN);
    EXPECT_TRUE(d[6].IsDouble());
    EXPECT_FALSE(parse_json(d, "[2e308]", error));
    EXPECT_FALSE(parse_json(d, "[1e400]", error));
    // Stray byte-order-mark bytes are not JSON.
    EXPECT_FALSE(parse_json(d, "\xBB[1]", error));
    // The nil UUID is nobody's node id; names must be UTF-8.
    NodeId n;
    EXPECT_FALSE(NodeId::try_parse("00000000-0000-0000-0000-000000000000", n));
    EXPECT_NE(error_of(changeset(table(row(kNow), "[\"\\udc00\"]"))).find("not valid UTF-8"), std::string::npos);
}

namespace {

// Notes what a round trip asked of the engine; writable() as told.
class NotingEngine : public EmptyEngine {
public:
    explicit NotingEngine(bool can_write) : can_write_(can_write) {}
    bool writable() override { return can_write_; }
    void authorize(const NodeId& n, bool bind) override {
        authorized = n.str();
        bound = bind;
    }
    Batch changes(const ChangesRequest&) override {
        Batch b;
        b.json = R"({"format":"lwwsync.changeset","version":1,"origin":")" + self().str() +
                 R"(","since":"0","tables":[],"upto":"0","nodes":[]})";
        return b;
    }
    ApplyCounts retry_parked() override {
        ++retried;
        return {};
    }
    ApplyCounts apply_from(const NodeId&, const ChangeSet&, Trust, uint64_t) override {
        ++applied;
        return {};
    }
    bool bound = false;
    int retried = 0, applied = 0;

private:
    bool can_write_;
};

}  // namespace

// A round trip that pushes nothing asks nothing that writes (a hot standby
// serves it); one that pushes, at a server that cannot write, is refused as
// read-only before anything runs.
TEST(Bounds, RoundTripsThatPushNothingWriteNothing) {
    const NodeId caller = NodeId::random_v4();
    ExchangeRequest hello;
    hello.node = caller;
    ExchangeRequest pull = hello;
    pull.received = Cursor{};
    ExchangeRequest push = hello;
    push.push = R"({"format":"lwwsync.changeset","version":1,"origin":")" + caller.str() +
                R"(","since":"0","tables":[],"upto":"0","nodes":[]})";
    ExchangeRequest forked = hello;
    forked.forked = true;

    NotingEngine standby(false);
    EXPECT_NO_THROW(serve_exchange(standby, encode_request(hello)));
    EXPECT_EQ(standby.authorized, caller.str());
    EXPECT_FALSE(standby.bound);
    EXPECT_EQ(standby.retried, 0);  // parked rows wait for the next push
    const ParsedResponse got = decode_response(serve_exchange(standby, encode_request(pull)));
    EXPECT_TRUE(got.pull.has_value());
    EXPECT_FALSE(standby.bound);
    for (const ExchangeRequest* r : {&push, &forked}) {
        standby.authorized.clear();
        try {
            serve_exchange(standby, encode_request(*r));
            ADD_FAILURE() << "a push was served by a read-only server";
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::read_only);
            EXPECT_NE(std::string(e.what()).find("send pushes to the primary"), std::string::npos) << e.what();
        }
        EXPECT_TRUE(standby.authorized.empty());  // refused before anything ran
    }
    EXPECT_EQ(standby.applied, 0);

    NotingEngine primary(true);
    serve_exchange(primary, encode_request(hello));
    EXPECT_FALSE(primary.bound);    // a hello binds nothing there either...
    EXPECT_EQ(primary.retried, 1);  // ...but retries parked rows where it can write
    serve_exchange(primary, encode_request(push));
    EXPECT_TRUE(primary.bound);
    EXPECT_EQ(primary.applied, 1);
}
