#include "exchange.h"

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "error.h"
#include "hlc.h"
#include "changeset_reader.h"
#include "json.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <future>
#include <optional>
#include <random>
#include <system_error>
#include <cstdio>

namespace lww {

namespace {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

void put(JsonWriter& w, const char* key, uint64_t v) {
    w.Key(key);
    w.Uint64(v);
}

void write_counts(JsonWriter& w, const ApplyCounts& c) {
    w.StartObject();
    put(w, "rows", c.rows);
    put(w, "received", c.received);
    put(w, "applied", c.applied);
    put(w, "duplicate", c.duplicate);
    put(w, "lost", c.lost);
    put(w, "overwrote", c.overwrote);
    put(w, "ignored", c.ignored);
    put(w, "rejected", c.rejected);
    if (c.pending) put(w, "pending", c.pending);
    w.EndObject();
}

}  // namespace

std::string ApplyCounts::json() const {
    rapidjson::StringBuffer buf;
    JsonWriter w(buf);
    write_counts(w, *this);
    return std::string(buf.GetString(), buf.GetSize());
}

std::string SyncStats::json() const {
    rapidjson::StringBuffer buf;
    JsonWriter w(buf);
    w.StartObject();
    w.Key("peer");
    w.String(peer.data(), static_cast<rapidjson::SizeType>(peer.size()));
    put(w, "batches", batches);
    put(w, "pushed", pushed);
    put(w, "pulled", pulled);
    put(w, "bytes_sent", bytes_sent);
    put(w, "bytes_received", bytes_received);
    put(w, "wire_bytes_sent", wire_sent);
    put(w, "wire_bytes_received", wire_received);
    put(w, "retries", retries);
    char ms_text[32];  // one decimal, as it always was
    const int n = snprintf(ms_text, sizeof ms_text, "%.1f", ms);
    w.Key("ms");
    w.RawValue(ms_text, static_cast<size_t>(n > 0 ? n : 0), rapidjson::kNumberType);
    w.Key("sent");
    write_counts(w, sent);
    w.Key("received");
    write_counts(w, received);
    if (reset_node) put(w, "reset_node", reset_node);
    if (to_pull) put(w, "to_pull", to_pull);
    if (to_push) put(w, "to_push", to_push);
    if (resnapshots) {
        put(w, "resnapshots", resnapshots);
        put(w, "dropped", dropped);
    }
    if (purged) put(w, "purged", purged);
    w.EndObject();
    return std::string(buf.GetString(), buf.GetSize());
}

std::string new_push_id() {
    static thread_local std::mt19937_64 rng{std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32) ^
                                            uint64_t(std::chrono::steady_clock::now().time_since_epoch().count())};
    char text[17];
    snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(rng()));
    return text;
}

Cursor Cursor::after_batch(const ChangeSet& cs) const {
    // A set that starts past what we hold would leave a gap: it moves nothing.
    if (cs.after > received || cs.since > floor) return *this;
    Cursor next = *this;
    // Rows whose latest change is up to cs.upto are now whole...
    next.received = std::max(received, cs.upto);
    // ...and a complete set holds every register up to cs.upto — also when it
    // is empty and ends where a cut batch ended, which lifts the floor.
    if (cs.complete) next.floor = std::max(floor, cs.upto);
    return next;
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

// The change sets an exchange document carries ("push", "pull") are read
// into `sets` as the document is parsed (changeset_reader.h).
void parse_envelope(rapidjson::Document& d, std::string_view json, std::vector<EmbeddedSet*> sets) {
    std::string error;
    if (!parse_json_with_sets(d, json, error, std::move(sets))) bad(error);
    if (!d.IsObject()) bad("expected a JSON object");
    auto f = d.FindMember("format");
    if (f == d.MemberEnd() || !f->value.IsString() || std::string(f->value.GetString()) != kExchangeFormat)
        bad(std::string("want \"format\": \"") + kExchangeFormat + "\"");
    auto v = d.FindMember("version");
    if (v == d.MemberEnd() || !v->value.IsInt() || v->value.GetInt() != kExchangeVersion)
        throw Error("unsupported exchange version (this build speaks version " + std::to_string(kExchangeVersion) +
                    ")");
}

NodeId node_of(const rapidjson::Document& d) {
    auto n = d.FindMember("node");
    NodeId id;
    if (n == d.MemberEnd() || !n->value.IsString() ||
        !NodeId::try_parse({n->value.GetString(), n->value.GetStringLength()}, id))
        bad("\"node\" must be a node id (UUID)");
    return id;
}

// An unsigned 64-bit number written as a string of 1 to 20 decimal digits.
enum class Decimal { ok, malformed, too_large };
Decimal decimal_of(const rapidjson::Value& v, uint64_t& out) {
    if (!v.IsString() || v.GetStringLength() == 0 || v.GetStringLength() > 20) return Decimal::malformed;
    const char* s = v.GetString();
    const char* end = s + v.GetStringLength();
    const auto r = std::from_chars(s, end, out);
    if (r.ec == std::errc::result_out_of_range) return Decimal::too_large;
    return r.ec == std::errc() && r.ptr == end ? Decimal::ok : Decimal::malformed;
}

uint64_t u64_of(const rapidjson::Document& d, const char* key) {
    auto m = d.FindMember(key);
    uint64_t v = 0;
    const Decimal got = m == d.MemberEnd() ? Decimal::malformed : decimal_of(m->value, v);
    if (got == Decimal::too_large) bad(std::string("\"") + key + "\" is out of range");
    if (got != Decimal::ok) bad(std::string("\"") + key + "\" must be a decimal string");
    return v;
}

uint64_t sequence_of(const rapidjson::Document& d, const char* key) {
    const uint64_t v = u64_of(d, key);
    if (v > kMaxSequence) bad(std::string("\"") + key + "\" must be below 2^63");
    return v;
}

// A clock is a stamp (0: none): in range, or the receiver's HLC would wrap.
uint64_t clock_of(const rapidjson::Document& d) {
    const uint64_t v = u64_of(d, "clock");
    if (v != 0 && !valid_stamp(v)) bad("\"clock\" is out of range (a stamp before the year 6400)");
    return v;
}

// A push id: 1 to kMaxPushIdChars lowercase hex digits.
std::string push_id_of(const rapidjson::Document& d, const char* key) {
    auto m = d.FindMember(key);
    if (m == d.MemberEnd()) return {};
    const auto& v = m->value;
    bool ok = v.IsString() && v.GetStringLength() >= 1 && v.GetStringLength() <= kMaxPushIdChars;
    for (size_t i = 0; ok && i < v.GetStringLength(); ++i) {
        const char c = v.GetString()[i];
        ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    }
    if (!ok) bad(std::string("\"") + key + "\" must be 1 to " + std::to_string(kMaxPushIdChars) + " hex digits");
    return std::string(v.GetString(), v.GetStringLength());
}

Cursor cursor_of(const rapidjson::Document& d, const char* key, const char* floor_key) {
    Cursor c;
    c.received = sequence_of(d, key);
    c.floor = d.HasMember(floor_key) ? sequence_of(d, floor_key) : c.received;
    if (c.floor > c.received) bad(std::string("\"") + floor_key + "\" must not exceed \"" + key + "\"");
    return c;
}

}  // namespace

std::string encode_request(const ExchangeRequest& r) {
    rapidjson::StringBuffer buf;
    Writer w(buf);
    w.StartObject();
    header(w, r.node);
    if (!r.node_key.empty()) {
        w.Key("node_key");
        const std::string k = base64_encode(r.node_key);
        w.String(k.data(), static_cast<rapidjson::SizeType>(k.size()));
    }
    if (r.received) cursor(w, "received", "received_floor", *r.received);
    else if (r.seen) u64(w, "seen", r.seen);
    w.Key("limit");
    w.Int64(r.limits.rows);
    w.Key("limit_bytes");
    w.Uint64(r.limits.bytes);
    if (r.limits.compact_rows) {
        w.Key("compact");
        w.Bool(true);
    }
    if (r.clock) u64(w, "clock", r.clock);
    if (r.push) raw(w, "push", *r.push);
    if (r.push && !r.push_id.empty()) {
        w.Key("push_id");
        w.String(r.push_id.c_str());
    }
    if (r.forked) {
        w.Key("forked");
        w.Bool(true);
    }
    if (r.horizon) u64(w, "horizon", *r.horizon);
    if (r.probe) {
        w.Key("probe");
        w.StartObject();
        w.Key("table");
        w.String(r.probe->table.data(), static_cast<rapidjson::SizeType>(r.probe->table.size()));
        w.Key("keys");
        std::string keys = "[";
        for (size_t i = 0; i < r.probe->keys.size(); ++i) keys += (i ? "," : "") + key_json(r.probe->keys[i]);
        keys += "]";
        w.RawValue(keys.data(), keys.size(), rapidjson::kArrayType);
        if (!r.probe->gens.empty()) {
            w.Key("gens");
            w.StartArray();
            for (uint64_t g : r.probe->gens) w.Uint64(g);  // at most 2^53 - 1: exact in JavaScript
            w.EndArray();
        }
        w.EndObject();
    }
    w.EndObject();
    return std::string(buf.GetString(), buf.GetSize());
}

std::string encode_response(const ExchangeResponse& r) {
    rapidjson::StringBuffer buf;
    Writer w(buf);
    w.StartObject();
    header(w, r.node);
    cursor(w, "acked", "acked_floor", r.acked);
    if (!r.acked_id.empty()) {
        w.Key("acked_id");
        w.String(r.acked_id.c_str());
    }
    u64(w, "clock", r.clock);
    w.Key("more");
    w.Bool(r.more);
    if (r.remaining) u64(w, "remaining", r.remaining);
    if (r.applied) {
        const ApplyCounts& a = *r.applied;
        w.Key("applied");
        w.RawValue(a.json().c_str(), a.json().size(), rapidjson::kObjectType);
    }
    if (r.horizon) u64(w, "horizon", r.horizon);
    if (r.resnapshot) {
        w.Key("resnapshot");
        w.Bool(true);
    }
    if (!r.floors.empty()) {
        w.Key("floors");
        w.StartObject();
        for (const auto& f : r.floors) {
            w.Key(f.first.data(), static_cast<rapidjson::SizeType>(f.first.size()));
            const std::string v = std::to_string(f.second);
            w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
        }
        w.EndObject();
    }
    if (r.absent) {
        w.Key("absent");
        w.StartArray();
        for (uint32_t i : *r.absent) w.Uint(i);
        w.EndArray();
    }
    if (r.pull) raw(w, "pull", *r.pull);
    w.EndObject();
    return std::string(buf.GetString(), buf.GetSize());
}

ParsedRequest decode_request(std::string_view json) {
    rapidjson::Document d;
    EmbeddedSet push;
    push.name = "push";
    parse_envelope(d, json, {&push});
    ParsedRequest r;
    r.node = node_of(d);
    auto key = d.FindMember("node_key");
    if (key != d.MemberEnd()) {
        if (!key->value.IsString() || key->value.GetStringLength() > 64 ||
            !base64_decode({key->value.GetString(), key->value.GetStringLength()}, r.node_key) ||
            r.node_key.size() != NodeId::kKeyBytes)
            bad("\"node_key\" must be the base64 of " + std::to_string(NodeId::kKeyBytes) + " bytes");
    }
    if (d.HasMember("received")) r.received = cursor_of(d, "received", "received_floor");
    if (d.HasMember("seen")) r.seen = sequence_of(d, "seen");
    auto lim = d.FindMember("limit");
    if (lim != d.MemberEnd()) {
        if (!lim->value.IsInt64() || lim->value.GetInt64() <= 0 || lim->value.GetInt64() > kMaxBatchRows)
            bad("\"limit\" must be an integer between 1 and " + std::to_string(kMaxBatchRows));
        r.limits.rows = lim->value.GetInt64();
    }
    auto lim_bytes = d.FindMember("limit_bytes");
    if (lim_bytes != d.MemberEnd()) {
        if (!lim_bytes->value.IsUint64() || lim_bytes->value.GetUint64() < 1024 ||
            lim_bytes->value.GetUint64() > kMaxBatchBytes)
            bad("\"limit_bytes\" must be an integer between 1024 and " + std::to_string(kMaxBatchBytes));
        r.limits.bytes = static_cast<size_t>(lim_bytes->value.GetUint64());
    }
    auto compact = d.FindMember("compact");
    if (compact != d.MemberEnd()) {
        if (!compact->value.IsBool()) bad("\"compact\" must be true or false");
        r.limits.compact_rows = compact->value.GetBool();
    }
    if (d.HasMember("clock")) r.clock = clock_of(d);
    if (push.present && !push.null) {
        if (!push.error.empty()) throw Error(push.error);
        r.push = std::move(push.set);
    }
    r.push_id = push_id_of(d, "push_id");
    auto forked = d.FindMember("forked");
    if (forked != d.MemberEnd()) {
        if (!forked->value.IsBool()) bad("\"forked\" must be true or false");
        r.forked = forked->value.GetBool();
    }
    if (d.HasMember("horizon")) r.horizon = sequence_of(d, "horizon");
    auto probe = d.FindMember("probe");
    if (probe != d.MemberEnd()) {
        const auto& p = probe->value;
        if (!p.IsObject()) bad("\"probe\" must be an object");
        auto table = p.FindMember("table");
        auto keys = p.FindMember("keys");
        if (table == p.MemberEnd() || !table->value.IsString() || table->value.GetStringLength() == 0 ||
            table->value.GetStringLength() > 1000)
            bad("\"probe\" needs a \"table\" name");
        if (keys == p.MemberEnd() || !keys->value.IsArray() || keys->value.Size() > kMaxProbeKeys)
            bad("\"probe\" needs \"keys\": an array of at most " + std::to_string(kMaxProbeKeys) + " keys");
        r.probe = Probe{std::string(table->value.GetString(), table->value.GetStringLength()),
                        decode_keys(keys->value, "probe.keys"),
                        {}};
        auto gens = p.FindMember("gens");
        if (gens != p.MemberEnd()) {
            if (!gens->value.IsArray() || gens->value.Size() != r.probe->keys.size())
                bad("\"probe.gens\" must be an array with one generation per key");
            r.probe->gens.reserve(gens->value.Size());
            for (const auto& g : gens->value.GetArray()) {
                if (!g.IsUint64() || g.GetUint64() == 0 || g.GetUint64() > kMaxGeneration)
                    bad("\"probe.gens\" holds generations from 1 to 2^53 - 1");
                r.probe->gens.push_back(g.GetUint64());
            }
        }
        if (r.push || r.received || r.forked) bad("a \"probe\" goes alone: no push, no received, no forked");
    }
    return r;
}

ParsedResponse decode_response(std::string_view json) {
    rapidjson::Document d;
    EmbeddedSet pull;
    pull.name = "pull";
    parse_envelope(d, json, {&pull});
    ParsedResponse r;
    r.node = node_of(d);
    r.acked = cursor_of(d, "acked", "acked_floor");
    r.acked_id = push_id_of(d, "acked_id");
    if (d.HasMember("clock")) r.clock = clock_of(d);
    auto more = d.FindMember("more");
    if (more != d.MemberEnd()) {
        if (!more->value.IsBool()) bad("\"more\" must be true or false");
        r.more = more->value.GetBool();
    }
    if (d.HasMember("remaining")) r.remaining = sequence_of(d, "remaining");
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
        a.duplicate = count("duplicate");
        a.lost = count("lost");
        a.overwrote = count("overwrote");
        a.rejected = count("rejected");
        a.pending = count("pending");
        r.applied = a;
    }
    if (pull.present) {
        if (!pull.error.empty()) throw Error(pull.error);
        r.pull = std::move(pull.set);
    }
    if (d.HasMember("horizon")) r.horizon = sequence_of(d, "horizon");
    auto resnap = d.FindMember("resnapshot");
    if (resnap != d.MemberEnd()) {
        if (!resnap->value.IsBool()) bad("\"resnapshot\" must be true or false");
        r.resnapshot = resnap->value.GetBool();
    }
    auto floors = d.FindMember("floors");
    if (floors != d.MemberEnd()) {
        if (!floors->value.IsObject() || floors->value.MemberCount() > 100000)
            bad("\"floors\" must be an object of table names and generations");
        for (const auto& m : floors->value.GetObject()) {
            uint64_t gen = 0;
            if (decimal_of(m.value, gen) != Decimal::ok || gen > kMaxGeneration || m.name.GetStringLength() == 0 ||
                m.name.GetStringLength() > 1000)
                bad("\"floors\" must map table names to generations (decimal strings below 2^53)");
            r.floors.emplace_back(std::string(m.name.GetString(), m.name.GetStringLength()), gen);
        }
    }
    auto absent = d.FindMember("absent");
    if (absent != d.MemberEnd()) {
        if (!absent->value.IsArray() || absent->value.Size() > kMaxProbeKeys)
            bad("\"absent\" must be an array of at most " + std::to_string(kMaxProbeKeys) + " indexes");
        std::vector<uint32_t> idx;
        for (const auto& v : absent->value.GetArray()) {
            if (!v.IsUint() || v.GetUint() >= kMaxProbeKeys || (!idx.empty() && v.GetUint() <= idx.back()))
                bad("\"absent\" must hold increasing key indexes below " + std::to_string(kMaxProbeKeys));
            idx.push_back(v.GetUint());
        }
        r.absent = std::move(idx);
    }
    return r;
}

SeqRanges seq_ranges(std::vector<uint64_t> seqs) {
    std::sort(seqs.begin(), seqs.end());
    SeqRanges out;
    for (uint64_t s : seqs) {
        if (!out.empty() && s <= out.back().hi + 1) out.back().hi = std::max(out.back().hi, s);
        else out.push_back(SeqRange{s, s});
    }
    return out;
}

std::map<NodeId, SeqRanges> relayed_by_peer(const RelayedRows& rows) {
    std::map<NodeId, std::vector<uint64_t>> seqs;
    for (const RelayedRow& r : rows) seqs[r.from].push_back(r.seq);
    std::map<NodeId, SeqRanges> out;
    for (auto& [peer, list] : seqs) out[peer] = seq_ranges(std::move(list));
    return out;
}

bool in_ranges(const SeqRanges& ranges, uint64_t seq) {
    // The first range starting past seq; the one before it may hold seq.
    auto it =
        std::upper_bound(ranges.begin(), ranges.end(), seq, [](uint64_t s, const SeqRange& r) { return s < r.lo; });
    return it != ranges.begin() && seq <= std::prev(it)->hi;
}

namespace {

// Rows of the receiver's own (all their registers stamped by it) fill batches
// with nothing to send: a client's pulled rows when it pushes next, a
// server's merged rows when the client pulls after a large push. Read past
// them in one round trip — up to a bound, so a round trip stays short.
constexpr int64_t kSkipBatchesPerRoundTrip = 64;

// Local rows a re-snapshot reads per probe (keys sent: at most as many).
constexpr size_t kProbeRows = 1000;

Batch past_own_rows(SyncEngine& engine, const NodeId& peer, const Cursor& from, int64_t rows, bool compact) {
    // Registers merged from the peer go no further than this database (no echo).
    const SeqRanges relayed = engine.relayed_from(peer, from.floor);
    const NodeId self = engine.self();
    auto request = [&](const Cursor& at) {
        ChangesRequest req = ChangesRequest::for_peer(peer, at, rows);
        req.relayed = &relayed;
        req.self = &self;
        req.compact_rows = compact;
        return req;
    };
    Batch b = engine.changes(request(from));
    for (int64_t skipped = 0; b.rows == 0 && !b.complete && skipped < kSkipBatchesPerRoundTrip; ++skipped) {
        Batch next = engine.changes(request(Cursor{b.upto, from.floor}));
        // The set must still start at the receiver's cursor: the ranges read
        // past were empty, so only `after` changes.
        ChangeSet cs = decode_changeset(next.json);
        cs.after = from.received;
        next.json = encode_changeset(cs);
        next.after = from.received;
        b = std::move(next);
    }
    return b;
}

}  // namespace

Batch changes_for(SyncEngine& engine, const NodeId& peer, const Cursor& from, const BatchLimits& limits) {
    int64_t rows = limits.rows;
    for (;;) {
        Batch b = past_own_rows(engine, peer, from, rows, limits.compact_rows);
        if (b.json.size() <= limits.bytes || b.rows <= 1) return b;
        // Too large: fewer rows in proportion, with room for uneven rows. The
        // row count strictly falls, so this ends (at one row at worst).
        const double share = static_cast<double>(limits.bytes) / static_cast<double>(b.json.size());
        const int64_t fewer = static_cast<int64_t>(static_cast<double>(b.rows) * share * 0.9);
        rows = std::max<int64_t>(1, std::min<int64_t>(fewer, std::min<int64_t>(rows, b.rows) - 1));
    }
}

namespace {

// Who may ask: a caller other than this node, holding the key of a keyed
// node id, authorized, and not writing into our future. Refused before
// anything is read or written.
void admit_caller(SyncEngine& server, const ParsedRequest& req) {
    if (req.node == server.self()) throw Error("the caller is this database's own node " + server.self().str());
    // A node id derived from a key is only the key holder's: anyone else saw
    // it in a pull at most. (A random id, from before keys, binds on first use.)
    if (req.node.keyed() && req.node_key.empty())
        throw permission_denied("node " + req.node.str() + " must show its key (\"node_key\") to sync as itself");
    if (!req.node_key.empty() && NodeId::from_key(req.node_key) != req.node)
        throw permission_denied("the key sent does not belong to node " + req.node.str());
    // A round trip that pushes nothing writes nothing, so a hot standby
    // (a read-only transaction) serves it; one that pushes needs a server
    // that can write, and says so in a way the caller retries elsewhere.
    const bool pushes = req.push || req.forked;
    if (pushes && !server.writable())
        throw Error("this server is read-only (a hot standby, or a read-only transaction): send pushes to the primary",
                    ErrorKind::read_only);
    server.authorize(req.node, pushes);
    // A caller whose clock runs ahead would stamp its writes into our future:
    // refuse it before it writes anything (its pushed stamps are checked too).
    if (req.clock) {
        const uint64_t now = wall_clock_ms(), limit = server.max_drift_ms(), theirs = hlc_millis(req.clock);
        if (theirs > now + limit)
            throw Error("the clock of node " + req.node.str() + " is " + std::to_string((theirs - now) / 1000) +
                            " s ahead of this server's (max drift " + std::to_string(limit / 1000) +
                            " s); refusing its sync: check that node's clock",
                        ErrorKind::drift);
    }
}

// A re-snapshot's question: which of these rows do we still hold? Held only
// at a lower generation than the caller's means the row the caller holds was
// deleted here (generations never go down but by a purge) and the key
// inserted again since.
std::vector<uint32_t> keys_absent(SyncEngine& server, const ParsedRequest& req) {
    std::vector<uint32_t> absent;
    const std::optional<std::vector<uint64_t>> held = server.holds_keys(req.node, req.probe->table, req.probe->keys);
    const std::vector<uint64_t>& theirs = req.probe->gens;
    if (held)
        for (size_t i = 0; i < held->size(); ++i)
            if ((*held)[i] == 0 || (i < theirs.size() && (*held)[i] < theirs[i]))
                absent.push_back(static_cast<uint32_t>(i));
    return absent;
}

// A caller whose cursor is older than the purge horizon may hold rows
// deleted here whose tombstones are gone: it would never hear of those
// deletes, and its pushes could bring the rows back. Nothing is done for it
// until it re-snapshots (its requests then carry the horizon); true when it
// must.
bool must_resnapshot(const ParsedRequest& req, uint64_t horizon) {
    const uint64_t knows = std::max(req.received ? req.received->received : req.seen, req.horizon.value_or(0));
    if (knows >= horizon) return false;
    if (!req.horizon)
        throw Error("node " + req.node.str() + " last synced before this server purged deleted rows (its cursor " +
                    std::to_string(knows) + ", the purge horizon " + std::to_string(horizon) +
                    "): it must re-snapshot, which lwwsync 0.7 clients do by themselves: upgrade it");
    return true;
}

// The caller's next batch of our changes, past its cursor.
void serve_pull(SyncEngine& server, const ParsedRequest& req, ExchangeResponse& resp) {
    // What the caller relayed to us and holds: past its cursor, forgotten.
    if (req.push || req.forked) server.forget_relayed(req.node, req.received->floor);
    Batch b = changes_for(server, req.node, *req.received, req.limits);
    resp.pull = std::move(b.json);
    resp.more = !b.complete;
    // An estimate for the caller's progress: sequences handed out past
    // this batch (a row changed twice counts twice).
    const uint64_t last = resp.more ? server.progress_seq() : 0;
    if (resp.more && last != kMaxSequence && last > b.upto) resp.remaining = last - b.upto;
}

// Merges the caller's pushed batch, unless it starts past what we hold.
void serve_push(SyncEngine& server, const ParsedRequest& req, ExchangeResponse& resp) {
    if (req.push->origin != req.node) throw Error("the pushed change set's origin is not the calling node");
    // A push that starts past what we hold would leave a gap: skip it and
    // report our cursor so the caller resends from there.
    const Cursor held = server.cursor_of(req.node);
    if (req.push->after > held.received || req.push->since > held.floor) return;
    // What the caller holds of ours: its cursor's floor, sent by a
    // pulling request, or alone with a push that does not pull.
    const uint64_t seen = req.received ? req.received->floor : req.seen;
    resp.applied = server.apply_from(req.node, *req.push, Trust::caller, seen);
    // The push that last moved the cursor names who pushed up to it:
    // the caller checks it is one of its own (a copy's is not).
    const Cursor now = server.cursor_of(req.node);
    if (!req.push_id.empty() && (now.received > held.received || now.floor > held.floor) &&
        server.push_mark(req.node) != kForkedMark)
        server.set_push_mark(req.node, req.push_id);
}

}  // namespace

std::string serve_exchange(SyncEngine& server, std::string_view request_json) {
    ParsedRequest req = decode_request(request_json);
    admit_caller(server, req);
    const NodeId self = server.self();
    // A caller that holds more of our changes than we ever made: this
    // database is a restore (or a copy) of the one it synced with. Take a new
    // node id, so no sequence it consumed is handed out again as ours and
    // registers stamped by the old id come back here (docs/PROTOCOL.md).
    NodeId me = self;
    if (req.received && req.received->received > server.last_seq() && server.reid_when_caller_is_ahead() &&
        server.writable())
        me = server.reset_node();
    ExchangeResponse resp;
    resp.node = me;
    resp.horizon = server.purge_horizon();
    if (req.probe) {
        if (me == self) resp.absent = keys_absent(server, req);
        resp.acked = server.cursor_of(req.node);
        resp.clock = server.clock_now();
        return encode_response(resp);
    }
    const bool stale = resp.horizon && me == self && (req.push || req.received) && must_resnapshot(req, resp.horizon);
    resp.resnapshot = stale;
    // The first round trip of a sync (no push, no cursor): the caller's
    // parked rows get their retry even if it brings nothing — where this
    // transaction may write; elsewhere its next push retries them. It also
    // learns the generation floors of the tables purged here.
    if (!req.push && !req.received && !req.forked && me == self) {
        if (server.writable()) server.retry_parked();
        resp.floors = server.gen_floors();
    }
    // Pull before applying the push: an engine that waits for concurrent
    // writers while reading its feed (Postgres) must not hold row locks then.
    if (req.received && me == self && !stale) serve_pull(server, req, resp);
    if (req.push && !stale) serve_push(server, req, resp);
    // A caller that found a copy of itself reports it before it takes a new
    // id: from now on every answer to this node id names a push nobody sent,
    // so the other copies (whoever keeps pushing as it) find out too and no
    // database goes on serving this id's changes under cursors another made.
    if (req.forked) server.set_push_mark(req.node, kForkedMark);
    // Tombstones past their time go while a pushing round trip writes anyway
    // (throttled by the engine), after its push: a purge first would leave
    // the caller behind the horizon before its batch could land.
    if (req.push && !stale && me == self) {
        server.auto_purge();
        resp.horizon = server.purge_horizon();
    }
    resp.acked = server.cursor_of(req.node);
    if (resp.acked.received > 0 || resp.acked.floor > 0) {
        resp.acked_id = server.push_mark(req.node);
        if (resp.acked_id == kForkedMark) resp.acked_id = new_push_id();
    }
    resp.clock = server.clock_now();
    return encode_response(resp);
}

long retry_backoff_ms(int attempt) {
    static thread_local std::mt19937 rng{std::random_device{}()};
    const long base = std::min<long>(5000, 200L << std::min(attempt, 5));
    std::uniform_int_distribution<long> jitter(base / 2, base);
    return jitter(rng);
}

Transport with_retries(Transport send, int retries, std::function<void(long)> sleep,
                       std::function<void(const std::string&)> note) {
    return [=](const std::string& request) {
        for (int attempt = 0;; ++attempt) {
            try {
                return send(request);
            } catch (const TransientError& e) {
                if (attempt >= retries)
                    throw Error(std::string(e.what()) + " (after " + std::to_string(attempt + 1) + " attempts)");
                const long wait = retry_backoff_ms(attempt);
                if (note) note(std::string(e.what()) + "; retrying in " + std::to_string(wait) + " ms");
                sleep(wait);
            }
        }
    };
}

namespace {

// This side turned out to be a copy or a restore of another database that
// syncs as the same node id, or its server did: the sync starts over.
struct Restart {
    std::string why;
    bool resnapshot = false;  // the server purged past our cursor meanwhile
};

// Rows of `cs` with a register stamped by `node`.
size_t rows_stamped_by(const ChangeSet& cs, const NodeId& node) {
    size_t n = 0;
    for (const auto& t : cs.tables)
        for (const auto& r : t.rows) {
            bool own = r.has_row && r.row.node == node;
            for (const auto& c : r.cols) own = own || c.stamp.node == node;
            n += own;
        }
    return n;
}

// One attempt at a sync: meet the server, reconcile its purges, then push
// and pull batches until both sides are done. A Restart thrown out of it
// starts another attempt (run_sync).
class SyncAttempt {
public:
    SyncAttempt(SyncEngine& local, const Transport& send, const BatchLimits& limits, SyncStats& stats,
                const std::function<void(bool)>& report, const Overlap& overlap)
        : local_(local),
          send_(send),
          limits_(limits),
          stats_(stats),
          report_(report),
          overlap_(overlap),
          self_(local.self()) {}
    // An answer sent ahead and not taken is called off, whichever way run() is left.
    ~SyncAttempt() { drop_ahead(); }
    SyncAttempt(const SyncAttempt&) = delete;
    SyncAttempt& operator=(const SyncAttempt&) = delete;

    void run() {
        const ParsedResponse met = meet();
        reconcile_purges(met);
        hello_.horizon = met.horizon;
        // Rows parked here are retried once per sync, whatever it brings.
        stats_.received.add(local_.retry_parked());
        report_(false);
        exchange_batches();
        // Done: the server holds our changes up to `acked_`; tombstones past
        // their time (and held by every server we push to) can go.
        local_.note_upstream(*server_, acked_.floor, true);
        stats_.purged += local_.auto_purge();
    }

private:
    // A request for the next batch sent while this one applies (see pull()).
    struct Ahead {
        Cursor cursor;
        std::future<std::string> answer;
    };

    // Hello: who the server is and how far it holds our changes.
    ParsedResponse meet() {
        hello_.node = self_;
        if (self_.keyed()) hello_.node_key = local_.node_key();
        hello_.limits = limits_;
        hello_.limits.compact_rows =
            true;  // pulls may come as arrays; pushes stay objects (an older server reads them)
        ParsedResponse met = round_trip(hello_);
        acked_ = met.acked;
        if (!met.floors.empty()) local_.raise_gen_floors(met.floors);
        local_.peer_purges(met.horizon > 0);
        local_.note_upstream(*server_, acked_.floor, false);
        return met;
    }

    // The server purged tombstones we may never have received: before
    // anything goes either way, drop the rows it no longer holds whose
    // generation it had (it deleted them), keeping what is news to it
    // (docs/PROTOCOL.md, "Purge and re-snapshot"). Every later request says
    // which horizon we reconciled against.
    void reconcile_purges(const ParsedResponse& met) {
        const Cursor mine_at_start = local_.cursor_of(*server_);
        // Nothing exchanged with this server yet: nothing of ours it could have
        // deleted (engines that re-snapshot still look: a copy or a restore
        // keeps what the server held of its previous node id).
        const bool met_before = mine_at_start.received > 0 || acked_.floor > 0 || local_.can_resnapshot();
        if (met.horizon <= mine_at_start.received || !met_before) return;
        const SeqRanges relayed = local_.relayed_from(*server_, acked_.floor);
        for (const std::string& table : local_.probe_tables()) {
            for (uint64_t after = 0;;) {
                ProbePage page = local_.probe_rows(*server_, table, after, kProbeRows, acked_.floor, relayed);
                if (!page.keys.empty()) drop_rows_gone(table, page, met.horizon);
                if (page.done) break;
                after = page.next;
            }
        }
        ++stats_.resnapshots;
    }

    // Asks the server which keys of `page` it no longer holds and drops them here.
    void drop_rows_gone(const std::string& table, ProbePage& page, uint64_t horizon) {
        ExchangeRequest q = hello_;
        q.probe = Probe{table, std::move(page.keys), std::move(page.gens)};
        const ParsedResponse answer = round_trip(q);
        if (answer.horizon != horizon) throw Restart{"the peer purged again during a re-snapshot", true};
        if (!answer.absent || answer.absent->empty()) return;
        std::vector<std::vector<Value>> gone;
        std::vector<uint64_t> gen_seq;
        for (uint32_t i : *answer.absent) {
            if (i >= q.probe->keys.size()) throw Error("the peer's answer names a key it was not asked about");
            gone.push_back(std::move(q.probe->keys[i]));
            gen_seq.push_back(page.gen_seq[i]);
        }
        stats_.dropped += local_.drop_rows(*server_, table, gone, gen_seq);
    }

    void exchange_batches() {
        // An engine whose feed waits for its writers reads everything it pushes
        // before it writes what it pulls (no row locks held while it waits).
        const bool interleave = !local_.feed_waits_for_writers();
        while (!push_done_ || !pull_done_) {
            ExchangeRequest req = hello_;
            Batch pushed;
            if (!push_done_) {
                pushed = changes_for(local_, *server_, acked_, push_limits_);
                // Send what moves the server's cursor on us — also an empty
                // complete set that lifts its floor after a run ended on a cut.
                const bool moves = pushed.upto > acked_.received || (pushed.complete && pushed.upto > acked_.floor);
                if (moves) req.push = pushed.json;
                else push_done_ = true;
            }
            const bool pulling = !pull_done_ && (interleave || push_done_);
            Cursor mine;
            if (pulling) req.received = mine = local_.cursor_of(*server_);
            // A push without a pull still says how far we hold the server's
            // changes: a write of its we received and then overwrote is no conflict.
            else if (req.push) req.seen = local_.cursor_of(*server_).floor;
            if (!req.push && !req.received) continue;
            // The server reads a pull before it merges the push it comes with:
            // what it pulls was written knowing our registers up to here.
            const uint64_t seen_by_server = acked_.floor;
            std::optional<ParsedResponse> resp = send_batch(req, pushed, pulling, mine);
            if (!resp) continue;
            if (req.push) take_push_answer(*resp, pushed);
            if (pulling) pull(*resp, mine, !req.push, seen_by_server);
            report_(false);
        }
    }

    // One round trip for a batch, or the answer sent ahead when it was sent
    // for this very cursor. Nothing when a refused push is to be retried
    // smaller or left for a primary.
    std::optional<ParsedResponse> send_batch(ExchangeRequest& req, const Batch& pushed, bool pulling,
                                             const Cursor& mine) {
        try {
            if (ahead_ && pulling && !req.push && ahead_->cursor.received == mine.received &&
                ahead_->cursor.floor == mine.floor) {
                std::future<std::string> answer = std::move(ahead_->answer);
                ahead_.reset();
                return read_answer(answer.get());
            }
            drop_ahead();
            return round_trip(req);
        } catch (const ReadOnlyError& e) {
            if (!req.push) throw;
            push_refused_read_only(e, pushed);
            return std::nullopt;
        } catch (const TooLargeError& e) {
            if (!req.push) throw;
            push_refused_too_large(e, pushed);
            return std::nullopt;
        }
    }

    // Writes made here must reach a primary: the sync fails, saying so.
    // Registers stamped by other nodes (echoes of what this side pulled,
    // relayed writes) and a push that only moves the server's cursor wait in
    // our log for a sync with a server that can write; pulling goes on.
    void push_refused_read_only(const ReadOnlyError& e, const Batch& pushed) {
        const size_t own = rows_stamped_by(decode_changeset(pushed.json), self_);
        if (own > 0)
            throw Error(std::string(e.what()) + "; " + std::to_string(own) + (own == 1 ? " row" : " rows") +
                        " written here wait to be pushed: sync with the primary (docs/DEPLOY.md)");
        push_done_ = true;
    }

    // Pushes shrink when the server or a proxy refuses one as too large
    // (HTTP 413), and stay at the size that passed for the rest of the sync.
    void push_refused_too_large(const TooLargeError& e, const Batch& pushed) {
        if (pushed.rows <= 1) {
            const ChangeSet cs = decode_changeset(pushed.json);
            const std::string table = cs.tables.empty() ? std::string("?") : cs.tables.front().name;
            throw Error("one row of table \"" + table + "\" (" + std::to_string(pushed.json.size()) +
                        " bytes of change set) is over the request size limit of the server or of a proxy in "
                        "front of it: " +
                        e.what() +
                        "; raise that limit (nginx client_max_body_size, "
                        "the gateway's max-body-bytes: docs/DEPLOY.md)");
        }
        // Half the rows and half the bytes of the refused batch; the
        // same changes go again, nothing was applied.
        push_limits_.rows = std::max<int64_t>(1, static_cast<int64_t>(pushed.rows / 2));
        push_limits_.bytes = std::max<size_t>(1, pushed.json.size() / 2);
    }

    void take_push_answer(const ParsedResponse& resp, const Batch& pushed) {
        if (resp.acked.received <= acked_.received && resp.acked.floor <= acked_.floor)
            throw Error("the peer did not accept a pushed batch (it holds our changes up to " +
                        std::to_string(resp.acked.received) + ")");
        acked_ = resp.acked;
        local_.forget_relayed(*server_, acked_.floor);
        stats_.pushed += pushed.rows;
        push_done_ = pushed.complete;
        const uint64_t last = push_done_ ? 0 : local_.progress_seq();
        stats_.to_push = last != kMaxSequence && last > acked_.received ? last - acked_.received : 0;
    }

    // Applies a pulled batch. While it applies, the request for the next one
    // is already on its way, so the server reads while this side writes. Only
    // pure pulls (nothing left to push), and only where the transport may
    // run on another thread (`overlap_`). The request says the cursor the
    // batch commits; its answer is taken only if the cursor is that one then
    // (the batch committed, no other sync of this database moved it past).
    // A pull changes nothing on the server, so an answer not taken costs
    // nothing but its bytes.
    void pull(const ParsedResponse& resp, const Cursor& mine, bool pull_only, uint64_t seen_by_server) {
        // Apply when the cursor moves — also for an empty complete set,
        // which lifts the floor after a run that ended on a batch cut.
        const bool advances = resp.pull && resp.pull->upto > mine.received;
        const bool moves = resp.pull && (advances || mine.after_batch(*resp.pull).floor > mine.floor);
        if (moves && overlap_ && push_done_ && pull_only && resp.more && advances)
            send_ahead(mine.after_batch(*resp.pull));
        if (moves) {
            ApplyCounts got = local_.apply_from(*server_, *resp.pull, Trust::chosen_server, seen_by_server);
            stats_.pulled += got.rows;
            stats_.received.add(got);
        }
        if (resp.more && !advances) throw Error("the peer announced more changes but its batch did not advance");
        stats_.to_pull = resp.more ? std::max<uint64_t>(resp.remaining, 1) : 0;
        // The server read this pull before it merged the batch pushed with
        // it; one more pull moves our cursor past those merged rows (ours,
        // so it carries nothing), or the next sync would read them again.
        pull_done_ = !resp.more && pull_only;
    }

    void send_ahead(const Cursor& after) {
        ExchangeRequest next = hello_;
        next.received = after;
        try {
            ahead_ = Ahead{after, std::async(std::launch::async,
                                             [&send = send_, body = request_body(next)] { return send(body); })};
        } catch (const std::system_error&) {
            // No thread to be had: the next pull goes after this batch.
        }
    }

    // An answer not wanted (the cursor moved, or the attempt is left by an
    // error) is called off and waited for: the transport gives up within a
    // second instead of finishing its retries.
    void drop_ahead() {
        if (!ahead_) return;
        overlap_(true);
        try {
            ahead_->answer.get();  // a failure of an answer not taken is no failure
        } catch (...) {
        }
        ahead_.reset();
        overlap_(false);
    }

    // A round trip is its request, the transport, and the answer read; the
    // transport may run on another thread (a pull sent ahead).
    ParsedResponse round_trip(ExchangeRequest& req) { return read_answer(send_(request_body(req))); }

    std::string request_body(ExchangeRequest& req) {
        req.clock = local_.clock_now();
        if (req.push) {
            req.push_id = new_push_id();
            if (server_) local_.note_push(*server_, req.push_id);
        }
        std::string body = encode_request(req);
        stats_.bytes_sent += body.size();
        return body;
    }

    ParsedResponse read_answer(const std::string& answer) {
        stats_.bytes_received += answer.size();
        ParsedResponse resp;
        try {
            resp = decode_response(answer);
        } catch (const Error& e) {
            // A proxy's error page, a captive portal, a wrong endpoint.
            throw Error(std::string("the peer's answer is not an lwwsync exchange response: ") + e.what());
        }
        ++stats_.batches;
        if (resp.node == self_) throw Error("the peer is this database itself (same node id " + self_.str() + ")");
        // A server that found itself to be a restore took a new node id: start over with it.
        if (server_ && resp.node != *server_) throw Restart{"the peer's node id changed during the sync"};
        if (resp.pull && resp.pull->origin != resp.node) throw Error("the peer sent a change set of another node");
        server_ = resp.node;
        stats_.peer = resp.node.str();
        if (resp.applied) stats_.sent.add(*resp.applied);
        // The server's clock is causally before everything this side writes
        // next — within reason: a day ahead of our wall clock is refused.
        if (resp.clock) {
            HybridClock::check_drift(resp.clock, wall_clock_ms(), resp.node, kMaxTrustedAheadMs);
            local_.observe_clock(resp.clock);
        }
        check_acked(resp);
        // It purged past our cursor since we met it: start over (and reconcile).
        if (resp.resnapshot) throw Restart{"the peer purged deleted rows past our cursor on it during the sync", true};
        return resp;
    }

    // Is the server's cursor on us one that this database produced? Past our
    // last sequence, or moved last by a push we never sent: another database
    // (a copy, or the original of which we are the copy) pushed as our node
    // id. Both would lose writes from now on; this side takes a new node id.
    void check_acked(const ParsedResponse& resp) {
        std::string why;
        if (resp.acked.received > local_.last_seq())
            why = "the peer holds changes of node " + self_.str() + " up to " + std::to_string(resp.acked.received) +
                  ", past this database's last (" + std::to_string(local_.last_seq()) + ")";
        else if (!resp.acked_id.empty() && !local_.sent_push(resp.node, resp.acked_id))
            why = "the peer's cursor on node " + self_.str() + " was moved by a push this database did not send";
        if (why.empty()) return;
        // Tell the server, while still the old node, so the other copy finds
        // out too (best effort: the re-id below does not depend on it).
        try {
            ExchangeRequest report;
            report.node = self_;
            if (self_.keyed()) report.node_key = local_.node_key();
            report.limits = limits_;
            report.clock = local_.clock_now();
            report.forked = true;
            send_(encode_request(report));
        } catch (const Error&) {
        }
        local_.reset_node();
        ++stats_.reset_node;
        throw Restart{"this database is a copy of another: " + why};
    }

    SyncEngine& local_;
    const Transport& send_;
    const BatchLimits& limits_;
    SyncStats& stats_;
    const std::function<void(bool)>& report_;
    const Overlap& overlap_;
    const NodeId self_;
    std::optional<NodeId> server_;  // set by the first answer
    ExchangeRequest hello_;         // every request starts as a copy of it
    Cursor acked_;                  // how far the server holds our changes
    BatchLimits push_limits_ = limits_;
    bool push_done_ = false, pull_done_ = false;
    std::optional<Ahead> ahead_;
};

}  // namespace

SyncStats run_sync(SyncEngine& local, const Transport& send, const BatchLimits& limits, const Progress& progress,
                   const Overlap& overlap) {
    const auto started = std::chrono::steady_clock::now();
    SyncStats stats;
    const std::function<void(bool)> report = [&](bool done) {
        stats.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
        stats.done = done;
        if (done) stats.to_pull = stats.to_push = 0;
        if (progress) progress(stats);
    };
    // A copy takes a new id and starts over; so does a sync whose server took
    // a new one (it was a restore). A few times at most per run.
    // A server that purges while we sync makes us re-snapshot again; each
    // time after a batch of ours landed, so a few more of those.
    for (int restarts = 0, resnapshots = 0;;) {
        try {
            SyncAttempt(local, send, limits, stats, report, overlap).run();
            report(true);
            return stats;
        } catch (const Restart& r) {
            if (r.resnapshot ? ++resnapshots > 16 : ++restarts > 3)
                throw Error("the sync restarted too often: " + r.why);
        }
    }
}

void check_document_size(size_t bytes, const char* what) {
    if (bytes > kMaxDocumentBytes)
        throw Error(std::string(what) + " of " + std::to_string(bytes) + " bytes exceeds the " +
                        std::to_string(kMaxDocumentBytes >> 20) + " MiB limit",
                    ErrorKind::limit);
}

}  // namespace lww
