#include "batch.h"

#include "error.h"

#include <algorithm>
#include <cstring>

namespace lww {

[[noreturn]] void unknown_table(const std::string& name) {
    throw Error("unknown table \"" + name + "\" (not tracked by lww_track here)", ErrorKind::not_found);
}

std::vector<size_t> map_columns(const TableChanges& in, const std::vector<std::string>& local_key,
                                const std::vector<std::string>& local_cols) {
    std::vector<size_t> map = map_known_columns(in, local_key, local_cols);
    for (size_t i = 0; i < map.size(); ++i)
        if (map[i] == kUnknownColumn)
            throw Error("unknown column \"" + in.columns[i] + "\" in table \"" + in.name + "\"");
    return map;
}

std::vector<size_t> map_known_columns(const TableChanges& in, const std::vector<std::string>& local_key,
                                      const std::vector<std::string>& local_cols) {
    if (in.key != local_key)
        throw Error("table \"" + in.name + "\": the change set's key columns do not match this database's primary key");
    std::vector<size_t> map;
    for (const auto& name : in.columns) {
        size_t idx = 0;
        while (idx < local_cols.size() && local_cols[idx] != name) ++idx;
        map.push_back(idx == local_cols.size() ? kUnknownColumn : idx);
    }
    check_unknown_table(in);
    return map;
}

void check_unknown_table(const TableChanges& in) {
    for (const auto& r : in.rows)
        for (const auto& k : r.key)
            if (k.is_null()) throw Error("table \"" + in.name + "\": a key value is NULL");
}

void split_columns(const TableChanges& in, const std::vector<size_t>& map, TableChanges& known, TableChanges& pending) {
    known.name = pending.name = in.name;
    known.key = pending.key = in.key;
    known.columns = pending.columns = in.columns;
    known.rows.clear();
    pending.rows.clear();
    for (const auto& r : in.rows) {
        RowChange k, p;
        k.key = p.key = r.key;
        k.gen = p.gen = r.gen;
        k.has_row = r.has_row;
        k.row = p.row = r.row;
        for (const auto& c : r.cols) (map[c.col] == kUnknownColumn ? p : k).cols.push_back(c);
        if (k.has_row || !k.cols.empty()) known.rows.push_back(std::move(k));
        if (!p.cols.empty()) pending.rows.push_back(std::move(p));
    }
}

std::vector<PendingRow> pending_rows(const ChangeSet& pending) {
    std::vector<PendingRow> out;
    for (const auto& t : pending.tables)
        for (const auto& r : t.rows) {
            PendingRow pr;
            pr.table = t.name;
            pr.cs.origin = pending.origin;
            // Sequences of the sender's feed mean nothing once held here.
            pr.cs.since = pr.cs.after = pr.cs.upto = 0;
            TableChanges one;
            one.name = t.name;
            one.key = t.key;
            RowChange row = r;
            std::vector<uint32_t> renum(t.columns.size(), UINT32_MAX);
            for (auto& c : row.cols) {
                if (renum[c.col] == UINT32_MAX) {
                    renum[c.col] = static_cast<uint32_t>(one.columns.size());
                    one.columns.push_back(t.columns[c.col]);
                }
                c.col = renum[c.col];
            }
            pr.columns = one.columns;
            pr.registers = (row.has_row ? 1 : 0) + row.cols.size();
            one.rows.push_back(std::move(row));
            pr.cs.tables.push_back(std::move(one));
            out.push_back(std::move(pr));
        }
    return out;
}

void pending_limit(const NodeId& origin, int64_t rows, int64_t bytes, int64_t max_rows) {
    throw Error("the pending store already holds " + std::to_string(rows) + " rows (" + std::to_string(bytes) +
                    " bytes) from node " + origin.str() + " for tables or columns this database does not have (limit " +
                    std::to_string(max_rows) + " rows, " + std::to_string(kMaxPendingBytesPerNode >> 20) +
                    " MiB per node); add the missing tables and columns (ALTER TABLE, lww_track) so they land, "
                    "then sync again (docs/SCHEMA.md)",
                ErrorKind::limit);
}

uint64_t value_hash(const Value& v) {
    // FNV-1a over the kind and the canonical bytes.
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](const void* p, size_t n) {
        const unsigned char* b = static_cast<const unsigned char*>(p);
        for (size_t i = 0; i < n; ++i) {
            h ^= b[i];
            h *= 1099511628211ull;
        }
    };
    const unsigned char kind = static_cast<unsigned char>(v.kind);
    mix(&kind, 1);
    unsigned char buf[8];
    switch (v.kind) {
        case Value::Kind::Null: break;
        case Value::Kind::Int:
            for (int i = 0; i < 8; ++i) buf[i] = static_cast<unsigned char>(static_cast<uint64_t>(v.i) >> (8 * i));
            mix(buf, 8);
            break;
        case Value::Kind::Real: {
            uint64_t bits = 0;
            std::memcpy(&bits, &v.d, 8);
            for (int i = 0; i < 8; ++i) buf[i] = static_cast<unsigned char>(bits >> (8 * i));
            mix(buf, 8);
            break;
        }
        default: mix(v.s.data(), v.s.size()); break;
    }
    return h;
}

void append_value_hash(std::string& out, const Value& v) {
    const uint64_t h = value_hash(v);
    for (int b = 0; b < 8; ++b) out.push_back(static_cast<char>(h >> (8 * b)));
}

UntrackedDrift untracked_drift(std::string_view remembered, const std::vector<std::string>& old_cols,
                               const std::vector<std::string>& cols, const std::vector<uint64_t>& hashes_now) {
    UntrackedDrift d;
    d.changed.assign(cols.size(), false);
    d.added.assign(cols.size(), false);
    for (size_t j = 0; j < cols.size(); ++j) {
        const size_t oi = static_cast<size_t>(std::find(old_cols.begin(), old_cols.end(), cols[j]) - old_cols.begin());
        if (oi >= old_cols.size() || (oi + 1) * 8 > remembered.size()) {
            d.added[j] = d.any_added = true;
            continue;
        }
        uint64_t h = 0;
        for (int b = 0; b < 8; ++b) h |= uint64_t(static_cast<uint8_t>(remembered[oi * 8 + b])) << (8 * b);
        if (j < hashes_now.size() && h != hashes_now[j]) d.changed[j] = d.any_changed = true;
    }
    return d;
}

void check_drift(const ChangeSet& cs, const HybridClock& clock, uint64_t now_ms, Trust trust) {
    const uint64_t limit =
        trust == Trust::caller ? clock.max_drift_ms() : std::max(clock.max_drift_ms(), kMaxTrustedAheadMs);
    for (const auto& t : cs.tables)
        for (const auto& r : t.rows) {
            if (r.has_row) HybridClock::check_drift(r.row.hlc, now_ms, r.row.node, limit);
            for (const auto& c : r.cols) HybridClock::check_drift(c.stamp.hlc, now_ms, c.stamp.node, limit);
        }
}

void observe_stamps(const ChangeSet& cs, HybridClock& clock) {
    for (const auto& t : cs.tables)
        for (const auto& r : t.rows) {
            if (r.has_row) clock.observe(r.row.hlc);
            for (const auto& c : r.cols) clock.observe(c.stamp.hlc);
        }
}

IncomingRow incoming_row(const RowChange& r, const std::vector<size_t>& col_map) {
    IncomingRow in;
    incoming_row(r, col_map, in);
    return in;
}

void incoming_row(const RowChange& r, const std::vector<size_t>& col_map, IncomingRow& out) {
    out.gen = r.gen;
    out.has_row = r.has_row;
    out.row = r.row;
    out.cols.clear();
    for (const auto& c : r.cols) out.cols.emplace_back(col_map[c.col], c.stamp);
}

}  // namespace lww
