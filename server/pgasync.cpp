#include "pgasync.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace lwwgw {
namespace {

enum class Wait { Ready, ClientGone, TimedOut, Broken };

constexpr short kHangup = POLLRDHUP | POLLHUP | POLLERR | POLLNVAL;

int poll_ms(Clock::time_point deadline) {
    if (deadline == Clock::time_point::max()) return 1000;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 1000));
}

// Until libpq can hand out the next result without blocking.
Wait wait_ready(PGconn* c, int client_fd, Clock::time_point deadline) {
    for (;;) {
        const int flushed = PQflush(c);  // 0 all sent, 1 more to send, -1 failed
        if (flushed < 0) return Wait::Broken;
        if (flushed == 0 && !PQisBusy(c)) return Wait::Ready;
        const int sock = PQsocket(c);
        if (sock < 0) return Wait::Broken;
        pollfd fds[2] = {{sock, static_cast<short>(POLLIN | (flushed ? POLLOUT : 0)), 0}, {client_fd, POLLRDHUP, 0}};
        const int n = poll(fds, client_fd >= 0 ? 2 : 1, poll_ms(deadline));
        if (n < 0 && errno != EINTR) return Wait::Broken;
        // POLLRDHUP: the client sent FIN (curl killed, tab closed). A client
        // that half-closes and still waits for its answer is treated as gone
        // too, as nginx does: HTTP clients do not do that.
        if (client_fd >= 0 && (fds[1].revents & kHangup)) return Wait::ClientGone;
        if (fds[0].revents & (POLLIN | POLLERR | POLLHUP))
            if (!PQconsumeInput(c)) return Wait::Broken;
        if (Clock::now() >= deadline) return Wait::TimedOut;
    }
}

// Cancel request on its own connection, then read what the backend answers
// (the error "canceling statement due to user request") for up to 2 s.
void cancel_and_drain(PGconn* c) {
    if (PGcancel* cancel = PQgetCancel(c)) {
        char err[256];
        PQcancel(cancel, err, sizeof err);
        PQfreeCancel(cancel);
    }
    const auto until = Clock::now() + std::chrono::seconds(2);
    for (;;) {
        if (wait_ready(c, -1, until) != Wait::Ready) return;
        PGresult* r = PQgetResult(c);
        if (!r) return;
        PQclear(r);
    }
}

}  // namespace

bool pq_busy(PGconn* c) {
    return PQstatus(c) != CONNECTION_OK || PQisBusy(c) || PQtransactionStatus(c) == PQTRANS_ACTIVE;
}

bool peer_gone(int fd) {
    if (fd < 0) return false;
    pollfd p{fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & kHangup);
}

bool sleep_watching(int client_fd, int ms) {
    pollfd p{client_fd, POLLRDHUP, 0};
    const auto until = Clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
        if (left <= 0) return true;
        if (client_fd < 0) {
            poll(nullptr, 0, static_cast<int>(left));
            continue;
        }
        if (poll(&p, 1, static_cast<int>(left)) > 0 && (p.revents & kHangup)) return false;
    }
}

Exec exec(PGconn* c, const std::string& sql, const std::vector<const char*>* params, int client_fd,
          Clock::time_point deadline, Result& out) {
    out.reset();
    const int sent = params ? PQsendQueryParams(c, sql.c_str(), static_cast<int>(params->size()), nullptr,
                                                params->data(), nullptr, nullptr, 0)
                            : PQsendQuery(c, sql.c_str());
    if (!sent) return Exec::Broken;
    Result first_error(nullptr, PQclear);
    for (;;) {
        switch (wait_ready(c, client_fd, deadline)) {
            case Wait::Ready: break;
            case Wait::ClientGone: cancel_and_drain(c); return Exec::ClientGone;
            case Wait::TimedOut: cancel_and_drain(c); return Exec::TimedOut;
            case Wait::Broken: return Exec::Broken;
        }
        Result r(PQgetResult(c), PQclear);
        if (!r) break;
        const ExecStatusType st = PQresultStatus(r.get());
        if ((st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR) && !first_error) first_error = std::move(r);
        else if (!first_error) out = std::move(r);
    }
    if (first_error) out = std::move(first_error);
    return Exec::Done;
}

bool rollback(PGconn* c) {
    if (PQstatus(c) != CONNECTION_OK || PQisBusy(c)) return false;
    if (PQtransactionStatus(c) == PQTRANS_IDLE) return true;
    Result r(nullptr, PQclear);
    const Exec e = exec(c, "ROLLBACK", nullptr, -1, Clock::now() + std::chrono::seconds(5), r);
    return e == Exec::Done && r && PQresultStatus(r.get()) == PGRES_COMMAND_OK &&
           PQtransactionStatus(c) == PQTRANS_IDLE;
}

}  // namespace lwwgw
