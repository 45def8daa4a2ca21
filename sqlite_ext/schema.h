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

}  // namespace lww::sq
