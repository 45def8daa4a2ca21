// SQLite adapter: lww_track / lww_untrack — metadata tables and triggers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "conn.h"

namespace lww::sq {

// Columns whose NEW/OLD pairs fit SQLite's 127-argument function limit.
constexpr size_t kMaxPairColumns = 63;

// Returns the number of existing rows that received their first stamps.
int64_t track_table(Conn& c, const std::string& table);
// Returns true when the table was tracked.
bool untrack_table(Conn& c, const std::string& table);
// Brings a database from an older schema version to the current metadata
// layout and recreates every tracked table's triggers (Conn::upgrade_schema).
void upgrade_metadata(Conn& c);

// Schema evolution (evolve.cpp): whether `table` exists; its non-key stored
// columns in table order (and its key); triggers dropped, or rebuilt for
// `registers` (the register order).
bool table_exists(Conn& c, const std::string& table);
std::vector<std::string> table_columns(Conn& c, const std::string& table, std::vector<std::string>* key = nullptr);
void drop_table_triggers(Conn& c, const std::string& table);
void rebuild_triggers(Conn& c, const std::string& table, const std::vector<std::string>& registers);

// A JSON array of names, as lww_tables stores column lists.
std::string json_array(const std::vector<std::string>& names);

}  // namespace lww::sq
