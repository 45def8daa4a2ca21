// SQLite adapter: schema evolution (docs/SCHEMA.md). SQLite has no DDL hook,
// so a connection notices schema changes itself (PRAGMA schema_version, read
// whenever an lwwsync function starts work) and brings the metadata of every
// tracked table in step: registers of new columns (backfilled at the lowest
// stamp), of dropped columns retired, of renamed columns renamed, triggers
// rebuilt. lww_alter(sql) runs DDL with the triggers out of the way (DROP
// COLUMN needs that). Registers for tables and columns this database does not
// have are held in lww_pending and land when they appear.
#pragma once
#include <string>
#include <vector>

#include "../common/changeset.h"
#include "conn.h"

namespace lww::sq {

// From Conn::ensure_ready: reconciles tracked tables when the schema changed
// since this connection last looked. Does nothing on a read-only connection.
void detect_schema_changes(Conn& c);
// lww_alter(sql): the DDL with every tracked table's triggers dropped, then
// each tracked table reconciled and its triggers rebuilt, in one savepoint.
// Returns a JSON summary.
std::string alter(Conn& c, const std::string& sql);
// Inside lww_apply's savepoint: keeps `pending` (plan_tables' pending part)
// in lww_pending, bounded per origin node. Returns the registers held.
size_t hold_pending(Conn& c, const ChangeSet& pending);
// Merges what lww_pending holds for `table` (after lww_track or a new
// column) through lww_apply's merge; whatever is still unknown stays held.
// Returns the rows taken out of the store.
size_t land_pending(Conn& c, const std::string& table);

// lww_untrack: each living row's values, hashed per register (value_hash),
// kept in the metadata (column vh), and the register order in lww_untracked,
// so that lww_track stamps only what changed meanwhile.
void remember_untracked(Conn& c, const TableInfo& t);
// lww_track of a table untracked before: the register order to resume with
// (the old one, dropped columns retired in the metadata, new ones appended),
// or `current` when nothing was remembered.
std::vector<std::string> resume_registers(Conn& c, const std::string& table, const std::vector<std::string>& current);
// lww_track, resuming: rows whose hashes were remembered get a local update
// of the registers whose value changed (none: untouched), registers of
// columns added meanwhile the backfill stamp. Returns the rows stamped.
int64_t resume_hashed(Conn& c, const std::string& table, const std::vector<std::string>& key,
                      const std::vector<std::string>& regs);

bool has_vh(Conn& c, const std::string& table);
// End of a resuming lww_track: the remembered hashes and order are gone.
void finish_resume(Conn& c, const std::string& table);

}  // namespace lww::sq
