// Hostile HTTP clients for tests/security/gateway_attacks.sh. Loopback only;
// every mode stops by itself (a byte or time bound).
//   gwattack slowloris HOST PORT N SECONDS   N connections trickle header bytes (one every 200 ms)
//   gwattack flood HOST PORT MAXBYTES        one connection sends endless header lines
//   gwattack hold HOST PORT N SECONDS [SRC]  N silent connections (from SRC), held open
//   gwattack raw HOST PORT                   sends stdin as is, prints the answer (until close, 5 s at most)
// Each prints one line of key=value results on stdout.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

int connect_to(const char* host, int port, const char* src = nullptr) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (src) {
        sockaddr_in s{};
        s.sin_family = AF_INET;
        inet_pton(AF_INET, src, &s.sin_addr);
        if (bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof s) != 0) {
            close(fd);
            return -1;
        }
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

// Reads what is there: false once the peer closed or reset.
bool drain(int fd, std::string* into = nullptr) {
    char buf[4096];
    for (;;) {
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            if (into && into->size() < 65536) into->append(buf, static_cast<size_t>(n));
            continue;
        }
        if (n == 0) return false;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
}

int slowloris(const char* host, int port, int n, double seconds) {
    const std::string head = "GET /health HTTP/1.1\r\nHost: loris\r\n";
    const std::string trickle = "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    struct Conn {
        int fd;
        size_t pos = 0;
        double closed_at = -1;
    };
    std::vector<Conn> conns;
    const auto t0 = Clock::now();
    int refused = 0;
    for (int i = 0; i < n; ++i) {
        const int fd = connect_to(host, port);
        if (fd < 0) {
            ++refused;
            continue;
        }
        send(fd, head.data(), head.size(), MSG_NOSIGNAL);
        conns.push_back({fd});
    }
    while (since(t0) < seconds) {
        int open = 0;
        for (auto& c : conns) {
            if (c.closed_at >= 0) continue;
            const char byte = trickle[c.pos++ % trickle.size()];
            if (send(c.fd, &byte, 1, MSG_NOSIGNAL) != 1 || !drain(c.fd)) {
                c.closed_at = since(t0);
                close(c.fd);
                continue;
            }
            ++open;
        }
        if (open == 0 && !conns.empty()) break;
        usleep(200 * 1000);
    }
    int open = 0;
    double first = -1, last = -1;
    for (auto& c : conns) {
        if (c.closed_at < 0) {
            ++open;
            close(c.fd);
        } else {
            if (first < 0 || c.closed_at < first) first = c.closed_at;
            if (c.closed_at > last) last = c.closed_at;
        }
    }
    printf("connected=%zu refused=%d still_open=%d first_close_s=%.1f last_close_s=%.1f\n", conns.size(), refused, open,
           first, last);
    return 0;
}

int flood(const char* host, int port, long long max_bytes) {
    const int fd = connect_to(host, port);
    if (fd < 0) {
        printf("connected=0\n");
        return 1;
    }
    std::string head = "GET /health HTTP/1.1\r\nHost: flood\r\n";
    send(fd, head.data(), head.size(), MSG_NOSIGNAL);
    long long sent = static_cast<long long>(head.size());
    std::string answer;
    bool closed = false;
    char line[128];
    const auto t0 = Clock::now();
    for (long long i = 0; sent < max_bytes && since(t0) < 60; ++i) {
        const int len = snprintf(line, sizeof line, "X-Flood-%lld: %s\r\n", i,
                                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        pollfd p{fd, POLLOUT | POLLIN, 0};
        poll(&p, 1, 1000);
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (!drain(fd, &answer)) {
                closed = true;
                break;
            }
        }
        if (!(p.revents & POLLOUT)) continue;
        const ssize_t w = send(fd, line, static_cast<size_t>(len), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) continue;
            closed = true;
            break;
        }
        sent += w;
    }
    // Whatever the server said before it closed.
    for (int k = 0; k < 20 && !closed; ++k) {
        pollfd p{fd, POLLIN, 0};
        poll(&p, 1, 100);
        if (!drain(fd, &answer)) closed = true;
    }
    drain(fd, &answer);
    close(fd);
    std::string status = "none";
    if (answer.rfind("HTTP/1.", 0) == 0 && answer.size() >= 12) status = answer.substr(9, 3);
    printf("sent=%lld status=%s closed=%d\n", sent, status.c_str(), closed ? 1 : 0);
    return 0;
}

int hold(const char* host, int port, int n, double seconds, const char* src) {
    std::vector<int> fds;
    for (int i = 0; i < n; ++i) {
        const int fd = connect_to(host, port, src);
        if (fd >= 0) fds.push_back(fd);
    }
    usleep(300 * 1000);  // the server closes refused ones right after accepting them
    int open = 0;
    for (int fd : fds) open += drain(fd) ? 1 : 0;
    printf("connected=%zu open=%d\n", fds.size(), open);
    fflush(stdout);
    const auto t0 = Clock::now();
    while (since(t0) < seconds) usleep(100 * 1000);
    for (int fd : fds) close(fd);
    return 0;
}

int raw(const char* host, int port) {
    std::string req((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    const int fd = connect_to(host, port);
    if (fd < 0) return 1;
    size_t off = 0;
    std::string answer;
    const auto t0 = Clock::now();
    bool closed = false;
    while (!closed && since(t0) < 5) {
        pollfd p{fd, static_cast<short>(POLLIN | (off < req.size() ? POLLOUT : 0)), 0};
        poll(&p, 1, 100);
        if ((p.revents & POLLOUT) && off < req.size()) {
            const ssize_t w = send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
            if (w > 0) off += static_cast<size_t>(w);
            else if (errno != EAGAIN) break;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) closed = !drain(fd, &answer);
    }
    close(fd);
    fwrite(answer.data(), 1, answer.size(), stdout);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "slowloris" && argc == 6) return slowloris(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    if (mode == "flood" && argc == 5) return flood(argv[2], atoi(argv[3]), atoll(argv[4]));
    if (mode == "hold" && (argc == 6 || argc == 7))
        return hold(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]), argc == 7 ? argv[6] : nullptr);
    if (mode == "raw" && argc == 4) return raw(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: gwattack slowloris|flood|hold|raw HOST PORT ...\n");
    return 2;
}
