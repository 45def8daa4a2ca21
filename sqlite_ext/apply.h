// SQLite adapter: lww_apply — merge a change set, all or nothing.
#pragma once
#include <cstddef>
#include <string>

#include "../common/changeset.h"
#include "../common/exchange.h"
#include "conn.h"

namespace lww::sq {

// received: registers in the set; applied: registers that won and were
// written; ignored: registers older than (or equal to) what was here.

// Rows kept in lww_rejected at most; past it, the rows parked longest ago
// are dropped.
constexpr int64_t kMaxRejectedRows = 1000;

// Validates everything first (tables, columns, clock drift, origin), then
// merges inside one savepoint: on any error nothing of the set remains.
// trust_peer skips the drift check (a client applying its server's batch).
// `seen`: the sender holds this database's registers up to this sequence
// (0: unknown), for the `overwrote` count (common/apply.h, Receiver).
// `relayed`: receives the sequences of rows that landed bringing registers
// stamped by a third node (neither the row's sender nor us), each with its
// sender — cs.origin, or the origin of a row parked earlier that landed now —
// for the no-echo rule and the re-snapshot's probes.
// `restamp`: a row arriving at a lower generation than held gets a new stamp
// here (common/apply.h, Receiver::restamp): pulls from a server that purges.
// `adopt`: rows below this database's purge floor are adopted
// (common/apply.h, Receiver::adopt): pushes it serves.
ApplyCounts apply_changeset(Conn& c, const ChangeSet& cs, Trust trust = Trust::caller, uint64_t seen = 0,
                            RelayedRows* relayed = nullptr, bool restamp = false, bool adopt = false);
// The rows lww_rejected holds, retried with nothing else (once per sync);
// `relayed` as for apply_changeset.
ApplyCounts retry_rejected(Conn& c, RelayedRows* relayed = nullptr);

}  // namespace lww::sq
