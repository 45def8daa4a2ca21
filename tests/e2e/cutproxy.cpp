// cutproxy: a TCP proxy for fault tests that cuts one connection mid-response.
//   cutproxy LISTEN_PORT TARGET_PORT CUT_AFTER_BYTES
// Forwards 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT. On the first
// connection, after CUT_AFTER_BYTES bytes have gone from the server to the
// client, both sides are closed at once (the client sees a truncated
// response; the server finished its work). Later connections pass through.
// Prints "listening" on stdout when ready.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace {

int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void pump(int client, int server, long cut_after) {
    pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    char buf[16384];
    long to_client = 0;
    for (;;) {
        if (poll(fds, 2, -1) < 0) break;
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(client, buf, sizeof buf);
            if (n <= 0 || write(server, buf, static_cast<size_t>(n)) != n) break;
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(server, buf, sizeof buf);
            if (n <= 0) break;
            if (cut_after >= 0 && to_client + n > cut_after) {
                const ssize_t part = cut_after - to_client;
                if (part > 0 && write(client, buf, static_cast<size_t>(part)) != part) break;
                fprintf(stderr, "cutproxy: cut after %ld response bytes\n", cut_after);
                break;
            }
            if (write(client, buf, static_cast<size_t>(n)) != n) break;
            to_client += n;
        }
    }
    close(client);
    close(server);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: cutproxy LISTEN_PORT TARGET_PORT CUT_AFTER_BYTES\n");
        return 2;
    }
    const int listen_port = atoi(argv[1]), target = atoi(argv[2]);
    const long cut_after = atol(argv[3]);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(listen_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(lfd, 64) != 0) {
        perror("cutproxy: listen");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    std::atomic<bool> first{true};
    for (;;) {
        int c = accept(lfd, nullptr, nullptr);
        if (c < 0) continue;
        int s = connect_to(target);
        if (s < 0) {
            close(c);
            continue;
        }
        const long cut = first.exchange(false) ? cut_after : -1;
        std::thread(pump, c, s, cut).detach();
    }
}
