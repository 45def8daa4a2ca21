#include "state.h"

#include "spi.h"

extern "C" {
#include "catalog/pg_collation.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
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

void State::begin() {
    if (identity_lxid_ != MyProc->lxid) {
        // Before 0.5 (ALTER EXTENSION lwwsync UPDATE not run yet) no trigger
        // tells other backends' changes: everything is read again per transaction.
        if (!invalidated_by_triggers_) all_stale_ = true;
        check_sql_objects();
        check_identity();
        identity_lxid_ = MyProc->lxid;
    }
    if (all_stale_) {
        pg_call([&] {
            const Oid nsp = get_namespace_oid("lwwsync", false);
            tables_oid_ = get_relname_relid("tables", nsp);
            state_oid_ = get_relname_relid("state", nsp);
            nodes_oid_ = get_relname_relid("nodes", nsp);
            invalidated_by_triggers_ =
                OidIsValid(tables_oid_) && OidIsValid(get_trigger_oid(tables_oid_, "lwwsync_invalidate", true));
        });
        all_stale_ = false;
        tables_stale_ = settings_stale_ = nodes_stale_ = true;
        seq_oid_ = InvalidOid;
    }
    if (tables_stale_) {
        by_relid_.clear();
        by_name_.clear();
        all_.clear();
        all_valid_ = false;
        tables_stale_ = false;
        ndropped_ = 0;
    }
    if (ndropped_ > 0) {
        for (int i = 0; i < ndropped_; ++i) by_relid_.erase(dropped_[i]);
        ndropped_ = 0;
        by_name_.clear();  // a renamed table; rebuilt by lookups
        for (const auto& [relid, t] : by_relid_)
            if (t) by_name_[t->name] = relid;
        all_.clear();
        all_valid_ = false;
    }
}

// This library keeps metadata as 0.8 lays it out (an index on
// lwwsync.meta_seq, track.cpp): with the SQL objects of an older version
// every statement on metadata would fail its own way. Checked until found.
void State::check_sql_objects() {
    if (sql_objects_current_) return;
    Oid f = InvalidOid;
    pg_call([&] {
        Oid args[1] = {BYTEAOID};
        f = LookupFuncName(list_make2(makeString(pstrdup("lwwsync")), makeString(pstrdup("meta_seq"))), 1, args, true);
    });
    if (!OidIsValid(f))
        throw Error("the lwwsync library is " LWWSYNC_VERSION
                    ", this database's lwwsync is older: run ALTER EXTENSION lwwsync UPDATE");
    sql_objects_current_ = true;
}

void State::relation_changed(Oid relid) noexcept {
    if (!OidIsValid(relid) || relid == tables_oid_ || relid == state_oid_ || relid == nodes_oid_) {
        // Tracking, a setting or the own node id changed (rare: everything
        // is read again), or the extension was dropped: the oids too.
        all_stale_ = true;
    } else if (relid == seq_oid_) {
        seq_oid_ = InvalidOid;
    } else if (by_relid_.count(relid)) {
        if (ndropped_ < kMaxDropped) dropped_[ndropped_++] = relid;
        else tables_stale_ = true;
    } else {
        return;
    }
    ++generation_;
}

void State::transaction_ended(bool committed) noexcept {
    if (nodes_recorded_ && !committed) nodes_stale_ = true;
    nodes_recorded_ = false;
}

void State::subtransaction_aborted() noexcept {
    // Ids recorded in it are gone; which ones, the cache does not know.
    if (nodes_recorded_) nodes_stale_ = true;
    // A rolled-back subtransaction also released the writer lock it took.
    seq_lxid_ = InvalidLocalTransactionId;
}

void State::invalidate() {
    tables_stale_ = true;
    settings_stale_ = true;
    ++generation_;
}

NodeId State::self() { return nodes().self(); }

NodeDirectory& State::nodes() {
    begin();
    if (nodes_stale_ || !nodes_) {
        AsMetadataOwner owner;
        const SpiResult res = run(prepare("SELECT value FROM lwwsync.state WHERE key = 'node_id'", {}), {}, false);
        if (res.size() != 1)
            throw Error("lwwsync metadata is damaged: no node_id in lwwsync.state", ErrorKind::internal);
        nodes_ = std::make_unique<NodeDirectory>(NodeId::parse(res.text(0, 0)), static_cast<NodeSource*>(this));
        nodes_stale_ = false;
    }
    return *nodes_;
}

bool State::id_at(uint32_t idx, NodeId* id) {
    SpiResult res;
    {
        AsMetadataOwner owner;
        res = run(prepare("SELECT id::text FROM lwwsync.nodes WHERE idx = $1", {INT4OID}),
                  {Param{INT4OID, Int32GetDatum(static_cast<int32>(idx)), false}}, false);
    }
    return res.size() == 1 && NodeId::try_parse(res.text(0, 0), *id);
}

void State::load_settings() {
    if (!settings_stale_) return;
    const uint64_t gen = generation_;
    SpiResult res;
    {
        AsMetadataOwner owner;
        res =
            run(prepare("SELECT key, value FROM lwwsync.state"
                        " WHERE key IN ('max_drift_ms', 'conflict_log', 'conflict_log_rows') OR key LIKE 'genfloor:%'",
                        {}),
                {}, false);
    }
    uint64_t drift = kDefaultMaxDriftMs;
    conflict_log_ = ConflictLog{};
    gen_floor_.clear();
    for (uint64_t r = 0; r < res.size(); ++r) {
        const std::string key = res.text(r, 0);
        const std::string value = res.text(r, 1);
        if (key.rfind("genfloor:", 0) == 0)
            gen_floor_[static_cast<Oid>(std::stoul(key.substr(9)))] = std::stoull(value);
        else if (key == "max_drift_ms") drift = std::stoull(value);
        else if (key == "conflict_log") conflict_log_.on = value == "1";
        else conflict_log_.rows = std::stoll(value);
    }
    clock_.set_max_drift_ms(drift);
    settings_stale_ = generation_ != gen;
}

uint64_t State::gen_floor(Oid relid) {
    begin();
    load_settings();
    auto it = gen_floor_.find(relid);
    return it == gen_floor_.end() ? 0 : it->second;
}

std::map<Oid, uint64_t> State::gen_floors() {
    begin();
    load_settings();
    return gen_floor_;
}

State::ConflictLog State::conflict_log() {
    begin();
    load_settings();
    return conflict_log_;
}

HybridClock& State::clock() {
    begin();
    load_settings();
    // lww_apply in another backend may have merged stamps above this
    // backend's clock (persist_clock); a later local write in this
    // transaction may have seen them, so it must stamp above them. Read once
    // per transaction: one indexed lookup, whatever the number of nodes.
    if (clock_lxid_ != MyProc->lxid) {
        AsMetadataOwner owner;
        const SpiResult res = run(prepare("SELECT value FROM lwwsync.state WHERE key = 'hlc'", {}), {}, false);
        if (!res.empty()) clock_.observe(std::stoull(res.text(0, 0)));
        clock_lxid_ = MyProc->lxid;
    }
    return clock_;
}

TablePtr State::load(Oid relid) {
    const uint64_t gen = generation_;
    TablePtr t;
    // A table lwwsync cannot describe (its DDL ran with event triggers off:
    // docs/SCHEMA.md) counts as untracked; it never stops the others.
    try {
        t = std::make_shared<const TableInfo>(describe_table(relid));
    } catch (const Error&) {
    } catch (const PgError&) {
    }
    if (generation_ == gen) {
        by_relid_[relid] = t;
        if (t) by_name_[t->name] = relid;
    }
    return t;
}

std::vector<TablePtr> State::tables() {
    begin();
    if (all_valid_) return all_;
    const uint64_t gen = generation_;
    std::vector<Oid> relids;
    {
        AsMetadataOwner owner;
        const SpiResult res = run(prepare("SELECT relid FROM lwwsync.tables ORDER BY name", {}), {}, false);
        for (uint64_t i = 0; i < res.size(); ++i) relids.push_back(static_cast<Oid>(res.integer(i, 0)));
    }
    std::vector<TablePtr> out;
    for (Oid r : relids) {
        auto it = by_relid_.find(r);
        TablePtr t = it != by_relid_.end() ? it->second : load(r);
        if (t) out.push_back(std::move(t));
    }
    if (generation_ == gen) {
        all_ = out;
        all_valid_ = true;
    }
    return out;
}

TablePtr State::find(Oid relid) {
    begin();
    auto it = by_relid_.find(relid);
    if (it != by_relid_.end()) return it->second;
    if (all_valid_) return nullptr;  // every tracked table is in by_relid_
    return load(relid);
}

TablePtr State::find(const std::string& wire_name) {
    begin();
    auto it = by_name_.find(wire_name);
    if (it != by_name_.end()) return find(it->second);
    if (all_valid_) return nullptr;
    // Names a peer sends are not remembered when unknown: one lookup each.
    Oid relid = InvalidOid;
    {
        AsMetadataOwner owner;
        Param p{TEXTOID, 0, false};
        pg_call([&] {
            p.value = PointerGetDatum(cstring_to_text_with_len(wire_name.data(), static_cast<int>(wire_name.size())));
        });
        const SpiResult res = run(prepare("SELECT relid FROM lwwsync.tables WHERE name = $1", {TEXTOID}), {p}, false);
        if (res.size() == 1) relid = static_cast<Oid>(res.integer(0, 0));
    }
    if (!OidIsValid(relid)) return nullptr;
    TablePtr t = find(relid);
    return t && t->name == wire_name ? t : nullptr;
}

uint64_t State::tick(uint64_t floor) {
    HybridClock& c = clock();
    c.observe(floor);
    return c.tick(wall_clock_ms());
}

uint64_t State::next_seq() {
    if (seq_lxid_ != MyProc->lxid) {
        pg_call([&] {
            // Held until this transaction ends: pullers wait for it (changes.cpp).
            DirectFunctionCall2(pg_advisory_xact_lock_shared_int4, Int32GetDatum(kBarrierKey1),
                                Int32GetDatum(kBarrierKey2));
        });
        seq_lxid_ = MyProc->lxid;
    }
    int64 v = 0;
    pg_call([&] {
        if (!OidIsValid(seq_oid_)) seq_oid_ = get_relname_relid("seq", get_namespace_oid("lwwsync", false));
        v = nextval_internal(seq_oid_, false);
    });
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
    SpiResult res = run(prepare("SELECT idx FROM lwwsync.nodes WHERE id = $1::uuid", {TEXTOID}), {p}, false);
    if (res.empty()) {
        nodes_recorded_ = true;
        res = run(prepare("INSERT INTO lwwsync.nodes(id) VALUES ($1::uuid)"
                          " ON CONFLICT (id) DO UPDATE SET id = excluded.id RETURNING idx",
                          {TEXTOID}),
                  {p}, false);
    }
    idx = static_cast<uint32_t>(res.integer(0, 0));
    nodes().put(idx, id);
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

std::string state_value(const char* key, bool* found) {
    SPIPlanPtr plan = prepare("SELECT value FROM lwwsync.state WHERE key = $1", {TEXTOID});
    const SpiResult res = run(plan, {text_param(key)}, false);
    *found = res.size() == 1;
    return *found ? res.text(0, 0) : std::string();
}

void set_state(const char* key, const std::string& value) {
    run(prepare("INSERT INTO lwwsync.state(key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = "
                "excluded.value",
                {TEXTOID, TEXTOID}),
        {text_param(key), text_param(value)}, false);
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
    char buf[96] = "";
    pg_call([&] {
        if (RecoveryInProgress()) return;
        snprintf(buf, sizeof buf, "%llu/%u/%u", static_cast<unsigned long long>(GetSystemIdentifier()),
                 static_cast<unsigned>(GetWALInsertionTimeLine()), static_cast<unsigned>(MyDatabaseId));
        *writable = !XactReadOnly && !IsInParallelMode();
    });
    return buf;
}

// A dump restored into another database: tracked tables have new oids.
void remap_tables() {
    run_sql(
        "UPDATE lwwsync.tables AS t SET relid = c.oid FROM pg_catalog.pg_class AS c"
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
        run(prepare("UPDATE lwwsync.nodes SET id = $1::uuid WHERE idx = 0", {TEXTOID}), {text_param(fresh.str())},
            false);
    }
    set_state("self_node", fresh.str());
    // The old id: another node from now on, whose registers peers may bring back.
    run(prepare("INSERT INTO lwwsync.nodes(id) VALUES ($1::uuid) ON CONFLICT (id) DO NOTHING", {TEXTOID}),
        {text_param(old.str())}, false);
    if (has_relation("retired"))
        run(prepare("INSERT INTO lwwsync.retired(node, hlc, reason) VALUES ($1::uuid, $2, $3) ON CONFLICT (node) DO "
                    "NOTHING",
                    {TEXTOID, INT8OID, TEXTOID}),
            {text_param(old.str()),
             Param{INT8OID, Int64GetDatum(static_cast<int64>(std::max(clock_.last(), wall_clock_ms() << 16))), false},
             text_param(reason)},
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
    // The triggers on lwwsync.state and .nodes invalidate this at the next
    // command; callers in this one must already see the new id.
    nodes_stale_ = tables_stale_ = true;
    const std::string old_id = old.str(), new_id = fresh.str();
    pg_call([&] {
        ereport(LOG, (errmsg("lwwsync: node %s takes the new node id %s: %s", old_id.c_str(), new_id.c_str(),
                             reason.c_str())));
    });
    return fresh;
}

TableInfo describe_table(Oid relid) {
    TableInfo t;
    t.relid = relid;
    const char* nsp = nullptr;
    const char* rel = nullptr;
    std::vector<std::string> key_order;
    {
        AsMetadataOwner owner;
        SPIPlanPtr plan = prepare(
            "SELECT name, key_columns::text[], columns::text[], meta FROM lwwsync.tables WHERE relid = $1", {OIDOID});
        const SpiResult row = run(plan, {Param{OIDOID, ObjectIdGetDatum(relid), false}}, false);
        if (row.size() != 1)
            throw Error("table with oid " + std::to_string(relid) + " is not tracked", ErrorKind::not_found);
        t.name = row.text(0, 0);
        t.meta = row.text(0, 3);
        // Arrays come back through their text form; unnest them instead.
        SPIPlanPtr keys = prepare("SELECT unnest(key_columns) FROM lwwsync.tables WHERE relid = $1", {OIDOID});
        const SpiResult key_names = run(keys, {Param{OIDOID, ObjectIdGetDatum(relid), false}}, false);
        for (uint64_t i = 0; i < key_names.size(); ++i) t.key.push_back(key_names.text(i, 0));
        SPIPlanPtr cols = prepare("SELECT unnest(columns) FROM lwwsync.tables WHERE relid = $1", {OIDOID});
        const SpiResult col_names = run(cols, {Param{OIDOID, ObjectIdGetDatum(relid), false}}, false);
        for (uint64_t i = 0; i < col_names.size(); ++i) t.cols.push_back(col_names.text(i, 0));
    }
    pg_call([&] {
        nsp = get_namespace_name(get_rel_namespace(relid));
        rel = get_rel_name(relid);
        if (!nsp || !rel) elog(ERROR, "tracked table with oid %u no longer exists", relid);
    });
    t.qualified = quote_ident(nsp) + "." + quote_ident(rel);
    auto attr = [&](const std::string& name, AttrNumber& num, ColumnType& type, std::string* collate) {
        Oid typid = InvalidOid;
        int32 typmod = -1;
        Oid coll = InvalidOid;
        const char* coll_nsp = nullptr;
        const char* coll_name = nullptr;  // palloc'd: the syscache tuple is released inside
        pg_call([&] {
            num = get_attnum(relid, name.c_str());
            if (num == InvalidAttrNumber)
                ereport(ERROR, (errmsg("column \"%s\" of tracked table %s no longer exists", name.c_str(), rel)));
            get_atttypetypmodcoll(relid, num, &typid, &typmod, &coll);
            if (OidIsValid(coll) && coll != get_typcollation(typid)) {
                HeapTuple tup = SearchSysCache1(COLLOID, ObjectIdGetDatum(coll));
                if (HeapTupleIsValid(tup)) {
                    const Form_pg_collation c = (Form_pg_collation)GETSTRUCT(tup);
                    coll_name = pstrdup(NameStr(c->collname));
                    coll_nsp = get_namespace_name(c->collnamespace);
                    ReleaseSysCache(tup);
                }
            }
        });
        type = column_type(typid, typmod);
        if (collate && coll_name && *coll_name)
            *collate = " COLLATE " + quote_ident(coll_nsp ? coll_nsp : "") + "." + quote_ident(coll_name);
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
