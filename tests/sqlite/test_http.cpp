// lww_sync over http:// and https:// against lww_exchange served in-process
// by cpp-httplib: convergence, batching, gzip both ways, retries of transient
// failures, auth, server errors, dead URLs, timeouts, a response lost
// mid-transfer, interruption, status/cancel and TLS verification.
//
// The server is scriptable per test (fail the first N requests, require a
// token, sleep, block, cut the connection mid-response, fail after applying)
// and records every request it saw (headers, body after decompression).
#include <httplib.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>

#include "harness.h"

using namespace lwwt;

namespace {

using V = std::vector<std::string>;

std::string message_json(const std::string& msg) {
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    w.StartObject();
    w.Key("message");
    w.String(msg.c_str(), static_cast<rapidjson::SizeType>(msg.size()));
    w.EndObject();
    return std::string(buf.GetString(), buf.GetSize());
}

// A member of a JSON document, re-serialised ("" when absent).
std::string member_json(const std::string& doc, const char* name) {
    rapidjson::Document d = parse_json(doc);
    if (!d.IsObject() || !d.HasMember(name)) return "";
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    d[name].Accept(w);
    return std::string(buf.GetString(), buf.GetSize());
}

bool json_bool(const std::string& doc, const char* name) {
    rapidjson::Document d = parse_json(doc);
    if (!d.IsObject() || !d.HasMember(name) || !d[name].IsBool())
        throw std::runtime_error(std::string("no boolean ") + name + " in " + doc);
    return d[name].GetBool();
}

std::string json_text(const std::string& doc, const char* name) {
    rapidjson::Document d = parse_json(doc);
    if (!d.IsObject() || !d.HasMember(name) || !d[name].IsString())
        throw std::runtime_error(std::string("no string ") + name + " in " + doc);
    return d[name].GetString();
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// What the handler saw of one POST to /rpc/lww_exchange.
struct Seen {
    std::string content_encoding, accept_encoding, authorization;
    std::string body;          // after httplib's decompression
    int64_t wire_length = -1;  // Content-Length as sent (-1: none)
    int status = 0;            // what the handler answered
    std::string response;      // the body it answered (or began to answer)
};

// How the handler misbehaves. Request numbers are 1-based and count every
// request since the server started (forget() does not reset them); 0: never.
struct Script {
    int fail_first = 0;  // answer the first N requests with fail_status
    int fail_status = 503;
    std::string fail_message = "warming up";
    std::string token;  // required bearer token
    int sleep_on = 0;   // -1: every request
    int sleep_ms = 0;
    int block_on = 0;  // wait until release()
    int cut_on = 0;    // apply, then send half the response and drop the connection
    int fail_after_apply_on = 0;
    int fail_after_apply_status = 500;
    int64_t max_body = 0;  // answer 413 to a body longer than this on the wire, as nginx does (0: no limit)
    int raw_on = 0;        // -1: every request; answer 200 with raw_body, without touching the database
    std::string raw_body, raw_type = "text/html";
    std::function<void(int)> on_request;  // called with each request's number as it arrives
};

class HttpServer {
public:
    // Plain HTTP, or HTTPS when cert and key are given.
    HttpServer(Db& db, const std::string& cert = "", const std::string& key = "") : db_(db) {
        if (cert.empty()) svr_ = std::make_unique<httplib::Server>();
        else svr_ = std::make_unique<httplib::SSLServer>(cert.c_str(), key.c_str());
        if (!svr_->is_valid()) throw std::runtime_error("test: httplib server is not valid (TLS setup?)");
        scheme_ = cert.empty() ? "http" : "https";
        svr_->set_keep_alive_timeout(1);
        svr_->set_tcp_nodelay(true);  // no Nagle wait between headers and body
        svr_->Post("/rpc/lww_exchange",
                   [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
        port_ = svr_->bind_to_any_port("127.0.0.1");  // listening from here on: connections queue
        if (port_ <= 0) throw std::runtime_error("test: cannot bind 127.0.0.1");
        thread_ = std::thread([this] {
            svr_->listen_after_bind();
            finished_ = true;
        });
    }

    ~HttpServer() {
        {
            std::lock_guard<std::mutex> g(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        // stop() does nothing until listen_after_bind() has started: repeat
        // it until the accept loop has ended.
        while (!finished_) {
            svr_->stop();
            if (!finished_) sleep_ms(1);
        }
        thread_.join();
    }

    std::string url(const std::string& path = "/rpc/lww_exchange") const {
        return scheme_ + "://127.0.0.1:" + std::to_string(port_) + path;
    }
    int port() const { return port_; }

    void script(const std::function<void(Script&)>& f) {
        std::lock_guard<std::mutex> g(mu_);
        f(script_);
    }
    // How many requests arrived since the start; only from a script() callback.
    size_t total_unlocked() const { return seen_.size(); }

    // The requests since the last forget().
    std::vector<Seen> seen() {
        std::lock_guard<std::mutex> g(mu_);
        return std::vector<Seen>(seen_.begin() + static_cast<std::ptrdiff_t>(forgotten_), seen_.end());
    }
    size_t requests() {
        std::lock_guard<std::mutex> g(mu_);
        return seen_.size() - forgotten_;
    }
    void forget() {
        std::lock_guard<std::mutex> g(mu_);
        forgotten_ = seen_.size();
    }

    // The handler is waiting in block_on.
    bool wait_blocked(int timeout_ms = 10000) {
        std::unique_lock<std::mutex> lk(mu_);
        return cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return blocked_; });
    }
    void release() {
        {
            std::lock_guard<std::mutex> g(mu_);
            released_ = true;
        }
        cv_.notify_all();
    }
    // No handler is running (before reading the served database from the test).
    bool wait_idle(int timeout_ms = 10000) {
        std::unique_lock<std::mutex> lk(mu_);
        return cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return in_flight_ == 0; });
    }

private:
    void handle(const httplib::Request& req, httplib::Response& res) {
        struct InFlight {
            HttpServer& h;
            explicit InFlight(HttpServer& server) : h(server) {
                std::lock_guard<std::mutex> g(h.mu_);
                ++h.in_flight_;
            }
            ~InFlight() {
                {
                    std::lock_guard<std::mutex> g(h.mu_);
                    --h.in_flight_;
                }
                h.cv_.notify_all();
            }
        } in_flight(*this);
        size_t n;
        Script s;
        {
            std::lock_guard<std::mutex> g(mu_);
            Seen x;
            x.content_encoding = req.get_header_value("Content-Encoding");
            x.accept_encoding = req.get_header_value("Accept-Encoding");
            x.authorization = req.get_header_value("Authorization");
            x.body = req.body;
            if (req.has_header("Content-Length")) x.wire_length = std::stoll(req.get_header_value("Content-Length"));
            seen_.push_back(std::move(x));
            n = seen_.size();
            s = script_;
        }
        auto answer = [&](int status, const std::string& body) {
            res.status = status;
            res.set_content(body, "application/json");
            finish(n, status, body);
        };
        const int k = static_cast<int>(n);
        if (s.on_request) s.on_request(k);
        if (!s.token.empty() && req.get_header_value("Authorization") != "Bearer " + s.token)
            return answer(401, message_json("JWT invalid"));
        if (k <= s.fail_first) return answer(s.fail_status, message_json(s.fail_message));
        const int64_t wire = req.has_header("Content-Length") ? std::stoll(req.get_header_value("Content-Length"))
                                                              : static_cast<int64_t>(req.body.size());
        if (s.max_body > 0 && wire > s.max_body) {
            const std::string page =
                "<html><head><title>413 Request Entity Too Large</title></head><body><center><h1>413 Request "
                "Entity Too Large</h1></center><hr><center>nginx</center></body></html>";
            res.status = 413;
            res.set_content(page, "text/html");
            finish(n, 413, page);
            return;
        }
        if (s.raw_on == -1 || k == s.raw_on) {
            res.status = 200;
            res.set_content(s.raw_body, s.raw_type);
            finish(n, 200, s.raw_body);
            return;
        }
        if (s.sleep_on == -1 || k == s.sleep_on) {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait_for(lk, std::chrono::milliseconds(s.sleep_ms), [&] { return stopping_; });
        }
        if (k == s.block_on) {
            std::unique_lock<std::mutex> lk(mu_);
            blocked_ = true;
            cv_.notify_all();
            cv_.wait(lk, [&] { return released_ || stopping_; });
        }
        if (stopping()) return answer(503, message_json("stopping"));

        Outcome o;
        {
            std::lock_guard<std::mutex> g(db_mu_);
            o = db_.run("SELECT lww_exchange(?)", {Val::text(req.body)});
        }
        if (!o.ok) return answer(400, message_json(o.err));
        const std::string body = o.rows.at(0).at(0).s;
        if (k == s.fail_after_apply_on) return answer(s.fail_after_apply_status, message_json("internal error"));
        if (k == s.cut_on) {
            auto shared = std::make_shared<std::string>(body);
            res.status = 200;
            res.set_content_provider(shared->size(), "application/json",
                                     [shared](size_t offset, size_t, httplib::DataSink& sink) {
                                         if (offset == 0) sink.write(shared->data(), shared->size() / 2);
                                         return false;  // drop the connection mid-body
                                     });
            finish(n, 200, body);
            return;
        }
        answer(200, body);
    }

    bool stopping() {
        std::lock_guard<std::mutex> g(mu_);
        return stopping_;
    }

    void finish(size_t n, int status, const std::string& body) {
        std::lock_guard<std::mutex> g(mu_);
        seen_.at(n - 1).status = status;
        seen_.at(n - 1).response = body;
    }

    Db& db_;
    std::mutex db_mu_;  // the served connection, one handler at a time
    std::unique_ptr<httplib::Server> svr_;
    std::string scheme_;
    int port_ = 0;
    std::thread thread_;
    std::atomic<bool> finished_{false};

    std::mutex mu_;
    std::condition_variable cv_;
    Script script_;
    std::vector<Seen> seen_;  // every request; numbers count from the first
    size_t forgotten_ = 0;
    int in_flight_ = 0;
    bool blocked_ = false, released_ = false, stopping_ = false;
};

class Http : public ::testing::Test {
protected:
    void TearDown() override { srv_.reset(); }

    Db& peer(const std::string& name, const std::string& schema = kSchemaT, const V& track = {"t"}) {
        return cl.add(name, schema, track);
    }
    HttpServer& serve(Db& db, const std::string& cert = "", const std::string& key = "") {
        srv_ = std::make_unique<HttpServer>(db, cert, key);
        return *srv_;
    }

    static Outcome sync(Db& db, const std::string& url, const std::string& options = "") {
        return options.empty() ? db.run("SELECT lww_sync(?)", {url}) : db.run("SELECT lww_sync(?, ?)", {url, options});
    }
    // The stats of a sync that must succeed.
    static std::string sync_ok(Db& db, const std::string& url, const std::string& options = "") {
        Outcome o = sync(db, url, options);
        if (!o.ok) throw std::runtime_error("lww_sync(" + url + ", " + options + ") failed: " + o.err);
        return o.rows.at(0).at(0).s;
    }
    // The error of a sync that must fail; the tables named (user tables and
    // lww_peers) must be exactly as before.
    static std::string sync_fails(Db& db, const std::string& url, const std::string& options,
                                  const V& unchanged = {"t", "lww_peers"}) {
        std::vector<V> before;
        for (const auto& t : unchanged) before.push_back(db.table(t));
        Outcome o = sync(db, url, options);
        EXPECT_FALSE(o.ok) << "lww_sync(" << url << ", " << options
                           << ") succeeded: " << (o.rows.empty() ? "" : row_repr(o.rows[0]));
        EXPECT_EQ(o.err.rfind("lww_sync: ", 0), 0u) << o.err;
        for (size_t i = 0; i < unchanged.size(); ++i)
            EXPECT_EQ(db.table(unchanged[i]), before[i]) << unchanged[i] << " changed by a failed sync: " << o.err;
        return o.err;
    }

    Cluster cl;
    std::unique_ptr<HttpServer> srv_;
};

// The whole database but its hybrid clock, which a sync advances as soon as
// it hears the server's clock (before anything can fail).
V dump_but_clock(Db& db) {
    V out;
    for (auto& line : db.dump())
        // ...and the ids of pushes sent (docs/PROTOCOL.md, "Copies and restores").
        if (line.rfind("lww_state: text:'hlc' | ", 0) != 0 && line.find("lww_push") == std::string::npos)
            out.push_back(std::move(line));
    return out;
}

// n rows starting at id `from`, with ~100-byte texts.
void fill(Db& db, int from, int n, const std::string& tag) {
    db.exec("WITH RECURSIVE k(i) AS (SELECT " + std::to_string(from) + " UNION ALL SELECT i + 1 FROM k WHERE i < " +
            std::to_string(from + n - 1) + ") INSERT INTO t SELECT i, printf('" + tag +
            " %06d %s', i, substr(hex(randomblob(48)), 1, 88)), i * 2, NULL FROM k");
}

// Compressible rows: long runs of repeated words.
void fill_compressible(Db& db, int from, int n, const std::string& tag) {
    db.exec("WITH RECURSIVE k(i) AS (SELECT " + std::to_string(from) + " UNION ALL SELECT i + 1 FROM k WHERE i < " +
            std::to_string(from + n - 1) + ") INSERT INTO t SELECT i, printf('" + tag +
            " %06d', i) || replace(printf('%.40c', '*'), '*', 'lorem ipsum '), 'constant', NULL FROM k");
}

// ------------------------------------------------------------------ 1

TEST_F(Http, TwoClientsConvergeThroughTheServer) {
    Db& s = peer("server");
    Db& a = peer("a");
    Db& b = peer("b");
    HttpServer& srv = serve(s);
    s.exec("INSERT INTO t VALUES (1, 'server', NULL, NULL), (2, 'server row 2', 2.5, x'00ff')");
    a.exec("INSERT INTO t VALUES (10, 'a', 1, NULL), (11, 'a', 2, NULL), (12, 'a', 3, NULL)");
    b.exec("INSERT INTO t VALUES (20, 'b', NULL, 'x'), (21, 'b', NULL, 'y')");
    sync_ok(a, srv.url());
    sync_ok(b, srv.url());
    const std::string st = sync_ok(a, srv.url());
    ASSERT_EQ(s.table("t").size(), 7u);
    EXPECT_EQ(a.table("t"), s.table("t")) << st;
    EXPECT_EQ(b.table("t"), s.table("t"));

    // Updates, deletes, a server-side write and one cell written on both
    // clients: the later write wins everywhere.
    a.exec("UPDATE t SET a = 'A updated' WHERE id = 10");
    b.exec("DELETE FROM t WHERE id = 21");
    s.exec("UPDATE t SET b = 99 WHERE id = 12");
    a.exec("DELETE FROM t WHERE id = 2");
    a.exec("UPDATE t SET c = 'from A (earlier)' WHERE id = 11");
    sleep_ms(5);
    b.exec("UPDATE t SET c = 'from B (later)' WHERE id = 11");
    // The later write reaches the server first; the earlier one then loses there.
    sync_ok(b, srv.url());
    const std::string sa = sync_ok(a, srv.url());
    EXPECT_GE(json_int(sa, "sent.ignored"), 1) << sa;
    sync_ok(b, srv.url());
    const V want{
        "int:1 | text:'server' | NULL | NULL",
        "int:10 | text:'A updated' | int:1 | NULL",
        "int:11 | text:'a' | int:2 | text:'from B (later)'",
        "int:12 | text:'a' | int:99 | NULL",
        "int:20 | text:'b' | NULL | text:'x'",
    };
    EXPECT_EQ(s.table("t"), want);
    EXPECT_EQ(a.table("t"), want);
    EXPECT_EQ(b.table("t"), want);

    // Nothing left to move.
    for (Db* c : {&a, &b}) {
        const std::string again = sync_ok(*c, srv.url());
        EXPECT_EQ(json_int(again, "sent.applied"), 0) << again;
        EXPECT_EQ(json_int(again, "received.applied"), 0) << again;
        EXPECT_EQ(json_int(again, "retries"), 0) << again;
        EXPECT_EQ(json_text(again, "peer"), s.node_id());
    }
    EXPECT_EQ(s.table("t"), want);
    EXPECT_EQ(a.table("t"), want);
    EXPECT_EQ(b.table("t"), want);
    // Every request was an exchange document and got a 200.
    for (const Seen& x : srv.seen()) {
        EXPECT_EQ(x.status, 200) << x.response;
        EXPECT_EQ(json_text(x.body, "format"), "lwwsync.exchange");
    }
}

// ------------------------------------------------------------------ 2

TEST_F(Http, BatchesRespectRowAndByteLimits) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    fill(a, 1, 300, "client");
    fill(s, 1001, 40, "server");
    const size_t limit_bytes = 2048, envelope = 512;
    const std::string st = sync_ok(a, srv.url(), "{\"batch_rows\":7,\"batch_bytes\":2048}");
    EXPECT_EQ(json_int(st, "pushed"), 300) << st;
    EXPECT_EQ(json_int(st, "pulled"), 40) << st;
    EXPECT_GE(json_int(st, "batches"), 1 + 300 / 7) << st;
    const auto seen = srv.seen();
    EXPECT_EQ(static_cast<int64_t>(seen.size()), json_int(st, "batches"));
    size_t pushes = 0, pulls = 0;
    for (const Seen& x : seen) {
        EXPECT_LE(x.body.size(), limit_bytes + envelope);
        EXPECT_LE(x.response.size(), limit_bytes + envelope);
        EXPECT_EQ(json_int(x.body, "limit"), 7);
        const std::string push = member_json(x.body, "push");
        if (!push.empty()) {
            ++pushes;
            const ParsedCS p = parse_cs(push);
            EXPECT_LE(p.rows.size(), 7u);
            EXPECT_LE(push.size(), limit_bytes);
        }
        const std::string pull = member_json(x.response, "pull");
        if (!pull.empty()) {
            ++pulls;
            EXPECT_LE(parse_cs(pull).rows.size(), 7u);
            EXPECT_LE(pull.size(), limit_bytes);
        }
    }
    EXPECT_GE(pushes, 300u / 7);
    EXPECT_GE(pulls, 40u / 7);
    EXPECT_EQ(a.table("t"), s.table("t"));
    EXPECT_EQ(s.i64("SELECT count(*) FROM t"), 340);
}

// A client asks for its pulls' rows as arrays ("compact": true): a
// snapshot's rows come as [key, gen, hlc, node, value…]; a request that does
// not ask (an older client) gets objects; pushes stay objects either way.
TEST_F(Http, SnapshotPullsComeAsArraysOnlyWhenAsked) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    fill(s, 1, 30, "server");
    fill(a, 1001, 5, "client");
    sync_ok(a, srv.url(), "{\"batch_rows\":10}");
    size_t array_pulls = 0;
    for (const Seen& x : srv.seen()) {
        EXPECT_EQ(json_bool(x.body, "compact"), true) << x.body.substr(0, 200);
        const std::string push = member_json(x.body, "push");
        if (!push.empty()) {
            EXPECT_EQ(push.find("\"rows\":[["), std::string::npos) << push.substr(0, 200);
        }
        const std::string pull = member_json(x.response, "pull");
        if (pull.find("\"rows\":[[[") != std::string::npos) ++array_pulls;
    }
    EXPECT_GE(array_pulls, 3u);
    EXPECT_EQ(a.table("t"), s.table("t"));
    // An older client's request, without "compact": objects.
    const std::string old =
        "{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"" + kNode3 + "\",\"received\":\"0\",\"limit\":1000}";
    const std::string pull = member_json(s.text("SELECT lww_exchange(?)", {old}), "pull");
    EXPECT_NE(pull.find("\"rows\":[{\"key\":"), std::string::npos) << pull.substr(0, 200);
    EXPECT_EQ(pull.find("\"rows\":[[["), std::string::npos);
    EXPECT_EQ(parse_cs(pull).rows.size(), 35u);
}

// A reverse proxy's body limit (nginx client_max_body_size): the client
// halves its push on 413 until it passes, keeps that size, and every row
// arrives once; a single row over the limit fails the sync by name.
TEST_F(Http, PushesShrinkBelowAProxysBodyLimit) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    const int64_t limit = 8 << 10;
    srv.script([&](Script& x) { x.max_body = limit; });
    fill(a, 1, 400, "client");  // ~80 KB of change set: ten times the limit
    fill(s, 5001, 30, "server");
    const std::string st = sync_ok(a, srv.url(), "{\"gzip\":false}");
    EXPECT_EQ(json_int(st, "pushed"), 400) << st;
    EXPECT_EQ(json_int(st, "pulled"), 30) << st;
    // Each row applied once: no register came twice (none ignored).
    EXPECT_EQ(json_int(st, "sent.rows"), 400) << st;
    EXPECT_EQ(json_int(st, "sent.ignored"), 0) << st;
    EXPECT_EQ(json_int(st, "sent.applied"), json_int(st, "sent.received")) << st;
    EXPECT_EQ(s.i64("SELECT count(*) FROM t"), 430);
    EXPECT_EQ(a.table("t"), s.table("t"));
    size_t refused = 0, accepted_pushes = 0, after_first_pass = 0;
    bool passed = false;
    for (const Seen& x : srv.seen()) {
        if (x.status == 413) {
            ++refused;
            if (passed) ++after_first_pass;
            continue;
        }
        EXPECT_EQ(x.status, 200) << x.response;
        EXPECT_LE(x.wire_length, limit);
        if (!member_json(x.body, "push").empty()) {
            ++accepted_pushes;
            passed = true;
        }
    }
    // 80 KB down to 8 KB: a few halvings, then the size that passed is kept
    // (uneven rows may cost one more halving, never a run of them).
    EXPECT_GE(refused, 3u);
    EXPECT_LE(refused, 6u);
    EXPECT_LE(after_first_pass, 1u);
    EXPECT_GE(accepted_pushes, 10u);
    // Nothing left: the next sync pushes nothing and is never refused.
    srv.forget();
    const std::string again = sync_ok(a, srv.url(), "{\"gzip\":false}");
    EXPECT_EQ(json_int(again, "pushed"), 0) << again;
    for (const Seen& x : srv.seen()) EXPECT_EQ(x.status, 200);

    // One row alone over the limit: a clear failure naming the table, and
    // nothing of it applied; the rows before it went through.
    a.exec("INSERT INTO t VALUES (9001, 'small', 1, NULL)");
    a.exec("INSERT INTO t VALUES (9002, printf('%.20000c', 'x'), 2, NULL)");
    const std::string err = sync_fails(a, srv.url(), "{\"gzip\":false}", {"t"});
    EXPECT_TRUE(contains(err, "one row of table \"t\"")) << err;
    EXPECT_TRUE(contains(err, "HTTP 413")) << err;
    EXPECT_TRUE(contains(err, "client_max_body_size")) << err;
    EXPECT_EQ(s.i64("SELECT count(*) FROM t WHERE id = 9001"), 1);
    EXPECT_EQ(s.i64("SELECT count(*) FROM t WHERE id = 9002"), 0);
}

// ------------------------------------------------------------------ 3

TEST_F(Http, GzipRequestsAndCompressedResponses) {
    Db& s = peer("server");
    Db& a = peer("a");
    Db& b = peer("b");
    HttpServer& srv = serve(s);
    fill_compressible(a, 1, 200, "from a");
    const std::string st = sync_ok(a, srv.url());
    EXPECT_LT(json_int(st, "wire_bytes_sent"), json_int(st, "bytes_sent")) << st;
    size_t gzipped = 0;
    for (const Seen& x : srv.seen()) {
        // Bodies of 1 KiB or more go gzipped, smaller ones plain.
        EXPECT_EQ(x.content_encoding, x.body.size() >= 1024 ? "gzip" : "") << x.body.size();
        if (x.content_encoding == "gzip") {
            ++gzipped;
            EXPECT_LT(x.wire_length, static_cast<int64_t>(x.body.size()));
        }
    }
    EXPECT_GE(gzipped, 1u);

    // Without gzip: no Content-Encoding, the wire carries the documents as they are.
    srv.forget();
    fill_compressible(b, 1001, 200, "from b");
    const std::string stb = sync_ok(b, srv.url(), "{\"gzip\":false}");
    EXPECT_EQ(json_int(stb, "wire_bytes_sent"), json_int(stb, "bytes_sent")) << stb;
    ASSERT_FALSE(srv.seen().empty());
    for (const Seen& x : srv.seen()) {
        EXPECT_EQ(x.content_encoding, "");
        EXPECT_EQ(x.wire_length, static_cast<int64_t>(x.body.size()));
    }
    // Responses: libcurl offers the encodings it decodes and httplib
    // compresses application/json for such a client; b pulled a's 200 rows.
    EXPECT_GE(json_int(stb, "pulled"), 200) << stb;
    bool offers_gzip = false;
    for (const Seen& x : srv.seen()) offers_gzip |= contains(x.accept_encoding, "gzip");
    EXPECT_TRUE(offers_gzip);
    EXPECT_LT(json_int(stb, "wire_bytes_received"), json_int(stb, "bytes_received")) << stb;
    sync_ok(a, srv.url());
    EXPECT_EQ(a.table("t"), s.table("t"));
    EXPECT_EQ(b.table("t"), s.table("t"));
    EXPECT_EQ(s.i64("SELECT count(*) FROM t"), 400);
}

// ------------------------------------------------------------------ 4

TEST_F(Http, TransientFailuresAreRetried) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL), (2, 'a', NULL, NULL)");
    srv.script([](Script& x) { x.fail_first = 2; });
    const std::string st = sync_ok(a, srv.url());
    EXPECT_EQ(json_int(st, "retries"), 2) << st;
    EXPECT_EQ(static_cast<int64_t>(srv.requests()), json_int(st, "batches") + 2) << st;
    EXPECT_EQ(a.table("t"), s.table("t"));
    EXPECT_EQ(s.table("t").size(), 2u);
    // The retried request is the same document.
    const auto seen = srv.seen();
    ASSERT_GE(seen.size(), 3u);
    EXPECT_EQ(seen[0].status, 503);
    EXPECT_EQ(seen[1].status, 503);
    EXPECT_EQ(seen[2].status, 200);
    EXPECT_EQ(seen[1].body, seen[0].body);
    EXPECT_EQ(seen[2].body, seen[0].body);
}

TEST_F(Http, RetriesUsedUpReportTheLastFailure) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL)");
    srv.script([](Script& x) { x.fail_first = 1000; });
    const auto before = a.dump();
    const std::string err = sync_fails(a, srv.url(), "{\"retries\":1}");
    EXPECT_TRUE(contains(err, "HTTP 503")) << err;
    EXPECT_TRUE(contains(err, "warming up")) << err;
    EXPECT_TRUE(contains(err, "after 2 attempts")) << err;
    EXPECT_TRUE(contains(err, "the server at " + srv.url() + " refused the exchange")) << err;
    EXPECT_EQ(srv.requests(), 2u);
    EXPECT_EQ(a.dump(), before) << dump_diff(before, a.dump());
    EXPECT_TRUE(s.table("t").empty());
    const std::string status = a.text("SELECT lww_sync_status()");
    EXPECT_FALSE(json_bool(status, "running")) << status;
    EXPECT_EQ("lww_sync: " + json_text(status, "error"), err) << status;
    // retries 0: one attempt, no "after" suffix.
    srv.forget();
    const std::string once = sync_fails(a, srv.url(), "{\"retries\":0}");
    EXPECT_TRUE(contains(once, "HTTP 503")) << once;
    EXPECT_FALSE(contains(once, "attempts")) << once;
    EXPECT_EQ(srv.requests(), 1u);
    // A URL with a quote and a backslash: the status stays JSON and names it as given.
    const std::string odd = srv.url() + "/a\"b\\c";
    sync_fails(a, odd, "{\"retries\":0}");
    const std::string st = a.text("SELECT lww_sync_status()");
    EXPECT_EQ(a.i64("SELECT json_valid(lww_sync_status())"), 1) << st;
    EXPECT_EQ(json_text(st, "url"), odd) << st;
}

TEST_F(Http, WhichStatusesAreRetried) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    int row = 0;
    // Transient: the next request fails once, the retry succeeds.
    for (int status : {408, 429, 502, 503, 504}) {
        a.exec("INSERT INTO t VALUES (" + std::to_string(++row) + ", 'a', NULL, NULL)");
        srv.forget();
        srv.script([&](Script& x) {
            x.fail_first = static_cast<int>(srv.total_unlocked()) + 1;
            x.fail_status = status;
        });
        const std::string st = sync_ok(a, srv.url());
        EXPECT_EQ(json_int(st, "retries"), 1) << status << " " << st;
        EXPECT_EQ(srv.seen().at(0).status, status);
        EXPECT_EQ(a.table("t"), s.table("t")) << status;
    }
    // Not transient: one request, whatever the retries.
    const std::vector<std::pair<int, std::string>> final_ones{
        {400, "refused the exchange (HTTP 400): warming up"}, {403, "refused the credentials (HTTP 403): warming up"},
        {409, "refused the exchange (HTTP 409): warming up"}, {500, "refused the exchange (HTTP 500): warming up"},
        {501, "refused the exchange (HTTP 501): warming up"},
    };
    for (const auto& [status, msg] : final_ones) {
        a.exec("INSERT INTO t VALUES (" + std::to_string(++row) + ", 'a', NULL, NULL)");
        srv.forget();
        srv.script([&, status = status](Script& x) {
            x.fail_first = static_cast<int>(srv.total_unlocked()) + 100;
            x.fail_status = status;
        });
        const std::string err = sync_fails(a, srv.url(), "{\"retries\":4}");
        EXPECT_TRUE(contains(err, "the server at " + srv.url() + " " + msg)) << err;
        EXPECT_FALSE(contains(err, "attempts")) << err;
        EXPECT_EQ(srv.requests(), 1u) << status;
    }
}

// ------------------------------------------------------------------ 5

TEST_F(Http, BearerToken) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL)");
    srv.script([](Script& x) { x.token = "s3cret"; });
    const std::string err = sync_fails(a, srv.url(), "");
    EXPECT_TRUE(contains(err, "the server at " + srv.url() + " refused the credentials (HTTP 401): JWT invalid"))
        << err;
    EXPECT_EQ(srv.requests(), 1u);  // not retried
    EXPECT_EQ(srv.seen().at(0).authorization, "");

    srv.forget();
    const std::string wrong = sync_fails(a, srv.url(), "{\"token\":\"guess\"}");
    EXPECT_TRUE(contains(wrong, "(HTTP 401): JWT invalid")) << wrong;
    EXPECT_FALSE(contains(wrong, "guess")) << wrong;
    EXPECT_EQ(srv.requests(), 1u);

    srv.forget();
    sync_ok(a, srv.url(), "{\"token\":\"s3cret\"}");
    EXPECT_EQ(a.table("t"), s.table("t"));
    EXPECT_EQ(s.table("t").size(), 1u);
    for (const Seen& x : srv.seen()) EXPECT_EQ(x.authorization, "Bearer s3cret");
}

// ------------------------------------------------------------------ 6

TEST_F(Http, ServerErrorSurfacesAndClientIsUnchanged) {
    // The server names u's rows by another key: the push is refused whole.
    Db& s = peer("server", std::string(kSchemaT) + "CREATE TABLE u(k INTEGER PRIMARY KEY, v);", {"t", "u"});
    Db& a = peer("a", std::string(kSchemaT) + "CREATE TABLE u(id INTEGER PRIMARY KEY, v);", {"t", "u"});
    HttpServer& srv = serve(s);
    s.exec("INSERT INTO t VALUES (100, 'server', NULL, NULL)");
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL); INSERT INTO u VALUES (1, 'only on the client')");
    const auto before = dump_but_clock(a);
    const std::string err = sync_fails(a, srv.url(), "", {"t", "u", "lww_peers"});
    // Only the clock moved (the hello's server clock was observed, by design).
    EXPECT_EQ(dump_but_clock(a), before) << dump_diff(before, dump_but_clock(a));
    EXPECT_TRUE(contains(err, "the server at " + srv.url() + " refused the exchange (HTTP 400): lww_exchange: "))
        << err;
    EXPECT_TRUE(contains(err, "table \"u\": the change set's key columns do not match")) << err;
    EXPECT_FALSE(contains(err, "attempts")) << err;  // a 400 is not retried
    EXPECT_EQ(s.table("t"), (V{"int:100 | text:'server' | NULL | NULL"}));
    // The refused request was the one with the push.
    const auto seen = srv.seen();
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.back().status, 400);
    EXPECT_FALSE(member_json(seen.back().body, "push").empty());
}

// ------------------------------------------------------------------ 7

TEST_F(Http, DeadAndWrongUrls) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL)");
    const auto before = a.dump();

    std::string err = sync_fails(a, "http://127.0.0.1:1/rpc/lww_exchange", "{\"retries\":0}");
    EXPECT_TRUE(contains(err, "cannot reach http://127.0.0.1:1/rpc/lww_exchange: ")) << err;
    EXPECT_FALSE(contains(err, "attempts")) << err;

    err = sync_fails(a, "http://127.0.0.1:1/rpc/lww_exchange", "{\"retries\":1}");
    EXPECT_TRUE(contains(err, "cannot reach http://127.0.0.1:1/rpc/lww_exchange: ")) << err;
    EXPECT_TRUE(contains(err, "(after 2 attempts)")) << err;

    err = sync_fails(a, srv.url("/nope"), "");
    EXPECT_TRUE(contains(err, "no lww_exchange endpoint at " + srv.url("/nope") + " (HTTP 404)")) << err;
    EXPECT_EQ(srv.requests(), 0u);

    // Credentials and query never reach the message nor the status.
    err = sync_fails(a, "http://u:pw@127.0.0.1:1/x?token=abc", "{\"retries\":0}");
    EXPECT_TRUE(contains(err, "cannot reach http://127.0.0.1:1/x")) << err;
    EXPECT_FALSE(contains(err, "pw")) << err;
    EXPECT_FALSE(contains(err, "abc")) << err;
    const std::string status = a.text("SELECT lww_sync_status()");
    EXPECT_FALSE(contains(status, "pw")) << status;
    EXPECT_FALSE(contains(status, "abc")) << status;
    EXPECT_EQ(json_text(status, "url"), "http://127.0.0.1:1/x") << status;
    EXPECT_FALSE(json_bool(status, "running")) << status;

    EXPECT_EQ(a.dump(), before) << dump_diff(before, a.dump());
}

// ------------------------------------------------------------------ 8

TEST_F(Http, RoundTripTimeout) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL)");
    srv.script([](Script& x) {
        x.sleep_on = -1;
        x.sleep_ms = 2000;
    });
    std::string err = sync_fails(a, srv.url(), "{\"timeout_ms\":300,\"retries\":0}");
    EXPECT_TRUE(contains(err, "cannot reach " + srv.url())) << err;
    EXPECT_TRUE(contains(err, "Timeout was reached") || contains(err, "timed out")) << err;
    EXPECT_FALSE(contains(err, "attempts")) << err;
    EXPECT_EQ(srv.requests(), 1u);
    // A timeout is transient: retried.
    srv.forget();
    err = sync_fails(a, srv.url(), "{\"timeout_ms\":300,\"retries\":1}");
    EXPECT_TRUE(contains(err, "timed out") || contains(err, "Timeout was reached")) << err;
    EXPECT_TRUE(contains(err, "(after 2 attempts)")) << err;
    EXPECT_EQ(srv.requests(), 2u);
    EXPECT_TRUE(s.table("t").empty());
}

// ------------------------------------------------------------------ 9

TEST_F(Http, ResponseLostMidTransferIsRetriedWithoutDuplicates) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    fill(a, 1, 20, "a");
    fill(s, 101, 5, "s");
    srv.script([](Script& x) { x.cut_on = 2; });
    const std::string st = sync_ok(a, srv.url());
    EXPECT_EQ(json_int(st, "retries"), 1) << st;
    const auto seen = srv.seen();
    ASSERT_GE(seen.size(), 3u);
    // The second request carried the push; the server applied it, then the
    // response broke off. The retry is the same document.
    EXPECT_FALSE(member_json(seen[1].body, "push").empty());
    EXPECT_EQ(json_int(member_json(seen[1].response, "applied"), "rows"), 20) << seen[1].response;
    EXPECT_GT(json_int(member_json(seen[1].response, "applied"), "applied"), 0) << seen[1].response;
    EXPECT_EQ(seen[2].body, seen[1].body);
    // The resent batch changes nothing more on the server.
    EXPECT_EQ(json_int(member_json(seen[2].response, "applied"), "applied"), 0) << seen[2].response;
    EXPECT_EQ(s.i64("SELECT count(*) FROM t"), 25);
    EXPECT_EQ(s.i64("SELECT count(DISTINCT id) FROM t"), 25);
    EXPECT_EQ(a.table("t"), s.table("t"));
    // And a second sync moves nothing.
    const std::string again = sync_ok(a, srv.url());
    EXPECT_EQ(json_int(again, "sent.applied"), 0) << again;
    EXPECT_EQ(json_int(again, "received.applied"), 0) << again;
    EXPECT_EQ(a.table("t"), s.table("t"));
}

// ------------------------------------------------------------------ 10

TEST_F(Http, InterruptedSyncLosesNothing) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    fill(a, 1, 30, "a");
    fill(s, 101, 30, "s");
    V want = a.table("t");
    for (const auto& r : s.table("t")) want.push_back(r);
    std::sort(want.begin(), want.end());
    srv.script([](Script& x) { x.fail_after_apply_on = 3; });
    const std::string err = sync_fails(a, srv.url(), "{\"batch_rows\":5}", {});
    EXPECT_TRUE(contains(err, "refused the exchange (HTTP 500): internal error")) << err;
    EXPECT_FALSE(contains(err, "attempts")) << err;  // a 500 is not retried
    EXPECT_EQ(srv.requests(), 3u);
    // The server kept what it applied, the client what it pulled.
    EXPECT_GT(s.i64("SELECT count(*) FROM t"), 30);
    EXPECT_LT(s.i64("SELECT count(*) FROM t"), 60);

    srv.script([](Script& x) { x.fail_after_apply_on = 0; });
    const std::string st = sync_ok(a, srv.url(), "{\"batch_rows\":5}");
    V got = a.table("t");
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, want) << st;
    V on_server = s.table("t");
    std::sort(on_server.begin(), on_server.end());
    EXPECT_EQ(on_server, want);
    EXPECT_EQ(s.i64("SELECT count(DISTINCT id) FROM t"), 60);
    EXPECT_EQ(a.i64("SELECT count(DISTINCT id) FROM t"), 60);
    const std::string again = sync_ok(a, srv.url());
    EXPECT_EQ(json_int(again, "sent.applied"), 0) << again;
    EXPECT_EQ(json_int(again, "received.applied"), 0) << again;
}

// A pure pull asks for its next batch while the current one applies (the
// server reads while the client writes): a request arrives carrying the
// cursor of a batch the client has not committed yet. Every answer is
// taken (one request per batch), and a failing request ahead of the apply
// fails the sync after the batches before it committed.
TEST_F(Http, NextPullIsRequestedWhileABatchApplies) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    fill(s, 1, 40, "s");
    // Applying is slow here: an app trigger that takes 5 ms a row.
    ASSERT_EQ(sqlite3_create_function(
                  a.handle(), "test_slow", 0, SQLITE_UTF8, nullptr,
                  [](sqlite3_context* ctx, int, sqlite3_value**) {
                      std::this_thread::sleep_for(std::chrono::milliseconds(5));
                      sqlite3_result_int(ctx, 1);
                  },
                  nullptr, nullptr),
              SQLITE_OK);
    a.exec("CREATE TRIGGER slow AFTER INSERT ON t BEGIN SELECT test_slow(); END");
    // What the client has committed when each request arrives.
    Db watcher(a.path(), false);
    sqlite3_busy_timeout(watcher.handle(), 5000);
    std::mutex mu;
    std::map<int, int64_t> committed;
    srv.script([&](Script& x) {
        x.on_request = [&](int k) {
            const int64_t c = watcher.i64("SELECT coalesce(max(received), 0) FROM lww_peers");
            std::lock_guard<std::mutex> g(mu);
            committed[k] = c;
        };
    });
    const std::string st = sync_ok(a, srv.url(), "{\"batch_rows\":5}");
    EXPECT_EQ(json_int(st, "pulled"), 40) << st;
    EXPECT_EQ(a.table("t"), s.table("t"));
    const auto seen = srv.seen();
    EXPECT_EQ(static_cast<int64_t>(seen.size()), json_int(st, "batches")) << "an answer asked for and not taken";
    int ahead = 0;
    std::optional<uint64_t> last;
    for (size_t i = 0; i < seen.size(); ++i) {
        rapidjson::Document d;
        d.Parse(seen[i].body.c_str());
        if (!d.IsObject() || !d.HasMember("received")) continue;
        const uint64_t received = std::stoull(d["received"].GetString());
        if (last) {
            EXPECT_GT(received, *last) << "request " << i + 1 << " asks again for what came";
        }
        last = received;
        std::lock_guard<std::mutex> g(mu);
        if (static_cast<int64_t>(received) > committed[static_cast<int>(i + 1)]) ++ahead;
    }
    EXPECT_GE(ahead, 3) << st;

    // A request sent ahead fails: the sync fails with its error; the
    // batches before it stay, and the next sync brings the rest once.
    Db& b = peer("b");
    srv.forget();
    srv.script([&](Script& x) {
        x.on_request = nullptr;
        x.fail_after_apply_on = static_cast<int>(srv.total_unlocked()) + 4;
    });
    const std::string err = sync_fails(b, srv.url(), "{\"batch_rows\":5,\"retries\":0}", {});
    EXPECT_TRUE(contains(err, "refused the exchange (HTTP 500): internal error")) << err;
    const int64_t kept = b.i64("SELECT count(*) FROM t");
    EXPECT_GT(kept, 0);
    EXPECT_LT(kept, 40);
    srv.script([](Script& x) { x.fail_after_apply_on = 0; });
    sync_ok(b, srv.url(), "{\"batch_rows\":5}");
    EXPECT_EQ(b.table("t"), s.table("t"));
}

// An apply that fails while the next pull is out: the sync fails at once
// with the apply's error, calling the request off instead of waiting for
// it (here the server holds it until the test lets it go).
TEST_F(Http, FailedApplyCallsOffThePullSentAhead) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    fill(s, 1, 40, "s");
    // Row 13 (batch 3 of 5-row batches) fails its insert: not a refused row
    // (those are parked) but an error that ends the sync. It fails only once
    // the pull sent ahead (request 5) is at the server: a batch of five rows
    // applies faster than a request goes out.
    ASSERT_EQ(sqlite3_create_function(
                  a.handle(), "test_fail", 1, SQLITE_UTF8, &srv,
                  [](sqlite3_context* ctx, int, sqlite3_value** argv) {
                      if (sqlite3_value_int64(argv[0]) == 13) {
                          static_cast<HttpServer*>(sqlite3_user_data(ctx))->wait_blocked(10000);
                          sqlite3_result_error(ctx, "test: apply refused", -1);
                      } else {
                          sqlite3_result_int(ctx, 1);
                      }
                  },
                  nullptr, nullptr),
              SQLITE_OK);
    a.exec("CREATE TRIGGER fail13 AFTER INSERT ON t BEGIN SELECT test_fail(NEW.id); END");
    // Requests: 1 hello, 2 batch 1, 3 batch 2 (sent while 1 applies), 4
    // batch 3, 5 batch 4 — out while batch 3 fails; the server holds it.
    srv.script([](Script& x) { x.block_on = 5; });
    std::atomic<bool> done{false}, released{false};
    std::thread watchdog([&] {  // a sync that waits for the held request would never end
        for (int i = 0; i < 2000 && !done; ++i) sleep_ms(10);
        if (!done) {
            released = true;
            srv.release();
        }
    });
    // A round-trip timeout far past the watchdog's 20 s: only calling the
    // request off ends the sync sooner.
    const std::string err = sync_fails(a, srv.url(), "{\"batch_rows\":5,\"timeout_ms\":300000}", {});
    done = true;
    watchdog.join();
    EXPECT_FALSE(released) << "the sync waited for the pull it had sent ahead";
    EXPECT_TRUE(contains(err, "test: apply refused")) << err;
    EXPECT_TRUE(srv.wait_blocked(1000)) << "request 5 was never sent";
    EXPECT_EQ(a.i64("SELECT count(*) FROM t"), 10);  // batches 1 and 2 committed
    srv.release();
    ASSERT_TRUE(srv.wait_idle());
    srv.script([](Script& x) { x.block_on = 0; });
    a.exec("DROP TRIGGER fail13");
    sync_ok(a, srv.url(), "{\"batch_rows\":5}");
    EXPECT_EQ(a.table("t"), s.table("t"));
}

// ------------------------------------------------------------------ 11

TEST_F(Http, StatusAndCancel) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    fill(a, 1, 20, "a");
    fill(s, 101, 20, "s");
    EXPECT_EQ(a.text("SELECT lww_sync_status()"), "{\"running\":false}");
    EXPECT_EQ(a.i64("SELECT lww_sync_cancel()"), 0);
    srv.script([](Script& x) { x.block_on = 2; });

    std::unique_ptr<Db> worker = cl.connect("a");
    Outcome result;
    std::atomic<bool> done{false};
    std::thread th([&] {
        result = sync(*worker, srv.url(), "{\"batch_rows\":5}");
        done = true;
    });
    // Poll for state (bounded), never assert on time.
    std::string status;
    bool running = false;
    for (int i = 0; i < 1000 && !running; ++i) {
        status = a.text("SELECT lww_sync_status()");
        running = json_bool(status, "running");
        if (!running) sleep_ms(10);
    }
    const bool blocked = srv.wait_blocked();
    EXPECT_TRUE(running) << status;
    EXPECT_TRUE(blocked);
    if (running && blocked) {
        status = a.text("SELECT lww_sync_status()");
        EXPECT_TRUE(json_bool(status, "running")) << status;
        EXPECT_EQ(json_text(status, "url"), srv.url()) << status;
        EXPECT_FALSE(json_text(status, "started_at").empty()) << status;
        EXPECT_EQ(json_int(member_json(status, "stats"), "batches"), 1) << status;  // the hello
        EXPECT_EQ(json_text(member_json(status, "stats"), "peer"), s.node_id()) << status;
        EXPECT_GT(json_int(member_json(status, "stats"), "wire_bytes_sent"), 0) << status;
        // A second sync of the same file meanwhile is refused and leaves the running one be.
        const auto before = a.dump();
        Outcome second = sync(a, srv.url());
        EXPECT_FALSE(second.ok);
        EXPECT_TRUE(contains(second.err, "lww_sync: a sync of this database is already running")) << second.err;
        EXPECT_EQ(second.code, SQLITE_BUSY);  // ErrorKind::conflict
        EXPECT_EQ(a.dump(), before) << dump_diff(before, a.dump());
        EXPECT_TRUE(json_bool(a.text("SELECT lww_sync_status()"), "running"));
        EXPECT_EQ(srv.requests(), 2u);
        EXPECT_EQ(a.i64("SELECT lww_sync_cancel()"), 1);
    }
    // The transfer aborts while the handler is still blocked; release it
    // only then (a released handler could answer before the cancel is seen).
    for (int i = 0; i < 1000 && !done; ++i) sleep_ms(10);
    EXPECT_TRUE(done.load()) << "the sync did not stop after lww_sync_cancel()";
    srv.release();
    th.join();
    EXPECT_FALSE(result.ok);
    EXPECT_EQ(result.err, "lww_sync: the sync was cancelled");
    EXPECT_EQ(result.code, SQLITE_ABORT);  // ErrorKind::cancelled
    status = a.text("SELECT lww_sync_status()");
    EXPECT_FALSE(json_bool(status, "running")) << status;
    EXPECT_EQ(json_text(status, "error"), "cancelled") << status;
    EXPECT_EQ(a.i64("SELECT lww_sync_cancel()"), 0);
    ASSERT_TRUE(srv.wait_idle());

    // A later sync converges and the status shows it.
    const std::string st = sync_ok(a, srv.url(), "{\"batch_rows\":5}");
    ASSERT_TRUE(srv.wait_idle());
    EXPECT_EQ(a.table("t"), s.table("t")) << st;
    EXPECT_EQ(s.i64("SELECT count(*) FROM t"), 40);
    status = worker->text("SELECT lww_sync_status()");
    EXPECT_FALSE(json_bool(status, "running")) << status;
    EXPECT_FALSE(parse_json(status).HasMember("error")) << status;
    EXPECT_EQ(json_int(member_json(status, "stats"), "batches"), json_int(st, "batches")) << status;
}

TEST_F(Http, CancelWhileRetrying) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL)");
    srv.script([](Script& x) { x.fail_first = 1000000; });
    std::unique_ptr<Db> worker = cl.connect("a");
    Outcome result;
    std::atomic<bool> done{false};
    std::thread th([&] {
        result = sync(*worker, srv.url(), "{\"retries\":100}");
        done = true;
    });
    // Retrying: the second attempt has arrived.
    for (int i = 0; i < 1000 && srv.requests() < 2; ++i) sleep_ms(10);
    EXPECT_GE(srv.requests(), 2u);
    const std::string status = a.text("SELECT lww_sync_status()");
    EXPECT_TRUE(json_bool(status, "running")) << status;
    EXPECT_EQ(a.i64("SELECT lww_sync_cancel()"), 1);
    // A backoff is at most 5 s; poll for the end (bounded).
    for (int i = 0; i < 1500 && !done; ++i) sleep_ms(10);
    EXPECT_TRUE(done.load()) << "the sync kept retrying after lww_sync_cancel()";
    srv.script([](Script& x) { x.fail_first = 0; });  // lets a stuck sync end
    th.join();
    EXPECT_EQ(result.err, "lww_sync: the sync was cancelled");
    EXPECT_EQ(result.code, SQLITE_ABORT);  // ErrorKind::cancelled
    const size_t attempts = srv.requests();
    const std::string after = a.text("SELECT lww_sync_status()");
    EXPECT_FALSE(json_bool(after, "running")) << after;
    EXPECT_EQ(json_text(after, "error"), "cancelled") << after;
    EXPECT_TRUE(s.table("t").empty());
    EXPECT_TRUE(a.table("lww_peers").empty());
    EXPECT_EQ(srv.requests(), attempts);  // nothing more was sent
}

// ------------------------------------------------------------------ 12

TEST_F(Http, TlsVerification) {
    const std::string cert = cl.file("c.pem"), key = cl.file("k.pem");
    const std::string cmd =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
        "-addext subjectAltName=IP:127.0.0.1 -keyout '" +
        key + "' -out '" + cert + "' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "openssl cannot make a test certificate";
    Db& s = peer("server");
    Db& a = peer("a");
    Db& b = peer("b");
    HttpServer& srv = serve(s, cert, key);
    ASSERT_EQ(srv.url().rfind("https://", 0), 0u);
    s.exec("INSERT INTO t VALUES (1, 'server', NULL, NULL)");
    a.exec("INSERT INTO t VALUES (2, 'a', NULL, NULL)");
    b.exec("INSERT INTO t VALUES (3, 'b', NULL, NULL)");

    const std::string err = sync_fails(a, srv.url(), "");
    EXPECT_TRUE(contains(err, "cannot reach " + srv.url())) << err;
    EXPECT_TRUE(contains(err, "certificate") || contains(err, "SSL")) << err;
    EXPECT_FALSE(contains(err, "attempts")) << err;  // not retried
    EXPECT_EQ(srv.requests(), 0u);

    sync_ok(a, srv.url(), "{\"ca_file\":\"" + cert + "\"}");
    sync_ok(b, srv.url(), "{\"insecure\":true}");
    sync_ok(a, srv.url(), "{\"ca_file\":\"" + cert + "\"}");
    const V want{"int:1 | text:'server' | NULL | NULL", "int:2 | text:'a' | NULL | NULL",
                 "int:3 | text:'b' | NULL | NULL"};
    EXPECT_EQ(s.table("t"), want);
    EXPECT_EQ(a.table("t"), want);
    EXPECT_EQ(b.table("t"), want);
    const size_t good = srv.requests();

    // A CA file that does not exist or does not vouch for the server.
    const std::string missing = sync_fails(a, srv.url(), "{\"ca_file\":\"" + cl.file("none.pem") + "\"}");
    EXPECT_TRUE(contains(missing, "cannot reach " + srv.url())) << missing;
    const std::string other = cl.file("other.pem");
    const std::string cmd2 =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
        "-addext subjectAltName=IP:127.0.0.1 -keyout '" +
        cl.file("other-key.pem") + "' -out '" + other + "' >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd2.c_str()), 0);
    const std::string wrong_ca = sync_fails(a, srv.url(), "{\"ca_file\":\"" + other + "\"}");
    EXPECT_TRUE(contains(wrong_ca, "cannot reach " + srv.url())) << wrong_ca;
    EXPECT_TRUE(contains(wrong_ca, "certificate") || contains(wrong_ca, "SSL")) << wrong_ca;
    // The right CA but another host name than the certificate's.
    const std::string by_name = "https://localhost:" + std::to_string(srv.port()) + "/rpc/lww_exchange";
    const std::string wrong_host = sync_fails(a, by_name, "{\"ca_file\":\"" + cert + "\",\"retries\":0}");
    EXPECT_TRUE(contains(wrong_host, "cannot reach " + by_name)) << wrong_host;
    EXPECT_TRUE(contains(wrong_host, "certificate") || contains(wrong_host, "SSL")) << wrong_host;
    EXPECT_EQ(srv.requests(), good);  // no refused connection got as far as a request
    // insecure skips the host name check too.
    sync_ok(a, by_name, "{\"insecure\":true}");
    EXPECT_EQ(a.table("t"), want);
}

// ------------------------------------------------------------------ more

TEST_F(Http, ResponseThatIsNotAnExchangeDocument) {
    // A captive portal or a proxy answering 200 with a page of its own.
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL)");
    srv.script([](Script& x) {
        x.raw_on = -1;
        x.raw_body = "<html>please log in</html>";
    });
    std::string err = sync_fails(a, srv.url(), "");
    EXPECT_TRUE(contains(err, "invalid exchange document")) << err;
    EXPECT_EQ(srv.requests(), 1u);
    // An empty 200 likewise.
    srv.forget();
    srv.script([](Script& x) {
        x.raw_body = "";
        x.raw_type = "application/json";
    });
    err = sync_fails(a, srv.url(), "");
    EXPECT_TRUE(contains(err, "invalid exchange document")) << err;
    EXPECT_TRUE(s.table("t").empty());
}

TEST_F(Http, ServingItselfIsRefused) {
    Db& a = peer("a");
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL)");
    std::unique_ptr<Db> same = cl.connect("a");
    HttpServer& srv = serve(*same);
    const auto before = a.dump();
    const std::string err = sync_fails(a, srv.url(), "");
    // The server notices first: the caller is itself.
    EXPECT_TRUE(contains(
        err, "refused the exchange (HTTP 400): lww_exchange: the caller is this database's own node " + a.node_id()))
        << err;
    EXPECT_EQ(a.dump(), before) << dump_diff(before, a.dump());
    srv_.reset();  // before `same` goes
}

// ------------------------------------------------------------------ 13

TEST_F(Http, OptionsAreValidated) {
    Db& s = peer("server");
    Db& a = peer("a");
    HttpServer& srv = serve(s);
    a.exec("INSERT INTO t VALUES (1, 'a', NULL, NULL)");
    const std::string u = srv.url();
    EXPECT_TRUE(FailsCleanly(a, "SELECT lww_sync(?, ?)", {u, "{\"speed\":1}"}, "lww_sync: ",
                             "unknown option \"speed\" (known: batch_rows, batch_bytes, token, timeout_ms, "
                             "connect_timeout_ms, ca_file, insecure, gzip, retries)"));
    const std::vector<std::pair<std::string, std::string>> bad{
        {"{\"insecure\":\"yes\"}", "invalid option \"insecure\": true or false"},
        {"{\"insecure\":1}", "invalid option \"insecure\": true or false"},
        {"{\"gzip\":null}", "invalid option \"gzip\": true or false"},
        {"{\"token\":42}", "invalid option \"token\": a string"},
        {"{\"ca_file\":false}", "invalid option \"ca_file\": a string"},
        {"{\"retries\":-1}", "invalid option \"retries\": an integer from 0 to 100"},
        {"{\"retries\":101}", "invalid option \"retries\": an integer from 0 to 100"},
        {"{\"retries\":1.5}", "invalid option \"retries\": an integer from 0 to 100"},
        {"{\"timeout_ms\":0}", "invalid option \"timeout_ms\": an integer from 1 to"},
        {"{\"timeout_ms\":\"300\"}", "invalid option \"timeout_ms\": an integer from 1 to"},
        {"{\"connect_timeout_ms\":0}", "invalid option \"connect_timeout_ms\": an integer from 1 to"},
        {"{\"batch_bytes\":1023}", "invalid option \"batch_bytes\": an integer from 1024 to"},
        {"{\"batch_rows\":0}", "invalid option \"batch_rows\": an integer from 1 to"},
        {"[]", "options must be a JSON object"},
        {"{\"gzip\":", "options must be a JSON object"},
    };
    for (const auto& [opts, msg] : bad)
        EXPECT_TRUE(FailsCleanly(a, "SELECT lww_sync(?, ?)", {u, opts}, "lww_sync: ", msg)) << opts;
    EXPECT_EQ(srv.requests(), 0u);  // refused before anything was sent
    // The accepted forms work.
    sync_ok(a, u,
            "{\"batch_rows\":1,\"batch_bytes\":1024,\"token\":\"\",\"timeout_ms\":20000,\"connect_timeout_ms\":5000,"
            "\"insecure\":false,\"gzip\":true,\"retries\":0}");
    EXPECT_EQ(a.table("t"), s.table("t"));
}

}  // namespace
