#include "meta.h"

#include <cstring>
#include <unordered_map>

#include "../../common/batch.h"

extern "C" {
#include "catalog/pg_index.h"
#include "storage/itemptr.h"
#include "utils/array.h"
#include "utils/relcache.h"
#include "utils/syscache.h"
}

namespace lww::pg {

std::string meta_table_name(Oid relid) { return "m_" + std::to_string(relid); }

std::string meta_seq(const std::string& alias) { return "lwwsync.meta_seq(" + alias + "st)"; }

bool primary_key_deferrable(Oid relid) {
    bool yes = false;
    pg_call([&] {
        Relation rel = RelationIdGetRelation(relid);
        if (!RelationIsValid(rel)) return;
        // rd_pkindex leaves a deferrable primary key out: look for it.
        List* indexes = RelationGetIndexList(rel);
        ListCell* lc;
        foreach (lc, indexes) {
            HeapTuple tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
            if (!HeapTupleIsValid(tup)) continue;
            const Form_pg_index index = (Form_pg_index)GETSTRUCT(tup);
            if (index->indisprimary) yes = !index->indimmediate;
            ReleaseSysCache(tup);
        }
        list_free(indexes);
        RelationClose(rel);
    });
    return yes;
}

std::vector<Param> key_params(const TableInfo& t, const std::vector<Datum>& key, const std::vector<bool>& nulls) {
    std::vector<Param> p(t.key.size());
    for (size_t i = 0; i < t.key.size(); ++i) {
        if (nulls[i]) throw Error("a key value of table " + t.name + " is NULL");
        p[i] = Param{t.key_types[i].type, key[i], false};
    }
    return p;
}

// Lock order and key identity of stored keys (apply.cpp, OwnWrites).
int compare_values(const Value& a, const Value& b) {
    if (a.kind != b.kind) return a.kind < b.kind ? -1 : 1;
    switch (a.kind) {
        case Value::Kind::Null: return 0;
        case Value::Kind::Int: return a.i < b.i ? -1 : a.i > b.i;
        case Value::Kind::Real: {
            uint64_t x = 0, y = 0;
            std::memcpy(&x, &a.d, sizeof x);
            std::memcpy(&y, &b.d, sizeof y);
            return x < y ? -1 : x > y;
        }
        default: return a.s.compare(b.s);
    }
}

bool key_less(const std::vector<Value>& a, const std::vector<Value>& b) {
    for (size_t i = 0; i < a.size() && i < b.size(); ++i)
        if (int c = compare_values(a[i], b[i])) return c < 0;
    return a.size() < b.size();
}

namespace {

// How values of a column are bound as an array: its type's array type, or
// its base type's (a domain without an array type), with the element's
// storage. False when neither has one. Backend calls: inside pg_call.
bool array_elem(const ColumnType& type, ArrayElem* e) {
    e->type = type.type;
    e->array = get_array_type(e->type);
    if (!OidIsValid(e->array)) {
        e->type = type.base;
        e->array = get_array_type(e->type);
    }
    if (!OidIsValid(e->array)) return false;
    get_typlenbyvalalign(e->type, &e->len, &e->byval, &e->align);
    return true;
}

// A one-dimensional array of `vals` (nulls: none when absent).
Param array_of(const ArrayElem& e, std::vector<Datum>& vals, const std::vector<bool>* nulls = nullptr) {
    Param out{e.array, 0, false};
    pg_call([&] {
        int dims = static_cast<int>(vals.size()), lbs = 1;
        bool* isnull = nullptr;
        if (nulls) {
            isnull = static_cast<bool*>(palloc(sizeof(bool) * (vals.size() + 1)));
            for (size_t i = 0; i < vals.size(); ++i) isnull[i] = (*nulls)[i];
        }
        out.value =
            PointerGetDatum(construct_md_array(vals.data(), isnull, 1, &dims, &lbs, e.type, e.len, e.byval, e.align));
    });
    return out;
}

}  // namespace

bool has_array_type(const ColumnType& type) {
    bool ok = false;
    ArrayElem e;
    pg_call([&] { ok = array_elem(type, &e); });
    return ok;
}

Param array_param(const ColumnType& type, const std::vector<Param>& values) {
    ArrayElem e;
    bool ok = false;
    pg_call([&] { ok = array_elem(type, &e); });
    if (!ok) throw Error("no array type for type " + std::to_string(type.type));
    std::vector<Datum> vals(values.size());
    std::vector<bool> nulls(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
        vals[i] = values[i].value;
        nulls[i] = values[i].null;
    }
    return array_of(e, vals, &nulls);
}

size_t KeyHash::operator()(const std::vector<Value>& key) const {
    uint64_t h = 0;
    for (const Value& v : key) h = h * 31 + value_hash(v);
    return static_cast<size_t>(h);
}

bool KeyEqual::operator()(const std::vector<Value>& a, const std::vector<Value>& b) const {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (compare_values(a[i], b[i]) != 0) return false;
    return true;
}

namespace {

// The statements on one table's metadata, built once per table description
// (SQL text, parameter types, array element types): a write names its plans
// directly, with no string building and no catalog lookup per row.
struct MetaSql {
    std::string meta;
    std::vector<Oid> key_types;
    size_t ncols = 0;
    SPIPlanPtr load = nullptr, load_locked = nullptr, store = nullptr, last = nullptr;
    SPIPlanPtr load_many = nullptr, load_many_locked = nullptr, store_many = nullptr, insert_many = nullptr;
    SPIPlanPtr insert_new = nullptr, insert_new_many = nullptr;  // ON CONFLICT DO NOTHING RETURNING seq
    // Keys bound as arrays: each key type's array type, or its base type's
    // (a domain without an array type), with the element's storage.
    std::vector<ArrayElem> elems;
};

std::vector<Oid> key_oids(const TableInfo& t) {
    std::vector<Oid> o;
    for (const auto& k : t.key_types) o.push_back(k.type);
    return o;
}

std::unique_ptr<MetaSql> build_sql(const TableInfo& t) {
    auto q = std::make_unique<MetaSql>();
    q->meta = t.meta;
    q->key_types = key_oids(t);
    q->ncols = t.cols.size();
    const size_t n = t.key.size();
    auto k = [](size_t i) { return "k" + std::to_string(i); };
    auto p = [](size_t i) { return "$" + std::to_string(i); };
    std::string where, cols, params, conflict, match, unnest_keys, knames;
    for (size_t i = 0; i < n; ++i) {
        where += (i ? " AND " : "") + k(i) + " = " + p(i + 1);
        cols += k(i) + ", ";
        params += p(i + 1) + ", ";
        conflict += (i ? ", " : "") + k(i);
        match += (i ? " AND " : "") + ("m." + k(i) + " = u." + k(i) + t.key_collate[i]);
        unnest_keys += (i ? ", " : "") + p(i + 1);
        knames += k(i) + ", ";
    }
    const std::string update = ") DO UPDATE SET st = excluded.st";
    const std::string returning = " RETURNING " + meta_seq();
    q->elems.assign(n, ArrayElem{});
    pg_call([&] {
        for (size_t i = 0; i < n; ++i)
            if (!array_elem(t.key_types[i], &q->elems[i]))
                elog(ERROR, "no array type for the key type of %s", t.name.c_str());
    });
    std::vector<Oid> types = q->key_types;
    const std::string load = "SELECT st FROM " + t.meta + " WHERE " + where;
    q->load = prepare(load, types);
    q->load_locked = prepare(load + " FOR UPDATE", types);
    types.push_back(BYTEAOID);
    const std::string insert_one = "INSERT INTO " + t.meta + "(" + cols + "st) VALUES (" + params + p(n + 1) + ")";
    q->store = prepare(insert_one + " ON CONFLICT (" + conflict + update, types);
    q->insert_new = prepare(insert_one + " ON CONFLICT DO NOTHING" + returning, types);
    types = q->key_types;
    types.push_back(TEXTOID);
    q->last = prepare("UPDATE " + t.meta + " SET last = " + p(n + 1) + "::jsonb WHERE " + where, types);

    std::vector<Oid> arrays;
    for (const auto& e : q->elems) arrays.push_back(e.array);
    // st as meta_at reads it, then the key's position and the metadata
    // row's identity (two spellings of one key find one row).
    const std::string many = "SELECT m.st, u.n, m.ctid FROM unnest(" + unnest_keys + ") WITH ORDINALITY AS u(" +
                             knames + "n) JOIN " + t.meta + " AS m ON " + match + " ORDER BY u.n";
    q->load_many = prepare(many, arrays);
    q->load_many_locked = prepare(many + " FOR UPDATE OF m", arrays);
    arrays.push_back(BYTEAARRAYOID);
    const std::string insert_many =
        "INSERT INTO " + t.meta + "(" + cols + "st) SELECT * FROM unnest(" + unnest_keys + ", " + p(n + 1) + ")";
    q->store_many = prepare(insert_many + " ON CONFLICT (" + conflict + update, arrays);
    q->insert_many = prepare(insert_many, arrays);
    q->insert_new_many = prepare(insert_many + " ON CONFLICT DO NOTHING" + returning, arrays);
    return q;
}

// Per table; rebuilt when the description names another metadata table or
// other key types (the plans themselves follow DDL through the plan cache).
const MetaSql& sql_for(const TableInfo& t) {
    static std::map<Oid, std::unique_ptr<MetaSql>> cache;
    auto& slot = cache[t.relid];
    if (!slot || slot->meta != t.meta || slot->ncols != t.cols.size() || slot->key_types.size() != t.key_types.size() ||
        !std::equal(slot->key_types.begin(), slot->key_types.end(), t.key_types.begin(),
                    [](Oid a, const ColumnType& b) { return a == b.type; })) {
        slot.reset();
        slot = build_sql(t);
    }
    return *slot;
}

// The stored form of `st` (the `st` column, packed below its seq), its nodes
// recorded first (a known node costs a lookup in memory, no statement).
std::string encode_meta(const RowState& st) {
    State& s = State::get();
    if (st.row.present) s.ensure_node(st.row.stamp.node);
    for (const auto& c : st.cols)
        if (c.present) s.ensure_node(c.stamp.node);
    return pack_stored(encode_row(st, s.nodes(), nullptr), st.max_seq());
}

// A one-dimensional array parameter (`nulls`: which elements are NULL).
std::vector<Param> key_arrays(const MetaSql& q, const std::vector<std::vector<Param>>& keys) {
    std::vector<Param> arrays;
    std::vector<Datum> vals(keys.size());
    for (size_t k = 0; k < q.elems.size(); ++k) {
        for (size_t r = 0; r < keys.size(); ++r) vals[r] = keys[r][k].value;
        arrays.push_back(array_of(q.elems[k], vals));
    }
    return arrays;
}

}  // namespace

RowState load_meta(const TableInfo& t, const std::vector<Param>& key, bool lock) {
    const MetaSql& q = sql_for(t);
    AsMetadataOwner owner;
    const SpiResult res = run(lock ? q.load_locked : q.load, key, false);
    if (res.empty()) return RowState(t.cols.size());
    return meta_at(res, 0, t.cols.size());
}

std::vector<RowState> load_meta_many(const TableInfo& t, const std::vector<std::vector<Param>>& keys, bool lock) {
    return load_meta_many_ids(t, keys, lock, nullptr);
}

std::vector<RowState> load_meta_many_ids(const TableInfo& t, const std::vector<std::vector<Param>>& keys, bool lock,
                                         std::vector<uint64_t>* row_ids) {
    std::vector<RowState> out(keys.size(), RowState(t.cols.size()));
    if (row_ids) row_ids->assign(keys.size(), 0);
    if (keys.empty()) return out;
    const MetaSql& q = sql_for(t);
    const std::vector<Param> arrays = key_arrays(q, keys);
    SpiResult res;
    {
        AsMetadataOwner owner;
        res = run(lock ? q.load_many_locked : q.load_many, arrays, false);
    }
    for (uint64_t r = 0; r < res.size(); ++r) {
        const int64_t at = res.integer(r, 1);
        if (at < 1 || static_cast<size_t>(at) > keys.size()) continue;
        if (row_ids) {
            bool isnull = false;
            const ItemPointer tid = reinterpret_cast<ItemPointer>(DatumGetPointer(res.col(r, 2, &isnull)));
            // 0 stays "no row": block numbers are shifted past it.
            (*row_ids)[at - 1] =
                ((uint64_t(ItemPointerGetBlockNumberNoCheck(tid)) + 1) << 16) | ItemPointerGetOffsetNumberNoCheck(tid);
        }
        out[at - 1] = meta_at(res, r, t.cols.size());
    }
    return out;
}

RowState meta_at(const SpiResult& res, uint64_t r, size_t ncols) {
    return decode_meta(unpack_stored(res.bytes(r, 0)), ncols);
}

RowState decode_meta(const StoredRow& sr, size_t ncols) {
    // A node this backend has not seen is looked up (State::id_at).
    return decode_row(sr, ncols, State::get().nodes());
}

void store_last_values(const TableInfo& t, const std::vector<Param>& key, const std::string& json) {
    const MetaSql& q = sql_for(t);
    std::vector<Param> args = key;
    Param j{TEXTOID, 0, false};
    pg_call([&] { j.value = PointerGetDatum(cstring_to_text_with_len(json.data(), static_cast<int>(json.size()))); });
    args.push_back(j);
    AsMetadataOwner owner;
    run(q.last, args, false);
}

namespace {

// The parameters of store / insert_new: the key, then the stored row.
std::vector<Param> meta_args(const std::vector<Param>& key, const RowState& st) {
    std::vector<Param> args = key;
    args.push_back(bytea_param(encode_meta(st)));
    return args;
}

}  // namespace

void store_meta(const TableInfo& t, const std::vector<Param>& key, const RowState& st) {
    const MetaSql& q = sql_for(t);
    const std::vector<Param> args = meta_args(key, st);
    AsMetadataOwner owner;
    run(q.store, args, false);
}

namespace {

// The parameters of store_many / insert_many: one array per column.
std::vector<Param> meta_arrays(const MetaSql& q, const std::vector<std::vector<Param>>& keys,
                               const std::vector<RowState>& rows) {
    const size_t n = rows.size();
    std::vector<Datum> blobs(n);
    for (size_t i = 0; i < n; ++i) blobs[i] = bytea_param(encode_meta(rows[i])).value;
    std::vector<Param> args = key_arrays(q, keys);
    static const ArrayElem bytes{BYTEAOID, BYTEAARRAYOID, -1, false, TYPALIGN_INT};
    args.push_back(array_of(bytes, blobs));
    return args;
}

void check_sizes(const std::vector<std::vector<Param>>& keys, const std::vector<RowState>& rows) {
    if (keys.size() != rows.size())
        throw Error("metadata of " + std::to_string(rows.size()) + " rows for " + std::to_string(keys.size()) +
                    " keys");
}

}  // namespace

void store_meta_many(const TableInfo& t, const std::vector<std::vector<Param>>& keys,
                     const std::vector<RowState>& rows) {
    check_sizes(keys, rows);
    if (keys.empty()) return;
    const MetaSql& q = sql_for(t);
    const std::vector<Param> args = meta_arrays(q, keys, rows);
    AsMetadataOwner owner;
    run(q.store_many, args, false);
}

std::vector<bool> insert_new_meta(const TableInfo& t, const std::vector<std::vector<Param>>& keys,
                                  const std::vector<RowState>& rows) {
    check_sizes(keys, rows);
    std::vector<bool> stored(keys.size(), false);
    if (keys.empty()) return stored;
    const MetaSql& q = sql_for(t);
    SpiResult res;
    if (keys.size() == 1) {
        const std::vector<Param> args = meta_args(keys[0], rows[0]);
        AsMetadataOwner owner;
        res = run(q.insert_new, args, false);
        stored[0] = res.size() == 1;
        return stored;
    }
    // Which rows went in, by their sequence: every row stored here was just
    // written, and each written row takes a sequence of its own.
    std::unordered_map<uint64_t, size_t> by_seq;
    for (size_t i = 0; i < rows.size(); ++i)
        if (!by_seq.emplace(rows[i].max_seq(), i).second)
            throw Error("table \"" + t.name + "\": two new metadata rows with one sequence");
    {
        const std::vector<Param> args = meta_arrays(q, keys, rows);
        AsMetadataOwner owner;
        res = run(q.insert_new_many, args, false);
    }
    for (uint64_t r = 0; r < res.size(); ++r) {
        const auto at = by_seq.find(static_cast<uint64_t>(res.integer(r, 0)));
        if (at != by_seq.end()) stored[at->second] = true;
    }
    return stored;
}

bool insert_meta_many(const TableInfo& t, const std::vector<std::vector<Param>>& keys,
                      const std::vector<RowState>& rows) {
    check_sizes(keys, rows);
    if (keys.empty()) return true;
    const MetaSql& q = sql_for(t);
    const std::vector<Param> args = meta_arrays(q, keys, rows);
    MemoryContext ctx = CurrentMemoryContext;
    ResourceOwner resowner = CurrentResourceOwner;
    auto leave = [&](bool commit) {
        pg_call([&] {
            if (commit) ReleaseCurrentSubTransaction();
            else RollbackAndReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(ctx);
            CurrentResourceOwner = resowner;
        });
    };
    pg_call([&] {
        BeginInternalSubTransaction(nullptr);
        MemoryContextSwitchTo(ctx);
    });
    try {
        AsMetadataOwner owner;
        run(q.insert_many, args, false);
    } catch (const PgError& e) {
        leave(false);
        if (e.data()->sqlerrcode != ERRCODE_UNIQUE_VIOLATION) throw;
        return false;
    } catch (...) {
        leave(false);
        throw;
    }
    leave(true);
    return true;
}

UserRows probe_user_rows(const TableInfo& t, const SpiResult& meta, const std::vector<uint64_t>& meta_rows, int key_at,
                         bool values) {
    UserRows out;
    out.at.assign(meta_rows.size(), -1);
    if (meta_rows.empty()) return out;
    const size_t nkeys = t.key.size();
    std::vector<Oid> array_types(nkeys);
    std::vector<Param> arrays(nkeys);
    std::vector<Datum> elems(meta_rows.size());
    pg_call([&] {
        for (size_t k = 0; k < nkeys; ++k) {
            ArrayElem e;
            if (!array_elem(t.key_types[k], &e)) elog(ERROR, "no array type for the key type of %s", t.name.c_str());
            for (size_t i = 0; i < meta_rows.size(); ++i) {
                bool isnull = false;
                elems[i] = SPI_getbinval(meta.table->vals[meta_rows[i]], meta.table->tupdesc,
                                         key_at + static_cast<int>(k) + 1, &isnull);
            }
            ArrayType* a =
                construct_array(elems.data(), static_cast<int>(meta_rows.size()), e.type, e.len, e.byval, e.align);
            array_types[k] = e.array;
            arrays[k] = Param{e.array, PointerGetDatum(a), false};
        }
    });
    std::string sql = "SELECT k.n";
    if (values)
        for (const auto& c : t.cols) sql += ", u." + quote_ident(c);
    sql += " FROM unnest(";
    for (size_t k = 0; k < nkeys; ++k) sql += (k ? ", $" : "$") + std::to_string(k + 1);
    sql += ") WITH ORDINALITY AS k(";
    for (size_t k = 0; k < nkeys; ++k) sql += "k" + std::to_string(k) + ", ";
    sql += "n) JOIN LATERAL (SELECT x.ctid";
    if (values)
        for (const auto& c : t.cols) sql += ", x." + quote_ident(c);
    sql += " FROM " + t.qualified + " AS x WHERE ";
    for (size_t k = 0; k < nkeys; ++k)
        sql += (k ? " AND " : "") + ("x." + quote_ident(t.key[k]) + " = k.k" + std::to_string(k) + t.key_collate[k]);
    // OFFSET 0: one primary-key probe per row, never a hash of the whole table.
    sql += " OFFSET 0) AS u ON true";
    // read_only = false: a fresh snapshot.
    out.rows = run(prepare(sql, array_types), arrays, false);
    for (uint64_t r = 0; r < out.rows.size(); ++r) {
        const int64_t n = out.rows.integer(r, 0);
        if (n >= 1 && static_cast<size_t>(n) <= meta_rows.size()) out.at[n - 1] = static_cast<int64_t>(r);
    }
    return out;
}

uint64_t max_stamp(const RowState& st) {
    uint64_t m = st.row.present ? st.row.stamp.hlc : 0;
    for (const auto& c : st.cols)
        if (c.present && c.stamp.hlc > m) m = c.stamp.hlc;
    return m;
}

}  // namespace lww::pg
