// lwwsync core: the one exception type the core throws. Adapters catch it at
// their C ABI boundary and turn it into an engine error (never let it escape):
// the kind picks the SQLSTATE (Postgres), the result code (SQLite) and, through
// the SQLSTATE, the gateway's HTTP status.
#pragma once
#include <stdexcept>
#include <string>

namespace lww {

enum class ErrorKind {
    bad_input,   // malformed or out-of-range input: 22000, HTTP 400
    permission,  // the caller may not do this: 42501, HTTP 403
    limit,       // a counter or size bound reached: 54000
    internal,    // damaged metadata, engine failure: XX000
    read_only,   // a push reached a server that cannot write (a hot standby): 25006, HTTP 503
};

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& msg, ErrorKind kind = ErrorKind::bad_input)
        : std::runtime_error(msg), kind_(kind) {}
    ErrorKind kind() const { return kind_; }

private:
    ErrorKind kind_;
};

// A principal acting beyond its rights: another's node id, a register stamped
// by a node bound to someone else, a table it may not write.
inline Error permission_denied(const std::string& msg) { return Error(msg, ErrorKind::permission); }

// A sync stopped because its engine asked it to (a query cancel, an app's
// lww_sync_cancel()); the adapter raises its own cancel error.
class Cancelled : public Error {
public:
    Cancelled() : Error("the sync was cancelled") {}
};

}  // namespace lww
