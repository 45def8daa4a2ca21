// Shared by the libFuzzer targets. The contract under test: a decoder of
// untrusted input either returns or throws lww::Error (or a subclass).
// Anything else escaping it, a sanitizer report, or a broken property is a
// finding: we abort so libFuzzer saves the input and prints the stack.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <exception>
#include <string_view>
#include <typeinfo>

#include "../../../common/error.h"

namespace fuzz {

// Set by run_fuzz.sh while fuzzing: steer clear of the open findings listed
// in tests/security/findings/README.md, so a run can find new ones (their
// reproducers are replayed separately, without this).
inline bool skip_known() {
    static const bool skip = [] {
        const char* s = std::getenv("FUZZ_SKIP_KNOWN");
        return s && *s == '1';
    }();
    return skip;
}

// FINDING rapidjson-full-precision (tests/security/findings/README.md):
// rapidjson 1.1.0 reads numbers off its fast path (more than 15 significant
// digits, or a decimal exponent beyond +-22) wrongly, nondeterministically,
// or by reading out of bounds. While that finding is open, fuzzing passes
// over JSON with such numbers (outside strings) when skip_known().
inline bool slow_path_number(std::string_view t) {
    size_t i = 0, digits = 0, frac = 0;
    bool neg = false, dot = false;
    if (i < t.size() && t[i] == '-') neg = true, ++i;
    bool leading = true;  // leading zeros are not significant
    std::string mag;
    for (; i < t.size(); ++i) {
        const char c = t[i];
        if (c >= '0' && c <= '9') {
            if (dot) ++frac;
            if (c != '0' || !leading) leading = false, ++digits, mag += c;
        } else if (c == '.' && !dot) {
            dot = true;
        } else {
            break;
        }
    }
    long exp = 0;
    bool has_exp = false;
    if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
        has_exp = true;
        ++i;
        bool eneg = false;
        if (i < t.size() && (t[i] == '+' || t[i] == '-')) eneg = t[i++] == '-';
        for (; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i) exp = exp < 100000 ? exp * 10 + (t[i] - '0') : exp;
        if (eneg) exp = -exp;
    }
    if (!dot && !has_exp) {  // an integer: rapidjson takes it exactly while it fits 64 bits
        const std::string lim = neg ? "9223372036854775808" : "18446744073709551615";
        return mag.size() > lim.size() || (mag.size() == lim.size() && mag > lim);
    }
    const long p = exp - static_cast<long>(frac);
    return digits > 15 || p > 22 || p < -22;
}

inline bool has_slow_path_number(std::string_view t) {
    bool in_string = false;
    for (size_t i = 0; i < t.size(); ++i) {
        const char c = t[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i + 1;
            while (j < t.size() && std::strchr("0123456789.eE+-", t[j]) && t[j] != '\0') ++j;
            if (slow_path_number(t.substr(i, j - i))) return true;
            i = j - 1;
        }
    }
    return false;
}

// FINDING changeset-lone-surrogate-name: a name (table, key or column) may
// hold an escaped lone low surrogate ("\udc00"), which decodes to bytes that
// are not UTF-8, so the encoded set is refused. Values are checked; names
// are not. This spots such escapes (not part of a pair) anywhere.
inline bool has_lone_low_surrogate(std::string_view t) {
    auto hex4 = [&](size_t i, unsigned& v) {
        if (i + 6 > t.size() || t[i] != '\\' || t[i + 1] != 'u') return false;
        v = 0;
        for (size_t k = i + 2; k < i + 6; ++k) {
            const char c = t[k];
            const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) return false;
            v = v * 16 + unsigned(d);
        }
        return true;
    };
    for (size_t i = 0; i + 6 <= t.size(); ++i) {
        unsigned v = 0, prev = 0;
        if (!hex4(i, v) || v < 0xDC00 || v > 0xDFFF) continue;
        if (!(i >= 6 && hex4(i - 6, prev) && prev >= 0xD800 && prev <= 0xDBFF)) return true;
    }
    return false;
}

// True when the input is to be passed over (see above).
inline bool skip_json(std::string_view t) {
    return skip_known() && (has_slow_path_number(t) || has_lone_low_surrogate(t));
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

[[noreturn]] inline void finding(const char* what, const char* detail) {
    std::fprintf(stderr, "\nFINDING: %s: %s\n", what, detail);
    std::fflush(stderr);
    std::abort();
}

// Runs `f`; lww::Error means "refused", which is fine. Returns whether `f`
// returned normally.
template <class F>
bool only_lww_errors(const char* what, F&& f) {
    try {
        f();
        return true;
    } catch (const lww::Error&) {
        return false;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\nFINDING: %s threw %s (not lww::Error): %s\n", what, typeid(e).name(), e.what());
        std::fflush(stderr);
        std::abort();
    } catch (...) {
        finding(what, "threw something that is not a std::exception");
    }
}

// Runs `f`, which must not throw at all (a property of valid input).
template <class F>
void must_not_throw(const char* what, F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\nFINDING: %s threw %s: %s\n", what, typeid(e).name(), e.what());
        std::fflush(stderr);
        std::abort();
    } catch (...) {
        finding(what, "threw something that is not a std::exception");
    }
}

}  // namespace fuzz

#define FUZZ_CHECK(cond)                                                                       \
    do {                                                                                       \
        if (!(cond)) ::fuzz::finding("property does not hold", #cond " (" __FILE__ ")");       \
    } while (0)
