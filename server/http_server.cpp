#include "http_server.h"

#include <arpa/inet.h>
#include <strings.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "log.h"
#include "pgasync.h"

namespace lwwgw {
namespace {

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
}

// Where a connection is. The request timeout applies while it receives a
// request (from its accept, or the end of its previous response, to the
// end of the body) and while it sends a response; not while the database works.
enum Phase : int { Receiving, Processing, Sending };

struct ConnState {
    int fd = -1;
    std::string remote;
    std::atomic<int> phase{Receiving};
    std::atomic<int64_t> since{0};
    std::atomic<bool> cut{false};         // shut down by the reaper
    std::atomic<bool> in_request{false};  // a request's log line will tell of the cut
    void enter(Phase p) {
        since = now_ms();
        phase = p;
    }
};

enum class Stage { New, Body, Working, Answered };

struct Ctx {
    RequestState st;
    ConnState* cs = nullptr;
    Stage stage = Stage::New;
    bool counted = false;  // in Impl::in_flight
    std::string uri;       // as received: the log line of a request refused before routing
    std::size_t bytes_out = 0;
};

struct Job {
    Ctx* ctx;
    MHD_Connection* conn;
    Clock::time_point queued;
};

std::string address_text(const sockaddr* sa) {
    char buf[INET6_ADDRSTRLEN] = "";
    if (!sa) return "";
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
    } else if (sa->sa_family == AF_INET6) {
        const auto* a6 = reinterpret_cast<const sockaddr_in6*>(sa);
        if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], buf, sizeof buf);
        else inet_ntop(AF_INET6, &a6->sin6_addr, buf, sizeof buf);
    }
    return buf;
}

// What libmicrohttpd's own refusals mean, for the log line (its bodies are
// short HTML pages we cannot change).
const char* mhd_refusal(unsigned status) {
    switch (status) {
        case 400: return "malformed HTTP request (request line, header, chunked encoding or Content-Length)";
        case 413: return "Content-Length or chunk size out of range";
        case 414: return "request line too long";
        case 431: return "request headers too large";
        case 505: return "HTTP version not supported";
        default: return "refused by the HTTP layer";
    }
}

}  // namespace

struct HttpServer::Impl {
    App& app;
    MHD_Daemon* daemon = nullptr;
    unsigned threads = 2;

    std::mutex reg_mu;  // the registry; also orders the reaper's shutdown() before MHD's close()
    std::unordered_set<ConnState*> conns;

    std::mutex q_mu;
    std::condition_variable q_cv;
    std::deque<Job> queue;
    bool quit = false;
    std::vector<std::thread> workers;

    std::thread reaper;
    std::mutex r_mu;
    std::condition_variable r_cv;
    bool r_quit = false;

    std::atomic<int> in_flight{0}, suspended{0};

    explicit Impl(App& a) : app(a) {}

    void resume(Job& j) {
        --suspended;
        MHD_resume_connection(j.conn);  // after this the event thread owns (and may free) the context
    }

    void worker_loop() {
        for (;;) {
            Job j;
            {
                std::unique_lock<std::mutex> lock(q_mu);
                q_cv.wait(lock, [&] { return quit || !queue.empty(); });
                if (queue.empty()) return;
                j = queue.front();
                queue.pop_front();
            }
            RequestState& st = j.ctx->st;
            if (peer_gone(st.client_fd)) {
                st.client_gone = true;
                st.error = "client disconnected while its request waited for a worker";
            } else {
                work(app, st);  // catches everything
            }
            resume(j);
        }
    }

    // Every 100 ms: cuts connections past the request timeout, and answers
    // queued requests whose client left or that waited past the pool's
    // acquisition timeout.
    void reaper_loop() {
        const int64_t limit_ms = static_cast<int64_t>(app.cfg.server_request_timeout) * 1000;
        const auto acquire_limit = std::chrono::seconds(app.cfg.db_pool_acquisition_timeout);
        std::unique_lock<std::mutex> rl(r_mu);
        while (!r_cv.wait_for(rl, std::chrono::milliseconds(100), [&] { return r_quit; })) {
            std::vector<std::string> cut_remote;
            const int64_t now = now_ms();
            {
                std::lock_guard<std::mutex> lock(reg_mu);
                for (ConnState* cs : conns) {
                    const int phase = cs->phase;
                    if (cs->cut || phase == Processing || now - cs->since < limit_ms) continue;
                    // Marked first: the event thread may log the request as
                    // soon as the shutdown below wakes it.
                    cs->cut = true;
                    if (!cs->in_request) cut_remote.push_back(cs->remote);
                    // Its next read sees the end of the stream and closes.
                    // Under reg_mu, so MHD cannot have closed (and reused)
                    // the descriptor yet.
                    shutdown(cs->fd, SHUT_RDWR);
                }
            }
            for (const auto& r : cut_remote)
                log_event("warning",
                          "closed a connection that sent no complete request line within server-request-timeout",
                          ",\"remote\":\"" + utf8_or_replaced(r) +
                              "\",\"seconds\":" + std::to_string(app.cfg.server_request_timeout));
            std::vector<Job> done;
            {
                std::lock_guard<std::mutex> lock(q_mu);
                const auto t = Clock::now();
                for (auto it = queue.begin(); it != queue.end();) {
                    RequestState& st = it->ctx->st;
                    if (peer_gone(st.client_fd)) {
                        st.client_gone = true;
                        st.error = "client disconnected while its request waited for a worker";
                    } else if (t - it->queued >= acquire_limit) {
                        set_pool_timeout(app, st);
                    } else {
                        ++it;
                        continue;
                    }
                    done.push_back(*it);
                    it = queue.erase(it);
                }
            }
            for (Job& j : done) resume(j);
        }
    }

    MHD_Result answer(MHD_Connection* c, Ctx* ctx) {
        HttpResponse& r = ctx->st.response;
        auto* body = new std::string(std::move(r.body));
        MHD_Response* resp = MHD_create_response_from_buffer_with_free_callback_cls(
            body->size(), body->data(), [](void* p) { delete static_cast<std::string*>(p); }, body);
        if (!resp) {
            delete body;
            return MHD_NO;
        }
        bool has_close = false;
        for (const auto& [k, v] : r.headers) {
            MHD_add_response_header(resp, k.c_str(), v.c_str());
            has_close |= strcasecmp(k.c_str(), "Connection") == 0;
        }
        if (app.stopping && !has_close) MHD_add_response_header(resp, "Connection", "close");
        ctx->bytes_out = body->size();
        ctx->stage = Stage::Answered;
        if (ctx->cs) ctx->cs->enter(Sending);
        const MHD_Result ok = MHD_queue_response(c, static_cast<unsigned>(r.status), resp);
        MHD_destroy_response(resp);
        return ok;
    }

    MHD_Result request(MHD_Connection* c, const char* url, const char* method, const char* data, size_t* size,
                       Ctx* ctx) {
        RequestState& st = ctx->st;
        switch (ctx->stage) {
            case Stage::New: {
                st.start = Clock::now();
                st.req.method = method;
                st.req.path = url;
                st.req.remote = ctx->cs ? ctx->cs->remote : "";
                MHD_get_connection_values_n(
                    c, MHD_HEADER_KIND,
                    [](void* cls, MHD_ValueKind, const char* k, size_t kn, const char* v, size_t vn) {
                        static_cast<std::vector<std::pair<std::string, std::string>>*>(cls)->emplace_back(
                            std::string(k, kn), v ? std::string(v, vn) : std::string());
                        return MHD_YES;
                    },
                    &st.req.headers);
                if (const MHD_ConnectionInfo* i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD))
                    st.client_fd = i->connect_fd;
                ctx->counted = true;
                ++in_flight;
                begin(app, st);
                ctx->stage = Stage::Body;
                // Queued now, an answer makes libmicrohttpd skip the body (no
                // "100 Continue") and close the connection afterwards. Other
                // refusals are sent once the body has been read (and dropped).
                if (st.response.status != 0 && st.body_expected && answer_before_body(st)) return answer(c, ctx);
                return MHD_YES;
            }
            case Stage::Body:
                if (*size > 0) {
                    const bool keep = feed(st, data, *size);
                    *size = 0;
                    if (!keep) st.error = "request body refused, and the client kept sending: connection closed";
                    return keep ? MHD_YES : MHD_NO;
                }
                if (st.response.status == 0) finish_body(app, st);  // the whole body is in
                if (st.response.status != 0) return answer(c, ctx);
                ctx->stage = Stage::Working;
                if (ctx->cs) ctx->cs->enter(Processing);
                ++suspended;
                MHD_suspend_connection(c);
                {
                    std::lock_guard<std::mutex> lock(q_mu);
                    queue.push_back(Job{ctx, c, Clock::now()});
                }
                q_cv.notify_one();
                return MHD_YES;
            case Stage::Working:                    // resumed by a worker or the reaper
                if (st.client_gone) return MHD_NO;  // nobody to answer: close
                return answer(c, ctx);
            case Stage::Answered: break;
        }
        return MHD_YES;
    }

    void completed(MHD_Connection* c, Ctx* ctx, MHD_RequestTerminationCode toe) {
        RequestState& st = ctx->st;
        RequestLine line;
        line.method = st.req.method;
        line.path = st.req.method.empty() ? ctx->uri : st.req.path;
        line.remote = ctx->cs ? ctx->cs->remote : st.req.remote;
        line.role = st.role;
        if (st.db) line.db = st.db;
        line.bytes_in = st.bytes_in;
        line.error = st.error;
        if (ctx->stage == Stage::Answered) {
            line.status = st.response.status;
            line.bytes_out = ctx->bytes_out;
            if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && line.error.empty())
                line.error = "the response was not delivered: the connection failed";
        } else if (st.client_gone) {
            line.status = 499;  // nginx's "client closed request"
        } else if (const MHD_ConnectionInfo* i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS)) {
            line.status = static_cast<int>(i->http_status);  // libmicrohttpd's own refusal
            line.error = mhd_refusal(i->http_status);
        } else if (ctx->cs && ctx->cs->cut) {
            line.error = "request not received within server-request-timeout (" +
                         std::to_string(app.cfg.server_request_timeout) + " s): connection closed";
        } else if (line.error.empty()) {
            line.error = toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED
                             ? "connection idle past server-idle-timeout: closed"
                             : "the client closed the connection before its request was complete";
        }
        if (st.start != Clock::time_point{})
            line.ms = std::chrono::duration<double, std::milli>(Clock::now() - st.start).count();
        log_request(line);
        if (ctx->cs) {
            ctx->cs->in_request = false;
            ctx->cs->enter(Receiving);
        }
        if (ctx->counted) --in_flight;
    }
};

namespace {

using Impl = HttpServer::Impl;

void on_connection(void* cls, MHD_Connection* c, void** socket_context, MHD_ConnectionNotificationCode code) noexcept {
    auto* s = static_cast<Impl*>(cls);
    try {
        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
            auto* cs = new ConnState;
            if (const MHD_ConnectionInfo* i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD))
                cs->fd = i->connect_fd;
            if (const MHD_ConnectionInfo* i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS))
                cs->remote = address_text(i->client_addr);
            // Responses go out as several writes: without TCP_NODELAY a
            // keep-alive client's delayed ACK stalls each by up to 40 ms.
            int yes = 1;
            setsockopt(cs->fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
            cs->enter(Receiving);
            std::lock_guard<std::mutex> lock(s->reg_mu);
            s->conns.insert(cs);
            *socket_context = cs;
        } else if (auto* cs = static_cast<ConnState*>(*socket_context)) {
            {
                std::lock_guard<std::mutex> lock(s->reg_mu);
                s->conns.erase(cs);
            }
            delete cs;
            *socket_context = nullptr;
        }
    } catch (...) {  // out of memory: the connection just goes untracked
    }
}

void* on_uri(void* cls, const char* uri, MHD_Connection* c) noexcept {
    (void)cls;
    try {
        auto* ctx = new Ctx;
        std::string u = uri ? uri : "";
        u = u.substr(0, std::min(u.find('?'), std::size_t(2000)));
        ctx->uri = std::move(u);
        if (const MHD_ConnectionInfo* i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT))
            ctx->cs = static_cast<ConnState*>(i->socket_context);
        if (ctx->cs) ctx->cs->in_request = true;
        return ctx;
    } catch (...) {
        return nullptr;  // the access handler then refuses the request
    }
}

MHD_Result on_request(void* cls, MHD_Connection* c, const char* url, const char* method, const char*, const char* data,
                      size_t* size, void** con_cls) noexcept {
    auto* ctx = static_cast<Ctx*>(*con_cls);
    if (!ctx) return MHD_NO;
    auto* s = static_cast<Impl*>(cls);
    try {
        return s->request(c, url, method, data, size, ctx);
    } catch (const std::exception& e) {
        ctx->st.error = std::string("internal error: ") + e.what();
    } catch (...) {
        ctx->st.error = "internal error";
    }
    // libmicrohttpd takes a response only at the start and the end of a
    // request; elsewhere the connection is closed.
    if (ctx->stage != Stage::Answered && ctx->stage != Stage::Working) {
        try {
            set_internal_error(ctx->st, ctx->st.error);
            return s->answer(c, ctx);  // MHD_NO (close) where it cannot take it
        } catch (...) {
        }
    }
    return MHD_NO;
}

void on_completed(void* cls, MHD_Connection* c, void** con_cls, MHD_RequestTerminationCode toe) noexcept {
    auto* ctx = static_cast<Ctx*>(*con_cls);
    if (!ctx) return;
    try {
        static_cast<Impl*>(cls)->completed(c, ctx, toe);
    } catch (...) {
    }
    delete ctx;
    *con_cls = nullptr;
}

void on_panic(void*, const char* file, unsigned int line, const char* reason) {
    log_event("error", std::string("libmicrohttpd: ") + (reason ? reason : "fatal error"),
              ",\"file\":\"" + utf8_or_replaced(file ? file : "") + "\",\"line\":" + std::to_string(line));
    abort();
}

}  // namespace

HttpServer::HttpServer(App& app) : impl_(std::make_unique<Impl>(app)) {}

HttpServer::~HttpServer() = default;

unsigned HttpServer::event_threads() const { return impl_->threads; }
std::size_t HttpServer::workers() const { return impl_->app.cfg.db_pool; }

bool HttpServer::start(int listen_fd, std::string& error) {
    Impl& s = *impl_;
    const Config& cfg = s.app.cfg;
    MHD_set_panic_func(on_panic, nullptr);
    for (std::size_t i = 0; i < cfg.db_pool; ++i) s.workers.emplace_back([&s] { s.worker_loop(); });
    s.reaper = std::thread([&s] { s.reaper_loop(); });
    // Two event threads (the machine's cores): gzip of request bodies runs
    // there, so one large upload does not hold up every other connection.
    // libmicrohttpd splits the connection cap between them.
    s.threads = cfg.server_max_connections >= 2 ? 2 : 1;
    const unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    s.daemon =
        MHD_start_daemon(flags, 0, nullptr, nullptr, on_request, &s,                                      //
                         MHD_OPTION_LISTEN_SOCKET, listen_fd,                                             //
                         MHD_OPTION_THREAD_POOL_SIZE, s.threads,                                          //
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory,                           //
                         MHD_OPTION_CONNECTION_LIMIT, static_cast<unsigned>(cfg.server_max_connections),  //
                         MHD_OPTION_PER_IP_CONNECTION_LIMIT, static_cast<unsigned>(cfg.server_max_connections_per_ip),
                         MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned>(cfg.server_idle_timeout),  //
                         MHD_OPTION_NOTIFY_CONNECTION, on_connection, &s,                                //
                         MHD_OPTION_URI_LOG_CALLBACK, on_uri, &s,                                        //
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s,                                  //
                         MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,                                           //
                         MHD_OPTION_END);
    if (!s.daemon) {
        error = "libmicrohttpd could not start (too many connections for the file descriptor limit?)";
        stop(std::chrono::seconds(0));
        return false;
    }
    return true;
}

void HttpServer::stop(std::chrono::seconds grace) {
    Impl& s = *impl_;
    s.app.stopping = true;
    if (s.daemon) {
        const MHD_socket lfd = MHD_quiesce_daemon(s.daemon);  // no new connections
        if (lfd != MHD_INVALID_SOCKET) close(lfd);
        // Requests in flight finish; those still uploading get `grace`.
        // Suspended ones (in the database) are always waited for:
        // libmicrohttpd must not stop with a suspended connection, and the
        // statement timeout bounds them.
        const auto until = Clock::now() + grace;
        while (s.suspended > 0 || (s.in_flight > 0 && Clock::now() < until))
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        MHD_stop_daemon(s.daemon);
        s.daemon = nullptr;
    }
    {
        std::lock_guard<std::mutex> lock(s.q_mu);
        s.quit = true;
    }
    s.q_cv.notify_all();
    for (auto& t : s.workers) t.join();
    s.workers.clear();
    {
        std::lock_guard<std::mutex> lock(s.r_mu);
        s.r_quit = true;
    }
    s.r_cv.notify_all();
    if (s.reaper.joinable()) s.reaper.join();
}

}  // namespace lwwgw
