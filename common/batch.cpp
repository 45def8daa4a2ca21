#include "batch.h"

#include "error.h"

#include <algorithm>

namespace lww {

[[noreturn]] void unknown_table(const std::string& name) {
    throw Error("unknown table \"" + name + "\" (not tracked by lww_track here)");
}

std::vector<size_t> map_columns(const TableChanges& in, const std::vector<std::string>& local_key,
                                const std::vector<std::string>& local_cols) {
    if (in.key != local_key)
        throw Error("table \"" + in.name + "\": the change set's key columns do not match this database's primary key");
    std::vector<size_t> map;
    for (const auto& name : in.columns) {
        size_t idx = 0;
        while (idx < local_cols.size() && local_cols[idx] != name) ++idx;
        if (idx == local_cols.size()) throw Error("unknown column \"" + name + "\" in table \"" + in.name + "\"");
        map.push_back(idx);
    }
    for (const auto& r : in.rows)
        for (const auto& k : r.key)
            if (k.is_null()) throw Error("table \"" + in.name + "\": a key value is NULL");
    return map;
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
    in.gen = r.gen;
    in.has_row = r.has_row;
    in.row = r.row;
    for (const auto& c : r.cols) in.cols.emplace_back(col_map[c.col], c.stamp);
    return in;
}

}  // namespace lww
