// PostgreSQL adapter: schema evolution (docs/SCHEMA.md). The event triggers
// of lwwsync 0.4 keep lwwsync.tables and the metadata in step with ALTER
// TABLE and DROP TABLE of tracked tables, in the DDL's own transaction;
// registers for tables and columns this database does not have yet wait in
// lwwsync.pending.
#pragma once
#include "principal.h"
#include "state.h"

#include "../../common/exchange.h"

namespace lww::pg {

// After lww_track: each register's attribute number, then what
// lwwsync.pending held for the table.
void after_track(Oid relid);
// Inside lww_apply: keeps plan_tables' pending part in lwwsync.pending,
// bounded per origin node. `own` (a caller that is not a relay): only
// registers stamped by the caller's own nodes are kept, the rest counted
// as rejected — nothing held here could be an echo.
void hold_pending(const ChangeSet& pending, const OwnStamps* own, ApplyCounts& stats);
// Merges what lwwsync.pending holds for the table with wire name `wire`,
// with the rights of the current role; returns the rows taken out.
size_t land_pending(const std::string& wire);

// lww_untrack: the register order into lwwsync.untracked, and per living
// row a hash of each register's value (value_hash, 8 bytes each, register
// order) into the metadata's column vh.
void remember_untracked(const TableInfo& t);
// lww_track resuming kept metadata: the register order to resume with (the
// remembered one, registers of columns dropped meanwhile retired in the
// blobs, new columns appended), or `current` when none was remembered.
std::vector<std::string> resume_registers(Oid relid, const std::string& meta, const std::vector<std::string>& current);
// The remembered order (empty: none) and whether the metadata holds hashes.
std::vector<std::string> remembered_registers(Oid relid);
// After resuming: hashes and order forgotten.
void forget_untracked(Oid relid, const std::string& meta);

}  // namespace lww::pg
