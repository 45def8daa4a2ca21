#include "state.h"

#include "spi.h"

extern "C" {
#include "catalog/pg_collation.h"
#include "utils/syscache.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
}

namespace lww::pg {

State& State::get() {
    static State s;
    return s;
}

void State::load_nodes() {
    AsMetadataOwner owner;
    run_sql("SELECT value FROM lwwsync.state WHERE key = 'node_id'", false);
    if (SPI_processed != 1) throw Error("lwwsync metadata is damaged: no node_id in lwwsync.state");
    nodes_ = std::make_unique<NodeDirectory>(NodeId::parse(col_text(0, 0)));
    run_sql("SELECT idx, id::text FROM lwwsync.nodes WHERE idx > 0 ORDER BY idx", false);
    for (uint64_t i = 0; i < SPI_processed; ++i)
        nodes_->put(static_cast<uint32_t>(col_int64(i, 0)), NodeId::parse(col_text(i, 1)));
}

NodeId State::self() { return nodes().self(); }

NodeDirectory& State::nodes() {
    begin_transaction_if_new();
    return *nodes_;
}

void State::begin_transaction_if_new() {
    if (tables_lxid_ == MyProc->lxid && nodes_) return;
    // Another backend may have interned nodes or tracked tables since.
    const uint64_t inval = relcache_inval_;
    load_nodes();
    tables_.clear();
    {
        AsMetadataOwner owner;
        run_sql("SELECT relid FROM lwwsync.tables ORDER BY name", false);
        std::vector<Oid> relids;
        for (uint64_t i = 0; i < SPI_processed; ++i) relids.push_back(static_cast<Oid>(col_int64(i, 0)));
        for (Oid r : relids) {
            // A table lwwsync cannot describe (its DDL ran with event
            // triggers off: docs/SCHEMA.md) is left out; it never stops the others.
            try {
                tables_.push_back(std::make_shared<const TableInfo>(describe_table(r)));
            } catch (const Error&) {
            } catch (const PgError&) {
            }
        }
        run_sql("SELECT value FROM lwwsync.state WHERE key = 'max_drift_ms'", false);
        clock_.set_max_drift_ms(SPI_processed ? std::stoull(col_text(0, 0)) : kDefaultMaxDriftMs);
        run_sql("SELECT value FROM lwwsync.state WHERE key = 'hlc'", false);
        if (SPI_processed) clock_.observe(std::stoull(col_text(0, 0)));
    }
    tables_lxid_ = relcache_inval_ == inval ? MyProc->lxid : InvalidLocalTransactionId;
}

void State::relation_changed(Oid relid) noexcept {
    bool ours = !OidIsValid(relid);
    for (const auto& t : tables_) ours |= t->relid == relid;
    if (!ours) return;
    ++relcache_inval_;
    tables_lxid_ = InvalidLocalTransactionId;
}

std::vector<TablePtr> State::tables() {
    begin_transaction_if_new();
    return tables_;
}

TablePtr State::find(Oid relid) {
    begin_transaction_if_new();
    for (const auto& t : tables_)
        if (t->relid == relid) return t;
    return nullptr;
}

TablePtr State::find(const std::string& wire_name) {
    begin_transaction_if_new();
    for (const auto& t : tables_)
        if (t->name == wire_name) return t;
    return nullptr;
}

void State::invalidate() {
    tables_lxid_ = InvalidLocalTransactionId;
    // A rolled-back subtransaction also released the writer lock it took.
    seq_lxid_ = InvalidLocalTransactionId;
}

uint64_t State::tick(uint64_t floor) {
    begin_transaction_if_new();
    clock_.observe(floor);
    return clock_.tick(wall_clock_ms());
}

uint64_t State::next_seq() {
    if (seq_lxid_ != MyProc->lxid) {
        pg_call([&] {
            // Held until this transaction ends: pullers wait for it (changes.cpp).
            DirectFunctionCall2(pg_advisory_xact_lock_shared_int4, Int32GetDatum(kBarrierKey1),
                                Int32GetDatum(kBarrierKey2));
            if (!OidIsValid(seq_oid_)) {
                Oid nsp = get_namespace_oid("lwwsync", false);
                seq_oid_ = get_relname_relid("seq", nsp);
            }
        });
        seq_lxid_ = MyProc->lxid;
    }
    int64 v = 0;
    pg_call([&] { v = nextval_internal(seq_oid_, false); });
    return static_cast<uint64_t>(v);
}

uint32_t State::ensure_node(const NodeId& id) {
    uint32_t idx = 0;
    if (nodes().find(id, &idx)) return idx;
    AsMetadataOwner owner;
    std::string text = id.str();
    Param p{TEXTOID, 0, false};
    pg_call([&] { p.value = PointerGetDatum(cstring_to_text(text.c_str())); });
    // Concurrent recorders of one id wait on the unique index and get the same row.
    run(prepare("SELECT idx FROM lwwsync.nodes WHERE id = $1::uuid", {TEXTOID}), {p}, false);
    if (SPI_processed == 0)
        run(prepare("INSERT INTO lwwsync.nodes(id) VALUES ($1::uuid)"
                    " ON CONFLICT (id) DO UPDATE SET id = excluded.id RETURNING idx",
                    {TEXTOID}),
            {p}, false);
    idx = static_cast<uint32_t>(col_int64(0, 0));
    nodes_->put(idx, id);
    return idx;
}

void State::persist_clock() {
    AsMetadataOwner owner;
    SPIPlanPtr plan = prepare(
        "INSERT INTO lwwsync.state(key, value) VALUES ('hlc', $1::text) ON CONFLICT (key) DO UPDATE"
        " SET value = greatest(lwwsync.state.value::numeric, excluded.value::numeric)::text",
        {TEXTOID});
    std::string s = std::to_string(clock_.last());
    Param p{TEXTOID, 0, false};
    pg_call([&] { p.value = PointerGetDatum(cstring_to_text(s.c_str())); });
    run(plan, {p}, false);
}

TableInfo describe_table(Oid relid) {
    TableInfo t;
    t.relid = relid;
    std::string nsp, rel;
    std::vector<std::string> key_order;
    {
        AsMetadataOwner owner;
        SPIPlanPtr plan = prepare("SELECT name, key_columns::text[], columns::text[], meta FROM lwwsync.tables WHERE relid = $1",
                                  {OIDOID});
        run(plan, {Param{OIDOID, ObjectIdGetDatum(relid), false}}, false);
        if (SPI_processed != 1) throw Error("table with oid " + std::to_string(relid) + " is not tracked");
        t.name = col_text(0, 0);
        t.meta = col_text(0, 3);
        // Arrays come back through their text form; unnest them instead.
        SPIPlanPtr keys = prepare("SELECT unnest(key_columns) FROM lwwsync.tables WHERE relid = $1", {OIDOID});
        run(keys, {Param{OIDOID, ObjectIdGetDatum(relid), false}}, false);
        for (uint64_t i = 0; i < SPI_processed; ++i) t.key.push_back(col_text(i, 0));
        SPIPlanPtr cols = prepare("SELECT unnest(columns) FROM lwwsync.tables WHERE relid = $1", {OIDOID});
        run(cols, {Param{OIDOID, ObjectIdGetDatum(relid), false}}, false);
        for (uint64_t i = 0; i < SPI_processed; ++i) t.cols.push_back(col_text(i, 0));
    }
    pg_call([&] {
        char* n = get_namespace_name(get_rel_namespace(relid));
        char* r = get_rel_name(relid);
        if (!n || !r) elog(ERROR, "tracked table with oid %u no longer exists", relid);
        nsp = n;
        rel = r;
    });
    t.qualified = quote_ident(nsp) + "." + quote_ident(rel);
    auto attr = [&](const std::string& name, AttrNumber& num, ColumnType& type, std::string* collate) {
        Oid typid = InvalidOid;
        int32 typmod = -1;
        Oid coll = InvalidOid;
        std::string coll_nsp, coll_name;
        pg_call([&] {
            num = get_attnum(relid, name.c_str());
            if (num == InvalidAttrNumber)
                ereport(ERROR, (errmsg("column \"%s\" of tracked table %s no longer exists", name.c_str(), rel.c_str())));
            get_atttypetypmodcoll(relid, num, &typid, &typmod, &coll);
            if (OidIsValid(coll) && coll != get_typcollation(typid)) {
                HeapTuple tup = SearchSysCache1(COLLOID, ObjectIdGetDatum(coll));
                if (HeapTupleIsValid(tup)) {
                    const Form_pg_collation c = (Form_pg_collation)GETSTRUCT(tup);
                    coll_name = NameStr(c->collname);
                    coll_nsp = get_namespace_name(c->collnamespace);
                    ReleaseSysCache(tup);
                }
            }
        });
        type = column_type(typid, typmod);
        if (collate && !coll_name.empty()) *collate = " COLLATE " + quote_ident(coll_nsp) + "." + quote_ident(coll_name);
    };
    t.key_attnums.resize(t.key.size());
    t.key_types.resize(t.key.size());
    t.key_collate.resize(t.key.size());
    for (size_t i = 0; i < t.key.size(); ++i) attr(t.key[i], t.key_attnums[i], t.key_types[i], &t.key_collate[i]);
    t.col_attnums.resize(t.cols.size());
    t.col_types.resize(t.cols.size());
    for (size_t i = 0; i < t.cols.size(); ++i) attr(t.cols[i], t.col_attnums[i], t.col_types[i], nullptr);
    return t;
}

}  // namespace lww::pg
