// SQLite adapter: the sync engine behind lww_sync and lww_exchange.
// lww_sync('file:PATH') runs the common client loop against another SQLite
// database opened in-process, whose side answers with serve_exchange — the
// same round trips an HTTP gateway or a Postgres server answers.
#pragma once
#include <string>

#include "../common/exchange.h"
#include "conn.h"

namespace lww::sq {

class SqliteEngine : public SyncEngine {
public:
    explicit SqliteEngine(Conn& c) : c_(c) {}
    NodeId self() override;
    Cursor cursor_of(const NodeId& peer) override;
    Batch changes_for(const NodeId& peer, const Cursor& from, int64_t limit) override;
    ApplyCounts apply_from(const NodeId& peer, const ChangeSet& cs) override;

private:
    Conn& c_;
};

struct SyncOptions {
    int64_t batch_rows = 1000;
};

SyncOptions parse_sync_options(const std::string& json);
std::string sync_with(Conn& c, const std::string& url, const SyncOptions& opt);
bool is_postgres_url(const std::string& url);
std::string sync_with_postgres(Conn& c, const std::string& url, int64_t batch_rows);
// Server side of one round trip, in one savepoint.
std::string exchange_request(Conn& c, const std::string& request);

}  // namespace lww::sq
