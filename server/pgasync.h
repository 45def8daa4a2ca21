// Queries on a non-blocking libpq connection that also watch the HTTP
// client's socket: a client that goes away gets its query cancelled at once
// instead of leaving a transaction running (or waiting on a lock) for nobody.
#pragma once
#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace lwwgw {

using Result = std::unique_ptr<PGresult, void (*)(PGresult*)>;
using Clock = std::chrono::steady_clock;

enum class Exec {
    Done,        // `out` holds the first error result, else the last result (or null: see PQerrorMessage)
    ClientGone,  // the client closed its connection: the query was cancelled
    TimedOut,    // no answer before the deadline: the query was cancelled
    Broken,      // the connection failed (libpq's message in PQerrorMessage)
};

// Sends `sql` (several statements allowed when `params` is null, else one
// statement with text parameters) and waits for every result. While it
// waits it polls the client's socket (`client_fd`, -1 for none) for a hang-up.
// On ClientGone and TimedOut it has sent a cancel request and waited (at
// most ~2 s) for the backend to give up; the connection is then in a failed
// transaction, or still busy when pq_busy(c) says so (discard it).
Exec exec(PGconn* c, const std::string& sql, const std::vector<const char*>* params, int client_fd,
          Clock::time_point deadline, Result& out);

// True while libpq still waits for results of an earlier query.
bool pq_busy(PGconn* c);

// True when the peer of `fd` has closed or reset the connection.
bool peer_gone(int fd);

// Sleeps `ms`, returning early (false) when the client hangs up.
bool sleep_watching(int client_fd, int ms);

// ROLLBACK, bounded in time. True when the connection is idle outside a
// transaction afterwards, so it may be reused.
bool rollback(PGconn* c);

}  // namespace lwwgw
