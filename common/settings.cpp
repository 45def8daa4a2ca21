#include "settings.h"

#include "batch.h"
#include "error.h"
#include "hlc.h"
#include "purge.h"

namespace lww {

namespace {

constexpr unsigned kBoth = unsigned(Engine::postgres) | unsigned(Engine::sqlite);
constexpr unsigned kPostgres = unsigned(Engine::postgres);
constexpr unsigned kSqlite = unsigned(Engine::sqlite);

const Setting kSettings[] = {
    // how far ahead of this clock an incoming stamp may be (docs/SECURITY.md)
    {"max_drift_ms", static_cast<int64_t>(kDefaultMaxDriftMs), 0, int64_t(1) << 40, kBoth},
    // rows the pending store holds per origin node (docs/SCHEMA.md)
    {"pending_max_rows", kMaxPendingRowsPerNode, 0, kMaxPendingRowsPerNode * 100, kBoth},
    // a node id is bound to the principal that first pushes with it
    {"bind_new_nodes", 1, 0, 1, kPostgres},
    // rows lwwsync.rejected keeps per principal
    {"rejected_max", 1000, 0, 1000000, kPostgres},
    // 1: a file found where its node id was not made (a copy, a restored
    // backup) takes a new node id
    {"detect_copies", 1, 0, 1, kSqlite},
    // 1: lww_apply records each conflict it settles in lww_conflicts
    {"conflict_log", 0, 0, 1, kBoth},
    // tombstones older than this go (lww_purge, and by themselves during sync)
    {"tombstone_ttl_ms", kDefaultTombstoneTtlMs, 0, int64_t(1) << 40, kBoth},
    // rows lww_conflicts keeps (the oldest go first)
    {"conflict_log_rows", 10000, 1, 10000000, kBoth},
    // updates a connection appends to the capture log (lww_log) before its
    // next update folds the log into the metadata: the log stays bounded
    // while nothing reads (docs/ARCHITECTURE.md, "Capture (SQLite)")
    {"log_fold_rows", 262144, 1, int64_t(1) << 30, kSqlite},
};

}  // namespace

const Setting& find_setting(const std::string& name, Engine engine) {
    std::string known;
    for (const Setting& s : kSettings) {
        if (!(s.engines & unsigned(engine))) continue;
        if (name == s.name) return s;
        known += (known.empty() ? "" : ", ") + std::string(s.name);
    }
    throw Error("unknown setting \"" + name + "\" (known: " + known + ")");
}

int64_t check_setting(const Setting& s, int64_t value) {
    if (value < s.min || value > s.max)
        throw Error(std::string(s.name) + " must be between " + std::to_string(s.min) + " and " +
                    std::to_string(s.max));
    return value;
}

}  // namespace lww
