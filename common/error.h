// lwwsync core: the one exception type the core throws. Adapters catch it at
// their C ABI boundary and turn it into an engine error (never let it escape).
#pragma once
#include <stdexcept>
#include <string>

namespace lww {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace lww
