// lwwsync core: the hybrid logical clock (docs/ARCHITECTURE.md, "Clocks and sequences").
// A stamp packs 48 bits of Unix milliseconds over a 16-bit counter into one
// uint64, so comparing packed values compares (ms, counter).
#pragma once
#include <cstdint>

#include "node_id.h"

namespace lww {

constexpr uint64_t kDefaultMaxDriftMs = 5 * 60 * 1000;
// A client adopts the clock of the server it chose to sync with (its own may
// run behind), but not without bound: a server more than a day ahead of the
// client's wall clock is refused, so one hostile or broken server cannot
// drag the client's stamps far past what every other peer accepts.
constexpr uint64_t kMaxTrustedAheadMs = 24 * 60 * 60 * 1000;
// Stamps past this millisecond (about the year 6400) are not stamps but bad
// input: below it a packed stamp stays under 2^63 (it is stored as a signed
// 64-bit integer) and the clock can tick for millennia without wrapping.
constexpr uint64_t kMaxStampMillis = (uint64_t(1) << 47) - 1;

inline uint64_t hlc_pack(uint64_t ms, uint16_t counter) { return (ms << 16) | counter; }
inline uint64_t hlc_millis(uint64_t hlc) { return hlc >> 16; }
inline uint16_t hlc_counter(uint64_t hlc) { return static_cast<uint16_t>(hlc & 0xFFFF); }
inline bool valid_stamp(uint64_t hlc) { return hlc != 0 && hlc_millis(hlc) <= kMaxStampMillis; }

uint64_t wall_clock_ms();

class HybridClock {
public:
    // A local event: strictly greater than every stamp issued or observed so
    // far, and at least the wall clock. When the counter of the current
    // millisecond is exhausted the clock borrows the next millisecond.
    uint64_t tick(uint64_t now_ms);

    // After merging a stamp from elsewhere: the next tick will beat it.
    // Stamps past kMaxStampMillis never get here: decoders refuse them.
    void observe(uint64_t remote) {
        if (remote > last_ && hlc_millis(remote) <= kMaxStampMillis) last_ = remote;
    }

    // Refuses a stamp more than max_drift_ms (or `limit_ms`) ahead of now_ms;
    // the error names the node whose clock is wrong.
    void check_drift(uint64_t remote, uint64_t now_ms, const NodeId& from) const {
        check_drift(remote, now_ms, from, max_drift_ms_);
    }
    static void check_drift(uint64_t remote, uint64_t now_ms, const NodeId& from, uint64_t limit_ms);

    uint64_t last() const { return last_; }
    uint64_t max_drift_ms() const { return max_drift_ms_; }
    void set_max_drift_ms(uint64_t ms) { max_drift_ms_ = ms; }

private:
    uint64_t last_ = 0;
    uint64_t max_drift_ms_ = kDefaultMaxDriftMs;
};

}  // namespace lww
