// SQLite adapter: lww_changes — registers changed after a local sequence.
#pragma once
#include <cstdint>
#include <string>

#include "conn.h"

namespace lww::sq {

struct ChangesRequest {
    uint64_t since = 0;               // registers changed after this sequence
    uint64_t after = 0;               // of rows whose latest change is after this one (>= since)
    int64_t limit = -1;               // max rows; <= 0: everything
    const NodeId* skip_node = nullptr;  // omit registers stamped by the receiver itself
};

struct ChangesResult {
    std::string json;
    uint64_t upto = 0;
    bool complete = true;
    size_t rows = 0;
};

// O(changes since): walks the per-table sequence index, never the table.
ChangesResult collect_changes(Conn& c, const ChangesRequest& req);

// Highest committed local change sequence (what a cursor may safely reach).
uint64_t committed_seq(Conn& c);

}  // namespace lww::sq
