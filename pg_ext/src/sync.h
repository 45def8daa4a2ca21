// PostgreSQL adapter: the sync engine (PgEngine) and lww_sync (sync.cpp).
#pragma once
#include "../../common/exchange.h"
#include "../../common/sync_options.h"
#include "meta.h"
#include "principal.h"

namespace lww::pg {

class PgEngine : public SyncEngine {
public:
    NodeId self() override;
    void authorize(const NodeId& caller, bool bind) override;
    bool writable() override;
    std::string node_key() override;
    Cursor cursor_of(const NodeId& peer) override;
    Batch changes(const ChangesRequest& req) override;
    ApplyCounts apply_from(const NodeId& peer, const ChangeSet& cs, Trust trust, uint64_t seen) override;
    uint64_t clock_now() override;
    void observe_clock(uint64_t hlc) override;
    uint64_t max_drift_ms() override;
    uint64_t last_seq() override;
    uint64_t progress_seq() override { return last_seq(); }
    void note_push(const NodeId& server, const std::string& id) override;
    bool sent_push(const NodeId& server, const std::string& id) override;
    std::string push_mark(const NodeId& caller) override;
    void set_push_mark(const NodeId& caller, const std::string& id) override;
    NodeId reset_node() override;
    ApplyCounts retry_parked() override;
    SeqRanges relayed_from(const NodeId& peer, uint64_t after) override;
    void forget_relayed(const NodeId& peer, uint64_t upto) override;
    bool reid_when_caller_is_ahead() override { return false; }
    // Purge and re-snapshot, the server's side and the purge bound (purge.cpp).
    uint64_t purge_horizon() override;
    std::optional<std::vector<uint64_t>> holds_keys(const NodeId& caller, const std::string& table,
                                                    const std::vector<std::vector<Value>>& keys) override;
    void note_upstream(const NodeId& peer, uint64_t floor, bool first) override;
    std::vector<std::pair<std::string, uint64_t>> gen_floors() override;
    size_t auto_purge() override;
    // The feed waits for in-flight writers (changes.cpp): read before writing.
    bool feed_waits_for_writers() const override { return true; }

private:
    const Principal& who();  // the caller, read once per engine (one statement)
    std::optional<Principal> who_;
};

// lww_sync to postgresql:// (libpq) or http(s):// (libcurl); returns the stats as JSON.
std::string sync_with(const std::string& url, const SyncOptions& opt);

}  // namespace lww::pg
