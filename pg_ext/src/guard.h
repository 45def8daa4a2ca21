// PostgreSQL adapter: the boundary between C++ and the backend.
//
// - pg_call(f): runs backend code that may ereport. A Postgres error is caught
//   with PG_TRY, copied, and rethrown as a C++ PgError, so the longjmp never
//   crosses a C++ frame. A C++ exception thrown by f is caught inside PG_TRY
//   and rethrown after PG_END_TRY, so it never leaves PG_exception_stack and
//   error_context_stack pointing into a dead frame.
//   The rule for f, since a longjmp skips every destructor in f's frame: call
//   backend functions and write results to variables declared outside f
//   (scalars, Datums, pointers into palloc'd memory, fixed elements of
//   containers sized before the call); read C++ objects built before the call
//   (.c_str(), .data(), size()). Never construct, assign, append to or resize
//   an object with a destructor (std::string, std::vector, temporaries from
//   operator+ or std::to_string), and never throw: build strings before the
//   call, copy palloc'd results into C++ objects after it returns.
// - guarded_entry(name, f): every extern "C" function body runs inside it.
//   Exceptions are caught, the C++ scope is left, and only then the error is
//   raised with ereport/ReThrowError.
#pragma once
#include "pg.h"

#include <exception>

#include "../../common/error.h"

namespace lww::pg {

class PgError : public std::exception {
public:
    explicit PgError(ErrorData* e) : data_(e) {}
    const char* what() const noexcept override { return data_ && data_->message ? data_->message : "postgres error"; }
    ErrorData* data() const { return data_; }

private:
    ErrorData* data_;  // palloc'd in the caller's memory context
};

template <class F>
void pg_call(F&& f) {
    MemoryContext ctx = CurrentMemoryContext;
    ErrorData* edata = nullptr;
    // Set only on the normal path, before PG_END_TRY: no longjmp follows, so
    // it needs no volatile. PG_TRY/PG_END_TRY save and restore both
    // PG_exception_stack and error_context_stack, on this path too.
    std::exception_ptr cpp_error;
    PG_TRY();
    {
        try {
            f();
        } catch (...) {
            cpp_error = std::current_exception();
        }
    }
    PG_CATCH();
    {
        // Outlives SPI_finish (which frees the procedure's memory) until
        // the entry point rethrows it; freed with the transaction.
        MemoryContextSwitchTo(TopTransactionContext);
        edata = CopyErrorData();
        FlushErrorState();
        MemoryContextSwitchTo(ctx);
    }
    PG_END_TRY();
    if (edata) throw PgError(edata);
    if (cpp_error) {
        MemoryContextSwitchTo(ctx);
        std::rethrow_exception(cpp_error);
    }
}

// One SQLSTATE per kind (docs/ERRORS.md); the gateway's HTTP status follows it.
inline int sqlstate_of(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::not_found: return ERRCODE_UNDEFINED_OBJECT;           // 42704: HTTP 404
        case ErrorKind::limit: return ERRCODE_PROGRAM_LIMIT_EXCEEDED;         // 54000: HTTP 413
        case ErrorKind::drift: return ERRCODE_DATETIME_FIELD_OVERFLOW;        // 22008: HTTP 409
        case ErrorKind::conflict: return ERRCODE_OBJECT_IN_USE;               // 55006: HTTP 409
        case ErrorKind::permission: return ERRCODE_INSUFFICIENT_PRIVILEGE;    // 42501: HTTP 403
        case ErrorKind::read_only: return ERRCODE_READ_ONLY_SQL_TRANSACTION;  // 25006: HTTP 503, push elsewhere
        case ErrorKind::cancelled: return ERRCODE_QUERY_CANCELED;             // 57014: HTTP 504
        case ErrorKind::internal: return ERRCODE_INTERNAL_ERROR;              // XX000: HTTP 500
        case ErrorKind::bad_input: break;
    }
    return ERRCODE_DATA_EXCEPTION;  // 22000: HTTP 400
}

// Raises the error held in the static buffer; never returns.
[[noreturn]] void raise_error(const char* fn, int sqlstate, const char* msg);

template <class F>
Datum guarded_entry(const char* fn, F&& body) {
    ErrorData* pg_error = nullptr;
    int sqlstate = ERRCODE_DATA_EXCEPTION;
    static char msg[4096];
    msg[0] = '\0';
    {
        try {
            return body();
        } catch (const PgError& e) {
            pg_error = e.data();
        } catch (const Cancelled& e) {
            // libcurl saw QueryCancelPending/ProcDiePending and unwound; the
            // interrupt itself is raised here, outside every C++ frame.
            sqlstate = ERRCODE_QUERY_CANCELED;
            strlcpy(msg, e.what(), sizeof msg);
        } catch (const Error& e) {
            sqlstate = sqlstate_of(e.kind());
            strlcpy(msg, e.what(), sizeof msg);
        } catch (const std::exception& e) {
            strlcpy(msg, e.what(), sizeof msg);
        } catch (...) {
            strlcpy(msg, "unknown internal error", sizeof msg);
        }
    }
    // No C++ object is alive past this point.
    if (pg_error) ReThrowError(pg_error);
    if (sqlstate == ERRCODE_QUERY_CANCELED) CHECK_FOR_INTERRUPTS();
    raise_error(fn, sqlstate, msg);
}

}  // namespace lww::pg
