/* What-if helper for bench/sync_bench.sh, never part of the product:
 * LD_PRELOAD'ed into lwwsync-server, it sets TCP_NODELAY on every accepted
 * connection (cpp-httplib 0.11 leaves Nagle on by default), to measure what
 * the gateway would gain from svr.set_tcp_nodelay(true).
 *   cc -O2 -shared -fPIC -o nodelay.so bench/tcp_nodelay_preload.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int nodelay(int fd) {
    if (fd >= 0) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly on non-TCP */
    }
    return fd;
}

int accept(int s, struct sockaddr* addr, socklen_t* len) {
    static int (*real)(int, struct sockaddr*, socklen_t*);
    if (!real) real = (int (*)(int, struct sockaddr*, socklen_t*))dlsym(RTLD_NEXT, "accept");
    return nodelay(real(s, addr, len));
}

int accept4(int s, struct sockaddr* addr, socklen_t* len, int flags) {
    static int (*real)(int, struct sockaddr*, socklen_t*, int);
    if (!real) real = (int (*)(int, struct sockaddr*, socklen_t*, int))dlsym(RTLD_NEXT, "accept4");
    return nodelay(real(s, addr, len, flags));
}
