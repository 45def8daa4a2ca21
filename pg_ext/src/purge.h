// PostgreSQL adapter: lww_purge (purge.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

namespace lww::pg {

// lww_purge: removes tombstones stamped more than `older_than_ms` ago that
// every server this database pushes to holds; raises the purge horizon.
size_t purge_tombstones(uint64_t older_than_ms);

}  // namespace lww::pg
