// lwwsync-server configuration: command-line flags, LWWSYNC_* environment
// variables and a PostgREST-style config file, in that order of precedence.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>

namespace lwwgw {

inline constexpr const char* kVersion = "0.2";

struct Config {
    std::string db_uri;  // libpq URI or key=value string
    // A streaming replica of db_uri (empty: none). Pull-only exchanges run
    // there in read-only transactions; pushes, and pulls it cannot take
    // (unreachable), go to db_uri. Its pool has db_pool connections too.
    std::string db_read_uri;
    std::string db_anon_role;  // empty: requests without a token get 401
    std::size_t db_pool = 10;
    std::size_t db_pool_acquisition_timeout = 10;  // seconds
    std::string jwt_secret;                        // empty: requests with a token get 401
    std::string server_host = "127.0.0.1";
    int server_port = 3000;
    std::size_t max_body_bytes = std::size_t(64) << 20;
    // Each exchange transaction: SET LOCAL statement_timeout / lock_timeout
    // (milliseconds; 0 leaves the database's setting). A timed-out exchange answers 504, a lock
    // wait that gave up 503, both with Retry-After.
    std::size_t db_statement_timeout_ms = 30000;
    std::size_t db_lock_timeout_ms = 10000;
    // HTTP limits (seconds / counts, 0 = no limit for the connection caps):
    std::size_t server_request_timeout = 60;  // to receive one request (headers + body), or to send one response
    std::size_t server_idle_timeout = 10;     // a connection with no traffic at all is closed
    std::size_t server_max_connections = 1000;
    std::size_t server_max_connections_per_ip = 32;
};

// Role names PostgreSQL treats specially in SET ROLE (none: back to the
// login role!) or reserves (public, pg_*): never taken from a token or as
// db-anon-role. Compared case-insensitively.
bool reserved_role(const std::string& role);

// A configuration the server must not start with; main prints it and exits 2.
struct ConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class Action { Run, Help, Version };

// Reads flags (argv), then the environment, then the config file named by
// --config or LWWSYNC_CONFIG; the first source that sets an option wins.
// Throws ConfigError on an unknown flag, a bad value, a missing db-uri or a
// jwt-secret shorter than 32 characters. Unknown config-file keys (say, a
// PostgREST file's db-schemas) are reported through `warn` and ignored.
Action load_config(int argc, char** argv, Config& out, void (*warn)(const std::string&));

// --help text: every option with its flag, environment variable and default.
std::string usage();

}  // namespace lwwgw
