// lwwsync core: what a peer reached through libpq said outside a result —
// NOTICEs and WARNINGs of its statements, DEBUG lines a connection option
// asked for, the FATAL it sends before it hangs up — kept for the adapter to
// route (libpq's default prints them on the host app's stderr). The adapter
// installs a notice receiver that calls add(); nothing here includes libpq.
#pragma once
#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace lww {

// One line for a person: at most `max` bytes, cut at a character boundary,
// control characters (terminal escapes too) as spaces, runs of white space
// as one, bytes that are not UTF-8 as '?'.
std::string printable_line(std::string_view in, size_t max);

struct PeerNotice {
    enum class Level { debug, info, warning, fatal };  // fatal: ERROR, FATAL, PANIC
    Level level = Level::info;
    std::string text;  // printable_line of the primary message
};

class PeerNotices {
public:
    static constexpr size_t kKept = 8, kChars = 300;
    // From libpq's notice receiver: never throws (a C callback), keeps the
    // last kKept. `severity`: PG_DIAG_SEVERITY_NONLOCALIZED (or localized).
    void add(const char* severity, const char* message) noexcept;
    // Everything since the last take, oldest first.
    std::vector<PeerNotice> take();
    // The last lines above DEBUG, for an error message: "" or " (the peer said: …; …)".
    std::string said() const;

private:
    std::deque<PeerNotice> kept_;
    size_t fresh_ = 0;  // how many of kept_ take() has not returned
};

}  // namespace lww
