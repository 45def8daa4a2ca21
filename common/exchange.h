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
    uint64_t since = 0, after = 0, upto = 0;
    bool complete = true;
    size_t rows = 0;
};

// What a receiver holds of one sender: every row whose latest change is at or
// before `received`, and of later rows every register changed at or before
// `floor`. The two differ only in the middle of a run of row-limited batches:
// a row whose newest change lies past a batch's end keeps older registers
// inside it, and those travel with the row in a later batch.
struct Cursor {
    uint64_t received = 0;
    uint64_t floor = 0;
    // The cursor after committing change set `cs` on top of this one.
    Cursor after_batch(const ChangeSet& cs) const;
};

// What lww_changes is asked for, in both engines.
struct ChangesRequest {
    uint64_t since = 0;                 // registers changed after this sequence
    uint64_t after = 0;                 // of rows whose latest change is after this one (>= since)
    int64_t limit = -1;                 // max rows; <= 0: everything
    const NodeId* skip_node = nullptr;  // omit registers stamped by the receiver itself

    // The next batch for `peer`, whose cursor on us is `from`.
    static ChangesRequest for_peer(const NodeId& peer, const Cursor& from, int64_t limit) {
        return ChangesRequest{from.floor, from.received, limit, &peer};
    }
};

// What the sync loop needs from an engine (SQLite connection, Postgres backend).
class SyncEngine {
public:
    virtual ~SyncEngine() = default;
    virtual NodeId self() = 0;
    // How far this database holds the peer's changes.
    virtual Cursor cursor_of(const NodeId& peer) = 0;
    // This database's changes past `from`, at most `limit` rows, without registers stamped by `peer`.
    virtual Batch changes_for(const NodeId& peer, const Cursor& from, int64_t limit) = 0;
    // Applies `cs` from `peer` and stores cursor_of(peer).after_batch(cs), atomically.
    virtual ApplyCounts apply_from(const NodeId& peer, const ChangeSet& cs) = 0;
};

struct ExchangeRequest {
    NodeId node;               // the caller
    // How far the caller holds the server's changes; absent in the first
    // round trip, when the caller does not know the server yet: then the
    // response carries no pull, only the server's node id and cursor.
    std::optional<Cursor> received;
    int64_t limit = 1000;      // rows per returned batch
    std::optional<std::string> push;  // a change set of the caller's, as JSON
};

struct ExchangeResponse {
    NodeId node;               // the server
    Cursor acked;              // how far the server holds the caller's changes
    std::optional<ApplyCounts> applied;
    std::optional<std::string> pull;  // the server's changes past request.received (JSON change set)
};

std::string encode_request(const ExchangeRequest& r);
std::string encode_response(const ExchangeResponse& r);
// Both parse fully and validate embedded change sets; they throw lww::Error.
struct ParsedRequest {
    NodeId node;
    std::optional<Cursor> received;
    int64_t limit = 1000;
    std::optional<ChangeSet> push;
};
struct ParsedResponse {
    NodeId node;
    Cursor acked;
    std::optional<ApplyCounts> applied;
    std::optional<ChangeSet> pull;
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
