// lwwsync core: lww_apply's rules for both engines — who may send a set,
// what a merge outcome writes to the user table, how registers are counted —
// and the batch merge every engine runs through TableStore, its storage.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "exchange.h"
#include "merge.h"

namespace lww {

// A node never applies its own changes (a copied database, a loop).
void refuse_own_changes(const NodeId& origin, const NodeId& self);

// What a merge does to the user table. `row_there`: the user row exists here.
enum class UserWrite { none, insert, update, remove };
UserWrite user_write(const MergeOutcome& out, bool row_there);

// Who receives a set, and what its sender holds of the receiver's changes:
// an applied register that replaces a write of ours (stamped by `self`)
// changed here after `seen` — the sender had not received it when it wrote —
// counts as `overwrote`, a conflict this database lost. `seen` 0: unknown
// (a plain lww_apply): every write of ours replaced counts.
struct Receiver {
    NodeId self;
    uint64_t seen = 0;
    bool log_conflicts = false;  // lww_config('conflict_log', 1): TableStore::record_conflicts
    // The node the set comes from, when the engine records what it relays
    // (MergeRow::relayed; SyncEngine::relayed_from).
    const NodeId* sender = nullptr;
    // A row that arrives at a lower generation than ours comes from a peer
    // that does not hold our generation — after a purge, maybe never will
    // (it resurrected a row whose tombstone it purged): the engine gives our
    // row register a new stamp of its own (same generation), so our row
    // travels again to everyone, the sender too (docs/PROTOCOL.md, "Purge
    // and re-snapshot"). Empty: not done.
    std::function<Stamp()> restamp = nullptr;
    // Pushes this database serves, where it purged: a row of a key it holds
    // nothing of, at or below the generation floor of its table (the highest
    // generation it purged), comes from a peer that never learned the purge.
    // Its insert is adopted at the generation after the floor, stamped anew
    // by `adopt` (this database's next stamp), so it travels back whole, to
    // its sender too. A column change of such a key (no insert with it)
    // lost to the purged delete, unless a row of the key is parked here
    // (TableStore::holds_parked): it completes that one. Deletes merge as
    // usual (docs/PROTOCOL.md, "Purge and re-snapshot"). Empty: no.
    std::function<Stamp()> adopt = nullptr;
};

// A conflict one merge settled (the conflict log, docs/PROTOCOL.md): an
// incoming register that lost to the one held here (`lost`), or one that
// replaced a write of ours the sender had not seen (`overwrote`). For a
// column, `reg` is its local register index and `in_col` the incoming
// column's position in the row (its value); for the row itself (an insert
// or delete against the other's edit) both are kRow and the alive flags say
// which side deleted it.
struct Conflict {
    static constexpr size_t kRow = SIZE_MAX;
    enum class Kind { lost, overwrote } kind = Kind::lost;
    size_t reg = kRow, in_col = kRow;
    Stamp ours, theirs;
    bool ours_alive = true, theirs_alive = true;
};
std::vector<Conflict> conflicts_of(const MergeOutcome& out, const IncomingRow& in, const RowState& merged,
                                   const Receiver& who);

// Counting (docs/PROTOCOL.md, "Apply statistics").
void count_merged(ApplyCounts& c, const MergeOutcome& out, const Receiver* who = nullptr);  // a row merged
void count_refused(ApplyCounts& c, const MergeOutcome& out);  // merged, but its winning registers are not kept
void count_rejected(ApplyCounts& c, const IncomingRow& in);   // refused whole by the receiver's rules
// Applied registers of `out` that replaced a write of `who`'s the sender had not seen.
size_t overwritten(const MergeOutcome& out, const Receiver& who);

// The sequence merged registers take until the row is stored: the store
// assigns a real one (a sequence is taken only when a row changes).
constexpr uint64_t kUnassignedSeq = UINT64_MAX;
void assign_seq(RowState& st, uint64_t seq);

// One incoming row of a table batch, as merge_batch and the store see it.
struct MergeRow {
    const IncomingRow* in = nullptr;  // registers by local column index
    size_t item = 0;                  // the engine's handle
    // The node this row came from when it is not the Receiver's sender: a
    // row parked earlier (another set) and merged again now.
    const NodeId* from = nullptr;
    // Set by TableStore::load.
    RowState st;
    bool there = false;  // the user row exists
    // Set by merge_batch.
    MergeOutcome out;
    UserWrite write = UserWrite::none;
    std::vector<size_t> won;  // local registers the merge won, ascending
    bool keep = false;        // metadata to store, the row counted as merged
    bool redo = false;        // set by the store: merge this row again on its own
    uint64_t seq = 0;         // kept rows: the change sequence the merge gave them
    bool relayed = false;     // kept, and won a register stamped by neither its sender nor us
    bool restamped = false;   // kept only for Receiver::restamp: nothing incoming won
    // Receiver::adopt: the incoming row as adopted (`in` points at it).
    std::shared_ptr<const IncomingRow> adopted;
    ApplyCounts counts;               // this row's share of the statistics
    std::vector<Conflict> conflicts;  // with Receiver::log_conflicts
};

// One engine's storage of one tracked table, batch at a time.
class TableStore {
public:
    virtual ~TableStore() = default;
    // Metadata and presence of every row, locked (user row, then metadata,
    // in key order) where the engine locks.
    virtual void load(std::vector<MergeRow>& rows) = 0;
    // The engine's own rules on a row that changes (rights, row-level
    // security, references): throw to refuse it, or return false to keep
    // nothing of it (counted refused).
    virtual bool admit(MergeRow& row) = 0;
    // Metadata of the kept rows (sequences assigned).
    virtual void store(const std::vector<MergeRow*>& rows) = 0;
    // The user rows, as `write` says. A row the engine finds changed under
    // it is marked `redo` (not stored, not counted here).
    virtual void write_user(const std::vector<MergeRow*>& rows) = 0;
    virtual uint64_t next_seq() = 0;
    // Metadata before user rows (an app trigger's write to a merged row then
    // lands on top of the stored registers), or after them.
    virtual bool store_first() const = 0;
    // The conflicts of `rows` (MergeRow::conflicts), before anything of the
    // batch is written: the user rows still hold our values.
    virtual void record_conflicts(const std::vector<MergeRow*>& /*rows*/) {}
    // The highest generation this database purged in the table (0: none).
    virtual uint64_t gen_floor() { return 0; }
    // Whether a row of `row`'s key waits parked here (lww_rejected), or
    // `row` is such a parked row retried.
    virtual bool holds_parked(const MergeRow& /*row*/) { return false; }
};

// Merges a batch of one table's rows (distinct keys, key order where the
// engine locks): load, the merge rule, the write each outcome asks for, the
// engine's rules, sequences, metadata and user rows, counts per row.
void merge_batch(TableStore& store, std::vector<MergeRow>& rows, const Receiver* who = nullptr);

}  // namespace lww
