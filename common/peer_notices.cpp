#include "peer_notices.h"

#include <cstring>

#include "value.h"

namespace lww {

std::string printable_line(std::string_view in, size_t max) {
    std::string out;
    size_t i = 0;
    auto space = [&] {
        if (!out.empty() && out.back() != ' ' && out.size() < max) out.push_back(' ');
    };
    while (i < in.size()) {
        const unsigned char c = static_cast<unsigned char>(in[i]);
        const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n > 1 && i + n <= in.size() && valid_utf8(in.substr(i, n))) {
            if (out.size() + n > max) break;
            out.append(in.substr(i, n));
            i += n;
            continue;
        }
        if (n == 1 && (c <= 0x20 || c == 0x7F)) {
            space();
        } else {
            if (out.size() + 1 > max) break;
            out.push_back(n == 1 ? static_cast<char>(c) : '?');
        }
        ++i;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
}

namespace {

PeerNotice::Level level_of(const char* severity) {
    if (!severity) return PeerNotice::Level::info;
    if (!strncmp(severity, "DEBUG", 5)) return PeerNotice::Level::debug;
    if (!strcmp(severity, "WARNING")) return PeerNotice::Level::warning;
    if (!strcmp(severity, "ERROR") || !strcmp(severity, "FATAL") || !strcmp(severity, "PANIC"))
        return PeerNotice::Level::fatal;
    return PeerNotice::Level::info;  // NOTICE, INFO, LOG, a localized word
}

}  // namespace

void PeerNotices::add(const char* severity, const char* message) noexcept {
    try {
        PeerNotice n;
        n.level = level_of(severity);
        const std::string said = severity && *severity ? std::string(severity) + ": " + (message ? message : "")
                                                       : std::string(message ? message : "");
        n.text = printable_line(said, kChars);
        kept_.push_back(std::move(n));
        if (fresh_ < kKept) ++fresh_;
        while (kept_.size() > kKept) kept_.pop_front();
    } catch (...) {
        // Out of memory inside libpq's callback: the notice is lost, nothing else.
    }
}

std::vector<PeerNotice> PeerNotices::take() {
    std::vector<PeerNotice> out(kept_.end() - static_cast<std::ptrdiff_t>(fresh_), kept_.end());
    fresh_ = 0;
    return out;
}

std::string PeerNotices::said() const {
    std::string out;
    size_t shown = 0;
    for (auto it = kept_.rbegin(); it != kept_.rend() && shown < 3; ++it) {
        if (it->level == PeerNotice::Level::debug) continue;
        out = it->text + (out.empty() ? "" : "; ") + out;
        ++shown;
    }
    return out.empty() ? "" : " (the peer said: " + out + ")";
}

}  // namespace lww
