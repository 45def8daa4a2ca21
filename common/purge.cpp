#include "purge.h"

#include <charconv>

namespace lww {

uint64_t seq_older_than(const PurgeMarks& marks, uint64_t now_ms, uint64_t older_than_ms, uint64_t last_seq) {
    if (older_than_ms == 0) return last_seq;
    uint64_t seq = 0;
    for (const PurgeMark& m : marks)
        if (m.ms <= now_ms && now_ms - m.ms >= older_than_ms) seq = std::max(seq, m.seq);
    return std::min(seq, last_seq);
}

PurgeMarks record_mark(PurgeMarks marks, uint64_t now_ms, uint64_t seq, uint64_t ttl_ms) {
    if (!marks.empty() && now_ms >= marks.back().ms && now_ms - marks.back().ms < ttl_ms / 16) return marks;
    if (!marks.empty() && (now_ms < marks.back().ms || seq < marks.back().seq))
        marks.clear();  // a clock or a restore went back
    marks.push_back(PurgeMark{now_ms, seq});
    constexpr size_t kKept = 32;
    if (marks.size() > kKept) marks.erase(marks.begin(), marks.end() - kKept);
    return marks;
}

std::string format_marks(const PurgeMarks& marks) {
    std::string out;
    for (const PurgeMark& m : marks)
        out += (out.empty() ? "" : ",") + std::to_string(m.ms) + ":" + std::to_string(m.seq);
    return out;
}

PurgeMarks parse_marks(const std::string& text) {
    PurgeMarks out;
    const char* p = text.data();
    const char* end = p + text.size();
    while (p < end && out.size() < 64) {
        PurgeMark m;
        auto a = std::from_chars(p, end, m.ms);
        if (a.ec != std::errc() || a.ptr == end || *a.ptr != ':') return {};
        auto b = std::from_chars(a.ptr + 1, end, m.seq);
        if (b.ec != std::errc()) return {};
        out.push_back(m);
        p = b.ptr;
        if (p == end) break;
        if (*p++ != ',' || p == end) return {};
    }
    return out;
}

}  // namespace lww
