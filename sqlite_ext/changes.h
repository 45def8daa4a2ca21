// SQLite adapter: lww_changes — registers changed after a local sequence.
#pragma once
#include <cstdint>
#include <string>

#include "../common/exchange.h"
#include "conn.h"

namespace lww::sq {

// O(changes since): walks the per-table sequence index, never the table.
Batch collect_changes(Conn& c, const ChangesRequest& req);

// Highest committed local change sequence (what a cursor may safely reach).
uint64_t committed_seq(Conn& c);

}  // namespace lww::sq
