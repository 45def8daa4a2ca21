// Request bodies as they arrive: Content-Encoding decoded incrementally,
// the size limit counted after decoding (so neither a gzip bomb nor a large
// chunked body is ever held beyond it), and a depth check of the JSON.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace lwwgw {

enum class Encoding { Identity, Gzip, Deflate, Brotli };

// "gzip", "x-gzip", "deflate", "br", "identity" or "" (case-insensitive);
// false for anything else, including lists ("gzip, br").
bool parse_encoding(const std::string& header, Encoding& out);

class BodyDecoder {
public:
    BodyDecoder(Encoding enc, std::size_t limit);
    ~BodyDecoder();
    BodyDecoder(const BodyDecoder&) = delete;
    BodyDecoder& operator=(const BodyDecoder&) = delete;

    // Takes the next raw bytes. Once the decoded body passes the limit, or
    // the data turns out not to decode, later bytes are only counted.
    void feed(const char* data, std::size_t n);
    // The raw body is complete: checks that the compressed stream ended.
    void finish();

    bool too_large() const { return too_large_; }
    bool invalid() const { return invalid_; }
    std::size_t raw_bytes() const { return raw_; }
    // Bytes received after the body was refused (only counted, then dropped).
    std::size_t discarded() const { return discarded_; }
    std::string& body() { return out_; }
    Encoding encoding() const { return enc_; }

private:
    struct Zlib;
    struct Brotli;
    bool append(const char* data, std::size_t n);

    Encoding enc_;
    std::size_t limit_;
    std::string out_;
    std::size_t raw_ = 0, discarded_ = 0;
    bool too_large_ = false, invalid_ = false, ended_ = false;
    std::unique_ptr<Zlib> z_;
    std::unique_ptr<Brotli> br_;
};

// True when `json` nests arrays/objects no deeper than `max_depth`. A linear
// scan of the brackets outside strings: it neither validates nor allocates
// (PostgreSQL validates), it only keeps a deeply nested document from
// exhausting the stack of the JSON parsers behind the gateway.
bool json_depth_ok(const std::string& json, unsigned max_depth);

}  // namespace lwwgw
