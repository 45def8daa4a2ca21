// Load generator of bench/fleet_bench.sh: many distinct devices, each doing
// small exchanges (a pull of at most --limit rows plus a one-row push) with
// one gateway, C at a time. The client side is a few string operations and
// a libcurl keep-alive connection per worker, so the figures are the
// gateway's and Postgres's.
//
//   fleet_load --url URL --nodes N [--first K] [--conc C] [--secs S] [--limit L]
//
// Device i (K <= i < K+N) has node id 00000000-0000-4000-8000-<i in hex> and
// owns row i of table `readings`. Phase 1 ("first"): every device's first
// exchange (binds its node, pulls from 0, inserts its row). Phase 2
// ("steady"): for S seconds, devices in turn (one exchange in flight per
// device) pull past their cursor and push one update of their row.
// Prints one line per phase:
//   PHASE exchanges seconds per_second p50_ms p95_ms errors
// Errors (HTTP != 200, a push the server did not ack) are counted, and the
// first few printed to stderr.
#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Device {
    std::string id;
    long long seq = 0;                        // this device's change sequence (its pushes)
    std::string received = "0", floor = "0";  // its cursor on the server
    unsigned long long hlc = 0;
    std::atomic<bool> busy{false};
};

struct Options {
    std::string url;
    long nodes = 10, first = 0, conc = 12, limit = 10;
    double secs = 20;
};

std::atomic<long> g_error_prints{0};

void report_error(const std::string& what) {
    if (g_error_prints.fetch_add(1) < 5) std::fprintf(stderr, "fleet_load: %s\n", what.substr(0, 400).c_str());
}

size_t collect(char* p, size_t size, size_t n, void* out) {
    static_cast<std::string*>(out)->append(p, size * n);
    return size * n;
}

// The string value of "key":"…" at or after `from` in a response.
std::string string_field(const std::string& doc, const char* key, size_t from = 0) {
    const std::string k = std::string("\"") + key + "\":\"";
    const size_t p = doc.find(k, from);
    if (p == std::string::npos) return {};
    const size_t b = p + k.size(), e = doc.find('"', b);
    return e == std::string::npos ? std::string() : doc.substr(b, e - b);
}

unsigned long long now_hlc() {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    return static_cast<unsigned long long>(ms) << 16;
}

std::string request(Device& d, long index, long limit) {
    d.hlc = std::max(now_hlc(), d.hlc + 1);
    const std::string hlc = std::to_string(d.hlc);
    const bool first = d.seq == 0;
    std::string r;
    r.reserve(700);
    r += "{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"" + d.id + "\",\"received\":\"" + d.received +
         "\",\"received_floor\":\"" + d.floor + "\",\"limit\":" + std::to_string(limit) + ",\"clock\":\"" + hlc +
         "\",\"push\":{\"format\":\"lwwsync.changeset\",\"version\":1,\"origin\":\"" + d.id + "\",\"since\":\"" +
         std::to_string(d.seq) + "\",\"upto\":\"" + std::to_string(d.seq + 1) + "\",\"nodes\":[\"" + d.id +
         "\"],\"tables\":[{\"name\":\"readings\",\"key\":[\"id\"],\"columns\":[\"v\",\"note\"],"
         "\"rows\":[{\"key\":[" +
         std::to_string(index) + "],\"gen\":1,\"stamp\":[\"" + hlc + "\",0]," + (first ? "\"row\":true," : "") +
         "\"cols\":[[0," + std::to_string(d.seq + 1) + "],[1,\"reading " + std::to_string(d.seq + 1) + " of device " +
         std::to_string(index) + "\"]]}]}]}}";
    return r;
}

struct Worker {
    CURL* curl = nullptr;
    curl_slist* headers = nullptr;
    std::vector<double> ms;
    long errors = 0;
};

// One exchange of device d; updates its cursor and sequence when it succeeds.
void exchange(Worker& w, const Options& o, Device& d, long index) {
    const std::string body = request(d, index, o.limit);
    std::string out;
    curl_easy_setopt(w.curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(w.curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(w.curl, CURLOPT_WRITEDATA, &out);
    const auto t0 = Clock::now();
    const CURLcode rc = curl_easy_perform(w.curl);
    w.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    long status = 0;
    curl_easy_getinfo(w.curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200) {
        ++w.errors;
        report_error("device " + std::to_string(index) + ": " +
                     (rc != CURLE_OK ? curl_easy_strerror(rc) : "HTTP " + std::to_string(status) + " " + out));
        return;
    }
    const std::string upto = std::to_string(d.seq + 1);
    if (string_field(out, "acked") != upto) {
        ++w.errors;
        report_error("device " + std::to_string(index) + ": push up to " + upto + " not acked: " + out);
        return;
    }
    d.seq += 1;
    const size_t pull = out.find("\"pull\":");
    const std::string pulled = pull == std::string::npos ? std::string() : string_field(out, "upto", pull);
    if (pulled.empty()) {
        ++w.errors;
        report_error("device " + std::to_string(index) + ": no pull in " + out);
        return;
    }
    d.received = pulled;
    if (out.find("\"more\":true") == std::string::npos) d.floor = pulled;
}

void percentile_line(const char* phase, std::vector<Worker>& ws, double secs) {
    std::vector<double> all;
    long errors = 0;
    for (auto& w : ws) {
        all.insert(all.end(), w.ms.begin(), w.ms.end());
        errors += w.errors;
        w.ms.clear();
        w.errors = 0;
    }
    std::sort(all.begin(), all.end());
    auto pct = [&](double p) {
        return all.empty() ? 0.0 : all[std::min(all.size() - 1, static_cast<size_t>(p * (all.size() - 1) + 0.5))];
    };
    const long ok = static_cast<long>(all.size()) - errors;
    std::printf("%s %zu %.2f %.1f %.1f %.1f %ld\n", phase, all.size(), secs, ok / secs, pct(0.5), pct(0.95), errors);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "--url") o.url = v;
        else if (a == "--nodes") o.nodes = std::atol(v.c_str());
        else if (a == "--first") o.first = std::atol(v.c_str());
        else if (a == "--conc") o.conc = std::atol(v.c_str());
        else if (a == "--secs") o.secs = std::atof(v.c_str());
        else if (a == "--limit") o.limit = std::atol(v.c_str());
        else {
            std::fprintf(stderr, "fleet_load: unknown option %s\n", a.c_str());
            return 2;
        }
    }
    if (o.url.empty() || o.nodes < 1 || o.conc < 1 || o.secs <= 0 || o.limit < 1) {
        std::fprintf(stderr, "usage: fleet_load --url URL --nodes N [--first K] [--conc C] [--secs S] [--limit L]\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    std::vector<Device> devices(static_cast<size_t>(o.nodes));
    for (long i = 0; i < o.nodes; ++i) {
        char id[40];
        std::snprintf(id, sizeof id, "00000000-0000-4000-8000-%012lx", static_cast<unsigned long>(o.first + i));
        devices[static_cast<size_t>(i)].id = id;
    }
    // Never more workers than devices: a device has one exchange in flight at most.
    const long nworkers = std::min(o.conc, o.nodes);
    std::vector<Worker> ws(static_cast<size_t>(nworkers));
    for (auto& w : ws) {
        w.curl = curl_easy_init();
        w.headers = curl_slist_append(nullptr, "Content-Type: application/json");
        w.headers = curl_slist_append(w.headers, "Expect:");
        curl_easy_setopt(w.curl, CURLOPT_URL, o.url.c_str());
        curl_easy_setopt(w.curl, CURLOPT_HTTPHEADER, w.headers);
        curl_easy_setopt(w.curl, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(w.curl, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(w.curl, CURLOPT_TIMEOUT, 120L);
    }
    std::atomic<long> next{0};
    auto run = [&](auto body) {
        std::vector<std::thread> ts;
        const auto t0 = Clock::now();
        for (auto& w : ws) ts.emplace_back([&, wp = &w] { body(*wp); });
        for (auto& t : ts) t.join();
        return std::chrono::duration<double>(Clock::now() - t0).count();
    };
    // Phase 1: each device's first exchange, once.
    const double s1 = run([&](Worker& w) {
        for (long i; (i = next.fetch_add(1)) < o.nodes;) exchange(w, o, devices[static_cast<size_t>(i)], o.first + i);
    });
    percentile_line("first", ws, s1);
    // Phase 2: devices in turn until the time is up; a busy device is skipped.
    next = 0;
    const auto deadline = Clock::now() + std::chrono::duration<double>(o.secs);
    const double s2 = run([&](Worker& w) {
        while (Clock::now() < deadline) {
            const long i = next.fetch_add(1) % o.nodes;
            Device& d = devices[static_cast<size_t>(i)];
            if (d.busy.exchange(true)) continue;
            exchange(w, o, d, o.first + i);
            d.busy = false;
        }
    });
    percentile_line("steady", ws, s2);
    for (auto& w : ws) {
        curl_slist_free_all(w.headers);
        curl_easy_cleanup(w.curl);
    }
    curl_global_cleanup();
    return 0;
}
