// SQLite adapter: per-connection state. One Conn lives behind every function
// the extension registers on a connection.
//
// The truth lives in the database (lww_state, lww_nodes, lww_tables and the
// per-table metadata); Conn caches it and reloads whenever the database
// changed under it (SQLITE_FCNTL_DATA_VERSION), so several connections or
// processes writing one file keep one strictly increasing clock and sequence.
#pragma once
#include <algorithm>
#include <sqlite3ext.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../common/hlc.h"
#include "../common/merge.h"
#include "../common/row_codec.h"
#include "sqlite_util.h"

namespace lww::sq {

struct TableInfo {
    std::string name;
    std::vector<std::string> key;   // primary-key columns, key order
    std::vector<std::string> cols;  // tracked non-key columns; index = register index
    std::string meta;               // quoted name of the metadata table
    // The metadata's sequence columns: the row register's, and the row's
    // latest (the feed's order, indexed). A file from before schema 6 opened
    // where it cannot be upgraded (read-only) keeps its older names; only
    // the read paths (the feed, sequence recovery) run there.
    const char* row_seq = "row_seq";
    const char* max_seq = "max_seq";
};

// Held by shared_ptr: a reload builds new descriptions and whoever uses one
// keeps it, so nothing points into a cache that was rebuilt.
using TablePtr = std::shared_ptr<const TableInfo>;

std::string meta_table_name(const std::string& table);  // unquoted

// The current row of `st`, whose first columns are gen, hlc, node, row_seq, cols.
StoredRow stored_row(const Stmt& st);

// 2: triggers check that text is UTF-8 (lwwsync 0.3).
// 3: triggers name the row they record (lww_row), so lww_apply silences
//    only its own write; lww_rejected.
// 4: a fresh key starts above the table's purged generations (lww_first_gen).
// 5: a local UPDATE appends to the table's capture log (capture_log.h).
// 6: the metadata's sequence columns are named for what they hold:
//    mseq -> row_seq (the row register's), seq -> max_seq (the row's latest).
constexpr int kSchemaVersion = 6;

// A foreign key of the schema (PRAGMA foreign_key_list), `to` resolved to the
// parent's primary key when the declaration names no columns.
struct ForeignKey {
    std::string child, parent;
    std::vector<std::string> from, to;
};

// The user-row write lww_apply is making now: its capture trigger stays
// silent for exactly this write (table, key, operation and, for an update,
// the values written); every other write that fires while it merges — an
// app trigger's, a cascade's — is recorded as a local write.
// Registers a merge writes into the user row: (register index, value),
// ascending by index (a flat vector: no allocation per row once warm).
using WrittenCols = std::vector<std::pair<size_t, const Value*>>;
inline const Value* written_value(const WrittenCols& cols, size_t reg) {
    auto it = std::lower_bound(cols.begin(), cols.end(), reg,
                               [](const std::pair<size_t, const Value*>& c, size_t r) { return c.first < r; });
    return it != cols.end() && it->first == reg ? it->second : nullptr;
}

struct MergeWrite {
    bool active = false;
    char op = 0;  // 'i' insert, 'u' update, 'd' delete
    const std::string* table = nullptr;
    const std::vector<Value>* key = nullptr;
    const WrittenCols* cols = nullptr;  // update: register index -> value written
};

class Conn : public NodeSource {
public:
    explicit Conn(sqlite3* db) : db(db) {}

    sqlite3* const db;
    HybridClock clock;
    int applying = 0;    // >0 while lww_apply merges (lww_applying())
    MergeWrite merging;  // the merge's own write in progress
    // Set by lww_row() in a capture trigger's WHEN, read (and cleared) by
    // lww_begin_write/lww_begin_update: 0 nothing said, 1 another write,
    // 2 the row of the merge's own write.
    int row_note = 0;
    int evolving = 0;            // >0 while evolve.cpp reconciles tables (no detection inside)
    int64_t schema_cookie = -1;  // PRAGMA schema_version when tables were last reconciled
    bool file_checked = false;   // check_copied_file ran on this connection

    // The current local write, set by lww_begin_write() for the trigger body.
    uint64_t cur_hlc = 0;
    uint64_t cur_seq = 0;
    std::vector<bool> changed;  // columns the current update changed
    // Capture log (capture_log.h): updates this connection appended since
    // the last fold, and how many it appends before folding itself.
    uint64_t log_appended = 0;
    // Local writes this connection stamped (stamp_write), ever: while it
    // stands still nothing but the merge itself wrote metadata (apply.cpp).
    uint64_t local_writes = 0;
    uint64_t log_fold_rows = 0;  // lww_config, read by load_self before any write is stamped

    // Creates the metadata tables and this node's id on first use.
    void ensure_ready();
    // Brings cached state up to date with what anyone (this connection
    // included) committed since; constant cost (conn.cpp).
    void refresh();
    bool has_state();
    // PRAGMA schema_version: moves with every schema change, and back with a rollback.
    int64_t schema_version();
    // device/inode of the main database file; empty without one (memory, temp).
    std::string file_identity();

    const NodeId& self() const { return nodes_->self(); }
    NodeDirectory& nodes() { return *nodes_; }
    std::vector<TablePtr> tables() const { return tables_; }
    TablePtr find_table(const std::string& name) const;
    bool has_log() const { return has_log_; }  // lww_log exists (capture_log.h)

    // A statement from the cache of the running lww_sync (StmtScope), or
    // prepared for this caller alone.
    StmtPtr prepare(const std::string& sql) { return stmts_ ? stmts_->get(sql) : std::make_shared<Stmt>(db, sql); }

    uint64_t next_seq() { return ++seq_; }
    uint64_t last_seq() const { return seq_; }
    Stamp local_stamp() { return Stamp{clock.tick(wall_clock_ms()), self()}; }

    // Persists node ids interned while encoding metadata rows.
    void persist_nodes(const std::vector<NodeId>& added);
    void persist_clock();
    void set_setting(const std::string& key, int64_t value);
    // lww_conflicts, made when the conflict log is first switched on or used.
    void ensure_conflict_log();
    uint64_t setting(const char* key, uint64_t dflt);
    void reload();
    // Generation a key without metadata starts at when inserted here: past
    // every tombstone of the table purged (0 when none was).
    uint64_t gen_floor(const std::string& table) const {
        auto it = gen_floor_.find(table);
        return it == gen_floor_.end() ? 0 : it->second;
    }
    void set_gen_floor(const std::string& table, uint64_t gen);
    // Every foreign key of the schema, reread when the schema changed.
    const std::vector<ForeignKey>& foreign_keys();
    // Inside a savepoint: takes the database's write lock now and reloads
    // what other connections committed before it, so sequences handed out
    // next are above everything committed; folds the capture logs.
    void lock_for_write();

private:
    void load_tables();
    void load_self();
    void recover_seq();
    void upgrade_schema();
    void forget_rolled_back();
    // NodeSource: lww_nodes, one indexed lookup per node not met yet.
    bool id_at(uint32_t idx, NodeId* id) override;
    bool index_of(const NodeId& id, uint32_t* idx) override;
    uint32_t next_index() override;

    std::unique_ptr<NodeDirectory> nodes_;
    std::vector<TablePtr> tables_;
    friend class StmtScope;
    StmtCache* stmts_ = nullptr;  // StmtScope's, while one is open
    bool has_log_ = false;
    bool upgraded_ = false;  // this connection checked the schema version
    uint64_t seq_ = 0;
    unsigned data_version_ = 0;    // SQLITE_FCNTL_DATA_VERSION: any commit, this connection's too
    int64_t others_version_ = -1;  // PRAGMA data_version: other connections' commits
    int64_t schema_version_ = -1;  // PRAGMA schema_version when tables_ was read
    bool loaded_ = false;
    std::vector<ForeignKey> fks_;
    std::map<std::string, uint64_t> gen_floor_;  // lww_state 'genfloor:<table>', read with the sequences
    int64_t fk_schema_ = -1;
};

// Statements reused across the batches of one call (lww_sync): the
// outermost scope owns the cache and finalizes it when the call ends.
class StmtScope {
public:
    explicit StmtScope(Conn& c) : c_(c) {
        if (!c_.stmts_) {
            cache_ = std::make_unique<StmtCache>(c_.db);
            c_.stmts_ = cache_.get();
        }
    }
    ~StmtScope() {
        if (cache_) c_.stmts_ = nullptr;
    }
    StmtScope(const StmtScope&) = delete;
    StmtScope& operator=(const StmtScope&) = delete;

private:
    Conn& c_;
    std::unique_ptr<StmtCache> cache_;
};

// Registers every lwwsync SQL function on `db`; returns the connection state
// (owned by the registered functions, freed when the connection closes).
Conn* register_functions(sqlite3* db);

}  // namespace lww::sq
