// lwwsync core: the exchange protocol — one round trip of a sync between a
// caller and a server (HTTP gateway, or lww_exchange over libpq), and the
// client loop that repeats it until both sides are up to date.
//
// Engines plug in through SyncEngine; transports through a function that
// sends a request document and returns the response document.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "changeset.h"

namespace lww {

constexpr const char* kExchangeFormat = "lwwsync.exchange";
constexpr int kExchangeVersion = 1;

struct ApplyCounts {
    size_t rows = 0, received = 0, applied = 0, ignored = 0;
    std::string json() const;
};

struct Batch {
    std::string json;  // a change set (docs/PROTOCOL.md)
    uint64_t since = 0, upto = 0;
    size_t rows = 0;
};

// What the sync loop needs from an engine (SQLite connection, Postgres backend).
class SyncEngine {
public:
    virtual ~SyncEngine() = default;
    virtual NodeId self() = 0;
    // The peer's change sequence up to which this database holds the peer's changes.
    virtual uint64_t received_from(const NodeId& peer) = 0;
    // This database's changes after `since`, at most `limit` rows, without registers stamped by `peer`.
    virtual Batch changes_for(const NodeId& peer, uint64_t since, int64_t limit) = 0;
    // Applies `cs` from `peer` and raises received_from(peer) to `cs.upto`, atomically.
    virtual ApplyCounts apply_from(const NodeId& peer, const ChangeSet& cs) = 0;
};

struct ExchangeRequest {
    NodeId node;               // the caller
    uint64_t received = 0;     // the server's sequence up to which the caller holds its changes
    int64_t limit = 1000;      // rows per returned batch
    std::optional<std::string> push;  // a change set of the caller's, as JSON
};

struct ExchangeResponse {
    NodeId node;               // the server
    uint64_t acked = 0;        // the caller's sequence up to which the server holds its changes
    std::optional<ApplyCounts> applied;
    std::string pull;          // the server's changes after request.received (JSON change set)
};

std::string encode_request(const ExchangeRequest& r);
std::string encode_response(const ExchangeResponse& r);
// Both parse fully and validate embedded change sets; they throw lww::Error.
struct ParsedRequest {
    NodeId node;
    uint64_t received = 0;
    int64_t limit = 1000;
    std::optional<ChangeSet> push;
};
struct ParsedResponse {
    NodeId node;
    uint64_t acked = 0;
    std::optional<ApplyCounts> applied;
    ChangeSet pull;
};
ParsedRequest decode_request(std::string_view json);
ParsedResponse decode_response(std::string_view json);

// Server side of one round trip. The engine's transaction is the caller's
// business (lww_exchange runs in one).
std::string serve_exchange(SyncEngine& server, std::string_view request_json);

struct SyncStats {
    std::string peer;
    size_t round_trips = 0;
    ApplyCounts sent, received;
    std::string json() const;
};

using Transport = std::function<std::string(const std::string& request)>;

// Client loop: push what the server lacks, pull what this side lacks, in
// bounded batches, until a round trip moves nothing. Each batch commits on
// its side together with the cursor that covers it.
SyncStats run_sync(SyncEngine& local, const Transport& send, int64_t batch_rows);

}  // namespace lww
