// PostgreSQL adapter: lww_track and lww_untrack (track.cpp).
#pragma once
#include "meta.h"

namespace lww::pg {

int64_t track_table(Oid relid);
bool untrack_table(Oid relid);

}  // namespace lww::pg
