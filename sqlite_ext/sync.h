// SQLite adapter: lww_sync('file:PATH') — bidirectional sync with another
// SQLite database, in bounded batches, cursor per peer on both sides.
#pragma once
#include <string>

#include "conn.h"

namespace lww::sq {

struct SyncOptions {
    int64_t batch_rows = 1000;
};

SyncOptions parse_sync_options(const std::string& json);
std::string sync_with(Conn& c, const std::string& url, const SyncOptions& opt);

}  // namespace lww::sq
