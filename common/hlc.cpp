#include "hlc.h"

#include <chrono>
#include <string>

#include "error.h"

namespace lww {

uint64_t wall_clock_ms() {
    using namespace std::chrono;
    return static_cast<uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

uint64_t HybridClock::tick(uint64_t now_ms) {
    const uint64_t wall = hlc_pack(now_ms, 0);
    // The packed +1 carries a full counter into the millisecond field.
    last_ = wall > last_ ? wall : last_ + 1;
    return last_;
}

void HybridClock::check_drift(uint64_t remote, uint64_t now_ms, const NodeId& from) const {
    const uint64_t ms = hlc_millis(remote);
    if (ms > now_ms + max_drift_ms_) {
        throw Error("stamp from node " + from.str() + " is " + std::to_string((ms - now_ms) / 1000) +
                    " s ahead of this clock (max drift " + std::to_string(max_drift_ms_ / 1000) +
                    " s); refusing the change set: check that node's clock");
    }
}

}  // namespace lww
