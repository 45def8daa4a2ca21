#include "state.h"

#include "spi.h"

extern "C" {
#include "catalog/pg_collation.h"
#include "utils/syscache.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "access/xlog.h"
}

#include <cstdio>

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
    check_identity();
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

namespace {

Param text_arg(const std::string& s) {
    Param p{TEXTOID, 0, false};
    pg_call([&] { p.value = PointerGetDatum(cstring_to_text_with_len(s.data(), static_cast<int>(s.size()))); });
    return p;
}

std::string state_value(const char* key, bool* found) {
    SPIPlanPtr plan = prepare("SELECT value FROM lwwsync.state WHERE key = $1", {TEXTOID});
    run(plan, {text_arg(key)}, false);
    *found = SPI_processed == 1;
    return *found ? col_text(0, 0) : std::string();
}

void set_state(const char* key, const std::string& value) {
    run(prepare("INSERT INTO lwwsync.state(key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                {TEXTOID, TEXTOID}),
        {text_arg(key), text_arg(value)}, false);
}

bool has_relation(const char* name) {
    bool yes = false;
    pg_call([&] {
        Oid nsp = get_namespace_oid("lwwsync", true);
        yes = OidIsValid(nsp) && OidIsValid(get_relname_relid(name, nsp));
    });
    return yes;
}

// Empty in recovery (a hot standby serves reads only; it checks once promoted).
std::string current_identity(bool* writable) {
    std::string out;
    pg_call([&] {
        if (RecoveryInProgress()) return;
        char buf[96];
        snprintf(buf, sizeof buf, "%llu/%u/%u", static_cast<unsigned long long>(GetSystemIdentifier()),
                 static_cast<unsigned>(GetWALInsertionTimeLine()), static_cast<unsigned>(MyDatabaseId));
        out = buf;
        *writable = !XactReadOnly && !IsInParallelMode();
    });
    return out;
}

// A dump restored into another database: tracked tables have new oids.
void remap_tables() {
    run_sql("UPDATE lwwsync.tables AS t SET relid = c.oid FROM pg_catalog.pg_class AS c"
            " JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND t.relid <> c.oid AND t.name = CASE WHEN n.nspname = 'public'"
            " THEN c.relname::text ELSE n.nspname || '.' || c.relname END",
            false);
}

}  // namespace

void State::check_identity() {
    if (checking_) return;
    bool writable = false;
    const std::string now = current_identity(&writable);
    if (now.empty() || now == identity_) return;
    checking_ = true;
    try {
        AsMetadataOwner owner;
        bool found = false;
        std::string stored = state_value("identity", &found);
        if (!(found && stored == now) && writable) {
            // One backend re-ids; the others wait here and find it done.
            run_sql("SELECT value FROM lwwsync.state WHERE key = 'node_id' FOR UPDATE", false);
            stored = state_value("identity", &found);
            if (!found) {
                set_state("identity", now);  // first use: the id was minted here
                bool has_self = false;
                state_value("self_node", &has_self);
                if (!has_self) set_state("self_node", state_value("node_id", &has_self));
                remap_tables();
            } else if (stored != now) {
                reset_node("identity " + stored + " -> " + now + " (a restore, a copy or a promoted standby)");
            }
            stored = now;
            found = true;
        }
        if (found && stored == now) identity_ = now;
    } catch (...) {
        checking_ = false;
        throw;
    }
    checking_ = false;
}

NodeId State::reset_node(const std::string& reason) {
    AsMetadataOwner owner;
    run_sql("SELECT value FROM lwwsync.state WHERE key = 'node_id' FOR UPDATE", false);
    bool found = false;
    const NodeId current = NodeId::parse(state_value("node_id", &found));
    // A restored dump: CREATE EXTENSION minted `current` (unused so far) and
    // the dump brought the old id as 'self_node'.
    const std::string self_text = state_value("self_node", &found);
    const NodeId old = found && !self_text.empty() ? NodeId::parse(self_text) : current;
    bool keyed = false;
    state_value("node_key", &keyed);
    NodeId fresh = current;
    if (keyed) {
        const std::string key = NodeId::random_key();
        fresh = NodeId::from_key(key);
        set_state("node_key", base64_encode(key));
    } else if (old == current) {
        fresh = NodeId::random_v4();
    }
    if (fresh != current) {
        set_state("node_id", fresh.str());
        run(prepare("UPDATE lwwsync.nodes SET id = $1::uuid WHERE idx = 0", {TEXTOID}), {text_arg(fresh.str())}, false);
    }
    set_state("self_node", fresh.str());
    // The old id: another node from now on, whose registers peers may bring back.
    run(prepare("INSERT INTO lwwsync.nodes(id) VALUES ($1::uuid) ON CONFLICT (id) DO NOTHING", {TEXTOID}),
        {text_arg(old.str())}, false);
    if (has_relation("retired"))
        run(prepare("INSERT INTO lwwsync.retired(node, hlc, reason) VALUES ($1::uuid, $2, $3) ON CONFLICT (node) DO NOTHING",
                    {TEXTOID, INT8OID, TEXTOID}),
            {text_arg(old.str()), Param{INT8OID, Int64GetDatum(static_cast<int64>(std::max(clock_.last(), wall_clock_ms() << 16))), false},
             text_arg(reason)},
            false);
    // Peers hold back registers stamped by the receiver's own id, and we may
    // have lost what our cursors say we hold: every cursor restarts.
    run_sql("DELETE FROM lwwsync.peers", false);
    if (has_relation("push_marks")) run_sql("DELETE FROM lwwsync.push_marks", false);
    if (has_relation("pushes")) run_sql("DELETE FROM lwwsync.pushes", false);
    remap_tables();
    bool w = false;
    const std::string now = current_identity(&w);
    if (!now.empty()) set_state("identity", now);
    identity_ = now;
    load_nodes();
    tables_lxid_ = InvalidLocalTransactionId;
    pg_call([&] { ereport(LOG, (errmsg("lwwsync: node %s takes the new node id %s: %s", old.str().c_str(), fresh.str().c_str(), reason.c_str()))); });
    return fresh;
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
