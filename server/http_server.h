// The HTTP server: libmicrohttpd event threads (epoll) read and write every
// connection, so a slow or idle client costs a few KiB and no thread; a
// request whose body is complete is suspended and handed to a worker (one
// per pooled database connection), then resumed with its response.
#pragma once
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "handler.h"

namespace lwwgw {

// Request line plus headers must fit in this per-connection memory
// (libmicrohttpd answers 414 or 431 beyond it).
constexpr std::size_t kConnectionMemory = 32 * 1024;

class HttpServer {
public:
    explicit HttpServer(App& app);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Serves on `listen_fd` (bound and listening). False with `error` set.
    bool start(int listen_fd, std::string& error);

    // Stops accepting, lets the requests in flight finish (waiting at most
    // `grace` for those not in the database), then closes every connection.
    void stop(std::chrono::seconds grace);

    unsigned event_threads() const;
    std::size_t workers() const;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace lwwgw
