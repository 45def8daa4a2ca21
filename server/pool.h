// A fixed-size pool of libpq connections, opened on demand.
#pragma once
#include <libpq-fe.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace lwwgw {

// Every connection stayed busy for the whole acquisition timeout.
struct PoolTimeout : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The caller's client went away while it waited for a connection.
struct Abandoned : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A new connection could not be opened (server down, bad credentials...);
// what() is libpq's message.
struct ConnectFailed : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Pool {
public:
    Pool(std::string conninfo, std::size_t size, std::chrono::milliseconds acquire_timeout);
    ~Pool();
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    // One connection, back to the pool when the lease ends.
    class Lease {
    public:
        Lease(Pool* pool, PGconn* conn) : pool_(pool), conn_(conn) {}
        Lease(Lease&& o) noexcept : pool_(o.pool_), conn_(o.conn_), broken_(o.broken_) { o.pool_ = nullptr; }
        Lease& operator=(Lease&&) = delete;
        ~Lease();
        PGconn* get() const { return conn_; }
        // Close the connection rather than reuse it (dead, or state unknown).
        void discard() { broken_ = true; }

    private:
        Pool* pool_;
        PGconn* conn_;
        bool broken_ = false;
    };

    // An idle connection, else a new one while fewer than `size` are open,
    // else waits for one to come back. Throws PoolTimeout or ConnectFailed;
    // Abandoned when `abandoned` (checked every 100 ms while waiting) says
    // nobody wants the answer any more. Connections are in libpq's
    // non-blocking mode: callers run queries asynchronously (pgasync.h).
    Lease acquire(const std::function<bool()>& abandoned = {});

    // Closes every idle connection: when one turns out dead the server has
    // usually restarted, and its idle siblings are dead too.
    void drop_idle();

    // Opens one connection and closes it: throws ConnectFailed (startup check).
    void probe();

    std::size_t size() const { return size_; }

private:
    PGconn* connect();
    void release(PGconn* conn, bool broken);

    const std::string conninfo_;
    const std::size_t size_;
    const std::chrono::milliseconds timeout_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<PGconn*> idle_;
    std::size_t open_ = 0;  // idle + leased + being opened
};

// A libpq message ("...failed: ...\n\tIs the server running...") on one
// line, for JSON bodies and log lines.
std::string one_line(const std::string& libpq_message);

}  // namespace lwwgw
