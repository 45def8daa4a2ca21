// SQLite adapter: the sync engine behind lww_sync and lww_exchange.
// lww_sync('file:PATH') runs the common client loop against another SQLite
// database opened in-process, whose side answers with serve_exchange — the
// same round trips an HTTP gateway or a Postgres server answers;
// lww_sync('http(s)://…') sends them over libcurl (common/http_client.h).
#pragma once
#include <string>

#include "../common/exchange.h"
#include "../common/sync_options.h"
#include "conn.h"

namespace lww::sq {

class SqliteEngine : public SyncEngine {
public:
    explicit SqliteEngine(Conn& c) : c_(c) {}
    NodeId self() override;
    Cursor cursor_of(const NodeId& peer) override;
    Batch changes(const ChangesRequest& req) override;
    ApplyCounts apply_from(const NodeId& peer, const ChangeSet& cs, Trust trust, uint64_t seen) override;
    uint64_t clock_now() override;
    void observe_clock(uint64_t hlc) override;
    uint64_t max_drift_ms() override;
    std::string node_key() override;
    uint64_t last_seq() override;
    uint64_t progress_seq() override { return c_.last_seq(); }
    void note_push(const NodeId& server, const std::string& id) override;
    bool sent_push(const NodeId& server, const std::string& id) override;
    std::string push_mark(const NodeId& caller) override;
    void set_push_mark(const NodeId& caller, const std::string& id) override;
    NodeId reset_node() override;
    ApplyCounts retry_parked() override;
    SeqRanges relayed_from(const NodeId& peer, uint64_t after) override;
    void forget_relayed(const NodeId& peer, uint64_t upto) override;
    // Purge and re-snapshot (purge.cpp).
    uint64_t purge_horizon() override;
    std::optional<std::vector<uint64_t>> holds_keys(const NodeId& caller, const std::string& table,
                                                    const std::vector<std::vector<Value>>& keys) override;
    bool can_resnapshot() const override { return true; }
    std::vector<std::string> probe_tables() override;
    ProbePage probe_rows(const NodeId& peer, const std::string& table, uint64_t after, size_t limit,
                         uint64_t peer_floor, const SeqRanges& relayed) override;
    size_t drop_rows(const NodeId& peer, const std::string& table, const std::vector<std::vector<Value>>& keys,
                     const std::vector<uint64_t>& gen_seq) override;
    void note_upstream(const NodeId& peer, uint64_t floor, bool first) override;
    std::vector<std::pair<std::string, uint64_t>> gen_floors() override;
    void raise_gen_floors(const std::vector<std::pair<std::string, uint64_t>>& floors) override;
    size_t auto_purge() override;
    void peer_purges(bool yes) override { restamp_lower_ = yes; }

private:
    Conn& c_;
    bool restamp_lower_ = false;  // pulls from a server that purged: rows arriving lower are restamped
};

std::string sync_with(Conn& c, const std::string& url, const SyncOptions& opt);
std::string sync_with_postgres(Conn& c, const std::string& url, const SyncOptions& opt, const Progress& progress);
// lww_reset_node(): a new node id now (docs/PROTOCOL.md, "Copies and restores").
NodeId reset_node_id(Conn& c);
// A database file found at another place than where its node id was made
// (another file: a copy, a restored backup, a seed shipped in an app) takes
// a new node id, once per connection (lww_config('detect_copies')).
void check_copied_file(Conn& c);
// Server side of one round trip, in one savepoint.
std::string exchange_request(Conn& c, const std::string& request);
// The key of this connection's database in the process-wide sync status.
std::string status_key(Conn& c);

}  // namespace lww::sq
