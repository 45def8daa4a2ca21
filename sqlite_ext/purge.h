// SQLite adapter: tombstone purge (lww_purge, and by itself during sync).
// The re-snapshot's engine side is SqliteEngine's (sync.h), in purge.cpp.
#pragma once
#include <cstdint>

#include "conn.h"

namespace lww::sq {

// Removes tombstones stamped more than `older_than_ms` ago that every server
// this database pushes to holds; raises the purge horizon. Returns how many.
size_t purge_tombstones(Conn& c, uint64_t older_than_ms);
// The same with lww_config('tombstone_ttl_ms'), when due (common/purge.h).
size_t auto_purge(Conn& c);

}  // namespace lww::sq
