// The exchange protocol and the client loop, engine-free: documents, options,
// byte-bounded batches, gzip, and run_sync/serve_exchange between in-memory
// engines over a transport that loses responses (the server committed, the
// client never heard) — the loop must converge with nothing lost or doubled.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "../../common/error.h"
#include "../../common/exchange.h"
#include "../../common/hlc.h"
#include "../../common/merge.h"
#include "../../common/gzip.h"
#include "../../common/http_client.h"
#include "../../common/sync_options.h"

using namespace lww;

namespace {

NodeId node(int i) {
    char buf[40];
    snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", i);
    return NodeId::parse(buf);
}

std::string gunzip(const std::string& in) {
    z_stream zs{};
    EXPECT_EQ(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
    std::string out(in.size() * 20 + 64, '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    EXPECT_EQ(inflate(&zs, Z_FINISH), Z_STREAM_END);
    out.resize(zs.total_out);
    inflateEnd(&zs);
    return out;
}

// A one-table database in memory: key -> (value, stamp), with a change
// sequence per row — the smallest engine the sync loop can run against.
class MemEngine : public SyncEngine {
public:
    struct Row {
        std::string v;
        uint64_t hlc = 0;
        NodeId by;
        uint64_t seq = 0;
    };
    explicit MemEngine(int id) : id_(node(id)) {}

    void write(int64_t key, const std::string& v) {
        Row& r = rows_[key];
        r.v = v;
        r.hlc = ++clock_;
        r.by = id_;
        r.seq = ++seq_;
    }
    std::map<int64_t, std::string> values() const {
        std::map<int64_t, std::string> out;
        for (const auto& [k, r] : rows_) out[k] = r.v;
        return out;
    }
    size_t applied_registers = 0;

    NodeId self() override { return id_; }
    Cursor cursor_of(const NodeId& peer) override {
        auto it = cursors_.find(peer.str());
        return it == cursors_.end() ? Cursor{} : it->second;
    }
    Batch changes(const ChangesRequest& req) override {
        std::vector<std::pair<uint64_t, int64_t>> order;  // (seq, key) past `after`
        for (const auto& [k, r] : rows_)
            if (r.seq > req.after) order.push_back({r.seq, k});
        std::sort(order.begin(), order.end());
        Batch b;
        b.since = req.since;
        b.after = req.after;
        // As the adapters cut: a batch that reaches the limit is cut there,
        // even when nothing follows (they do not look further).
        b.complete = req.limit <= 0 || order.size() < static_cast<size_t>(req.limit);
        if (!b.complete) order.resize(static_cast<size_t>(req.limit));
        b.upto = order.empty() ? std::max(req.after, seq_)
                               : (b.complete ? std::max(order.back().first, seq_) : order.back().first);
        ChangeSetWriter w(id_, req.since, req.after);
        bool opened = false;
        for (const auto& [seq, k] : order) {
            const Row& r = rows_.at(k);
            if (req.skip_node && r.by == *req.skip_node) continue;
            if (!opened) w.begin_table("t", {"id"}, {"v"});
            opened = true;
            RowChange rc;
            rc.key = {Value::integer(k)};
            rc.gen = 1;
            rc.has_row = true;
            rc.row = Stamp{r.hlc, r.by};
            rc.cols.push_back(ColChange{0, Value::text(r.v), Stamp{r.hlc, r.by}});
            w.row(rc);
        }
        if (opened) w.end_table();
        b.rows = w.rows_written();
        b.json = w.finish(b.upto, b.complete);
        return b;
    }
    std::vector<uint64_t> seen_log;  // the `seen` of every apply_from
    ApplyCounts apply_from(const NodeId& peer, const ChangeSet& cs, Trust, uint64_t seen) override {
        seen_log.push_back(seen);
        ApplyCounts c;
        for (const auto& t : cs.tables)
            for (const auto& rc : t.rows) {
                ++c.rows;
                ++c.received;
                const int64_t k = rc.key.at(0).i;
                auto it = rows_.find(k);
                const Stamp s = rc.row;
                const bool wins = it == rows_.end() || stamp_less(Stamp{it->second.hlc, it->second.by}, s);
                if (!wins) {
                    ++c.ignored;
                    continue;
                }
                ++c.applied;
                ++applied_registers;
                Row& r = rows_[k];
                r.v = rc.cols.at(0).value.s;
                r.hlc = s.hlc;
                r.by = s.node;
                r.seq = ++seq_;
                clock_ = std::max(clock_, s.hlc);
            }
        cursors_[peer.str()] = cursor_of(peer).after_batch(cs);
        return c;
    }
    uint64_t clock_now() override { return 0; }  // no wall clock in this engine
    void observe_clock(uint64_t hlc) override { clock_ = std::max(clock_, hlc); }
    uint64_t max_drift_ms() override { return kDefaultMaxDriftMs; }
    bool feed_waits_for_writers() const override { return waits_; }
    bool waits_ = false;
    // Copies and restores, as the adapters do them.
    uint64_t last_seq() override { return seq_; }
    uint64_t progress_seq() override { return seq_; }
    void note_push(const NodeId& server, const std::string& id) override { pushes_.insert(server.str() + id); }
    bool sent_push(const NodeId& server, const std::string& id) override {
        return pushes_.count(server.str() + id) > 0;
    }
    std::string push_mark(const NodeId& caller) override { return marks_[caller.str()]; }
    void set_push_mark(const NodeId& caller, const std::string& id) override { marks_[caller.str()] = id; }
    NodeId reset_node() override {
        const NodeId old = id_;
        static int minted = 0;  // ids unique in the process, as random ones are
        id_ = node(1000 + ++minted);
        ++resets;
        for (auto& [k, r] : rows_)
            if (r.by == old) r.by = id_;  // relabelled: same hlc, the new id
        cursors_.clear();
        pushes_.clear();
        return id_;
    }
    int resets = 0;

private:
    NodeId id_;
    std::map<int64_t, Row> rows_;
    std::map<std::string, Cursor> cursors_;
    std::set<std::string> pushes_;
    std::map<std::string, std::string> marks_;
    uint64_t clock_ = 0, seq_ = 0;
};

}  // namespace

TEST(SyncOptionsTest, DefaultsAndEveryKey) {
    SyncOptions d = parse_sync_options("");
    EXPECT_EQ(d.limits.rows, 1000);
    EXPECT_EQ(d.limits.bytes, 8u << 20);
    EXPECT_TRUE(d.gzip);
    EXPECT_FALSE(d.insecure);
    SyncOptions o =
        parse_sync_options(R"({"batch_rows":5,"batch_bytes":4096,"token":"t0k","timeout_ms":7,"connect_timeout_ms":8,)"
                           R"("ca_file":"/ca.pem","insecure":true,"gzip":false,"retries":0})");
    EXPECT_EQ(o.limits.rows, 5);
    EXPECT_EQ(o.limits.bytes, 4096u);
    EXPECT_EQ(o.token, "t0k");
    EXPECT_EQ(o.timeout_ms, 7);
    EXPECT_EQ(o.connect_timeout_ms, 8);
    EXPECT_EQ(o.ca_file, "/ca.pem");
    EXPECT_TRUE(o.insecure);
    EXPECT_FALSE(o.gzip);
    EXPECT_EQ(o.retries, 0);
}

TEST(SyncOptionsTest, ErrorsNameTheKey) {
    auto msg = [](const std::string& json) {
        try {
            parse_sync_options(json);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_NE(msg(R"({"bogus":1})").find("unknown option \"bogus\" (known: batch_rows"), std::string::npos);
    EXPECT_EQ(msg(R"({"gzip":"no"})"), "invalid option \"gzip\": true or false");
    EXPECT_EQ(msg(R"({"batch_bytes":100})"), "invalid option \"batch_bytes\": an integer from 1024 to 268435456");
    EXPECT_EQ(msg(R"({"token":1})"), "invalid option \"token\": a string");
    EXPECT_EQ(msg("[1]"), "options must be a JSON object");
}

TEST(SyncOptionsTest, UrlsAreClassifiedAndRedacted) {
    EXPECT_TRUE(is_http_url("https://x/rpc/lww_exchange"));
    EXPECT_TRUE(is_postgres_url("postgres://x/db"));
    EXPECT_FALSE(is_http_url("file:a.db"));
    EXPECT_EQ(redact_url("https://u:pw@host:3000/rpc/lww_exchange?token=abc#f"), "https://host:3000/rpc/lww_exchange");
    EXPECT_EQ(redact_url("http://host/p"), "http://host/p");
    EXPECT_EQ(redact_url("postgresql://app:secret@db/app?sslmode=require"), "postgresql://db/app");
}

TEST(Gzip, RoundTripsThroughZlib) {
    std::string text;
    for (int i = 0; i < 5000; ++i) text += "{\"key\":[" + std::to_string(i) + "],\"gen\":1},";
    const std::string gz = gzip_compress(text);
    ASSERT_GE(gz.size(), 2u);
    EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);  // gzip magic, not a zlib header
    EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
    EXPECT_LT(gz.size() * 5, text.size());
    EXPECT_EQ(gunzip(gz), text);
    EXPECT_EQ(gunzip(gzip_compress("")), "");
}

TEST(ExchangeDocs, NewFieldsRoundTrip) {
    ExchangeRequest rq;
    rq.node = node(1);
    rq.received = Cursor{57, 40};
    rq.limits = BatchLimits{25, 4096};
    rq.clock = 117681734027968512ull;
    ParsedRequest p = decode_request(encode_request(rq));
    EXPECT_EQ(p.node, node(1));
    EXPECT_EQ(p.received->received, 57u);
    EXPECT_EQ(p.received->floor, 40u);
    EXPECT_EQ(p.limits.rows, 25);
    EXPECT_EQ(p.limits.bytes, 4096u);
    EXPECT_EQ(p.clock, 117681734027968512ull);

    ExchangeResponse rs;
    rs.node = node(2);
    rs.acked = Cursor{9, 9};
    rs.clock = 42;
    rs.more = true;
    ParsedResponse q = decode_response(encode_response(rs));
    EXPECT_EQ(q.clock, 42u);
    EXPECT_TRUE(q.more);
    EXPECT_FALSE(q.pull);

    const std::string head = R"({"format":"lwwsync.exchange","version":1,"node":")" + node(1).str() + "\"";
    EXPECT_THROW(decode_request(head + R"(,"limit_bytes":10})"), Error);
    EXPECT_THROW(decode_request(head + R"(,"clock":12})"), Error);  // 64-bit values travel as strings
    EXPECT_THROW(decode_response(head + R"(,"acked":"1","more":1})"), Error);

    // Push ids: with a push only; 1 to 32 lowercase hex digits.
    rq.push = R"({"format":"lwwsync.changeset","version":1,"origin":")" + node(1).str() +
              R"(","since":"0","upto":"0","tables":[],"nodes":[]})";
    rq.push_id = "0123456789abcdef";
    EXPECT_EQ(decode_request(encode_request(rq)).push_id, "0123456789abcdef");
    rs.acked_id = "00ff";
    EXPECT_EQ(decode_response(encode_response(rs)).acked_id, "00ff");
    EXPECT_NE(encode_response(ExchangeResponse{}).find("acked"), std::string::npos);
    EXPECT_EQ(encode_response(ExchangeResponse{}).find("acked_id"), std::string::npos);
    for (const char* bad :
         {R"("")", R"("ABC")", R"("xyz")", "12", R"(null)", R"("0123456789abcdef0123456789abcdef0")"}) {
        EXPECT_THROW(decode_request(head + R"(,"push_id":)" + bad + "}"), Error) << bad;
        EXPECT_THROW(decode_response(head + R"(,"acked":"1","acked_id":)" + bad + "}"), Error) << bad;
    }
    EXPECT_EQ(new_push_id().size(), 16u);
    EXPECT_NE(new_push_id(), new_push_id());
}

TEST(BatchLimitsTest, ByteLimitCutsRowsButNeverBelowOne) {
    MemEngine e(1);
    for (int k = 0; k < 500; ++k) e.write(k, std::string(200, 'a' + k % 26));
    const NodeId peer = node(9);
    Batch all = changes_for(e, peer, Cursor{}, BatchLimits{1000, kMaxBatchBytes});
    EXPECT_EQ(all.rows, 500u);
    EXPECT_TRUE(all.complete);
    Batch cut = changes_for(e, peer, Cursor{}, BatchLimits{1000, 8192});
    EXPECT_LE(cut.json.size(), 8192u);
    EXPECT_GT(cut.rows, 10u);
    EXPECT_FALSE(cut.complete);
    MemEngine big(2);
    for (int k = 0; k < 5; ++k) big.write(k, std::string(3000, 'x'));
    Batch one = changes_for(big, peer, Cursor{}, BatchLimits{1000, 1024});  // one row is bigger than that
    EXPECT_EQ(one.rows, 1u);
    EXPECT_FALSE(one.complete);
}

// run_sync against serve_exchange over a transport that loses a share of
// the responses after the server handled them, and retries like HTTP does.
class LossyLoop : public ::testing::TestWithParam<bool> {};

TEST_P(LossyLoop, ConvergesWithNothingLostOrDoubled) {
    const char* env = std::getenv("LWWSYNC_SEED");
    const unsigned seed = env ? static_cast<unsigned>(std::strtoul(env, nullptr, 10)) : std::random_device{}();
    std::printf("lossy loop seed: %u (LWWSYNC_SEED=%u to reproduce)\n", seed, seed);
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    MemEngine server(100);
    std::vector<std::unique_ptr<MemEngine>> clients;
    for (int i = 1; i <= 3; ++i) {
        clients.push_back(std::make_unique<MemEngine>(i));
        clients.back()->waits_ = GetParam();  // Postgres-style: all pushes before pulls
    }
    size_t lost = 0;
    auto lossy = [&](const std::string& req) {
        for (;;) {
            std::string resp = serve_exchange(server, req);
            if (rng() % 4 != 0) return resp;
            ++lost;  // the server committed; the answer never arrived: send again
        }
    };
    for (int round = 0; round < 6; ++round) {
        for (auto& c : clients) {
            for (int w = 0; w < 40; ++w) c->write(static_cast<int64_t>(rng() % 300), "v" + std::to_string(rng()));
            run_sync(*c, lossy, BatchLimits{static_cast<int64_t>(1 + rng() % 17), 2048});
        }
        for (int w = 0; w < 20; ++w) server.write(static_cast<int64_t>(rng() % 300), "s" + std::to_string(rng()));
    }
    for (int pass = 0; pass < 2; ++pass)
        for (auto& c : clients) run_sync(*c, lossy, BatchLimits{7, 2048});
    EXPECT_GT(lost, 0u);
    // Lost answers are not mistaken for a copy: the pushes were ours.
    for (auto& c : clients) EXPECT_EQ(c->resets, 0);
    for (auto& c : clients) EXPECT_EQ(c->values(), server.values());
    // A sync of converged peers moves nothing.
    const size_t before = server.applied_registers;
    SyncStats s = run_sync(*clients[0], lossy, BatchLimits{7, 2048});
    EXPECT_EQ(s.received.applied, 0u);
    EXPECT_EQ(server.applied_registers, before);
}

INSTANTIATE_TEST_SUITE_P(Interleaved, LossyLoop, ::testing::Values(false, true));

// A client database copied (same node id, same cursors, same push ids):
// both copies write and sync; one finds out and takes a new id; nothing is lost.
TEST(RunSync, ACopiedClientFindsOutAndLosesNothing) {
    for (int order = 0; order < 2; ++order) {
        SCOPED_TRACE(order ? "the copy syncs first" : "the original syncs first");
        MemEngine server(100);
        MemEngine a(1);
        Transport send = [&](const std::string& req) { return serve_exchange(server, req); };
        for (int k = 0; k < 5; ++k) a.write(k, "before");
        run_sync(a, send, BatchLimits{3, 1 << 20});
        a.write(5, "unsynced at the copy");
        MemEngine b = a;  // the copy
        a.write(10, "a");
        a.write(11, "a");
        b.write(20, "b");
        b.write(21, "b");
        MemEngine& first = order ? b : a;
        MemEngine& second = order ? a : b;
        run_sync(first, send, BatchLimits{3, 1 << 20});
        SyncStats st = run_sync(second, send, BatchLimits{3, 1 << 20});
        EXPECT_EQ(st.reset_node, 1u);
        EXPECT_EQ(second.resets, 1);
        EXPECT_EQ(first.resets, 0);
        EXPECT_NE(a.self(), b.self());
        run_sync(first, send, BatchLimits{3, 1 << 20});
        run_sync(second, send, BatchLimits{3, 1 << 20});
        // The one that found out reported the fork: the other one leaves the
        // shared id at its next sync too.
        EXPECT_EQ(first.resets, 1);
        EXPECT_NE(first.self(), node(1));
        EXPECT_NE(second.self(), node(1));
        EXPECT_EQ(a.values(), server.values());
        EXPECT_EQ(b.values(), server.values());
        EXPECT_EQ(server.values().size(), 10u);
    }
}

// The server is put back from an older copy of itself: a caller's cursor on
// it is past its last sequence; it takes a new id and gets back what it lost.
TEST(RunSync, AServerRestoredFromAnOlderCopyTakesANewId) {
    MemEngine server(100);
    MemEngine a(1);
    Transport send = [&](const std::string& req) { return serve_exchange(*&server, req); };
    a.write(1, "a");
    run_sync(a, send, BatchLimits{});
    MemEngine backup = server;
    server.write(2, "server after the backup");
    a.write(3, "a after the backup");
    run_sync(a, send, BatchLimits{});
    server = backup;  // restored
    const NodeId old = server.self();
    run_sync(a, send, BatchLimits{});
    run_sync(a, send, BatchLimits{});
    EXPECT_NE(server.self(), old);
    EXPECT_EQ(server.values(), a.values());
    EXPECT_EQ(server.values().size(), 3u);
}

// The server counts `overwrote` against what the caller holds of it. A
// caller that pushes without pulling in the same round trip (a Postgres
// client: every push before the first pull) must still say how far it holds
// the server's changes, or a write it received and then overwrote is
// counted as a conflict.
TEST(RunSync, APushTellsTheServerWhatTheCallerHoldsOfIt) {
    for (const bool waits : {false, true}) {
        SCOPED_TRACE(waits ? "pushes before pulls" : "interleaved");
        MemEngine server(100), client(1);
        client.waits_ = waits;
        Transport send = [&](const std::string& req) { return serve_exchange(server, req); };
        server.write(1, "server");
        run_sync(client, send, BatchLimits{});
        const uint64_t held = client.cursor_of(server.self()).floor;
        ASSERT_GT(held, 0u);
        client.write(1, "client, after receiving the server's");
        server.seen_log.clear();
        run_sync(client, send, BatchLimits{});
        ASSERT_FALSE(server.seen_log.empty());
        for (uint64_t seen : server.seen_log) EXPECT_EQ(seen, held);
    }
}

TEST(RunSync, FinalPullMovesTheCursorPastMergedPushes) {
    MemEngine server(100), client(1);
    for (int k = 0; k < 50; ++k) client.write(k, "c");
    Transport direct = [&](const std::string& req) { return serve_exchange(server, req); };
    SyncStats s = run_sync(client, direct, BatchLimits{10, kMaxBatchBytes});
    EXPECT_EQ(s.pushed, 50u);
    EXPECT_EQ(s.pulled, 0u);  // the server's rows are all ours: nothing comes back
    // Hello, five push+pull round trips, an empty complete push that lifts
    // the server's floor (the 5th batch ended on the cut), one pull: pulls
    // read past our own merged rows instead of paging through them.
    EXPECT_EQ(s.batches, 8u);
    // Our cursor on the server covers the rows it merged from us.
    Batch next = changes_for(server, client.self(), client.cursor_of(server.self()), BatchLimits{});
    EXPECT_EQ(next.upto, client.cursor_of(server.self()).received);
    EXPECT_EQ(next.rows, 0u);
}

// A running sync knows about how much is left: the server estimates what
// waits past each pull it cuts, the client what it has not pushed yet.
TEST(RunSync, ProgressCarriesRowsLeftToPullAndPush) {
    MemEngine server(100), client(1);
    for (int k = 0; k < 40; ++k) server.write(k, "s");
    for (int k = 100; k < 130; ++k) client.write(k, "c");
    Transport direct = [&](const std::string& req) {
        const std::string resp = serve_exchange(server, req);
        ParsedResponse r = decode_response(resp);
        if (r.more) {
            EXPECT_GT(r.remaining, 0u) << resp;
        } else {
            EXPECT_EQ(r.remaining, 0u) << resp;
        }
        return resp;
    };
    std::vector<std::pair<uint64_t, uint64_t>> seen;  // (to_pull, to_push) after each round trip
    SyncStats s = run_sync(client, direct, BatchLimits{10, kMaxBatchBytes},
                           [&](const SyncStats& st) { seen.emplace_back(st.to_pull, st.to_push); });
    EXPECT_EQ(s.pulled, 40u);
    EXPECT_EQ(s.pushed, 30u);
    EXPECT_EQ(s.to_pull, 0u);
    EXPECT_EQ(s.to_push, 0u);
    EXPECT_EQ(s.json().find("to_pull"), std::string::npos);  // done: nothing left to say
    // After the first round trips: 30 rows to pull (40 less the 10 of a
    // batch) and 20 to push; the estimates only shrink as the sync goes on.
    ASSERT_GE(seen.size(), 3u);
    EXPECT_EQ(seen[1].first, 30u);
    EXPECT_EQ(seen[1].second, 20u);
    for (size_t i = 2; i < seen.size(); ++i) {
        EXPECT_LE(seen[i].first, seen[i - 1].first) << i;
        EXPECT_LE(seen[i].second, seen[i - 1].second) << i;
    }
    EXPECT_EQ(seen.back(), std::make_pair(uint64_t(0), uint64_t(0)));
}

// A hostile server's estimate is range-checked like every sequence.
TEST(ExchangeDocs, RemainingIsRangeChecked) {
    ExchangeResponse r;
    r.node = NodeId::random_v4();
    r.more = true;
    r.remaining = 5;
    EXPECT_EQ(decode_response(encode_response(r)).remaining, 5u);
    std::string bad = encode_response(r);
    const size_t at = bad.find("\"remaining\":\"5\"");
    ASSERT_NE(at, std::string::npos) << bad;
    bad.replace(at, 15, "\"remaining\":\"18446744073709551615\"");
    EXPECT_THROW(decode_response(bad), Error);
}

TEST(CursorTest, AnEmptyCompleteSetAtTheCutLiftsTheFloor) {
    // A row-limited run ended exactly at the last change: received moved, floor did not.
    Cursor c{1000, 0};
    ChangeSet empty;
    empty.since = 0;
    empty.after = 1000;
    empty.upto = 1000;
    empty.complete = true;
    Cursor next = c.after_batch(empty);
    EXPECT_EQ(next.received, 1000u);
    EXPECT_EQ(next.floor, 1000u);
    // A set that would leave a gap moves nothing; an old one never moves it back.
    ChangeSet gap = empty;
    gap.after = 1500;
    gap.upto = 2000;
    EXPECT_EQ(c.after_batch(gap).received, 1000u);
    ChangeSet old = empty;
    old.after = 0;
    old.upto = 10;
    old.complete = false;
    EXPECT_EQ(next.after_batch(old).received, 1000u);
    EXPECT_EQ(next.after_batch(old).floor, 1000u);
}

TEST(RunSync, ARunEndingOnABatchCutLeavesAWholeCursor) {
    MemEngine server(100), client(1);
    for (int k = 0; k < 30; ++k) server.write(k, "s");  // exactly three batches of 10
    Transport direct = [&](const std::string& req) { return serve_exchange(server, req); };
    run_sync(client, direct, BatchLimits{10, kMaxBatchBytes});
    const Cursor c = client.cursor_of(server.self());
    EXPECT_EQ(c.received, 30u);
    EXPECT_EQ(c.floor, 30u);  // not stuck at 0: later pulls send changed registers only
    EXPECT_EQ(client.values(), server.values());
}

TEST(RunSync, APushRunEndingOnABatchCutLeavesTheServerAWholeCursor) {
    MemEngine server(100), client(1);
    for (int k = 0; k < 30; ++k) client.write(k, "c");  // exactly three batches of 10
    Transport direct = [&](const std::string& req) { return serve_exchange(server, req); };
    run_sync(client, direct, BatchLimits{10, kMaxBatchBytes});
    const Cursor c = server.cursor_of(client.self());
    EXPECT_EQ(c.received, 30u);
    EXPECT_EQ(c.floor, 30u);
    EXPECT_EQ(client.values(), server.values());
}
