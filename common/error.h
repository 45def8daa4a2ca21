// lwwsync core: the one exception type the core throws. Adapters catch it at
// their C ABI boundary and turn it into an engine error (never let it escape):
// the kind picks the SQLSTATE (Postgres), the result code (SQLite) and, through
// the SQLSTATE, the gateway's HTTP status.
#pragma once
#include <stdexcept>
#include <string>

namespace lww {

// Each kind maps to one SQLSTATE (pg_ext/src/guard.h), one SQLite result
// code (sqlite_ext/lwwsync.cpp) and, through the SQLSTATE, one HTTP status
// of the gateway (server/handler.cpp); the table is in docs/ERRORS.md.
enum class ErrorKind {
    bad_input,   // malformed or out-of-range input: 22000, SQLITE_ERROR, HTTP 400
    not_found,   // an object that is not there (a table, a tracked table): 42704, SQLITE_ERROR, HTTP 404
    limit,       // a counter or size bound reached: 54000, SQLITE_TOOBIG, HTTP 413
    drift,       // a stamp too far ahead of this clock: 22008, SQLITE_ERROR, HTTP 409
    conflict,    // the object is busy or taken (a sync already running): 55006, SQLITE_BUSY, HTTP 409
    permission,  // the caller may not do this: 42501, SQLITE_PERM, HTTP 403
    read_only,   // a write reached a database that cannot write (a hot standby): 25006, SQLITE_READONLY, HTTP 503
    cancelled,   // the caller asked to stop: 57014, SQLITE_ABORT, HTTP 504
    internal,    // damaged metadata, engine failure: XX000, SQLITE_INTERNAL, HTTP 500
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
    Cancelled() : Error("the sync was cancelled", ErrorKind::cancelled) {}
};

}  // namespace lww
