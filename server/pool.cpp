#include "pool.h"

#include <algorithm>

namespace lwwgw {
namespace {

void ignore_notice(void*, const char*) {}  // a NOTICE from a function must not break the JSON log

std::string trimmed_error(PGconn* c) {
    const std::string out = one_line(c ? PQerrorMessage(c) : "out of memory");
    return out.empty() ? "cannot connect to PostgreSQL" : out;
}

}  // namespace

std::string one_line(const std::string& libpq_message) {
    std::string out;
    for (char ch : libpq_message) {
        const bool space = ch == '\n' || ch == '\t' || ch == '\r' || ch == ' ';
        if (!space) out += ch;
        else if (!out.empty() && out.back() != ' ') out += ' ';
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
}

Pool::Pool(std::string conninfo, std::size_t size, std::chrono::milliseconds acquire_timeout)
    : conninfo_(std::move(conninfo)), size_(size), timeout_(acquire_timeout) {}

Pool::~Pool() {
    for (PGconn* c : idle_) PQfinish(c);
}

Pool::Lease::~Lease() {
    if (pool_) pool_->release(conn_, broken_);
}

PGconn* Pool::connect() {
    // Keywords before the expanded dbname are defaults the URI may override;
    // client_encoding after it is forced: bodies and claims are UTF-8.
    const char* keys[] = {"connect_timeout", "fallback_application_name", "dbname", "client_encoding", nullptr};
    const char* vals[] = {"5", "lwwsync-server", conninfo_.c_str(), "UTF8", nullptr};
    PGconn* c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        std::string msg = trimmed_error(c);
        PQfinish(c);
        throw ConnectFailed(msg);
    }
    PQsetNoticeProcessor(c, ignore_notice, nullptr);
    // Sends never block the worker: it keeps watching its client while a
    // large body goes out (pgasync.cpp flushes as the socket takes it).
    if (PQsetnonblocking(c, 1) != 0) {
        std::string msg = trimmed_error(c);
        PQfinish(c);
        throw ConnectFailed(msg);
    }
    return c;
}

void Pool::probe() { PQfinish(connect()); }

Pool::Lease Pool::acquire(const std::function<bool()>& abandoned) {
    std::unique_lock<std::mutex> lock(mu_);
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    for (;;) {
        if (abandoned && abandoned()) throw Abandoned("the client went away while waiting for a database connection");
        if (!idle_.empty()) {
            PGconn* c = idle_.back();  // most recently used: the warmest backend
            idle_.pop_back();
            return Lease(this, c);
        }
        if (open_ < size_) {
            ++open_;
            lock.unlock();  // connecting takes a round trip or more: not under the lock
            try {
                return Lease(this, connect());
            } catch (...) {
                lock.lock();
                --open_;
                cv_.notify_one();
                throw;
            }
        }
        const auto slice = std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
        if (cv_.wait_until(lock, slice) == std::cv_status::timeout && std::chrono::steady_clock::now() >= deadline &&
            idle_.empty() && open_ >= size_)
            throw PoolTimeout("timed out after " + std::to_string(timeout_.count() / 1000) +
                              " s waiting for a free database connection (db-pool " + std::to_string(size_) + ")");
    }
}

void Pool::release(PGconn* conn, bool broken) {
    // Only a connection idle outside any transaction goes back: anything else
    // would leak a half-done transaction (or a role) into the next request.
    const bool reusable = !broken && PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (reusable) idle_.push_back(conn);
        else --open_;
        cv_.notify_one();
    }
    if (!reusable) PQfinish(conn);
}

void Pool::drop_idle() {
    std::vector<PGconn*> dropped;
    {
        std::lock_guard<std::mutex> lock(mu_);
        dropped.swap(idle_);
        open_ -= dropped.size();
        cv_.notify_all();
    }
    for (PGconn* c : dropped) PQfinish(c);
}

}  // namespace lwwgw
