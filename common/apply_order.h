// lwwsync core: the order in which lww_apply writes the tables of a batch, so
// that foreign keys hold row by row: parents before children for rows that
// live (inserts, updates), children before parents for deletes.
#pragma once
#include <cstddef>
#include <vector>

namespace lww {

// `parents[i]`: the tables table i references (foreign keys), as indices.
// Returns every index once, each table after the tables it references.
// Tables on a cycle (a self reference included) keep their relative input
// order; rows there that still fail are retried after the rest of the batch
// (the engines' parking loop), so no order is lost by it.
std::vector<size_t> parents_first(const std::vector<std::vector<size_t>>& parents);

}  // namespace lww
