#include "changeset.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_map>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "base64.h"
#include "error.h"

namespace lww {

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
    bool compact = false;  // rows as arrays where they fit
    size_t ncols = 0;      // of the table being written

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
    impl_->ncols = columns.size();
}

void ChangeSetWriter::compact_rows(bool on) { impl_->compact = on; }

namespace {

// A row the array form can carry: alive, its row register, and every column
// register, in column order, with the row's stamp.
bool fits_array(const RowChange& r, size_t ncols) {
    if (!r.has_row || !(r.gen & 1) || r.cols.size() != ncols) return false;
    for (size_t i = 0; i < r.cols.size(); ++i)
        if (r.cols[i].col != i || !stamp_equal(r.cols[i].stamp, r.row)) return false;
    return true;
}

}  // namespace

void ChangeSetWriter::row(const RowChange& r) {
    auto& w = impl_->w;
    if (impl_->compact && fits_array(r, impl_->ncols)) {
        w.StartArray();
        w.StartArray();
        for (const auto& v : r.key) write_value(w, v);
        w.EndArray();
        w.Uint64(r.gen);
        impl_->stamp(r.row);
        for (const auto& c : r.cols) write_value(w, c.value);
        w.EndArray();
        ++rows_;
        return;
    }
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

}  // namespace lww
