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

// A sync stopped because its engine asked it to (a query cancel, an app's
// lww_sync_cancel()); the adapter raises its own cancel error.
class Cancelled : public Error {
public:
    Cancelled() : Error("the sync was cancelled") {}
};

}  // namespace lww
