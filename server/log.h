// Structured logging: one JSON object per line on stderr, one line per request.
#pragma once
#include <chrono>
#include <cstddef>
#include <string>

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace lwwgw {

// What a request's handler learned, for its log line. cpp-httplib runs a
// request's routing, handler and logger on one worker thread, so a
// thread-local record needs no plumbing through httplib's const Request.
struct RequestLog {
    std::chrono::steady_clock::time_point start{};
    bool started = false;
    std::size_t bytes_in = 0;  // body bytes after decompression
    std::string role;          // the database role the request ran as
    std::string error;         // the error message sent, on failure
};
RequestLog& request_log();

// Called first for every routed request.
void log_request_start();

// cpp-httplib logger: writes the request's line (never its headers, so never
// its token) and resets the record for the connection's next request.
void log_request(const httplib::Request& req, const httplib::Response& res);

// A line {"ts", "level", "msg", <extra>}: extra_json is "" or `,"k":v...`.
void log_event(const char* level, const std::string& msg, const std::string& extra_json = "");

// s with every byte that is not part of valid UTF-8 replaced by U+FFFD.
std::string utf8_or_replaced(const std::string& s);

// UTC now as 2026-11-26T10:00:00.123Z.
std::string iso_now();

}  // namespace lwwgw
