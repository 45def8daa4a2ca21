// SQLite adapter: lww_track / lww_untrack — metadata tables and triggers.
#pragma once
#include <cstdint>
#include <string>

#include "conn.h"

namespace lww::sq {

// Columns whose NEW/OLD pairs fit SQLite's 127-argument function limit.
constexpr size_t kMaxPairColumns = 63;

// Returns the number of existing rows that received their first stamps.
int64_t track_table(Conn& c, const std::string& table);
// Returns true when the table was tracked.
bool untrack_table(Conn& c, const std::string& table);
// Recreates every tracked table's triggers (a database from an older schema
// version: see Conn::ensure_ready).
void upgrade_triggers(Conn& c);

}  // namespace lww::sq
