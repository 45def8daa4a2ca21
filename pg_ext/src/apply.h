// PostgreSQL adapter: lww_apply, and the retry of parked rows (apply.cpp).
#pragma once
#include "../../common/exchange.h"
#include "meta.h"

namespace lww::pg {

// `seen`: the sender holds this database's registers up to this sequence
// (0: unknown), for the `overwrote` count (common/apply.h, Receiver).
// `relayed`: receives the rows that landed bringing registers stamped by a
// third node (neither their sender nor us), each with its sender (cs.origin,
// or that of a parked row that landed now), for the no-echo rule.
// `adopt`: rows below this database's purge floor are adopted
// (common/apply.h, Receiver::adopt): pushes it serves.
ApplyCounts apply_changeset(const ChangeSet& cs, Trust trust = Trust::caller, uint64_t seen = 0,
                            RelayedRows* relayed = nullptr, bool adopt = false);
// The calling principal's parked rows (lww_rejected), retried with nothing
// else; `relayed` as for apply_changeset.
ApplyCounts retry_parked_rows(RelayedRows* relayed = nullptr);

}  // namespace lww::pg
