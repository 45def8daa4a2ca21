#include "exchange.h"

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "error.h"

namespace lww {

std::string ApplyCounts::json() const {
    return "{\"rows\":" + std::to_string(rows) + ",\"received\":" + std::to_string(received) +
           ",\"applied\":" + std::to_string(applied) + ",\"ignored\":" + std::to_string(ignored) + "}";
}

std::string SyncStats::json() const {
    return "{\"peer\":\"" + peer + "\",\"round_trips\":" + std::to_string(round_trips) + ",\"sent\":" + sent.json() +
           ",\"received\":" + received.json() + "}";
}

Cursor Cursor::after_batch(const ChangeSet& cs) const {
    if (cs.upto <= received) return *this;  // an old batch again: nothing moves
    // Rows up to cs.upto are now whole; later rows gained nothing.
    return Cursor{cs.upto, cs.complete ? cs.upto : floor};
}

namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void header(Writer& w, const NodeId& node) {
    w.Key("format");
    w.String(kExchangeFormat);
    w.Key("version");
    w.Int(kExchangeVersion);
    w.Key("node");
    w.String(node.str().c_str());
}

void u64(Writer& w, const char* key, uint64_t v) {
    w.Key(key);
    std::string s = std::to_string(v);
    w.String(s.c_str(), static_cast<rapidjson::SizeType>(s.size()));
}

void cursor(Writer& w, const char* key, const char* floor_key, const Cursor& c) {
    u64(w, key, c.received);
    if (c.floor != c.received) u64(w, floor_key, c.floor);
}

void raw(Writer& w, const char* key, const std::string& json) {
    w.Key(key);
    w.RawValue(json.data(), json.size(), rapidjson::kObjectType);
}

[[noreturn]] void bad(const std::string& what) { throw Error("invalid exchange document: " + what); }

void parse_envelope(rapidjson::Document& d, std::string_view json) {
    d.Parse<kJsonParseFlags>(json.data(), json.size());
    if (d.HasParseError())
        bad("malformed JSON at offset " + std::to_string(d.GetErrorOffset()) + ": " +
            rapidjson::GetParseError_En(d.GetParseError()));
    if (!d.IsObject()) bad("expected a JSON object");
    auto f = d.FindMember("format");
    if (f == d.MemberEnd() || !f->value.IsString() || std::string(f->value.GetString()) != kExchangeFormat)
        bad(std::string("want \"format\": \"") + kExchangeFormat + "\"");
    auto v = d.FindMember("version");
    if (v == d.MemberEnd() || !v->value.IsInt() || v->value.GetInt() != kExchangeVersion)
        throw Error("unsupported exchange version (this build speaks version " + std::to_string(kExchangeVersion) + ")");
}

NodeId node_of(const rapidjson::Document& d) {
    auto n = d.FindMember("node");
    NodeId id;
    if (n == d.MemberEnd() || !n->value.IsString() || !NodeId::try_parse({n->value.GetString(), n->value.GetStringLength()}, id))
        bad("\"node\" must be a node id (UUID)");
    return id;
}

uint64_t u64_of(const rapidjson::Document& d, const char* key) {
    auto m = d.FindMember(key);
    if (m == d.MemberEnd() || !m->value.IsString()) bad(std::string("\"") + key + "\" must be a decimal string");
    const char* s = m->value.GetString();
    size_t n = m->value.GetStringLength();
    if (n == 0 || n > 20) bad(std::string("\"") + key + "\" must be a decimal string");
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) {
        if (s[i] < '0' || s[i] > '9') bad(std::string("\"") + key + "\" must be a decimal string");
        uint64_t d10 = v * 10 + uint64_t(s[i] - '0');
        if (d10 / 10 != v) bad(std::string("\"") + key + "\" is out of range");
        v = d10;
    }
    return v;
}

Cursor cursor_of(const rapidjson::Document& d, const char* key, const char* floor_key) {
    Cursor c;
    c.received = u64_of(d, key);
    c.floor = d.HasMember(floor_key) ? u64_of(d, floor_key) : c.received;
    if (c.floor > c.received) bad(std::string("\"") + floor_key + "\" must not exceed \"" + key + "\"");
    return c;
}

}  // namespace

std::string encode_request(const ExchangeRequest& r) {
    rapidjson::StringBuffer buf;
    Writer w(buf);
    w.StartObject();
    header(w, r.node);
    if (r.received) cursor(w, "received", "received_floor", *r.received);
    w.Key("limit");
    w.Int64(r.limit);
    if (r.push) raw(w, "push", *r.push);
    w.EndObject();
    return std::string(buf.GetString(), buf.GetSize());
}

std::string encode_response(const ExchangeResponse& r) {
    rapidjson::StringBuffer buf;
    Writer w(buf);
    w.StartObject();
    header(w, r.node);
    cursor(w, "acked", "acked_floor", r.acked);
    if (r.applied) {
        const ApplyCounts& a = *r.applied;
        w.Key("applied");
        w.RawValue(a.json().c_str(), a.json().size(), rapidjson::kObjectType);
    }
    if (r.pull) raw(w, "pull", *r.pull);
    w.EndObject();
    return std::string(buf.GetString(), buf.GetSize());
}

ParsedRequest decode_request(std::string_view json) {
    rapidjson::Document d;
    parse_envelope(d, json);
    ParsedRequest r;
    r.node = node_of(d);
    if (d.HasMember("received")) r.received = cursor_of(d, "received", "received_floor");
    auto lim = d.FindMember("limit");
    if (lim != d.MemberEnd()) {
        if (!lim->value.IsInt64() || lim->value.GetInt64() <= 0 || lim->value.GetInt64() > 1000000)
            bad("\"limit\" must be an integer between 1 and 1000000");
        r.limit = lim->value.GetInt64();
    }
    auto push = d.FindMember("push");
    if (push != d.MemberEnd() && !push->value.IsNull()) r.push = decode_changeset_value(push->value);
    return r;
}

ParsedResponse decode_response(std::string_view json) {
    rapidjson::Document d;
    parse_envelope(d, json);
    ParsedResponse r;
    r.node = node_of(d);
    r.acked = cursor_of(d, "acked", "acked_floor");
    auto applied = d.FindMember("applied");
    if (applied != d.MemberEnd() && applied->value.IsObject()) {
        ApplyCounts a;
        auto count = [&](const char* k) -> size_t {
            auto m = applied->value.FindMember(k);
            return m != applied->value.MemberEnd() && m->value.IsUint64() ? m->value.GetUint64() : 0;
        };
        a.rows = count("rows");
        a.received = count("received");
        a.applied = count("applied");
        a.ignored = count("ignored");
        r.applied = a;
    }
    auto pull = d.FindMember("pull");
    if (pull != d.MemberEnd()) r.pull = decode_changeset_value(pull->value);
    return r;
}

std::string serve_exchange(SyncEngine& server, std::string_view request_json) {
    ParsedRequest req = decode_request(request_json);
    const NodeId self = server.self();
    if (req.node == self) throw Error("the caller is this database's own node " + self.str());
    ExchangeResponse resp;
    resp.node = self;
    // Pull before applying the push: an engine that waits for concurrent
    // writers while reading its feed (Postgres) must not hold row locks then.
    if (req.received) resp.pull = server.changes_for(req.node, *req.received, req.limit).json;
    if (req.push) {
        if (req.push->origin != req.node) throw Error("the pushed change set's origin is not the calling node");
        // A push that starts past what we hold would leave a gap: skip it and
        // report our cursor so the caller resends from there.
        const Cursor held = server.cursor_of(req.node);
        if (req.push->after <= held.received && req.push->since <= held.floor)
            resp.applied = server.apply_from(req.node, *req.push);
    }
    resp.acked = server.cursor_of(req.node);
    return encode_response(resp);
}

SyncStats run_sync(SyncEngine& local, const Transport& send, int64_t batch_rows) {
    SyncStats stats;
    const NodeId self = local.self();
    auto add = [](ApplyCounts& to, const ApplyCounts& c) {
        to.rows += c.rows;
        to.received += c.received;
        to.applied += c.applied;
        to.ignored += c.ignored;
    };
    std::optional<NodeId> server;
    auto round_trip = [&](const ExchangeRequest& req) {
        ParsedResponse resp = decode_response(send(encode_request(req)));
        ++stats.round_trips;
        if (resp.node == self) throw Error("the peer is this database itself (same node id " + self.str() + ")");
        if (server && resp.node != *server) throw Error("the peer's node id changed during the sync");
        if (resp.pull && resp.pull->origin != resp.node) throw Error("the peer sent a change set of another node");
        server = resp.node;
        stats.peer = resp.node.str();
        if (resp.applied) add(stats.sent, *resp.applied);
        return resp;
    };

    // Hello: who the server is and how far it holds our changes.
    ExchangeRequest hello;
    hello.node = self;
    hello.limit = batch_rows;
    Cursor acked = round_trip(hello).acked;

    // Push phase, then pull phase: local reads of our own feed happen before
    // this side writes anything (an engine may wait for its writers there).
    for (;;) {
        Batch b = local.changes_for(*server, acked, batch_rows);
        if (b.upto <= acked.received) break;
        ExchangeRequest req = hello;
        req.push = b.json;
        ParsedResponse resp = round_trip(req);
        if (resp.acked.received <= acked.received)
            throw Error("the peer did not accept a pushed batch (it holds our changes up to " +
                        std::to_string(resp.acked.received) + ")");
        acked = resp.acked;
    }
    for (;;) {
        ExchangeRequest req = hello;
        const Cursor mine = local.cursor_of(*server);
        req.received = mine;
        ParsedResponse resp = round_trip(req);
        if (!resp.pull || resp.pull->upto <= mine.received) break;
        add(stats.received, local.apply_from(*server, *resp.pull));
    }
    return stats;
}

}  // namespace lww
