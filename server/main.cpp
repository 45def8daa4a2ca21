// lwwsync-server: configuration, the HTTP server and its threads, signals.
#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <thread>

#include "config.h"
#include "handler.h"
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

}  // namespace

int main(int argc, char** argv) {
    using namespace lwwgw;
    Config cfg;
    try {
        switch (load_config(argc, argv, cfg, warn)) {
            case Action::Help:
                std::cout << usage();
                return 0;
            case Action::Version:
                std::cout << "lwwsync-server " << kVersion << "\n";
                return 0;
            case Action::Run:
                break;
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

    // SIGINT/SIGTERM are blocked in every thread (they inherit this mask) and
    // taken by sigwait in one thread, which may then call svr.stop() safely.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);  // a client gone mid-response is an error return, not a death

    App app{cfg, Pool(cfg.db_uri, cfg.db_pool, std::chrono::seconds(cfg.db_pool_acquisition_timeout))};
    httplib::Server svr;
    // A worker serves one connection at a time, also while it idles between
    // keep-alive requests (up to 5 s), so there are more workers than pooled
    // connections: the rest answer /health, refuse bad tokens, or queue for
    // the pool (up to db-pool-acquisition-timeout) instead of for a worker.
    const std::size_t threads = std::max<std::size_t>(4 * cfg.db_pool, 16);
    svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    // A sync is a series of round trips: let it keep its connection (httplib's default is 5 requests).
    svr.set_keep_alive_max_count(100);
    install_routes(svr, app);
    // Responses go out as several writes (headers, body): with Nagle on, a
    // keep-alive client's delayed ACK would stall each one by up to 40 ms.
    svr.set_tcp_nodelay(true);
    // httplib's default also sets SO_REUSEPORT, which lets a second server
    // bind the same port and silently take half the requests: only REUSEADDR.
    svr.set_socket_options([](socket_t sock) {
        int yes = 1;
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });

    if (!svr.bind_to_port(cfg.server_host, cfg.server_port)) {
        log_event("error", "cannot listen on " + cfg.server_host + ":" + std::to_string(cfg.server_port));
        return 1;
    }
    if (cfg.jwt_secret.empty())
        log_event("warning", "no jwt-secret: requests with a token are refused (401)");
    if (cfg.db_anon_role.empty())
        log_event("info", "no db-anon-role: requests without a token are refused (401)");
    try {
        app.pool.probe();
    } catch (const ConnectFailed& e) {  // not fatal: the pool connects on demand, PostgREST-like
        log_event("warning", std::string("PostgreSQL is not reachable yet: ") + e.what());
    }
    const bool ipv6 = cfg.server_host.find(':') != std::string::npos;
    log_event("info", "lwwsync-server " + std::string(kVersion) + " listening on http://" +
                          (ipv6 ? "[" + cfg.server_host + "]" : cfg.server_host) + ":" + std::to_string(cfg.server_port),
              ",\"host\":" + json_string(cfg.server_host) + ",\"port\":" + std::to_string(cfg.server_port) +
                  ",\"db_pool\":" + std::to_string(cfg.db_pool) + ",\"threads\":" + std::to_string(threads));

    std::atomic<bool> stopping{false};
    std::thread([&svr, &stopping, stop_signals] {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        stopping = true;
        log_event("info", std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ", stopping");
        // A signal that arrives before listen_after_bind runs must not be
        // lost: stop() only acts on a running server.
        while (!svr.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        svr.stop();
    }).detach();

    // Returns after stop(), once the worker threads finished their requests.
    const bool ok = svr.listen_after_bind();
    if (!stopping) {
        log_event("error", "the HTTP server stopped unexpectedly");
        return 1;
    }
    log_event("info", "stopped");
    return ok ? 0 : 1;
}
