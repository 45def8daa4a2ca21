// lwwsync core: compact storage form of a RowState, shared by the adapters.
//
// Engines keep one metadata row per user row: gen, the row register
// (hlc, node index, seq) in plain columns, plus a blob holding only the column
// registers that differ from the row register. A fresh insert therefore stores
// an empty blob, and an update of one column stores one entry.
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

// Where a directory finds the id of an index it has not seen: an adapter
// whose node table is too large to load (Postgres with 100 000 devices) looks
// one index up when a row names it.
class NodeResolver {
public:
    virtual ~NodeResolver() = default;
    // The stored id of `idx`; false when no node has that index.
    virtual bool node_at(uint32_t idx, NodeId* id) = 0;
};

class NodeDirectory {
public:
    explicit NodeDirectory(const NodeId& self, NodeResolver* resolver = nullptr) : resolver_(resolver) {
        ids_.emplace(0, self);
        index_[key(self)] = 0;
    }
    // Index of `id`, interning it if new (sets `added` so the adapter can persist it).
    uint32_t intern(const NodeId& id, bool* added = nullptr);
    void put(uint32_t idx, const NodeId& id);  // loading persisted rows
    bool find(const NodeId& id, uint32_t* idx = nullptr) const;
    // The id of `idx`, asking the resolver (and remembering its answer) when
    // unknown; throws lww::Error for an index nobody knows.
    const NodeId& id(uint32_t idx) const;
    const NodeId& self() const { return ids_.at(0); }
    size_t size() const { return ids_.size(); }  // indexes known (loaded or resolved)

private:
    static std::string key(const NodeId& id) { return std::string(id.bytes.begin(), id.bytes.end()); }
    NodeResolver* resolver_;
    // Filled lazily by id() through the resolver: a cache, so logically const.
    mutable std::unordered_map<uint32_t, NodeId> ids_;
    mutable std::unordered_map<std::string, uint32_t> index_;
    mutable uint32_t next_ = 1;  // intern's next index: above every index known
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

// Fast path for triggers: rewrite only the changed columns of a stored blob.
std::string blob_set_columns(std::string_view blob, size_t ncols, const std::vector<bool>& changed,
                             uint64_t hlc, uint64_t seq);

// A column's register retired (DROP COLUMN): its entries removed, later
// registers moved down one index, so register order stays the column order.
std::string blob_drop_column(std::string_view blob, size_t col);

}  // namespace lww
