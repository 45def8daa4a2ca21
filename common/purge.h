// lwwsync core: when a tombstone may be purged (docs/PROTOCOL.md, "Purge and
// re-snapshot"). The engines delete the metadata; the rule is here.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "hlc.h"

namespace lww {

// lww_config('tombstone_ttl_ms'): how long a delete is kept for peers that
// have not heard of it yet.
constexpr int64_t kDefaultTombstoneTtlMs = int64_t(30) * 24 * 60 * 60 * 1000;
// The purge that runs during sync runs at most this often (or every
// tombstone_ttl_ms, when shorter).
constexpr uint64_t kAutoPurgeEveryMs = 60 * 60 * 1000;

// Whether the purge that runs during sync is due, the last one having run at
// `last_ms` (0: never).
inline bool auto_purge_due(uint64_t now_ms, uint64_t last_ms, uint64_t ttl_ms) {
    return last_ms == 0 || now_ms < last_ms || now_ms - last_ms >= std::min<uint64_t>(ttl_ms, kAutoPurgeEveryMs);
}

// A tombstone's age is how long this database has held it, not its stamp
// (a delete made offline a month ago and merged today is new here): marks
// (wall time, the last change sequence handed out then), recorded as purges
// run, say which sequences are at least that old.
struct PurgeMark {
    uint64_t ms = 0, seq = 0;
};
using PurgeMarks = std::vector<PurgeMark>;

// The highest sequence this database had handed out `older_than_ms` before
// `now_ms` (0: none known that old). 0 ms: `last_seq`, everything.
uint64_t seq_older_than(const PurgeMarks& marks, uint64_t now_ms, uint64_t older_than_ms, uint64_t last_seq);
// `marks` with (now_ms, seq) recorded: one mark per sixteenth of the
// horizon at most, the newest 32 kept (they span twice the horizon).
PurgeMarks record_mark(PurgeMarks marks, uint64_t now_ms, uint64_t seq, uint64_t ttl_ms);
// As stored in the engine's state table: "ms:seq,ms:seq". Damaged text reads as none.
std::string format_marks(const PurgeMarks& marks);
PurgeMarks parse_marks(const std::string& text);

}  // namespace lww
