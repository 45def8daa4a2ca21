// lwwsync-server: configuration, the listening socket, signals.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "config.h"
#include "handler.h"
#include "http_server.h"
#include "log.h"

namespace {

void warn(const std::string& msg) { std::cerr << "lwwsync-server: warning: " << msg << "\n"; }

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char c : lwwgw::utf8_or_replaced(s)) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
            continue;
        }
        out += c;
    }
    return out + "\"";
}

// Our own listening socket, so that a taken port is a clean exit 1, and with
// SO_REUSEADDR only: SO_REUSEPORT would let a second server bind the same
// port and silently take half the requests.
int listen_on(const std::string& host, int port, std::string& error) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string service = std::to_string(port);
    if (const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res)) {
        error = gai_strerror(rc);
        return -1;
    }
    int fd = -1;
    for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) continue;
        int yes = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
            error = std::strerror(errno);
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

// Every connection is a descriptor: raise the soft limit to what the
// connection cap needs (database connections, listening socket, epoll and
// a margin on top), as far as the hard limit allows.
void raise_fd_limit(std::size_t connections, std::size_t pool) {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    const rlim_t want = static_cast<rlim_t>(connections + 2 * pool + 64);
    if (rl.rlim_cur >= want) return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? want : std::min(want, rl.rlim_max);
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
        lwwgw::log_event("warning", "the file descriptor limit (" + std::to_string(rl.rlim_cur) +
                                        ") is below server-max-connections plus the pool: raise ulimit -n");
}

}  // namespace

int main(int argc, char** argv) {
    using namespace lwwgw;
    Config cfg;
    try {
        switch (load_config(argc, argv, cfg, warn)) {
            case Action::Help: std::cout << usage(); return 0;
            case Action::Version: std::cout << "lwwsync-server " << kVersion << "\n"; return 0;
            case Action::Run: break;
        }
    } catch (const ConfigError& e) {
        std::cerr << "lwwsync-server: " << e.what() << "\nTry 'lwwsync-server --help'.\n";
        return 2;
    }
    char* parse_error = nullptr;
    if (PQconninfoOption* opts = PQconninfoParse(cfg.db_uri.c_str(), &parse_error)) {
        PQconninfoFree(opts);
    } else {
        std::cerr << "lwwsync-server: invalid db-uri: " << (parse_error ? parse_error : "out of memory")
                  << "Try 'lwwsync-server --help'.\n";
        PQfreemem(parse_error);
        return 2;
    }

    // SIGINT/SIGTERM are blocked in every thread (they inherit this mask)
    // and taken by sigwait below, in the main thread.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);  // a client gone mid-response is an error return, not a death

    std::string error;
    const int lfd = listen_on(cfg.server_host, cfg.server_port, error);
    if (lfd < 0) {
        log_event("error",
                  "cannot listen on " + cfg.server_host + ":" + std::to_string(cfg.server_port) + ": " + error);
        return 1;
    }
    raise_fd_limit(cfg.server_max_connections, cfg.db_read_uri.empty() ? cfg.db_pool : 2 * cfg.db_pool);

    App app{cfg, Pool(cfg.db_uri, cfg.db_pool, std::chrono::seconds(cfg.db_pool_acquisition_timeout)), nullptr};
    if (!cfg.db_read_uri.empty())
        app.read_pool =
            std::make_unique<Pool>(cfg.db_read_uri, cfg.db_pool, std::chrono::seconds(cfg.db_pool_acquisition_timeout));
    if (cfg.jwt_secret.empty()) log_event("warning", "no jwt-secret: requests with a token are refused (401)");
    if (cfg.db_anon_role.empty()) log_event("info", "no db-anon-role: requests without a token are refused (401)");
    try {
        app.pool.probe();
    } catch (const ConnectFailed& e) {  // not fatal: the pool connects on demand, PostgREST-like
        log_event("warning", std::string("PostgreSQL is not reachable yet: ") + e.what());
    }
    if (app.read_pool) {
        try {
            app.read_pool->probe();
        } catch (const ConnectFailed& e) {  // pulls go to db-uri meanwhile
            log_event("warning", std::string("the read replica (db-read-uri) is not reachable yet: ") + e.what());
        }
    }

    HttpServer server(app);
    if (!server.start(lfd, error)) {
        log_event("error", error);
        return 1;
    }
    const bool ipv6 = cfg.server_host.find(':') != std::string::npos;
    log_event("info",
              "lwwsync-server " + std::string(kVersion) + " listening on http://" +
                  (ipv6 ? "[" + cfg.server_host + "]" : cfg.server_host) + ":" + std::to_string(cfg.server_port),
              ",\"host\":" + json_string(cfg.server_host) + ",\"port\":" + std::to_string(cfg.server_port) +
                  ",\"db_pool\":" + std::to_string(cfg.db_pool) + ",\"read_replica\":" +
                  (app.read_pool ? "true" : "false") + ",\"workers\":" + std::to_string(server.workers()) +
                  ",\"event_threads\":" + std::to_string(server.event_threads()) +
                  ",\"max_connections\":" + std::to_string(cfg.server_max_connections) +
                  ",\"max_connections_per_ip\":" + std::to_string(cfg.server_max_connections_per_ip) +
                  ",\"request_timeout_s\":" + std::to_string(cfg.server_request_timeout) +
                  ",\"statement_timeout_ms\":" + std::to_string(cfg.db_statement_timeout_ms));

    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0) {
    }
    log_event("info", std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ", stopping");
    // Requests still uploading get the request timeout; those in the
    // database finish (the statement timeout bounds them).
    server.stop(std::chrono::seconds(cfg.server_request_timeout));
    log_event("info", "stopped");
    return 0;
}
