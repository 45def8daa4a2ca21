// Structured logging: one JSON object per line on stderr, one line per request.
#pragma once
#include <cstddef>
#include <string>

namespace lwwgw {

// One request's log line. Never its headers, so never its token.
struct RequestLine {
    std::string method;  // empty when the request line never completed
    std::string path;
    int status = 0;             // 0: no response was sent (the client went away, or was cut off)
    double ms = 0;              // from the end of the request headers to the end of the response
    std::size_t bytes_in = 0;   // body bytes after decompression
    std::size_t bytes_out = 0;  // body bytes as sent (after compression)
    std::string role;           // the database role the request ran as
    std::string db;             // "primary" or "replica" (db-read-uri): where the exchange ran
    std::string remote;
    std::string error;  // the error message sent, on failure
};
void log_request(const RequestLine& line);

// A line {"ts", "level", "msg", <extra>}: extra_json is "" or `,"k":v...`.
void log_event(const char* level, const std::string& msg, const std::string& extra_json = "");

// s with every byte that is not part of valid UTF-8 replaced by U+FFFD.
std::string utf8_or_replaced(const std::string& s);

// UTC now as 2026-11-26T10:00:00.123Z.
std::string iso_now();

}  // namespace lwwgw
