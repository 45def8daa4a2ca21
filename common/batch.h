// lwwsync core: the engine-independent halves of lww_changes and lww_apply —
// which registers a row sends, and how an incoming set is checked against
// this database before anything is written.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
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
// `relayed` (with `self`): sequences of registers merged from the receiver
// (ChangesRequest::relayed), skipped unless stamped by `self`.
// Whether a receiver lacks register `r` (the rule registers_to_send applies
// to each register; a re-snapshot asks it of a row's generation).
inline bool receiver_lacks(const Register& r, uint64_t since, const NodeId* skip, uint64_t upto = UINT64_MAX,
                           const SeqRanges* relayed = nullptr, const NodeId* self = nullptr) {
    return r.present && r.seq > since && r.seq <= upto && !(skip && r.stamp.node == *skip) &&
           !(relayed && !relayed->empty() && in_ranges(*relayed, r.seq) && !(self && r.stamp.node == *self));
}

template <class ValueOf>
bool registers_to_send(const RowState& st, uint64_t since, const NodeId* skip, RowChange& out, ValueOf&& value_of,
                       uint64_t upto = UINT64_MAX, const SeqRanges* relayed = nullptr, const NodeId* self = nullptr) {
    auto wanted = [&](const Register& r) { return receiver_lacks(r, since, skip, upto, relayed, self); };
    out.cols.clear();
    out.has_row = wanted(st.row);
    if (out.has_row) out.row = st.row.stamp;
    if (st.alive())
        for (size_t i = 0; i < st.cols.size(); ++i)
            if (wanted(st.cols[i]))
                out.cols.push_back(ColChange{static_cast<uint32_t>(i), value_of(i), st.cols[i].stamp});
    out.gen = st.gen;
    return out.has_row || !out.cols.empty();
}

// The local register index of each column of `in`, checking that the table's
// key matches and every column is tracked here. Throws lww::Error.
std::vector<size_t> map_columns(const TableChanges& in, const std::vector<std::string>& local_key,
                                const std::vector<std::string>& local_cols);
[[noreturn]] void unknown_table(const std::string& name);

// The register index map of a column this database does not have (yet).
constexpr size_t kUnknownColumn = SIZE_MAX;

// As map_columns, but a column this database does not have maps to
// kUnknownColumn instead of failing. A key mismatch or a NULL key still throws.
std::vector<size_t> map_known_columns(const TableChanges& in, const std::vector<std::string>& local_key,
                                      const std::vector<std::string>& local_cols);
// Checks the rows of a table this database does not have (NULL keys are malformed anywhere).
void check_unknown_table(const TableChanges& in);

// Splits `in` by `map`: registers of known columns (and every row register)
// go to `known`, registers of unknown columns to `pending` (with the row's
// generation, without its row register). Rows left without a register are
// dropped from either part. Both keep `in`'s column list and indexes.
void split_columns(const TableChanges& in, const std::vector<size_t>& map, TableChanges& known, TableChanges& pending);

// An incoming table matched to this database's description of it (any type
// with `key` and `cols` name lists).
template <class Table>
struct TablePlan {
    const TableChanges* in = nullptr;
    const Table* local = nullptr;
    std::vector<size_t> col_map;                // incoming column index -> local register index
    std::shared_ptr<const TableChanges> owned;  // `in`, when unknown columns were split off
};

// Checks every table of `cs` against this database before anything is
// written: `find(name)` returns the local table or nullptr. With `pending`,
// tables and columns this database does not have are not errors: their
// registers are moved to *pending (same origin and sequences as `cs`), to be
// held until the table or column exists here (docs/SCHEMA.md). Without it
// they throw.
template <class Table, class Find>
std::vector<TablePlan<Table>> plan_tables(const ChangeSet& cs, Find&& find, ChangeSet* pending = nullptr) {
    std::vector<TablePlan<Table>> plans;
    if (pending) {
        pending->origin = cs.origin;
        pending->since = cs.since;
        pending->after = cs.after;
        pending->upto = cs.upto;
        pending->complete = cs.complete;
        pending->tables.clear();
    }
    for (const auto& t : cs.tables) {
        TablePlan<Table> p;
        p.in = &t;
        p.local = find(t.name);
        if (!p.local) {
            if (!pending) unknown_table(t.name);
            check_unknown_table(t);
            pending->tables.push_back(t);
            continue;
        }
        if (!pending) {
            p.col_map = map_columns(t, p.local->key, p.local->cols);
        } else {
            p.col_map = map_known_columns(t, p.local->key, p.local->cols);
            bool unknown = false;
            for (size_t idx : p.col_map) unknown |= idx == kUnknownColumn;
            if (unknown) {
                auto known = std::make_shared<TableChanges>();
                TableChanges held;
                split_columns(t, p.col_map, *known, held);
                if (!held.rows.empty()) pending->tables.push_back(std::move(held));
                p.owned = known;
                p.in = known.get();
            }
        }
        plans.push_back(std::move(p));
    }
    return plans;
}

// The rows of a pending part, each as a change set of its own (one table,
// one row, only the columns it references): the unit a pending store keeps.
struct PendingRow {
    std::string table;
    std::vector<std::string> columns;  // the columns its registers are for
    size_t registers = 0;
    ChangeSet cs;
};
std::vector<PendingRow> pending_rows(const ChangeSet& pending);

// Bounds of a pending store, per origin node (docs/SCHEMA.md).
constexpr int64_t kMaxPendingRowsPerNode = 100000;
constexpr int64_t kMaxPendingBytesPerNode = int64_t(64) << 20;
[[noreturn]] void pending_limit(const NodeId& origin, int64_t rows, int64_t bytes,
                                int64_t max_rows = kMaxPendingRowsPerNode);

// The stamp of a value an ADD COLUMN ... DEFAULT backfilled: below every
// real write (whose hlc carries wall-clock milliseconds), so any write of the
// column, made before or after the DDL, wins over it; between backfills the
// (hlc, node) order decides, so peers converge (docs/SCHEMA.md).
constexpr uint64_t kBackfillHlc = 1;

// A 64-bit hash of a canonical value (kind and bytes), stable across
// engines and builds: untracked rows are compared through it on re-track.
uint64_t value_hash(const Value& v);

// A row remembered at lww_untrack (docs/SCHEMA.md): value_hash of each
// tracked column, 8 bytes little-endian each, appended to `out`.
void append_value_hash(std::string& out, const Value& v);

// What changed in a remembered row while its table was untracked, column
// by column of `cols` (today's registers): `changed` where its hash differs
// from the one `remembered` holds under the same name in `old_cols`, `added`
// where `old_cols` had no such column (or the record is short).
struct UntrackedDrift {
    std::vector<bool> changed, added;
    bool any_changed = false, any_added = false;
};
UntrackedDrift untracked_drift(std::string_view remembered, const std::vector<std::string>& old_cols,
                               const std::vector<std::string>& cols, const std::vector<uint64_t>& hashes_now);

// Refuses the whole set if any stamp is past the drift limit: the clock's for
// a caller, a day (kMaxTrustedAheadMs) for the server this side chose.
void check_drift(const ChangeSet& cs, const HybridClock& clock, uint64_t now_ms, Trust trust);
// After a set is merged: the clock moves past every stamp it carried.
void observe_stamps(const ChangeSet& cs, HybridClock& clock);

// One row of a set as the merge rule sees it, columns mapped to local registers.
IncomingRow incoming_row(const RowChange& r, const std::vector<size_t>& col_map);
void incoming_row(const RowChange& r, const std::vector<size_t>& col_map, IncomingRow& out);  // reusing out's storage

}  // namespace lww
