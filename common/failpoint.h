// lwwsync core: failpoints for fault tests. LWWSYNC_FAILPOINT=name[:n] makes
// the n-th (default first) pass through failpoint "name" in this process end
// it at once, as kill -9 would: no destructors, no commit, no cleanup. Unset
// (always, outside tests) it costs one getenv per process.
#pragma once
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

namespace lww {

inline void failpoint(const char* name) {
    static const char* spec = std::getenv("LWWSYNC_FAILPOINT");
    static std::atomic<long> passes{0};
    if (!spec || !*spec) return;
    const size_t n = std::strlen(name);
    if (std::strncmp(spec, name, n) != 0 || (spec[n] != '\0' && spec[n] != ':')) return;
    const long at = spec[n] == ':' ? std::atol(spec + n + 1) : 1;
    if (++passes >= at) std::_Exit(137);
}

}  // namespace lww
