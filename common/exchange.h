// lwwsync core: the exchange protocol — one round trip of a sync between a
// caller and a server (HTTP gateway, or lww_exchange over libpq), and the
// client loop that repeats it until both sides are up to date.
//
// Engines plug in through SyncEngine; transports through a function that
// sends a request document and returns the response document.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "changeset.h"
#include "error.h"

namespace lww {

constexpr const char* kExchangeFormat = "lwwsync.exchange";
constexpr int kExchangeVersion = 1;

struct ApplyCounts {
    size_t rows = 0, received = 0, applied = 0;
    size_t duplicate = 0;  // registers already held (an echo, a redelivery)
    size_t lost = 0;       // registers older than the one held here: a conflict the sender lost
    size_t overwrote = 0;  // applied registers that replaced a write of ours the sender had not seen
    size_t ignored = 0;    // duplicate + lost (kept for readers of older versions)
    size_t rejected = 0;   // registers refused by the receiver's rules (docs/SECURITY.md), not merged
    size_t pending = 0;    // registers held for a table or column this database does not have yet (docs/SCHEMA.md)
    void add(const ApplyCounts& o) {
        pending += o.pending;
        rows += o.rows;
        received += o.received;
        applied += o.applied;
        duplicate += o.duplicate;
        lost += o.lost;
        overwrote += o.overwrote;
        ignored += o.ignored;
        rejected += o.rejected;
    }
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

// Change sequences of this database, as sorted disjoint closed ranges.
struct SeqRange {
    uint64_t lo = 0, hi = 0;
};
using SeqRanges = std::vector<SeqRange>;
SeqRanges seq_ranges(std::vector<uint64_t> seqs);  // consecutive ones joined
bool in_ranges(const SeqRanges& ranges, uint64_t seq);

// Rows an apply merged bringing a third node's registers (MergeRow::relayed):
// the peer each came from — the set's sender, or the sender of a row parked
// earlier that landed now — and the change sequence it took here. Engines
// record them per peer for the no-echo rule and the re-snapshot's probes.
struct RelayedRow {
    NodeId from;
    uint64_t seq = 0;
};
using RelayedRows = std::vector<RelayedRow>;
std::map<NodeId, SeqRanges> relayed_by_peer(const RelayedRows& rows);

// What lww_changes is asked for, in both engines.
struct ChangesRequest {
    uint64_t since = 0;                 // registers changed after this sequence
    uint64_t after = 0;                 // of rows whose latest change is after this one (>= since)
    int64_t limit = -1;                 // max rows; <= 0: everything
    const NodeId* skip_node = nullptr;  // omit registers stamped by the receiver itself
    // No echo (docs/PROTOCOL.md): omit registers that took these sequences
    // when merged from the receiver (it holds them), unless stamped by
    // `self` (a local write never is: the guard against a reused sequence).
    const SeqRanges* relayed = nullptr;
    const NodeId* self = nullptr;
    bool compact_rows = false;  // the receiver reads rows written as arrays

    // The next batch for `peer`, whose cursor on us is `from`.
    static ChangesRequest for_peer(const NodeId& peer, const Cursor& from, int64_t limit) {
        return ChangesRequest{from.floor, from.received, limit, &peer};
    }
};

// Purge and re-snapshot (docs/PROTOCOL.md, "Purge and re-snapshot").
// A re-snapshot asks the server which of the caller's rows it still holds,
// a page of keys of one table at a time.
constexpr size_t kMaxProbeKeys = 10000;
constexpr uint64_t kParkedGeneration = UINT64_MAX;
struct Probe {
    std::string table;
    std::vector<std::vector<Value>> keys;
    // The caller's generation of each key (empty from pre-0.7 callers): a
    // server holding a key only at a lower one deleted the caller's row and
    // purged it before the key was inserted again, so it answers "absent".
    std::vector<uint64_t> gens;
};
// Alive rows of one local table whose generation the server already holds
// (it would not be pushed again): the ones a re-snapshot asks about.
struct ProbePage {
    std::vector<std::vector<Value>> keys;
    std::vector<uint64_t> gens;     // each row's generation
    std::vector<uint64_t> gen_seq;  // each row's generation register sequence when read
    uint64_t next = 0;              // the next page starts after this (engine's order)
    bool done = true;
};

// Who a change set being applied comes from.
// - caller: anybody who called lww_exchange or lww_apply. Its stamps must be
//   within the drift limit of this database's clock, and (Postgres) its node
//   id and the registers it may change are its own principal's
//   (docs/SECURITY.md).
// - chosen_server: the server this side chose to sync with. Its clock is
//   adopted, within kMaxTrustedAheadMs of the wall clock, so a client whose
//   clock runs behind catches up instead of refusing the server's changes.
enum class Trust { caller, chosen_server };

// What the sync loop needs from an engine (SQLite connection, Postgres backend).
class SyncEngine {
public:
    virtual ~SyncEngine() = default;
    virtual NodeId self() = 0;
    // How far this database holds the peer's changes.
    virtual Cursor cursor_of(const NodeId& peer) = 0;
    // This database's changes as lww_changes gives them.
    virtual Batch changes(const ChangesRequest& req) = 0;
    // Applies `cs` from `peer` and stores cursor_of(peer).after_batch(cs),
    // atomically. `seen`: the peer holds this database's registers up to
    // this sequence (0: unknown), for the `overwrote` count.
    virtual ApplyCounts apply_from(const NodeId& peer, const ChangeSet& cs, Trust trust, uint64_t seen) = 0;
    // No echo (docs/PROTOCOL.md): apply_from records the sequences its
    // merge gave rows that brought registers stamped by a third node (not
    // `peer`, not us); `peer` holds those registers, so what this database
    // sends it skips them. The ones past `after` (the peer's cursor floor on
    // us), and forgetting the ones at or below `upto`. Engines that do not
    // record them send everything.
    virtual SeqRanges relayed_from(const NodeId& /*peer*/, uint64_t /*after*/) { return {}; }
    virtual void forget_relayed(const NodeId& /*peer*/, uint64_t /*upto*/) {}
    // Serving a caller: binds its node id to whoever is calling (the
    // principal) or refuses it with a permission error. Engines without
    // principals (a local SQLite file) accept everyone. serve_exchange has
    // checked the caller's key first when its node id is derived from one.
    // `bind` is false for a round trip that pushes nothing: a node bound to
    // another principal is still refused, but a first binding waits for the
    // node's first push (a pull-only round trip writes nothing).
    virtual void authorize(const NodeId& /*caller*/, bool /*bind*/) {}
    // Whether this transaction may write: false on a hot standby or in a
    // read-only transaction, which serve round trips that push nothing.
    virtual bool writable() { return true; }
    // Retries the rows this database parked (lww_rejected) for whoever is
    // syncing, once per sync even when nothing else arrives: a parent that
    // came back, a rule relaxed. Counts what landed. (A server that cannot
    // write skips it; every applied push retries them too.)
    virtual ApplyCounts retry_parked() { return {}; }
    // The secret key this database's node id is derived from (NodeId::
    // from_key), sent to the servers it syncs with; empty for a random id.
    virtual std::string node_key() { return {}; }
    // The clock a server reports (at least its wall clock), and what a client does with it.
    virtual uint64_t clock_now() = 0;
    virtual void observe_clock(uint64_t hlc) = 0;
    // The server's drift limit, for the clock a caller reports.
    virtual uint64_t max_drift_ms() = 0;
    // Copies and restores (docs/PROTOCOL.md, "Copies and restores").
    // The latest local change sequence handed out (a caller's cursor on us
    // past it means this database is a restore or a copy of another).
    virtual uint64_t last_seq() { return kMaxSequence; }
    // The same for a progress estimate only: no checks, no side effects
    // (kMaxSequence: unknown).
    virtual uint64_t progress_seq() { return kMaxSequence; }
    // Client: records `id`, the push id of a batch about to be sent to
    // `server`, durably when it can, before it is sent.
    virtual void note_push(const NodeId& /*server*/, const std::string& /*id*/) {}
    // Client: whether this database sent push id `id` to `server` (kept for
    // the recent pushes; an id it does not know means a copy pushed as it).
    virtual bool sent_push(const NodeId& /*server*/, const std::string& /*id*/) { return true; }
    // Server: the id of the last push of `caller` that moved its cursor here
    // (empty: none known), and storing it, in the transaction of that batch.
    virtual std::string push_mark(const NodeId& /*caller*/) { return {}; }
    virtual void set_push_mark(const NodeId& /*caller*/, const std::string& /*id*/) {}
    // This database turned out to be a copy or a restore: give it a new node
    // id now (lww_reset_node). Registers it stamped go out under the new id;
    // the old id stays as another node; its cursors on peers restart at 0.
    // Returns the new id. Engines that cannot re-id throw.
    virtual NodeId reset_node() { throw Error("this database cannot take a new node id here"); }
    // Server: whether a caller's cursor past our last sequence makes us take
    // a new node id (we are a restore). Postgres says no: a caller's claim
    // must not make a shared server re-sync everyone; it checks its own
    // identity (system id, timeline, database oid) instead.
    virtual bool reid_when_caller_is_ahead() { return true; }
    // Purge and re-snapshot (docs/PROTOCOL.md). Server: the highest change
    // sequence of a tombstone this database purged (0: none) — a caller
    // whose cursor is below it may hold rows deleted here and must
    // re-snapshot first.
    virtual uint64_t purge_horizon() { return 0; }
    // Server: which of `keys` of `table` this database holds (a row, a
    // tombstone, a row parked for `caller`); nullopt when it does not track
    // the table (the caller then keeps its rows). Keys are checked against
    // the table's key (arity, types) and refused with an error otherwise.
    // Each key's generation held here (0: none; kParkedGeneration: a row of
    // the caller's parked here, which lands later).
    virtual std::optional<std::vector<uint64_t>> holds_keys(const NodeId& /*caller*/, const std::string& /*table*/,
                                                            const std::vector<std::vector<Value>>& /*keys*/) {
        return std::nullopt;
    }
    // Client: the tracked tables, and a page of the alive rows of `table`
    // past `after` whose generation `peer` holds (receiver_lacks says no
    // for it, given `peer`'s cursor floor on us and the no-echo ranges).
    virtual bool can_resnapshot() const { return false; }
    virtual std::vector<std::string> probe_tables() {
        throw Error(
            "this database cannot re-snapshot here: its server purged deleted rows past this database's "
            "cursor on it (lwwsync on Postgres re-snapshots only as a server)");
    }
    virtual ProbePage probe_rows(const NodeId& /*peer*/, const std::string& /*table*/, uint64_t /*after*/,
                                 size_t /*limit*/, uint64_t /*peer_floor*/, const SeqRanges& /*relayed*/) {
        return {};
    }
    // Client: removes the rows of `table` that `peer` no longer holds (it
    // deleted them and purged the tombstones), each only if its generation
    // register still has the sequence it had when probed; no tombstone is
    // written (nothing to send: the peer lacks them), and this database's
    // own purge horizon rises so its own pullers re-snapshot too. Returns
    // the rows removed.
    virtual size_t drop_rows(const NodeId& /*peer*/, const std::string& /*table*/,
                             const std::vector<std::vector<Value>>& /*keys*/,
                             const std::vector<uint64_t>& /*gen_seq*/) {
        return 0;
    }
    // Client: `peer` holds this database's changes up to `floor` (its
    // cursor on us): a tombstone is purged here only once every peer this
    // database pushes to holds it. `first` false: only an update of a peer
    // already noted (a hello writes nothing for a server met for the first time).
    virtual void note_upstream(const NodeId& /*peer*/, uint64_t /*floor*/, bool /*first*/) {}
    // Generation floors (docs/PROTOCOL.md): per table, the highest
    // generation of a tombstone purged here; a server states them, a client
    // raises its own to them, so a key it inserts starts above every
    // tombstone a peer may still hold.
    virtual std::vector<std::pair<std::string, uint64_t>> gen_floors() { return {}; }
    virtual void raise_gen_floors(const std::vector<std::pair<std::string, uint64_t>>& /*floors*/) {}
    // Client: the server it syncs with has purged tombstones (its horizon is
    // above 0): a row it sends at a lower generation than the one held here
    // may come back from a purge, and the merge restamps ours so it travels
    // again (common/apply.h, Receiver::restamp). Elsewhere merges never restamp.
    virtual void peer_purges(bool /*yes*/) {}
    // Both: the purge that runs by itself during sync (at most once per
    // interval: min(tombstone_ttl_ms, an hour)). Returns tombstones removed.
    virtual size_t auto_purge() { return 0; }
    // True when reading the feed waits for concurrent local writers (Postgres):
    // then a client reads all it pushes before it writes anything it pulls.
    virtual bool feed_waits_for_writers() const { return false; }
};

// Batch limits. A batch holds at least one row, however large.
struct BatchLimits {
    int64_t rows = 1000;
    size_t bytes = 8u << 20;
    // The receiver reads rows written as arrays (docs/PROTOCOL.md, "Rows as
    // arrays"): a request's "compact": true; the sender may then use them.
    bool compact_rows = false;
};
// Documents (change sets, requests, responses) larger than this are refused before they are parsed (lww_apply,
// lww_exchange, both engines). `what` names the document in the error.
constexpr size_t kMaxDocumentBytes = size_t(512) << 20;
void check_document_size(size_t bytes, const char* what);

constexpr int64_t kMaxBatchRows = 1000000;
constexpr size_t kMaxBatchBytes = 256u << 20;

// The peer's changes past `from`, within `limits`: rows as lww_changes cuts
// them, then fewer rows while the set is larger than `limits.bytes`.
Batch changes_for(SyncEngine& engine, const NodeId& peer, const Cursor& from, const BatchLimits& limits);

struct ExchangeRequest {
    NodeId node;           // the caller
    std::string node_key;  // its key, when `node` is derived from one (NodeId::keyed)
    // How far the caller holds the server's changes; absent in the first
    // round trip, when the caller does not know the server yet: then the
    // response carries no pull, only the server's node id and cursor.
    std::optional<Cursor> received;
    // With a push in a round trip that does not pull (no `received`): the
    // floor of the caller's cursor on the server, for the server's
    // `overwrote` count (0: not sent, unknown).
    uint64_t seen = 0;
    BatchLimits limits;               // of the returned batch
    uint64_t clock = 0;               // the caller's clock (0: not sent)
    std::optional<std::string> push;  // a change set of the caller's, as JSON
    std::string push_id;              // a random id of this push (with `push`)
    bool forked = false;              // the caller found a copy of itself: the server retires its push marks
    // The server's purge horizon this caller reconciled its rows against
    // (a re-snapshot; or nothing to reconcile); nullopt: an older caller.
    std::optional<uint64_t> horizon;
    std::optional<Probe> probe;  // a re-snapshot's question (no push, no pull with it)
};

struct ExchangeResponse {
    NodeId node;             // the server
    Cursor acked;            // how far the server holds the caller's changes
    uint64_t clock = 0;      // the server's clock
    bool more = false;       // the pull was cut: more changes wait past it
    uint64_t remaining = 0;  // with `more`: about how many rows wait past it (change sequences; 0: unknown)
    std::optional<ApplyCounts> applied;
    std::optional<std::string> pull;  // the server's changes past request.received (JSON change set)
    std::string acked_id;             // push id of the caller's push that last moved `acked` (empty: unknown)
    uint64_t horizon = 0;             // the server's purge horizon (0: it never purged)
    bool resnapshot = false;          // the caller is older than the horizon: nothing was done, re-snapshot first
    std::optional<std::vector<uint32_t>> absent;           // of a probe: indexes of the keys the server does not hold
    std::vector<std::pair<std::string, uint64_t>> floors;  // generation floors (hello answers)
};

std::string encode_request(const ExchangeRequest& r);
std::string encode_response(const ExchangeResponse& r);
// Both parse fully and validate embedded change sets; they throw lww::Error.
struct ParsedRequest {
    NodeId node;
    std::string node_key;
    std::optional<Cursor> received;
    uint64_t seen = 0;
    BatchLimits limits;
    uint64_t clock = 0;
    std::optional<ChangeSet> push;
    std::string push_id;
    bool forked = false;
    std::optional<uint64_t> horizon;
    std::optional<Probe> probe;
};
struct ParsedResponse {
    NodeId node;
    Cursor acked;
    uint64_t clock = 0;
    bool more = false;
    uint64_t remaining = 0;
    std::optional<ApplyCounts> applied;
    std::optional<ChangeSet> pull;
    std::string acked_id;
    uint64_t horizon = 0;
    bool resnapshot = false;
    std::optional<std::vector<uint32_t>> absent;
    std::vector<std::pair<std::string, uint64_t>> floors;
};
// A push id: 1 to 32 characters of [0-9a-f] (random 64 bits as 16 hex digits).
constexpr size_t kMaxPushIdChars = 32;
// The push mark of a node reported forked: never a push id (not hex).
constexpr const char* kForkedMark = "forked";
std::string new_push_id();
ParsedRequest decode_request(std::string_view json);
ParsedResponse decode_response(std::string_view json);

// Server side of one round trip. The engine's transaction is the caller's
// business (lww_exchange runs in one).
std::string serve_exchange(SyncEngine& server, std::string_view request_json);

struct SyncStats {
    std::string peer;
    size_t batches = 0;                           // round trips
    ApplyCounts sent, received;                   // as the server and this side applied them
    size_t pushed = 0, pulled = 0;                // rows sent and received
    uint64_t bytes_sent = 0, bytes_received = 0;  // exchange documents, uncompressed
    uint64_t wire_sent = 0, wire_received = 0;    // on the wire (HTTP: gzip), when the transport counts them
    size_t retries = 0;                           // transient failures retried by the transport
    double ms = 0;
    bool done = false;
    size_t reset_node = 0;   // this side took a new node id (it was a copy or a restore)
    size_t resnapshots = 0;  // re-snapshots against the server's purge horizon
    size_t dropped = 0;      // rows removed here by them (the server deleted and purged them)
    size_t purged = 0;       // tombstones this side purged at the end of the sync
    // Of a running sync: about how many rows are left to pull (the server's
    // estimate) and to push (this side's), for a progress bar; 0 when done.
    uint64_t to_pull = 0, to_push = 0;
    std::string json() const;
};

// Sends a request document, returns the response document; throws lww::Error.
using Transport = std::function<std::string(const std::string& request)>;

// A failure of one round trip that the same round trip may not meet again:
// a deadlock or serialization failure in the server's transaction. Resending
// is safe, because an exchange is idempotent.
class TransientError : public Error {
public:
    using Error::Error;
};

// The peer, or a proxy in front of it, refused a request as too large (HTTP
// 413: nginx's client_max_body_size, the gateway's max-body-bytes). The
// client loop sends the same changes again in smaller batches.
class TooLargeError : public Error {
public:
    using Error::Error;
};

// The server cannot write (a hot standby: SQLSTATE 25006, over HTTP a 503
// with that code) and the round trip pushed. Not retried against the same
// server; a push with rows fails the sync, one that only moves the server's
// cursor on the caller is left for a later sync with a primary.
class ReadOnlyError : public Error {
public:
    using Error::Error;
};

// Exponential backoff with jitter before retry `attempt` (0-based), in ms.
long retry_backoff_ms(int attempt);

// `send`, retrying TransientError up to `retries` times; `sleep` waits
// between attempts (an engine's interruptible wait), `note` hears why.
Transport with_retries(Transport send, int retries, std::function<void(long ms)> sleep,
                       std::function<void(const std::string&)> note = {});
// Called after every round trip with the stats so far.
using Progress = std::function<void(const SyncStats&)>;

// Client loop. Each round trip carries a batch of this side's changes the
// server lacks and this side's cursor on the server; the server applies the
// batch and answers with a batch this side lacks, which commits here with
// the cursor that covers it. Repeats until neither side has more.
// With `overlap`, `send` may run on another thread while this one applies
// (the next pull is requested while a batch applies; common/exchange.cpp),
// and overlap(true) makes a send in flight give up soon (it throws), for an
// answer no longer wanted; overlap(false) lets sends through again.
using Overlap = std::function<void(bool abandon)>;
SyncStats run_sync(SyncEngine& local, const Transport& send, const BatchLimits& limits, const Progress& progress = {},
                   const Overlap& overlap = {});

}  // namespace lww
