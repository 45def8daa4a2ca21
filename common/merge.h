// lwwsync core: THE merge rule. Both engines call only this to decide what a
// row looks like after a local write or after merging a remote change.
//
// A row is a generation (causal length: odd = alive, even = deleted) plus
// registers for the current generation only: a row register (written by
// insert and delete) and one register per non-key column. Registers of an
// older generation are discarded when the generation rises, so the state is
// a lexicographic join of (generation, registers) and merging is idempotent,
// commutative and associative.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "node_id.h"

namespace lww {

struct Stamp {
    uint64_t hlc = 0;
    NodeId node{};
};

// Total order on stamps: (hlc, node id).
inline bool stamp_less(const Stamp& a, const Stamp& b) { return a.hlc != b.hlc ? a.hlc < b.hlc : a.node < b.node; }
inline bool stamp_equal(const Stamp& a, const Stamp& b) { return a.hlc == b.hlc && a.node == b.node; }

struct Register {
    bool present = false;
    Stamp stamp;
    uint64_t seq = 0;  // local change sequence at which this register last changed here
};

struct RowState {
    uint64_t gen = 0;  // 0: never seen
    Register row;
    std::vector<Register> cols;

    explicit RowState(size_t ncols = 0) : cols(ncols) {}
    bool alive() const { return gen & 1; }
    uint64_t max_seq() const;
};

// Generations travel as JSON numbers, so they stay below 2^53 (a JavaScript
// reader keeps them exact). Honest peers need 2^52 deletes of one key to get
// there; a local write that would pass it is refused (never wraps, never
// produces a generation other peers refuse).
constexpr uint64_t kMaxGeneration = (uint64_t(1) << 53) - 1;
// How far one incoming register may raise a row's generation past what the
// receiver holds: 2^32 insert/delete cycles of one key between two syncs. A
// peer cannot jump a row to the end of the range (where it could never be
// deleted again) in one step.
constexpr uint64_t kMaxGenerationStep = uint64_t(1) << 32;

// The generation after a local insert / delete; throws at kMaxGeneration.
uint64_t gen_after_insert(uint64_t gen);
uint64_t gen_after_delete(uint64_t gen);

// Local writes (what the triggers record).
void local_insert(RowState& st, const Stamp& s, uint64_t seq);
void local_update(RowState& st, const std::vector<bool>& changed, const Stamp& s, uint64_t seq);
void local_delete(RowState& st, const Stamp& s, uint64_t seq);

// One row of an incoming change set, stripped of values.
struct IncomingRow {
    uint64_t gen = 0;
    bool has_row = false;
    Stamp row;
    std::vector<std::pair<size_t, Stamp>> cols;  // (column index, stamp)
};

// A register a merge replaced: by incoming register `by` (an index into
// IncomingRow::cols, or kRowRegister), or by a higher generation (kGeneration).
struct Displaced {
    static constexpr size_t kRowRegister = SIZE_MAX;
    static constexpr size_t kGeneration = SIZE_MAX - 1;
    size_t by = kRowRegister;
    Stamp stamp;
    uint64_t seq = 0;
};

struct MergeOutcome {
    bool was_alive = false;
    bool alive = false;
    bool gen_raised = false;
    bool row_won = false;
    std::vector<size_t> won_cols;      // indexes into IncomingRow::cols whose register won
    size_t applied = 0;                // registers that won
    size_t ignored = 0;                // registers that did not: duplicate + lost
    size_t duplicate = 0;              // ... the very register already held here
    size_t lost = 0;                   // ... older than what is held here (a lower stamp or generation)
    std::vector<Displaced> displaced;  // registers held here that the merge replaced
    std::vector<size_t> lost_regs;     // incoming registers that lost (Displaced::kRowRegister: the row's)
    bool older_generation = false;     // the whole row lost: its generation is below the one held
    bool changed() const { return applied > 0 || gen_raised; }
};

// Merges `in` into `st`; registers that win take local change sequence `seq`.
MergeOutcome merge_row(RowState& st, const IncomingRow& in, uint64_t seq);

}  // namespace lww
