#include "changeset.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "error.h"
#include "json.h"

namespace lww {

size_t ChangeSet::register_count() const {
    size_t n = 0;
    for (const auto& t : tables)
        for (const auto& r : t.rows) n += (r.has_row ? 1 : 0) + r.cols.size();
    return n;
}

// ---------------------------------------------------------------- base64

static const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
        out.push_back(kB64[v >> 18]);
        out.push_back(kB64[(v >> 12) & 63]);
        out.push_back(kB64[(v >> 6) & 63]);
        out.push_back(kB64[v & 63]);
    }
    if (i < in.size()) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16;
        if (i + 1 < in.size()) v |= uint32_t(uint8_t(in[i + 1])) << 8;
        out.push_back(kB64[v >> 18]);
        out.push_back(kB64[(v >> 12) & 63]);
        out.push_back(i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=');
        out.push_back('=');
    }
    return out;
}

bool base64_decode(std::string_view in, std::string& out) {
    static int8_t rev[256];
    static bool init = [] {
        std::memset(rev, -1, sizeof rev);
        for (int i = 0; i < 64; ++i) rev[uint8_t(kB64[i])] = int8_t(i);
        return true;
    }();
    (void)init;
    if (in.size() % 4) return false;
    out.clear();
    out.reserve(in.size() / 4 * 3);
    for (size_t i = 0; i < in.size(); i += 4) {
        int a = rev[uint8_t(in[i])], b = rev[uint8_t(in[i + 1])];
        bool last = i + 4 == in.size();
        bool pad2 = last && in[i + 2] == '=' && in[i + 3] == '=';
        bool pad1 = last && !pad2 && in[i + 3] == '=';
        int c = pad2 ? 0 : rev[uint8_t(in[i + 2])];
        int d = (pad1 || pad2) ? 0 : rev[uint8_t(in[i + 3])];
        if (a < 0 || b < 0 || c < 0 || d < 0) return false;
        uint32_t v = uint32_t(a) << 18 | uint32_t(b) << 12 | uint32_t(c) << 6 | uint32_t(d);
        out.push_back(char(v >> 16));
        if (!pad2) out.push_back(char(v >> 8));
        if (!pad1 && !pad2) out.push_back(char(v));
    }
    return true;
}

// ---------------------------------------------------------------- writing

namespace {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                                     rapidjson::CrtAllocator, rapidjson::kWriteNanAndInfFlag>;

constexpr int64_t kMaxSafeInteger = (int64_t(1) << 53) - 1;

void write_u64(JsonWriter& w, uint64_t v) {
    std::string s = std::to_string(v);
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

// The shortest text that reads back as the same double, always with a
// fraction or exponent so a reader never takes it for an integer (-0.0 too).
void write_real(JsonWriter& w, double d) {
    char buf[40];
    auto r = std::to_chars(buf, buf + sizeof buf - 2, d);
    size_t n = static_cast<size_t>(r.ptr - buf);
    if (std::find_if(buf, r.ptr, [](char c) { return c == '.' || c == 'e'; }) == r.ptr) {
        buf[n++] = '.';
        buf[n++] = '0';
    }
    w.RawValue(buf, n, rapidjson::kNumberType);
}

void write_value(JsonWriter& w, const Value& v) {
    switch (v.kind) {
        case Value::Kind::Null: w.Null(); return;
        case Value::Kind::Int:
            if (v.i >= -kMaxSafeInteger && v.i <= kMaxSafeInteger) {
                w.Int64(v.i);
            } else {
                w.StartObject();
                w.Key("int");
                std::string s = std::to_string(v.i);
                w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
                w.EndObject();
            }
            return;
        case Value::Kind::Real:
            w.StartObject();
            w.Key("real");
            if (std::isnan(v.d)) w.String("NaN");
            else if (std::isinf(v.d)) w.String(v.d > 0 ? "Infinity" : "-Infinity");
            else write_real(w, v.d);
            w.EndObject();
            return;
        case Value::Kind::Text: w.String(v.s.data(), static_cast<rapidjson::SizeType>(v.s.size())); return;
        case Value::Kind::Bytes: {
            w.StartObject();
            w.Key("bytes");
            std::string b = base64_encode(v.s);
            w.String(b.data(), static_cast<rapidjson::SizeType>(b.size()));
            w.EndObject();
            return;
        }
    }
}

}  // namespace

struct ChangeSetWriter::Impl {
    rapidjson::StringBuffer buf;
    JsonWriter w{buf};
    std::vector<NodeId> nodes;
    std::unordered_map<std::string, uint32_t> node_index;

    uint32_t node(const NodeId& id) {
        std::string k(id.bytes.begin(), id.bytes.end());
        auto it = node_index.find(k);
        if (it != node_index.end()) return it->second;
        uint32_t i = static_cast<uint32_t>(nodes.size());
        nodes.push_back(id);
        node_index.emplace(std::move(k), i);
        return i;
    }
    void stamp(const Stamp& s) {
        write_u64(w, s.hlc);
        w.Uint(node(s.node));
    }
};

ChangeSetWriter::ChangeSetWriter(const NodeId& origin, uint64_t since, uint64_t after) : impl_(new Impl) {
    auto& w = impl_->w;
    w.StartObject();
    w.Key("format");
    w.String(kChangeSetFormat);
    w.Key("version");
    w.Int(kChangeSetVersion);
    w.Key("origin");
    w.String(origin.str().c_str());
    w.Key("since");
    write_u64(w, since);
    if (after != since) {
        w.Key("after");
        write_u64(w, after);
    }
    w.Key("tables");
    w.StartArray();
}

ChangeSetWriter::~ChangeSetWriter() = default;

void ChangeSetWriter::begin_table(const std::string& name, const std::vector<std::string>& key,
                                  const std::vector<std::string>& columns) {
    auto& w = impl_->w;
    w.StartObject();
    w.Key("name");
    w.String(name.data(), static_cast<rapidjson::SizeType>(name.size()));
    w.Key("key");
    w.StartArray();
    for (const auto& k : key) w.String(k.data(), static_cast<rapidjson::SizeType>(k.size()));
    w.EndArray();
    w.Key("columns");
    w.StartArray();
    for (const auto& c : columns) w.String(c.data(), static_cast<rapidjson::SizeType>(c.size()));
    w.EndArray();
    w.Key("rows");
    w.StartArray();
}

void ChangeSetWriter::row(const RowChange& r) {
    auto& w = impl_->w;
    w.StartObject();
    w.Key("key");
    w.StartArray();
    for (const auto& v : r.key) write_value(w, v);
    w.EndArray();
    w.Key("gen");
    w.Uint64(r.gen);
    // The row's base stamp; column registers carrying the same stamp omit it.
    const Stamp* base = r.has_row ? &r.row : (r.cols.empty() ? nullptr : &r.cols.front().stamp);
    if (base) {
        w.Key("stamp");
        w.StartArray();
        impl_->stamp(*base);
        w.EndArray();
    }
    if (r.has_row) {
        w.Key("row");
        w.Bool(true);
    }
    if (!r.cols.empty()) {
        w.Key("cols");
        w.StartArray();
        for (const auto& c : r.cols) {
            w.StartArray();
            w.Uint(c.col);
            write_value(w, c.value);
            if (!stamp_equal(c.stamp, *base)) impl_->stamp(c.stamp);
            w.EndArray();
        }
        w.EndArray();
    }
    w.EndObject();
    ++rows_;
}

void ChangeSetWriter::end_table() {
    impl_->w.EndArray();
    impl_->w.EndObject();
}

std::string ChangeSetWriter::finish(uint64_t upto, bool complete) {
    auto& w = impl_->w;
    w.EndArray();
    w.Key("upto");
    write_u64(w, upto);
    if (!complete) {
        w.Key("complete");
        w.Bool(false);
    }
    w.Key("nodes");
    w.StartArray();
    for (const auto& n : impl_->nodes) w.String(n.str().c_str());
    w.EndArray();
    w.EndObject();
    return std::string(impl_->buf.GetString(), impl_->buf.GetSize());
}

std::string encode_changeset(const ChangeSet& cs) {
    ChangeSetWriter w(cs.origin, cs.since, cs.after);
    for (const auto& t : cs.tables) {
        w.begin_table(t.name, t.key, t.columns);
        for (const auto& r : t.rows) w.row(r);
        w.end_table();
    }
    return w.finish(cs.upto, cs.complete);
}

std::string key_json(const std::vector<Value>& key) {
    rapidjson::StringBuffer buf;
    JsonWriter w(buf);
    w.StartArray();
    for (const auto& v : key) write_value(w, v);
    w.EndArray();
    return std::string(buf.GetString(), buf.GetSize());
}

std::string value_json(const Value& v) {
    rapidjson::StringBuffer buf;
    JsonWriter w(buf);
    write_value(w, v);
    return std::string(buf.GetString(), buf.GetSize());
}

// ---------------------------------------------------------------- reading

namespace {

using JVal = rapidjson::Value;

// Where in the document a problem is; spelled out only when there is one
// (building paths for every value costs more than parsing them).
struct Where {
    const char* field = nullptr;  // top-level field, or a field of a table/row
    int table = -1, row = -1;
    const char* sub = nullptr;    // e.g. "int", "real", "bytes", " hlc"
    Where(const char* f = nullptr, int t = -1, int r = -1) : field(f), table(t), row(r) {}
    Where with(const char* s) const {
        Where w = *this;
        w.sub = s;
        return w;
    }
    std::string str() const {
        std::string s;
        if (table >= 0) s = "tables[" + std::to_string(table) + "]";
        if (row >= 0) s += ".rows[" + std::to_string(row) + "]";
        if (field) s += (s.empty() ? "" : ".") + std::string(field);
        if (sub) s += sub;
        return s.empty() ? "document" : s;
    }
};

[[noreturn]] void bad(const Where& where, const std::string& what) {
    throw Error("invalid change set: " + where.str() + ": " + what);
}

const JVal& member(const JVal& obj, const char* name, const Where& where) {
    auto it = obj.FindMember(name);
    if (it == obj.MemberEnd()) bad(where, std::string("missing \"") + name + "\"");
    return it->value;
}

bool parse_decimal(const char* s, size_t n, uint64_t& out) {
    if (n == 0 || n > 20) return false;
    out = 0;
    for (size_t i = 0; i < n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        uint64_t d = uint64_t(s[i] - '0');
        if (out > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
        out = out * 10 + d;
    }
    return true;
}

uint64_t read_u64_string(const JVal& v, const Where& where) {
    uint64_t out = 0;
    if (!v.IsString() || !parse_decimal(v.GetString(), v.GetStringLength(), out))
        bad(where, "expected a decimal string of an unsigned 64-bit number");
    return out;
}

// Change sequences and cursors are stored as signed 64-bit integers by both
// engines: a larger one would turn negative there.
uint64_t read_sequence(const JVal& v, const Where& where) {
    const uint64_t out = read_u64_string(v, where);
    if (out > kMaxSequence) bad(where, "a change sequence must be below 2^63");
    return out;
}

int64_t read_i64_string(const JVal& v, const Where& where) {
    if (!v.IsString()) bad(where, "expected a decimal string");
    const char* s = v.GetString();
    size_t n = v.GetStringLength();
    const bool neg = n > 0 && s[0] == '-';
    uint64_t mag = 0;
    if (!parse_decimal(s + neg, n - neg, mag)) bad(where, "expected a decimal string");
    const uint64_t limit = uint64_t(std::numeric_limits<int64_t>::max()) + (neg ? 1 : 0);
    if (mag > limit) bad(where, "integer out of the int64 range");
    return neg ? int64_t(0 - mag) : int64_t(mag);
}

Value read_value(const JVal& v, const Where& where) {
    if (v.IsNull()) return Value::null();
    if (v.IsString()) {
        std::string_view s(v.GetString(), v.GetStringLength());
        if (!valid_utf8(s)) bad(where, "text is not valid UTF-8 (a lone surrogate escape?)");
        return Value::text(std::string(s));
    }
    if (v.IsInt64()) return Value::integer(v.GetInt64());
    if (v.IsNumber()) bad(where, "a bare number must be an integer within int64; reals are written {\"real\": x}");
    if (v.IsObject() && v.MemberCount() == 1) {
        const auto& m = *v.MemberBegin();
        std::string tag(m.name.GetString(), m.name.GetStringLength());
        if (tag == "int") return Value::integer(read_i64_string(m.value, where.with(".int")));
        if (tag == "real") {
            if (m.value.IsNumber()) return Value::real(m.value.GetDouble());
            if (m.value.IsString()) {
                std::string s(m.value.GetString(), m.value.GetStringLength());
                if (s == "NaN") return Value::real(std::numeric_limits<double>::quiet_NaN());
                if (s == "Infinity") return Value::real(std::numeric_limits<double>::infinity());
                if (s == "-Infinity") return Value::real(-std::numeric_limits<double>::infinity());
            }
            bad(where.with(".real"), "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"");
        }
        if (tag == "bytes") {
            std::string out;
            if (!m.value.IsString() || !base64_decode({m.value.GetString(), m.value.GetStringLength()}, out))
                bad(where.with(".bytes"), "expected base64 text");
            return Value::bytes(std::move(out));
        }
    }
    bad(where, "not a value (null, integer, string, {\"int\"}, {\"real\"} or {\"bytes\"})");
}

// Identifiers: non-empty UTF-8 (the parser validated it) without NUL, which
// no engine accepts in a name, and at most 1000 bytes.
void check_name(const JVal& n, const Where& where) {
    if (!n.IsString() || n.GetStringLength() == 0 || n.GetStringLength() > 1000)
        bad(where, "expected non-empty name strings (at most 1000 bytes)");
    if (std::memchr(n.GetString(), '\0', n.GetStringLength())) bad(where, "a name contains a NUL character");
    // The parser lets an escaped lone low surrogate through as bytes that are not UTF-8.
    if (!valid_utf8({n.GetString(), n.GetStringLength()})) bad(where, "a name is not valid UTF-8");
}

std::vector<std::string> read_names(const JVal& v, const Where& where, std::unordered_set<std::string>& seen) {
    if (!v.IsArray()) bad(where, "expected an array of names");
    std::vector<std::string> out;
    for (const auto& n : v.GetArray()) {
        check_name(n, where);
        out.emplace_back(n.GetString(), n.GetStringLength());
        // One register per column: a name twice would carry two values for it.
        if (!seen.insert(out.back()).second) bad(where, "column \"" + out.back() + "\" is named twice");
    }
    return out;
}

// A row's key as bytes, equal exactly when the canonical values are identical.
std::string key_image(const std::vector<Value>& key) {
    std::string out;
    for (const auto& v : key) {
        out.push_back(static_cast<char>(v.kind));
        switch (v.kind) {
            case Value::Kind::Null: break;
            case Value::Kind::Int: out.append(reinterpret_cast<const char*>(&v.i), sizeof v.i); break;
            case Value::Kind::Real: out.append(reinterpret_cast<const char*>(&v.d), sizeof v.d); break;
            default: {
                const uint64_t n = v.s.size();
                out.append(reinterpret_cast<const char*>(&n), sizeof n);
                out += v.s;
            }
        }
    }
    return out;
}

Stamp read_stamp(const JVal& hlc, const JVal& node, const std::vector<NodeId>& nodes, const Where& where) {
    Stamp s;
    s.hlc = read_u64_string(hlc, where.with(" hlc"));
    if (!valid_stamp(s.hlc)) bad(where, "hlc out of range (a stamp is above 0 and before the year 6400)");
    if (!node.IsUint() || node.GetUint() >= nodes.size()) bad(where, "node index out of range of \"nodes\"");
    s.node = nodes[node.GetUint()];
    return s;
}

}  // namespace

std::vector<std::vector<Value>> decode_keys(const rapidjson::Value& arr, const char* what) {
    auto fail = [&](size_t i, const std::string& why) {
        throw Error(std::string("invalid exchange document: ") + what + "[" + std::to_string(i) + "]: " + why);
    };
    if (!arr.IsArray()) throw Error(std::string("invalid exchange document: ") + what + ": expected an array of keys");
    std::vector<std::vector<Value>> out;
    out.reserve(arr.Size());
    for (const auto& k : arr.GetArray()) {
        const size_t i = out.size();
        if (!k.IsArray() || k.Size() == 0 || k.Size() > 32) fail(i, "a key is an array of 1 to 32 values");
        if (!out.empty() && k.Size() != out.front().size()) fail(i, "keys of one table have one arity");
        std::vector<Value> key;
        key.reserve(k.Size());
        for (const auto& v : k.GetArray()) {
            try {
                key.push_back(read_value(v, Where()));
            } catch (const Error& e) {
                fail(i, e.what());
            }
            if (key.back().is_null()) fail(i, "a key value is NULL");
        }
        out.push_back(std::move(key));
    }
    return out;
}

ChangeSet decode_changeset(std::string_view json) {
    rapidjson::Document doc;
    std::string error;
    if (!parse_json(doc, json, error)) throw Error("invalid change set: " + error);
    return decode_changeset_value(doc);
}

ChangeSet decode_changeset_value(const rapidjson::Value& doc) {
    if (!doc.IsObject()) bad(Where(), "expected a JSON object");
    auto fmt = doc.FindMember("format");
    if (fmt == doc.MemberEnd() || !fmt->value.IsString() || std::string(fmt->value.GetString()) != kChangeSetFormat)
        bad(Where(), std::string("not an lwwsync change set (want \"format\": \"") + kChangeSetFormat + "\")");
    const JVal& ver = member(doc, "version", Where());
    if (!ver.IsInt() || ver.GetInt() != kChangeSetVersion)
        throw Error("unsupported change set version " + (ver.IsInt() ? std::to_string(ver.GetInt()) : std::string("?")) +
                    " (this build reads version " + std::to_string(kChangeSetVersion) + ")");

    ChangeSet cs;
    const JVal& origin = member(doc, "origin", Where());
    if (!origin.IsString() || !NodeId::try_parse({origin.GetString(), origin.GetStringLength()}, cs.origin))
        bad(Where("origin"), "expected a node id (UUID)");
    cs.since = read_sequence(member(doc, "since", Where()), Where("since"));
    cs.upto = read_sequence(member(doc, "upto", Where()), Where("upto"));
    auto after = doc.FindMember("after");
    cs.after = after == doc.MemberEnd() ? cs.since : read_sequence(after->value, Where("after"));
    if (cs.after < cs.since || cs.upto < cs.after) bad(Where(), "want since <= after <= upto");
    auto complete = doc.FindMember("complete");
    if (complete != doc.MemberEnd()) {
        if (!complete->value.IsBool()) bad(Where("complete"), "expected true or false");
        cs.complete = complete->value.GetBool();
    }

    std::vector<NodeId> nodes;
    const JVal& jnodes = member(doc, "nodes", Where());
    if (!jnodes.IsArray()) bad(Where("nodes"), "expected an array of node ids");
    for (const auto& n : jnodes.GetArray()) {
        NodeId id;
        if (!n.IsString() || !NodeId::try_parse({n.GetString(), n.GetStringLength()}, id))
            bad(Where("nodes"), "expected node ids (UUIDs)");
        nodes.push_back(id);
    }

    const JVal& tables = member(doc, "tables", Where());
    if (!tables.IsArray()) bad(Where("tables"), "expected an array");
    std::unordered_set<std::string> table_names;
    std::vector<size_t> col_seen;  // per column: the last row (+1) that carried it
    for (rapidjson::SizeType ti = 0; ti < tables.Size(); ++ti) {
        const JVal& jt = tables[ti];
        const int T = static_cast<int>(ti);
        const Where tw(nullptr, T);
        if (!jt.IsObject()) bad(tw, "expected an object");
        TableChanges t;
        const JVal& name = member(jt, "name", tw);
        check_name(name, Where("name", T));
        t.name.assign(name.GetString(), name.GetStringLength());
        if (!table_names.insert(t.name).second) bad(Where("name", T), "table \"" + t.name + "\" appears twice");
        std::unordered_set<std::string> names;  // key and non-key columns share one namespace
        t.key = read_names(member(jt, "key", tw), Where("key", T), names);
        if (t.key.empty()) bad(Where("key", T), "a table needs at least one key column");
        t.columns = read_names(member(jt, "columns", tw), Where("columns", T), names);
        col_seen.assign(t.columns.size(), 0);
        std::unordered_set<std::string> keys;
        const JVal& rows = member(jt, "rows", tw);
        if (!rows.IsArray()) bad(Where("rows", T), "expected an array");
        t.rows.reserve(rows.Size());
        keys.reserve(rows.Size());
        for (rapidjson::SizeType ri = 0; ri < rows.Size(); ++ri) {
            const JVal& jr = rows[ri];
            const int R = static_cast<int>(ri);
            const Where rw(nullptr, T, R);
            if (!jr.IsObject()) bad(rw, "expected an object");
            RowChange r;
            r.key.reserve(t.key.size());
            const JVal& key = member(jr, "key", rw);
            if (!key.IsArray() || key.Size() != t.key.size()) bad(Where("key", T, R), "expected one value per key column");
            for (const auto& k : key.GetArray()) r.key.push_back(read_value(k, Where("key", T, R)));
            const JVal& gen = member(jr, "gen", rw);
            if (!gen.IsUint64() || gen.GetUint64() == 0 || gen.GetUint64() > kMaxGeneration)
                bad(Where("gen", T, R), "expected a positive integer below 2^53");
            r.gen = gen.GetUint64();
            Stamp base;
            bool has_base = false;
            auto st = jr.FindMember("stamp");
            if (st != jr.MemberEnd()) {
                if (!st->value.IsArray() || st->value.Size() != 2) bad(Where("stamp", T, R), "expected [hlc, node]");
                base = read_stamp(st->value[0], st->value[1], nodes, Where("stamp", T, R));
                has_base = true;
            }
            auto row = jr.FindMember("row");
            if (row != jr.MemberEnd()) {
                if (!row->value.IsBool()) bad(Where("row", T, R), "expected true or false");
                if (row->value.GetBool()) {
                    if (!has_base) bad(Where("row", T, R), "a row register needs \"stamp\"");
                    r.has_row = true;
                    r.row = base;
                }
            }
            auto cols = jr.FindMember("cols");
            if (cols != jr.MemberEnd()) {
                if (!cols->value.IsArray()) bad(Where("cols", T, R), "expected an array");
                r.cols.reserve(cols->value.Size());
                for (const auto& jc : cols->value.GetArray()) {
                    if (!jc.IsArray() || (jc.Size() != 2 && jc.Size() != 4))
                        bad(Where("cols", T, R), "expected [column, value] or [column, value, hlc, node]");
                    ColChange c;
                    if (!jc[0].IsUint() || jc[0].GetUint() >= t.columns.size())
                        bad(Where("cols", T, R), "column index out of range of \"columns\"");
                    c.col = jc[0].GetUint();
                    if (col_seen[c.col] == size_t(ri) + 1)
                        bad(Where("cols", T, R), "column \"" + t.columns[c.col] + "\" has two registers in one row");
                    col_seen[c.col] = size_t(ri) + 1;
                    c.value = read_value(jc[1], Where("cols", T, R));
                    if (jc.Size() == 4) c.stamp = read_stamp(jc[2], jc[3], nodes, Where("cols", T, R));
                    else if (has_base) c.stamp = base;
                    else bad(Where("cols", T, R), "a column without its own stamp needs the row's \"stamp\"");
                    r.cols.push_back(std::move(c));
                }
            }
            if (!r.has_row && r.cols.empty()) bad(rw, "a row must carry its row register or some columns");
            // A deleted generation is made by a delete: its row register
            // says who deleted it (column registers die with the row).
            if (!(r.gen & 1) && !r.has_row) bad(rw, "a deleted row (even gen) must carry its row register");
            // One entry per row: a key repeated would let one set raise a
            // row's generation by 2^32 again and again.
            if (!keys.insert(key_image(r.key)).second) bad(rw, "the key appears twice in this table");
            t.rows.push_back(std::move(r));
        }
        cs.tables.push_back(std::move(t));
    }
    return cs;
}

}  // namespace lww
