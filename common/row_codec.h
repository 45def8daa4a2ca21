// lwwsync core: compact storage form of a RowState, shared by the adapters.
//
// Engines keep one metadata row per user row: gen, the row register
// (hlc, node index, seq), plus a blob holding only the column registers that
// differ from the row register. A fresh insert therefore stores an empty
// blob, and an update of one column stores one entry. SQLite keeps gen and
// the row register in plain columns (its integers are varints on the page);
// Postgres packs the whole StoredRow into one blob (pack_stored), where fixed
// 8-byte columns would cost three times as much.
//
// Node ids are stored as small integers: index 0 is always this database's
// own node; others are interned in a per-database table by the adapter.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "merge.h"

namespace lww {

// Where a directory that holds only the nodes it has met looks up the rest:
// the adapter's persisted node table (one indexed lookup per miss), so a
// server with 100 000 devices never loads them all. Without one, the
// directory knows exactly what was put or interned.
class NodeSource {
public:
    virtual ~NodeSource() = default;
    // The stored id of `idx`; false when no node has that index.
    virtual bool id_at(uint32_t idx, NodeId* id) = 0;
    // The stored index of `id`; false when unknown (an adapter that records
    // nodes itself before encoding may leave this to its own lookup).
    virtual bool index_of(const NodeId& id, uint32_t* idx) {
        (void)id;
        (void)idx;
        return false;
    }
    // One past the highest persisted index (where intern() may start).
    virtual uint32_t next_index() { return 1; }
};

// Node index <-> node id. Loaded lazily through a NodeSource, so its cost
// never grows with the number of nodes a database has met (issue 10).
class NodeDirectory {
public:
    explicit NodeDirectory(const NodeId& self, NodeSource* source = nullptr) : source_(source) { remember(0, self); }
    // Index of `id`, interning it if new (sets `added` so the adapter can persist it).
    uint32_t intern(const NodeId& id, bool* added = nullptr);
    void put(uint32_t idx, const NodeId& id);  // loading persisted rows
    bool find(const NodeId& id, uint32_t* idx = nullptr) const;
    const NodeId& id(uint32_t idx) const;
    const NodeId& self() const { return by_idx_.at(0); }
    // Forgets every node but this one (another writer may have changed the
    // persisted table); misses are looked up again.
    void forget_others();
    size_t cached() const { return by_idx_.size(); }
    // The highest index met or interned.
    uint32_t highest() const { return next_ - 1; }

private:
    void remember(uint32_t idx, const NodeId& id) const;
    static std::string key(const NodeId& id) { return std::string(id.bytes.begin(), id.bytes.end()); }
    NodeSource* source_;
    mutable std::unordered_map<uint32_t, NodeId> by_idx_;
    mutable std::unordered_map<std::string, uint32_t> by_id_;
    mutable uint32_t next_ = 1;  // above every index met: the lowest a new intern may take
};

struct StoredRow {
    uint64_t gen = 0;
    uint64_t row_hlc = 0;
    uint32_t row_node = 0;
    uint64_t row_seq = 0;  // 0 with row_hlc 0: no row register
    std::string cols;      // sparse column registers
};

RowState decode_row(const StoredRow& s, size_t ncols, const NodeDirectory& nodes);
StoredRow encode_row(const RowState& st, NodeDirectory& nodes, std::vector<NodeId>* new_nodes);

// Postgres' storage form of a StoredRow with `seq`, the highest change
// sequence of its registers (what its feed index orders by, an index on
// packed_seq), every register's seq stored as a small distance below it:
//   varint seq | varint gen | row hlc, 8 bytes LE (0: no row register)
//   | [varint row node | varint seq - row seq]  when the hlc is not 0
//   | entries: varint (column << 1 | present)
//              [hlc 8 bytes LE | varint node | varint seq - register seq]  when present
// A fresh row is 14 bytes (a seq below 2^21), a column written apart from
// its row 11 more.
std::string pack_stored(const StoredRow& s, uint64_t seq);
// Throws lww::Error on a blob that is not one (truncated, a distance past
// its seq); `seq`, when given, receives the row's seq.
StoredRow unpack_stored(std::string_view packed, uint64_t* seq = nullptr);
// One field alone, for statements that filter or order by it.
uint64_t packed_seq(std::string_view packed);
uint64_t packed_gen(std::string_view packed);

// Fast path for triggers: rewrite only the changed columns of a stored blob.
std::string blob_set_columns(std::string_view blob, size_t ncols, const std::vector<bool>& changed, uint64_t hlc,
                             uint64_t seq);

// A column's register retired (DROP COLUMN): its entries removed, later
// registers moved down one index, so register order stays the column order.
std::string blob_drop_column(std::string_view blob, size_t col);

}  // namespace lww
