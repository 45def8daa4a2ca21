#include "body.h"

#include <brotli/decode.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>

namespace lwwgw {

struct BodyDecoder::Zlib {
    z_stream zs{};
    bool ok = false;
};

struct BodyDecoder::Brotli {
    BrotliDecoderState* st = nullptr;
    ~Brotli() {
        if (st) BrotliDecoderDestroyInstance(st);
    }
};

bool parse_encoding(const std::string& header, Encoding& out) {
    std::string v;
    for (char c : header)
        if (c != ' ' && c != '\t') v += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (v.empty() || v == "identity") out = Encoding::Identity;
    else if (v == "gzip" || v == "x-gzip") out = Encoding::Gzip;
    else if (v == "deflate") out = Encoding::Deflate;
    else if (v == "br") out = Encoding::Brotli;
    else return false;
    return true;
}

BodyDecoder::BodyDecoder(Encoding enc, std::size_t limit) : enc_(enc), limit_(limit) {
    if (enc == Encoding::Gzip || enc == Encoding::Deflate) {
        z_ = std::make_unique<Zlib>();
        // 32 + MAX_WBITS: a gzip or a zlib header, detected (as cpp-httplib
        // did for both names: clients send either under "deflate").
        z_->ok = inflateInit2(&z_->zs, 32 + MAX_WBITS) == Z_OK;
        if (!z_->ok) invalid_ = true;
    } else if (enc == Encoding::Brotli) {
        br_ = std::make_unique<Brotli>();
        br_->st = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
        if (!br_->st) invalid_ = true;
    } else {
        ended_ = true;  // identity: the raw body is the body
    }
}

BodyDecoder::~BodyDecoder() {
    if (z_ && z_->ok) inflateEnd(&z_->zs);
}

bool BodyDecoder::append(const char* data, std::size_t n) {
    if (n > limit_ - out_.size()) {
        too_large_ = true;
        out_.clear();
        out_.shrink_to_fit();
        return false;
    }
    out_.append(data, n);
    return true;
}

void BodyDecoder::feed(const char* data, std::size_t n) {
    raw_ += n;
    if (too_large_ || invalid_) {
        discarded_ += n;
        return;
    }
    if (enc_ == Encoding::Identity) {
        append(data, n);
        return;
    }
    char buf[16384];
    if (z_) {
        z_stream& zs = z_->zs;
        zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
        zs.avail_in = static_cast<uInt>(n);
        for (;;) {
            if (ended_) {
                if (zs.avail_in == 0) return;
                // Another gzip member follows (RFC 1952 allows `cat a.gz b.gz`).
                if (inflateReset(&zs) != Z_OK) {
                    invalid_ = true;
                    return;
                }
                ended_ = false;
            }
            zs.next_out = reinterpret_cast<Bytef*>(buf);
            zs.avail_out = sizeof buf;
            const int rc = inflate(&zs, Z_NO_FLUSH);
            if (!append(buf, sizeof buf - zs.avail_out)) return;
            if (rc == Z_STREAM_END) {
                ended_ = true;
                continue;
            }
            if (rc == Z_BUF_ERROR) return;  // no progress without more input
            if (rc != Z_OK) {
                invalid_ = true;
                return;
            }
            if (zs.avail_in == 0 && zs.avail_out != 0) return;  // all input used, all output out
        }
    }
    // Brotli
    const uint8_t* in = reinterpret_cast<const uint8_t*>(data);
    std::size_t avail_in = n;
    for (;;) {
        uint8_t* next_out = reinterpret_cast<uint8_t*>(buf);
        std::size_t avail_out = sizeof buf;
        const BrotliDecoderResult rc =
            BrotliDecoderDecompressStream(br_->st, &avail_in, &in, &avail_out, &next_out, nullptr);
        if (!append(buf, sizeof buf - avail_out)) return;
        if (rc == BROTLI_DECODER_RESULT_SUCCESS) {
            ended_ = true;
            if (avail_in > 0) invalid_ = true;  // bytes after the end of the stream
            return;
        }
        if (rc == BROTLI_DECODER_RESULT_ERROR) {
            invalid_ = true;
            return;
        }
        if (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT) return;
        // NEEDS_MORE_OUTPUT: loop
    }
}

void BodyDecoder::finish() {
    if (!too_large_ && !invalid_ && !ended_) invalid_ = true;  // truncated compressed stream
}

bool json_depth_ok(const std::string& json, unsigned max_depth) {
    unsigned depth = 0;
    bool in_string = false;
    for (std::size_t i = 0, n = json.size(); i < n; ++i) {
        const char c = json[i];
        if (in_string) {
            if (c == '\\') ++i;  // the escaped character cannot end the string
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) return false;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return true;
}

}  // namespace lwwgw
