#include "hlc.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "error.h"

namespace lww {

uint64_t wall_clock_ms() {
    using namespace std::chrono;
    return static_cast<uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

uint64_t HybridClock::tick(uint64_t now_ms) {
    const uint64_t wall = hlc_pack(std::min(now_ms, kMaxStampMillis), 0);
    // The packed +1 carries a full counter into the millisecond field; it
    // never reaches bit 63 (observe and the decoders keep stamps below
    // kMaxStampMillis), but a clock at the very end refuses rather than wraps.
    const uint64_t next = wall > last_ ? wall : last_ + 1;
    if (hlc_millis(next) > kMaxStampMillis)
        throw Error("the hybrid logical clock is exhausted (it reached the year 6400)", ErrorKind::limit);
    last_ = next;
    return last_;
}

void HybridClock::check_drift(uint64_t remote, uint64_t now_ms, const NodeId& from, uint64_t limit_ms) {
    const uint64_t ms = hlc_millis(remote);
    if (ms > now_ms + limit_ms) {
        throw Error("stamp from node " + from.str() + " is " + std::to_string((ms - now_ms) / 1000) +
                        " s ahead of this clock (max drift " + std::to_string(limit_ms / 1000) +
                        " s); refusing the change set: check that node's clock",
                    ErrorKind::drift);
    }
}

}  // namespace lww
