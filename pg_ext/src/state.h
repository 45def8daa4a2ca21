// PostgreSQL adapter: per-backend view of the lwwsync metadata.
//
// Truth lives in the lwwsync schema (state, nodes, tables, peers, the
// sequence and one metadata table per tracked table). A backend caches what
// it read and keeps it until an invalidation says it changed, so no
// transaction pays for the number of devices or tracked tables:
// - nodes: resolved one at a time (index -> id when a row names an unknown
//   index, id -> index in ensure_node), one indexed lookup per miss;
// - table descriptions: per relid, dropped by the relcache callback when the
//   table changes (ALTER TABLE) or when lwwsync.tables changes;
// - settings (max_drift_ms) and the own node id: dropped (with the rest)
//   when lwwsync.state (any key but 'hlc') or node index 0 changes.
// Writes to lwwsync.tables, lwwsync.state and lwwsync.nodes send a relcache
// invalidation of that table (trigger lwwsync.lww_invalidate, issue 10), so
// every backend drops what depends on it at its next transaction, and this
// backend at its next command. The callback only marks what is stale; the
// caches change at the next State call, never under a caller's feet.
// A description is never mutated: a new TableInfo replaces it, and whoever
// uses one (an lww_apply whose user trigger rolled back a savepoint, or
// called lww_track) keeps its own shared_ptr. The HLC is per backend but
// never issues a stamp below the register it overwrites or below the clock
// persisted by lww_apply, so a write that saw another write always beats it.
#pragma once
#include "values.h"

#include <unordered_map>

#include "../../common/hlc.h"
#include "../../common/changeset.h"
#include "../../common/row_codec.h"

namespace lww::pg {

struct TableInfo {
    Oid relid = InvalidOid;
    std::string name;       // wire name: relname, or schema.relname outside public
    std::string qualified;  // quoted schema.table for SQL text
    std::string meta;       // quoted lwwsync metadata table
    std::vector<std::string> key, cols;
    std::vector<AttrNumber> key_attnums, col_attnums;
    std::vector<ColumnType> key_types, col_types;
    std::vector<std::string> key_collate;  // " COLLATE schema.name" for a non-default key collation, else empty
};

using TablePtr = std::shared_ptr<const TableInfo>;

// A local write to a row that lww_apply is writing, seen by the capture
// trigger while the merge's own statement runs (trigger.cpp), replayed on the
// row's metadata once the merge stored it.
struct LocalOp {
    enum Kind { insert, update, remove } kind = update;
    std::vector<bool> changed;  // update: the registers whose value changed
};

// A total order on keys as stored, the same in every transaction: the lock
// order of lww_apply (docs/ARCHITECTURE.md, "Apply order").
int compare_values(const Value& a, const Value& b);
bool key_less(const std::vector<Value>& a, const std::vector<Value>& b);
// Keys as stored in hashed containers: equal when key_less says neither is less.
struct KeyHash {
    size_t operator()(const std::vector<Value>& key) const;
};
struct KeyEqual {
    bool operator()(const std::vector<Value>& a, const std::vector<Value>& b) const;
};

// The user-table write lww_apply makes for one merged row (docs/ARCHITECTURE.md,
// "Triggers during apply"). The capture trigger fires for every write (it is
// ENABLE ALWAYS); the event of exactly the statement writing this row
// (`writing`, command id `cid`) on it is the merge's own and is not a local
// write — except for columns a BEFORE trigger changed, which are. Every other
// event on the row meanwhile (an ALWAYS trigger writing it again, or a
// statement of the batch that is not the one writing it) is a local write,
// kept in `ops` and replayed after the merged metadata is stored.
struct OwnWrite {
    bool writing = false;  // the running statement is the one writing this row
    LocalOp::Kind kind = LocalOp::update;
    CommandId cid = InvalidCommandId;                                // the writing statement's command id
    std::vector<std::pair<size_t, std::pair<Datum, bool>>> written;  // (register, (datum, null)) the merge wrote
    bool seen = false;                                               // the statement's own event came
    std::vector<LocalOp> ops;                                        // local writes to the row meanwhile
};

// The rows of one table lww_apply is writing (one for a row-by-row merge, a
// whole batch's for a set-based one), by key as stored.
struct OwnWrites {
    Oid relid = InvalidOid;  // InvalidOid: no merge is writing
    std::unordered_map<std::vector<Value>, OwnWrite, KeyHash, KeyEqual> rows;
};

class State : private NodeSource {
public:
    static State& get();

    NodeId self();
    NodeDirectory& nodes();  // use at once: the next State call may replace it
    // The clock, having observed the clock lww_apply persisted (read once per
    // transaction), with max_drift_ms from lww_config.
    HybridClock& clock();
    // lww_config('conflict_log') and ('conflict_log_rows'), cached with
    // max_drift_ms (docs/PROTOCOL.md, "Conflict log").
    struct ConflictLog {
        bool on = false;
        int64_t rows = 10000;
    };
    ConflictLog conflict_log();
    // The generation a key without metadata is taken to be deleted at when
    // written here: the highest of the table's purged tombstones (0: none),
    // so a row inserted again starts above what a peer may still hold.
    uint64_t gen_floor(Oid relid);
    std::map<Oid, uint64_t> gen_floors();

    // Tracked tables, ordered by wire name (copies of the pointers: an
    // invalidation during their use leaves them intact).
    std::vector<TablePtr> tables();
    TablePtr find(Oid relid);
    TablePtr find(const std::string& wire_name);
    // This backend changed tracking or settings: descriptions and settings
    // are read again before their next use (other backends learn it from
    // the invalidation the lwwsync.tables/state triggers send at commit).
    void invalidate();
    // Relcache invalidation callback (entry.cpp): `relid` changed (every
    // relation: InvalidOid). Only marks; never allocates or throws.
    void relation_changed(Oid relid) noexcept;
    // Transaction callbacks (entry.cpp): node ids this transaction recorded
    // are gone if it rolls back.
    void transaction_ended(bool committed) noexcept;
    void subtransaction_aborted() noexcept;

    // A stamp for a local write that must beat `floor` (the register it replaces).
    uint64_t tick(uint64_t floor);
    // A fresh local change sequence. The first one of a transaction also takes
    // the shared side of the change-feed barrier (see changes.cpp).
    uint64_t next_seq();
    // The stored index of a node id, recording it (shared by all backends) if new.
    uint32_t ensure_node(const NodeId& id);
    void persist_clock();

    // Copies and restores (docs/PROTOCOL.md). A new node id now: registers
    // stamped by this database carry it from now on (node index 0), the old
    // id is kept as a retired node, and every cursor on peers restarts.
    // Returns the new id. In the caller's transaction.
    NodeId reset_node(const std::string& reason);
    // The node id was minted under an identity: system identifier, timeline,
    // database oid. A dump restored elsewhere, a backup restored to a point
    // in time, a promoted standby: the identity changed, so this database
    // may be behind what peers hold of its node id; it takes a new one.
    // Checked once per transaction (in memory; SPI only when it changed).
    void check_identity();

    int applying = 0;  // >0 while lww_apply writes user tables
    OwnWrites own;     // the merge's writes in progress (relid InvalidOid: none)

private:
    bool id_at(uint32_t idx, NodeId* id) override;  // NodeSource: one indexed lookup
    // Every public call starts here: the identity check (once per
    // transaction) and the invalidations received since the last call.
    void begin();
    void check_sql_objects();  // ALTER EXTENSION lwwsync UPDATE has run
    bool sql_objects_current_ = false;
    void load_settings();  // when stale
    TablePtr load(Oid relid);

    // Oids of lwwsync.tables, .state, .nodes: their invalidations concern us.
    Oid tables_oid_ = InvalidOid, state_oid_ = InvalidOid, nodes_oid_ = InvalidOid;

    // The lwwsync_invalidate triggers exist (0.5 and later; checked with the oids).
    bool invalidated_by_triggers_ = false;
    // What the callback marked stale, applied by begin().
    bool all_stale_ = true;       // everything, the oids above too
    bool tables_stale_ = false;   // every description (this backend's invalidate())
    bool settings_stale_ = true;  // max_drift_ms, conflict_log, gen_floor_
    std::map<Oid, uint64_t> gen_floor_;
    ConflictLog conflict_log_;
    bool nodes_stale_ = true;  // the node directory
    static constexpr int kMaxDropped = 16;
    Oid dropped_[kMaxDropped] = {};  // single descriptions to drop
    int ndropped_ = 0;               // past kMaxDropped: tables_stale_
    // Invalidations received: a lookup during which it moved keeps its
    // result out of the cache (it may predate the change).
    uint64_t generation_ = 0;

    std::unique_ptr<NodeDirectory> nodes_;
    bool nodes_recorded_ = false;  // ensure_node inserted in this transaction
    HybridClock clock_;
    LocalTransactionId clock_lxid_ = InvalidLocalTransactionId;  // persisted clock observed
    std::unordered_map<Oid, TablePtr> by_relid_;                 // nullptr: not tracked, or cannot be described
    std::unordered_map<std::string, Oid> by_name_;
    std::vector<TablePtr> all_;  // every tracked table, when all_valid_
    bool all_valid_ = false;
    LocalTransactionId identity_lxid_ = InvalidLocalTransactionId;
    LocalTransactionId seq_lxid_ = InvalidLocalTransactionId;
    Oid seq_oid_ = InvalidOid;
    std::string identity_;  // verified in this backend
    bool checking_ = false;
};

// Advisory-lock key of the change-feed barrier.
constexpr int32 kBarrierKey1 = 0x6c777773;  // "lwws"
constexpr int32 kBarrierKey2 = 1;

TableInfo describe_table(Oid relid);  // from the catalogs and lwwsync.tables

}  // namespace lww::pg
