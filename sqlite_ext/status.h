// SQLite adapter: lww_sync_status() and lww_sync_cancel() — what a sync of a
// database file is doing, visible to every connection of this process (an
// app's UI thread while its sync worker runs lww_sync).
#pragma once
#include <string>

#include "../common/exchange.h"

namespace lww::sq {

// Keys are database files (connections to one file share the entry).
class SyncStatusScope {
public:
    SyncStatusScope(std::string db_key, const std::string& url);
    ~SyncStatusScope();  // marks the sync finished; keeps its last stats
    void progress(const SyncStats& s);
    void failed(const std::string& error);
    void retrying(const std::string& why);  // a transient failure, retried
    // Throws lww::Cancelled once lww_sync_cancel() asked for it.
    void check_cancel() const;
    bool cancel_requested() const;

private:
    std::string key_;
};

std::string sync_status_json(const std::string& db_key);
bool request_sync_cancel(const std::string& db_key);

}  // namespace lww::sq
