// PostgreSQL adapter: tombstone purge (lww_purge, and by itself during
// sync) and the server's side of a re-snapshot (docs/PROTOCOL.md, "Purge and
// re-snapshot"). The rules are the core's (common/purge.h, serve_exchange).
#include "purge.h"
#include "sync.h"

#include <algorithm>
#include <climits>

#include "../../common/purge.h"
#include "state.h"
#include "values.h"

extern "C" {
#include "access/xact.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/rls.h"
#include "catalog/namespace.h"
#include "utils/lsyscache.h"
}

namespace lww::pg {

namespace {

Param int8_param(uint64_t v) {
    return Param{INT8OID, Int64GetDatum(static_cast<int64>(std::min<uint64_t>(v, INT64_MAX))), false};
}

uint64_t state_number(const char* key) {
    const SpiResult res =
        run(prepare("SELECT value FROM lwwsync.state WHERE key = $1", {TEXTOID}), {text_param(key)}, false);
    return res.empty() ? 0 : static_cast<uint64_t>(std::stoull(res.text(0, 0)));
}

// Only ever up: the horizon a caller's cursor is checked against.
void raise_state(const char* key, uint64_t v) {
    run(prepare("INSERT INTO lwwsync.state(key, value) VALUES ($1, $2::text) ON CONFLICT (key) DO UPDATE"
                " SET value = greatest(lwwsync.state.value::numeric, excluded.value::numeric)::text",
                {TEXTOID, INT8OID}),
        {text_param(key), int8_param(v)}, false);
}

}  // namespace

// Which sequences this database has held at least `older_than_ms`: marks
// recorded as purges run (common/purge.h), kept in lwwsync.state.
static uint64_t old_enough(uint64_t older_than_ms) {
    const uint64_t now = wall_clock_ms();
    const SpiResult got = run_sql("SELECT value FROM lwwsync.state WHERE key = 'purge_marks' FOR UPDATE", false);
    PurgeMarks marks = got.empty() ? PurgeMarks{} : parse_marks(got.text(0, 0));
    const SpiResult ttl_res = run_sql("SELECT value FROM lwwsync.state WHERE key = 'tombstone_ttl_ms'", false);
    const uint64_t ttl =
        ttl_res.empty() ? static_cast<uint64_t>(kDefaultTombstoneTtlMs) : std::stoull(ttl_res.text(0, 0));
    const SpiResult last = run_sql("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM lwwsync.seq", false);
    const uint64_t last_seq = last.empty() ? 0 : static_cast<uint64_t>(last.integer(0, 0));
    const uint64_t upto = seq_older_than(marks, now, older_than_ms, last_seq);
    run(prepare("INSERT INTO lwwsync.state(key, value) VALUES ('purge_marks', $1) ON CONFLICT (key) DO UPDATE"
                " SET value = excluded.value",
                {TEXTOID}),
        {text_param(format_marks(record_mark(std::move(marks), now, last_seq, ttl)))}, false);
    return upto;
}

size_t purge_tombstones(uint64_t older_than_ms) {
    AsMetadataOwner owner;
    // Tombstones held that long, and (a tombstone a server this database
    // pushes to has not received stays) that every such server holds.
    uint64_t upto = old_enough(older_than_ms);
    {
        const SpiResult up = run_sql("SELECT min(value::bigint) FROM lwwsync.state WHERE key LIKE 'upstream:%'", false);
        bool isnull = true;
        const int64_t v = up.empty() ? 0 : up.integer(0, 0, &isnull);
        if (!isnull) upto = std::min(upto, static_cast<uint64_t>(std::max<int64_t>(v, 0)));
    }
    size_t removed = 0;
    uint64_t top = 0;
    for (const TablePtr& t : State::get().tables()) {
        // Row locks: a tombstone a merge or a write holds now stays for the next purge.
        const SpiResult res = run(prepare("WITH d AS (DELETE FROM " + t->meta + " WHERE ctid IN (SELECT ctid FROM " +
                                              t->meta + " WHERE " + meta_seq() +
                                              " <= $1 AND lwwsync.meta_gen(st) % 2 = 0"
                                              " FOR UPDATE SKIP LOCKED) RETURNING " +
                                              meta_seq() +
                                              " AS seq, lwwsync.meta_gen(st) AS gen)"
                                              " SELECT count(*), coalesce(max(seq), 0), coalesce(max(gen), 0) FROM d",
                                          {INT8OID}),
                                  {int8_param(upto)}, false);
        removed += static_cast<size_t>(res.integer(0, 0));
        top = std::max(top, static_cast<uint64_t>(res.integer(0, 1)));
        // A key inserted here again starts above the purged generations.
        if (const uint64_t gen = static_cast<uint64_t>(res.integer(0, 2)))
            raise_state(("genfloor:" + std::to_string(t->relid)).c_str(), gen);
    }
    if (top) raise_state("purged_upto", top);
    return removed;
}

size_t PgEngine::auto_purge() {
    if (!writable()) return 0;
    AsMetadataOwner owner;
    const uint64_t now = wall_clock_ms();
    const SpiResult ttl_res = run_sql("SELECT value FROM lwwsync.state WHERE key = 'tombstone_ttl_ms'", false);
    const uint64_t ttl =
        ttl_res.empty() ? static_cast<uint64_t>(kDefaultTombstoneTtlMs) : std::stoull(ttl_res.text(0, 0));
    if (!auto_purge_due(now, state_number("purged_at"), ttl)) return 0;
    // One backend purges; the others go on (their callers are not kept waiting).
    const SpiResult lock = run_sql("SELECT pg_catalog.pg_try_advisory_xact_lock(7418839, 1)::int", false);
    if (lock.empty() || lock.integer(0, 0) != 1) return 0;
    run(prepare("INSERT INTO lwwsync.state(key, value) VALUES ('purged_at', $1::text)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                {INT8OID}),
        {int8_param(now)}, false);
    return purge_tombstones(ttl);
}

uint64_t PgEngine::purge_horizon() {
    AsMetadataOwner owner;
    return state_number("purged_upto");
}

void PgEngine::note_upstream(const NodeId& peer, uint64_t floor, bool first) {
    if (!writable()) return;
    AsMetadataOwner owner;
    const std::string key = "upstream:" + peer.str();
    run(prepare(first ? "INSERT INTO lwwsync.state(key, value) VALUES ($1, $2::text) ON CONFLICT (key) DO UPDATE"
                        " SET value = excluded.value WHERE lwwsync.state.value IS DISTINCT FROM excluded.value"
                      : "UPDATE lwwsync.state SET value = $2::text WHERE key = $1 AND value IS DISTINCT FROM $2::text",
                {TEXTOID, INT8OID}),
        {text_param(key), int8_param(floor)}, false);
}

std::vector<std::pair<std::string, uint64_t>> PgEngine::gen_floors() {
    std::vector<std::pair<std::string, uint64_t>> out;
    State& s = State::get();
    for (const auto& [relid, gen] : s.gen_floors())  // purged tables only: no cost per tracked table
        if (const TablePtr t = s.find(relid)) out.emplace_back(t->name, gen);
    return out;
}

// Which keys of `table` this database holds: metadata (a row or a
// tombstone), or a row of the caller's parked in lwwsync.rejected.
std::optional<std::vector<uint64_t>> PgEngine::holds_keys(const NodeId&, const std::string& table,
                                                          const std::vector<std::vector<Value>>& keys) {
    const TablePtr t = State::get().find(table);
    if (!t) return std::nullopt;
    // Which keys exist is for callers that may read the table and whom no
    // row-level security limits (nobody learns of rows hidden from them):
    // others keep their rows.
    bool readable = false;
    pg_call([&] {
        readable = pg_class_aclcheck(t->relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK &&
                   check_enable_rls(t->relid, InvalidOid, true) != RLS_ENABLED;
    });
    if (!readable) return std::nullopt;
    std::vector<std::vector<Param>> params;
    params.reserve(keys.size());
    for (const auto& key : keys) {
        if (key.size() != t->key.size())
            throw Error("probe of table \"" + table + "\": a key of " + std::to_string(key.size()) +
                        " values, the table's has " + std::to_string(t->key.size()));
        std::vector<Param> p(key.size());
        for (size_t k = 0; k < key.size(); ++k) {
            bool isnull = false;
            p[k].type = t->key_types[k].type;
            p[k].value = value_to_datum(key[k], t->key_types[k], &isnull);
            p[k].null = isnull;
        }
        params.push_back(std::move(p));
    }
    std::vector<uint64_t> held(keys.size(), 0);
    if (keys.empty()) return held;
    AsMetadataOwner owner;
    const std::vector<RowState> meta = load_meta_many(*t, params, false);
    const Principal& p = who();
    const SPIPlanPtr parked = prepare(
        "SELECT 1 FROM lwwsync.rejected WHERE role = $1::name AND subject = $2"
        " AND tbl = $3 AND key = $4::jsonb",
        {TEXTOID, TEXTOID, TEXTOID, TEXTOID});
    for (size_t i = 0; i < keys.size(); ++i) {
        held[i] = meta[i].gen;
        if (held[i] == 0 &&
            !run(parked, {text_param(p.role), text_param(p.subject), text_param(table), text_param(key_json(keys[i]))},
                 true)
                 .empty())
            held[i] = kParkedGeneration;
    }
    return held;
}

}  // namespace lww::pg
