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

#define FUZZ_CHECK(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) ::fuzz::finding("property does not hold", #cond " (" __FILE__ ")"); \
    } while (0)
