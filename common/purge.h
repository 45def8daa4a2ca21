// lwwsync core: when a tombstone may be purged (docs/PROTOCOL.md, "Purge and
// re-snapshot"). The engines delete the metadata; the rule is here.
#pragma once
#include <algorithm>
#include <cstdint>

#include "hlc.h"

namespace lww {

// lww_config('tombstone_ttl_ms'): how long a delete is kept for peers that
// have not heard of it yet.
constexpr int64_t kDefaultTombstoneTtlMs = int64_t(30) * 24 * 60 * 60 * 1000;
// The purge that runs during sync runs at most this often (or every
// tombstone_ttl_ms, when shorter).
constexpr uint64_t kAutoPurgeEveryMs = 60 * 60 * 1000;

// Tombstones stamped before this clock value are older than `older_than_ms`
// at wall time `now_ms` (0: none is).
inline uint64_t purge_before_hlc(uint64_t now_ms, uint64_t older_than_ms) {
    return older_than_ms >= now_ms ? 0 : hlc_pack(now_ms - older_than_ms, 0);
}

// Whether the purge that runs during sync is due, the last one having run at
// `last_ms` (0: never).
inline bool auto_purge_due(uint64_t now_ms, uint64_t last_ms, uint64_t ttl_ms) {
    return last_ms == 0 || now_ms < last_ms || now_ms - last_ms >= std::min<uint64_t>(ttl_ms, kAutoPurgeEveryMs);
}

}  // namespace lww
