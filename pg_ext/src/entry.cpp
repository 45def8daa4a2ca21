// lwwsync PostgreSQL extension: the SQL-callable entry points. Each body runs
// in guarded_entry (see guard.h): no C++ exception reaches Postgres and no
// ereport longjmps over a live C++ object.
#include "apply.h"
#include "changes.h"
#include "purge.h"
#include "sync.h"
#include "track.h"
#include "trigger.h"
#include "ddl.h"

#include "../../common/batch.h"
#include "../../common/changeset.h"
#include "../../common/feed.h"
#include "../../common/settings.h"
#include "../../common/version.h"

extern "C" {
#include "utils/inval.h"
PG_MODULE_MAGIC;

void _PG_init(void);

PG_FUNCTION_INFO_V1(lww_version);
PG_FUNCTION_INFO_V1(lww_node_id);
PG_FUNCTION_INFO_V1(lww_reset_node);
PG_FUNCTION_INFO_V1(lww_track);
PG_FUNCTION_INFO_V1(lww_untrack);
PG_FUNCTION_INFO_V1(lww_changes);
PG_FUNCTION_INFO_V1(lww_apply);
PG_FUNCTION_INFO_V1(lww_exchange);
PG_FUNCTION_INFO_V1(lww_sync);
PG_FUNCTION_INFO_V1(lww_seq);
PG_FUNCTION_INFO_V1(lww_config);
PG_FUNCTION_INFO_V1(lww_purge);
PG_FUNCTION_INFO_V1(lww_trigger);
PG_FUNCTION_INFO_V1(lww_capture);
PG_FUNCTION_INFO_V1(lww_refuse_truncate);
PG_FUNCTION_INFO_V1(lww_invalidate);
PG_FUNCTION_INFO_V1(lww_statement_count);
PG_FUNCTION_INFO_V1(lww_meta_seq);
PG_FUNCTION_INFO_V1(lww_meta_gen);
PG_FUNCTION_INFO_V1(lww_meta_fields);
PG_FUNCTION_INFO_V1(lww_meta_pack_07);
}

using namespace lww;
using namespace lww::pg;

// Node ids recorded in a (sub)transaction that rolls back are gone: the
// backend's node cache forgets them.
static void on_subxact(SubXactEvent event, SubTransactionId, SubTransactionId, void*) {
    if (event == SUBXACT_EVENT_ABORT_SUB) State::get().subtransaction_aborted();
}

static void on_xact(XactEvent event, void*) {
    switch (event) {
        case XACT_EVENT_COMMIT:
        case XACT_EVENT_PARALLEL_COMMIT: State::get().transaction_ended(true); break;
        case XACT_EVENT_ABORT:
        case XACT_EVENT_PARALLEL_ABORT:
        case XACT_EVENT_PREPARE: State::get().transaction_ended(false); break;  // a prepared one may roll back
        default: break;
    }
}

// ALTER TABLE of a tracked table, or a change of lwwsync.tables/state/nodes
// (lww_invalidate below), in this or another backend: what the backend
// cached of it is read again before its next use.
static void on_relcache(Datum, Oid relid) { State::get().relation_changed(relid); }

extern "C" void _PG_init(void) {
    RegisterXactCallback(on_xact, nullptr);
    RegisterSubXactCallback(on_subxact, nullptr);
    CacheRegisterRelcacheCallback(on_relcache, (Datum)0);
}

namespace {

std::string text_arg(FunctionCallInfo fcinfo, int i) {
    const text* t = nullptr;
    pg_call([&] { t = PG_GETARG_TEXT_PP(i); });
    return std::string(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

Datum text_result(const std::string& s) {
    Datum d = 0;
    pg_call([&] { d = PointerGetDatum(cstring_to_text_with_len(s.data(), static_cast<int>(s.size()))); });
    return d;
}

uint64_t unsigned_arg(FunctionCallInfo fcinfo, int i, const char* what) {
    const int64 v = PG_GETARG_INT64(i);
    if (v < 0) throw Error(std::string(what) + " must not be negative");
    return static_cast<uint64_t>(v);
}

Datum jsonb_result(const std::string& s) {
    Datum d = 0;
    pg_call([&] { d = DirectFunctionCall1(jsonb_in, CStringGetDatum(s.c_str())); });
    return d;
}

}  // namespace

extern "C" Datum lww_version(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_version", [&] { return text_result(LWWSYNC_VERSION); });
}

extern "C" Datum lww_node_id(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_node_id", [&] {
        std::string id;
        {
            SpiSession spi;  // results are built after SPI_finish, which frees its memory
            id = State::get().self().str();
        }
        Datum d = 0;
        pg_call([&] { d = DirectFunctionCall1(uuid_in, CStringGetDatum(id.c_str())); });
        return d;
    });
}

// lww_reset_node(): a new node id now; this database's registers go out under it.
extern "C" Datum lww_reset_node(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_reset_node", [&] {
        std::string id;
        {
            SpiSession spi;
            id = State::get().reset_node("lww_reset_node()").str();
        }
        Datum d = 0;
        pg_call([&] { d = DirectFunctionCall1(uuid_in, CStringGetDatum(id.c_str())); });
        return d;
    });
}

extern "C" Datum lww_track(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_track", [&] {
        SpiSession spi;
        const int64_t stamped = track_table(PG_GETARG_OID(0));
        after_track(PG_GETARG_OID(0));  // register attnums; held registers land (ddl.cpp)
        return Int64GetDatum(stamped);
    });
}

extern "C" Datum lww_untrack(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_untrack", [&] {
        SpiSession spi;
        return BoolGetDatum(untrack_table(PG_GETARG_OID(0)));
    });
}

extern "C" Datum lww_changes(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_changes", [&] {
        auto arg = [&](int i) -> std::optional<int64_t> {
            if (PG_NARGS() <= i || PG_ARGISNULL(i)) return std::nullopt;
            return PG_GETARG_INT64(i);
        };
        const ChangesRequest req = changes_request(PG_GETARG_INT64(0), arg(1), arg(2));
        std::string out;
        {
            SpiSession spi;
            out = collect_changes(req).json;
        }
        return text_result(out);
    });
}

extern "C" Datum lww_apply(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_apply", [&] {
        std::string json = text_arg(fcinfo, 0);
        check_document_size(json.size(), "change set");
        ChangeSet cs = decode_changeset(json);
        std::string out;
        {
            SpiSession spi;
            out = apply_changeset(cs).json();
        }
        return jsonb_result(out);
    });
}

extern "C" Datum lww_exchange(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_exchange", [&] {
        std::string req = text_arg(fcinfo, 0);
        check_document_size(req.size(), "request");
        std::string out;
        {
            SpiSession spi;
            PgEngine engine;
            out = serve_exchange(engine, req);
        }
        return text_result(out);
    });
}

extern "C" Datum lww_sync(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_sync", [&] {
        std::string url = text_arg(fcinfo, 0);
        std::string opts;
        if (PG_NARGS() > 1 && !PG_ARGISNULL(1)) {
            const char* json = nullptr;
            pg_call([&] { json = DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(1))); });
            opts = json;
        }
        const SyncOptions opt = parse_sync_options(opts);
        std::string out;
        {
            SpiSession spi;
            out = sync_with(url, opt);
        }
        return jsonb_result(out);
    });
}

extern "C" Datum lww_seq(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_seq", [&] {
        SpiSession spi;
        AsMetadataOwner owner;
        const SpiResult res = run_sql("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM lwwsync.seq", true);
        return Int64GetDatum(res.integer(0, 0));
    });
}

// lww_config(setting [, value]): read or set a per-database setting.
//   max_drift_ms    how far a caller's stamps may run ahead (default 5 min)
//   bind_new_nodes  1: a node id is bound to the first principal syncing as
//                   it; 0: only nodes an administrator enrolled in
//                   lwwsync.bindings may sync (docs/SECURITY.md)
//   rejected_max    parked rows (lww_rejected) kept per principal (default 1000)
//   conflict_log    1: record each conflict a merge settles in lww_conflicts
//   conflict_log_rows  rows lww_conflicts keeps (default 10000)

// lww_purge([older_than_ms]): tombstones older than that (default
// lww_config('tombstone_ttl_ms')) go; returns how many (purge.cpp).
extern "C" Datum lww_purge(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_purge", [&] {
        const Setting& ttl = find_setting("tombstone_ttl_ms", Engine::postgres);
        SpiSession spi;
        int64 older = ttl.dflt;
        if (PG_NARGS() > 0 && !PG_ARGISNULL(0)) {
            older = PG_GETARG_INT64(0);
            if (older < 0 || older > ttl.max)
                throw Error("older_than_ms must be between 0 and " + std::to_string(ttl.max));
        } else {
            AsMetadataOwner owner;
            const SpiResult res = run_sql("SELECT value FROM lwwsync.state WHERE key = 'tombstone_ttl_ms'", false);
            if (!res.empty()) older = std::stoll(res.text(0, 0));
        }
        return Int64GetDatum(static_cast<int64>(purge_tombstones(static_cast<uint64_t>(older))));
    });
}

extern "C" Datum lww_config(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_config", [&] {
        std::string key = text_arg(fcinfo, 0);
        const Setting* s = &find_setting(key, Engine::postgres);
        SpiSession spi;
        AsMetadataOwner owner;
        if (PG_NARGS() > 1 && !PG_ARGISNULL(1)) {
            const int64 v = check_setting(*s, PG_GETARG_INT64(1));
            if (key == "conflict_log" && v == 1 &&
                run_sql("SELECT 1 FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass('lwwsync.conflicts')",
                        true)
                    .empty())
                throw Error("conflict_log needs lwwsync 0.6 (ALTER EXTENSION lwwsync UPDATE)");
            run_sql("INSERT INTO lwwsync.state(key, value) VALUES (" + quote_literal(key) + ", '" + std::to_string(v) +
                    "') ON CONFLICT (key) DO UPDATE SET value = excluded.value");
            State::get().invalidate();  // other backends: the trigger on lwwsync.state
        }
        const SpiResult res = run_sql("SELECT value FROM lwwsync.state WHERE key = " + quote_literal(key), false);
        return Int64GetDatum(res.empty() ? s->dflt : std::stoll(res.text(0, 0)));
    });
}

extern "C" Datum lww_trigger(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_trigger", [&] { return capture_trigger(fcinfo); });
}

extern "C" Datum lww_capture(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_capture", [&] { return capture_statement(fcinfo); });
}

extern "C" Datum lww_refuse_truncate(PG_FUNCTION_ARGS) {
    return guarded_entry("lwwsync", [&]() -> Datum {
        throw Error("TRUNCATE of a tracked table is not synced to peers; use DELETE, or lww_untrack the table first");
    });
}

// Trigger on lwwsync.tables, lwwsync.state (every key but 'hlc') and node
// index 0 of lwwsync.nodes: a relcache invalidation of that table, sent to
// every backend when the transaction commits (and to this one at its next
// command), drops what the backends cached from it (State::relation_changed).
extern "C" Datum lww_invalidate(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_invalidate", [&] {
        pg_call([&] {
            if (!CALLED_AS_TRIGGER(fcinfo)) elog(ERROR, "lww_invalidate must be called as a trigger");
            CacheInvalidateRelcache(((TriggerData*)fcinfo->context)->tg_relation);
        });
        return PointerGetDatum(nullptr);
    });
}

// SPI statements this backend ran (spi.cpp): what tests count to show a
// write costs the same with 100 000 nodes as with one.
extern "C" Datum lww_statement_count(PG_FUNCTION_ARGS) {
    return guarded_entry("lww_statement_count", [&] { return Int64GetDatum(static_cast<int64>(statement_count())); });
}

// The stored form of a row's metadata (lwwsync.m_*.st, common/row_codec.h
// pack_stored), read by statements that need one field of it.

namespace {

// The bytes of bytea argument i, valid for the call.
std::string_view bytea_view(FunctionCallInfo fcinfo, int i) {
    std::string_view v;
    pg_call([&] {
        bytea* b = PG_GETARG_BYTEA_PP(i);
        v = std::string_view(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
    });
    return v;
}

Datum bigint_result(uint64_t v, const char* what) {
    if (v > INT64_MAX) throw Error(std::string("corrupt lwwsync metadata blob (") + what + " out of range)");
    return Int64GetDatum(static_cast<int64>(v));
}

}  // namespace

// lwwsync.meta_seq(st): the row's change sequence (the feed's order; each
// metadata table has an index on it).
extern "C" Datum lww_meta_seq(PG_FUNCTION_ARGS) {
    return guarded_entry("meta_seq", [&] { return bigint_result(packed_seq(bytea_view(fcinfo, 0)), "seq"); });
}

// lwwsync.meta_gen(st): the row's generation (odd: alive, even: deleted).
extern "C" Datum lww_meta_gen(PG_FUNCTION_ARGS) {
    return guarded_entry("meta_gen", [&] { return bigint_result(packed_gen(bytea_view(fcinfo, 0)), "generation"); });
}

// lwwsync.meta_fields(st): its seq and what 0.7 kept in columns — gen, the
// row register (hlc, node index, seq) and the column registers apart from it
// (0.7's cols blob, NULL when none) — for inspection and tests.
extern "C" Datum lww_meta_fields(PG_FUNCTION_ARGS) {
    return guarded_entry("meta_fields", [&] {
        uint64_t seq = 0;
        const StoredRow sr = unpack_stored(bytea_view(fcinfo, 0), &seq);
        Datum v[6] = {bigint_result(seq, "seq"),        bigint_result(sr.gen, "generation"),
                      bigint_result(sr.row_hlc, "hlc"), Int64GetDatum(static_cast<int64>(sr.row_node)),
                      bigint_result(sr.row_seq, "seq"), bytea_param(sr.cols).value};
        bool n[6] = {false, false, false, false, false, sr.cols.empty()};
        Datum out = 0;
        pg_call([&] {
            TupleDesc desc;
            if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
                elog(ERROR, "meta_fields must return a record");
            out = HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), v, n));
        });
        return out;
    });
}

// lwwsync.meta_pack_07(gen, hlc, node, mseq, seq, cols): a 0.7 metadata
// row's columns as 0.8's st (the update script's rewrite).
extern "C" Datum lww_meta_pack_07(PG_FUNCTION_ARGS) {
    return guarded_entry("meta_pack_07", [&] {
        for (int i = 0; i < 5; ++i)
            if (PG_ARGISNULL(i)) throw Error("a 0.7 metadata row with a NULL column");
        StoredRow sr;
        sr.gen = unsigned_arg(fcinfo, 0, "gen");
        sr.row_hlc = unsigned_arg(fcinfo, 1, "hlc");
        const int32 node = PG_GETARG_INT32(2);
        if (node < 0) throw Error("node must not be negative");
        sr.row_node = static_cast<uint32_t>(node);
        sr.row_seq = unsigned_arg(fcinfo, 3, "mseq");
        const uint64_t seq = unsigned_arg(fcinfo, 4, "seq");
        if (!PG_ARGISNULL(5)) sr.cols = std::string(bytea_view(fcinfo, 5));
        return bytea_param(pack_stored(sr, seq)).value;
    });
}
