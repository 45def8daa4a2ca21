// libFuzzer target: lww::parse_sync_options, the options argument of
// lww_sync(url, options) (SQL callers, apps passing user settings through).
// Whatever it accepts lies within the documented bounds.
#include <optional>

#include "../../../common/sync_options.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::optional<lww::SyncOptions> o;
    if (!fuzz::only_lww_errors("parse_sync_options", [&] { o = lww::parse_sync_options(fuzz::as_text(data, size)); }))
        return 0;
    FUZZ_CHECK(o->limits.rows >= 1 && o->limits.rows <= lww::kMaxBatchRows);
    FUZZ_CHECK(o->limits.bytes >= 1024 && o->limits.bytes <= lww::kMaxBatchBytes);
    FUZZ_CHECK(o->timeout_ms >= 1 && o->timeout_ms <= 86400000);
    FUZZ_CHECK(o->connect_timeout_ms >= 1 && o->connect_timeout_ms <= 3600000);
    FUZZ_CHECK(o->retries >= 0 && o->retries <= 100);
    return 0;
}
