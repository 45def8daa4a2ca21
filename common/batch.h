// lwwsync core: the engine-independent halves of lww_changes and lww_apply —
// which registers a row sends, and how an incoming set is checked against
// this database before anything is written.
#pragma once
#include <string>
#include <vector>

#include "changeset.h"
#include "exchange.h"
#include "hlc.h"
#include "merge.h"

namespace lww {

// The registers of `st` a receiver lacks: changed after local sequence
// `since` (and at or before `upto`), not stamped by `skip` (the receiver
// itself). `value_of(i)` reads column i's current value. False when the row
// has nothing to send.
template <class ValueOf>
bool registers_to_send(const RowState& st, uint64_t since, const NodeId* skip, RowChange& out, ValueOf&& value_of,
                       uint64_t upto = UINT64_MAX) {
    auto wanted = [&](const Register& r) {
        return r.present && r.seq > since && r.seq <= upto && !(skip && r.stamp.node == *skip);
    };
    out.cols.clear();
    out.has_row = wanted(st.row);
    if (out.has_row) out.row = st.row.stamp;
    if (st.alive())
        for (size_t i = 0; i < st.cols.size(); ++i)
            if (wanted(st.cols[i])) out.cols.push_back(ColChange{static_cast<uint32_t>(i), value_of(i), st.cols[i].stamp});
    out.gen = st.gen;
    return out.has_row || !out.cols.empty();
}

// The local register index of each column of `in`, checking that the table's
// key matches and every column is tracked here. Throws lww::Error.
std::vector<size_t> map_columns(const TableChanges& in, const std::vector<std::string>& local_key,
                                const std::vector<std::string>& local_cols);
[[noreturn]] void unknown_table(const std::string& name);

// An incoming table matched to this database's description of it (any type
// with `key` and `cols` name lists).
template <class Table>
struct TablePlan {
    const TableChanges* in = nullptr;
    const Table* local = nullptr;
    std::vector<size_t> col_map;  // incoming column index -> local register index
};

// Checks every table of `cs` against this database before anything is
// written: `find(name)` returns the local table or nullptr.
template <class Table, class Find>
std::vector<TablePlan<Table>> plan_tables(const ChangeSet& cs, Find&& find) {
    std::vector<TablePlan<Table>> plans;
    for (const auto& t : cs.tables) {
        TablePlan<Table> p;
        p.in = &t;
        p.local = find(t.name);
        if (!p.local) unknown_table(t.name);
        p.col_map = map_columns(t, p.local->key, p.local->cols);
        plans.push_back(std::move(p));
    }
    return plans;
}

// Refuses the whole set if any stamp is past the drift limit: the clock's for
// a caller, a day (kMaxTrustedAheadMs) for the server this side chose.
void check_drift(const ChangeSet& cs, const HybridClock& clock, uint64_t now_ms, Trust trust);
// After a set is merged: the clock moves past every stamp it carried.
void observe_stamps(const ChangeSet& cs, HybridClock& clock);

// One row of a set as the merge rule sees it, columns mapped to local registers.
IncomingRow incoming_row(const RowChange& r, const std::vector<size_t>& col_map);

}  // namespace lww
