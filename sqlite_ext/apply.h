// SQLite adapter: lww_apply — merge a change set, all or nothing.
#pragma once
#include <cstddef>
#include <string>

#include "../common/changeset.h"
#include "conn.h"

namespace lww::sq {

struct ApplyStats {
    size_t rows = 0;
    size_t received = 0;  // registers in the set
    size_t applied = 0;   // registers that won and were written
    size_t ignored = 0;   // registers older than (or equal to) what was here
    std::string json() const;
};

// Validates everything first (tables, columns, clock drift, origin), then
// merges inside one savepoint: on any error nothing of the set remains.
ApplyStats apply_changeset(Conn& c, const ChangeSet& cs);

}  // namespace lww::sq
