// The gateway's HTTP surface: POST /rpc/lww_exchange, GET /health, and the
// JSON errors (PostgREST's shape) with their HTTP statuses.
#pragma once
#include <string>

#include "config.h"
#include "pool.h"

namespace httplib {
class Server;
}

namespace lwwgw {

struct App {
    Config cfg;
    Pool pool;
};

// Routes, 100-continue check, error/exception handlers and the request logger.
void install_routes(httplib::Server& svr, App& app);

// The HTTP status for an error PostgreSQL raised (SQLSTATE), outside the
// connection-level cases the caller handles first.
int status_for_sqlstate(const std::string& sqlstate);

}  // namespace lwwgw
