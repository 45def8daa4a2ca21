#include "gzip.h"

#include <zlib.h>

#include "error.h"

namespace lww {

std::string gzip_compress(const std::string& data, int level) {
    z_stream zs{};
    // 16 + MAX_WBITS: a gzip header and trailer rather than a zlib one.
    if (deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        throw Error("cannot initialise gzip");
    std::string out;
    out.resize(deflateBound(&zs, data.size()) + 32);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs.avail_in = static_cast<uInt>(data.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    const int rc = deflate(&zs, Z_FINISH);
    const size_t produced = zs.total_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) throw Error("gzip compression failed");
    out.resize(produced);
    return out;
}

}  // namespace lww
