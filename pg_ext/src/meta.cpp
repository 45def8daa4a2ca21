#include "meta.h"

#include <cstring>

#include "../../common/batch.h"

extern "C" {
#include "utils/array.h"
}

namespace lww::pg {

std::string meta_table_name(Oid relid) { return "m_" + std::to_string(relid); }

std::vector<Param> key_params(const TableInfo& t, const std::vector<Datum>& key, const std::vector<bool>& nulls) {
    std::vector<Param> p(t.key.size());
    for (size_t i = 0; i < t.key.size(); ++i) {
        if (nulls[i]) throw Error("a key value of table " + t.name + " is NULL");
        p[i] = Param{t.key_types[i].type, key[i], false};
    }
    return p;
}

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

bool has_array_type(const ColumnType& type) {
    bool ok = false;
    pg_call([&] { ok = OidIsValid(get_array_type(type.type)) || OidIsValid(get_array_type(type.base)); });
    return ok;
}

Param array_param(const ColumnType& type, const std::vector<Param>& values) {
    Param out{InvalidOid, 0, false};
    pg_call([&] {
        Oid elem = type.type, array = get_array_type(elem);
        if (!OidIsValid(array)) {  // a domain without an array type: its base type's
            elem = type.base;
            array = get_array_type(elem);
        }
        if (!OidIsValid(array)) elog(ERROR, "no array type for type %u", type.type);
        int16 len;
        bool byval;
        char align;
        get_typlenbyvalalign(elem, &len, &byval, &align);
        const int n = static_cast<int>(values.size());
        Datum* d = static_cast<Datum*>(palloc(sizeof(Datum) * (n ? n : 1)));
        bool* nulls = static_cast<bool*>(palloc(sizeof(bool) * (n ? n : 1)));
        for (int i = 0; i < n; ++i) {
            d[i] = values[i].value;
            nulls[i] = values[i].null;
        }
        int dims[1] = {n}, lbs[1] = {1};
        out.type = array;
        out.value = PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, elem, len, byval, align));
    });
    return out;
}

// Key columns k0.. of `t`'s metadata as arrays, one element per key.
static std::vector<Param> key_arrays(const TableInfo& t, const std::vector<std::vector<Param>>& keys) {
    std::vector<Param> arrays;
    std::vector<Param> column(keys.size());
    for (size_t k = 0; k < t.key.size(); ++k) {
        for (size_t i = 0; i < keys.size(); ++i) column[i] = keys[i][k];
        arrays.push_back(array_param(t.key_types[k], column));
    }
    return arrays;
}

// pg_catalog.unnest($1), pg_catalog.unnest($2), ...: for ROWS FROM.
static std::string unnest_list(size_t n) {
    std::string sql;
    for (size_t i = 0; i < n; ++i) sql += (i ? ", pg_catalog.unnest($" : "pg_catalog.unnest($") + std::to_string(i + 1) + ")";
    return sql;
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

static std::string key_where(const TableInfo& t) {
    std::string w;
    for (size_t i = 0; i < t.key.size(); ++i)
        w += (i ? " AND " : "") + ("k" + std::to_string(i) + " = $" + std::to_string(i + 1));
    return w;
}

static std::vector<Oid> key_oids(const TableInfo& t) {
    std::vector<Oid> o;
    for (const auto& k : t.key_types) o.push_back(k.type);
    return o;
}

RowState load_meta(const TableInfo& t, const std::vector<Param>& key, bool lock) {
    AsMetadataOwner owner;
    SPIPlanPtr plan = prepare("SELECT gen, hlc, node, mseq, cols FROM " + t.meta + " WHERE " + key_where(t) +
                                  (lock ? " FOR UPDATE" : ""),
                              key_oids(t));
    run(plan, key, false);
    if (SPI_processed == 0) return RowState(t.cols.size());
    return meta_at(0, t.cols.size());
}

std::vector<RowState> load_meta_many(const TableInfo& t, const std::vector<std::vector<Param>>& keys, bool lock) {
    std::vector<RowState> out(keys.size(), RowState(t.cols.size()));
    if (keys.empty()) return out;
    AsMetadataOwner owner;
    std::vector<Param> arrays = key_arrays(t, keys);
    const size_t nk = t.key.size();
    std::string sql = "SELECT m.gen, m.hlc, m.node, m.mseq, m.cols, u.n FROM ROWS FROM (" + unnest_list(nk) +
                      ") WITH ORDINALITY AS u(";
    for (size_t k = 0; k < nk; ++k) sql += "k" + std::to_string(k) + ", ";
    sql += "n) JOIN LATERAL (SELECT gen, hlc, node, mseq, cols FROM " + t.meta + " AS x WHERE ";
    for (size_t k = 0; k < nk; ++k)
        sql += (k ? " AND x.k" : "x.k") + std::to_string(k) + " = u.k" + std::to_string(k);
    // A nested loop over the keys in the order given (OFFSET 0 keeps it one
    // probe per key): the locks are taken in that order.
    sql += std::string(lock ? " FOR UPDATE" : "") + " OFFSET 0) AS m ON true";
    std::vector<Oid> types;
    for (const Param& a : arrays) types.push_back(a.type);
    run(prepare(sql, types), arrays, false);
    const size_t ncols = t.cols.size();
    for (uint64_t r = 0; r < SPI_processed; ++r) {
        const int64_t n = col_int64(r, 5);
        if (n >= 1 && static_cast<size_t>(n) <= keys.size()) out[static_cast<size_t>(n - 1)] = meta_at(r, ncols);
    }
    return out;
}

void store_meta_many(const TableInfo& t, const std::vector<std::vector<Param>>& keys, const std::vector<RowState>& rows) {
    if (keys.empty()) return;
    State& s = State::get();
    const size_t n = keys.size();
    std::vector<Param> gen(n), hlc(n), node(n), mseq(n), seq(n), blob(n);
    // A batch's registers mostly carry a few nodes: the first 16 met are
    // remembered here, so each is recorded (looked up) once.
    std::vector<NodeId> ensured;
    auto ensure = [&](const NodeId& id) {
        for (const NodeId& e : ensured)
            if (e.bytes == id.bytes) return;
        s.ensure_node(id);
        if (ensured.size() < 16) ensured.push_back(id);
    };
    for (size_t i = 0; i < n; ++i) {
        const RowState& st = rows[i];
        if (st.row.present) ensure(st.row.stamp.node);
        for (const auto& c : st.cols)
            if (c.present) ensure(c.stamp.node);
        StoredRow sr = encode_row(st, s.nodes(), nullptr);
        gen[i] = Param{INT8OID, Int64GetDatum(static_cast<int64>(sr.gen)), false};
        hlc[i] = Param{INT8OID, Int64GetDatum(static_cast<int64>(sr.row_hlc)), false};
        node[i] = Param{INT4OID, Int32GetDatum(static_cast<int32>(sr.row_node)), false};
        mseq[i] = Param{INT8OID, Int64GetDatum(static_cast<int64>(sr.row_seq)), false};
        seq[i] = Param{INT8OID, Int64GetDatum(static_cast<int64>(st.max_seq())), false};
        blob[i] = Param{BYTEAOID, 0, sr.cols.empty()};
        if (!sr.cols.empty()) {
            pg_call([&] {
                bytea* b = static_cast<bytea*>(palloc(VARHDRSZ + sr.cols.size()));
                SET_VARSIZE(b, VARHDRSZ + sr.cols.size());
                memcpy(VARDATA(b), sr.cols.data(), sr.cols.size());
                blob[i].value = PointerGetDatum(b);
            });
        }
    }
    AsMetadataOwner owner;
    std::vector<Param> args = key_arrays(t, keys);
    auto scalar = [](Oid type) {
        ColumnType c;
        c.type = c.base = type;
        return c;
    };
    args.push_back(array_param(scalar(INT8OID), gen));
    args.push_back(array_param(scalar(INT8OID), hlc));
    args.push_back(array_param(scalar(INT4OID), node));
    args.push_back(array_param(scalar(INT8OID), mseq));
    args.push_back(array_param(scalar(INT8OID), seq));
    args.push_back(array_param(scalar(BYTEAOID), blob));
    std::string cols, conflict;
    for (size_t k = 0; k < t.key.size(); ++k) {
        cols += "k" + std::to_string(k) + ", ";
        conflict += (k ? ", k" : "k") + std::to_string(k);
    }
    std::vector<Oid> types;
    for (const Param& a : args) types.push_back(a.type);
    run(prepare("INSERT INTO " + t.meta + "(" + cols + "gen, hlc, node, mseq, seq, cols) SELECT * FROM ROWS FROM (" +
                    unnest_list(args.size()) + ") ON CONFLICT (" + conflict +
                    ") DO UPDATE SET gen = excluded.gen, hlc = excluded.hlc, node = excluded.node,"
                    " mseq = excluded.mseq, seq = excluded.seq, cols = excluded.cols",
                types),
        args, false);
}

RowState meta_at(uint64_t r, size_t ncols) {
    StoredRow sr;
    sr.gen = static_cast<uint64_t>(col_int64(r, 0));
    sr.row_hlc = static_cast<uint64_t>(col_int64(r, 1));
    sr.row_node = static_cast<uint32_t>(col_int64(r, 2));
    sr.row_seq = static_cast<uint64_t>(col_int64(r, 3));
    sr.cols = col_bytes(r, 4);
    return decode_meta(sr, ncols);
}

RowState decode_meta(const StoredRow& sr, size_t ncols) {
    State& s = State::get();
    try {
        return decode_row(sr, ncols, s.nodes());
    } catch (const Error&) {
        // Another transaction recorded a node after this one read the directory.
        s.reload_nodes();
        return decode_row(sr, ncols, s.nodes());
    }
}

void store_last_values(const TableInfo& t, const std::vector<Param>& key, const std::string& json) {
    AsMetadataOwner owner;
    std::vector<Oid> types = key_oids(t);
    types.push_back(TEXTOID);
    std::vector<Param> args = key;
    Param j{TEXTOID, 0, false};
    pg_call([&] { j.value = PointerGetDatum(cstring_to_text_with_len(json.data(), static_cast<int>(json.size()))); });
    args.push_back(j);
    run(prepare("UPDATE " + t.meta + " SET last = $" + std::to_string(key.size() + 1) + "::jsonb WHERE " + key_where(t),
                types),
        args, false);
}

void store_meta(const TableInfo& t, const std::vector<Param>& key, const RowState& st) {
    State& s = State::get();
    if (st.row.present) s.ensure_node(st.row.stamp.node);
    for (const auto& c : st.cols)
        if (c.present) s.ensure_node(c.stamp.node);
    StoredRow sr = encode_row(st, s.nodes(), nullptr);
    AsMetadataOwner owner;
    std::string cols, params, conflict;
    for (size_t i = 0; i < t.key.size(); ++i) {
        cols += "k" + std::to_string(i) + ", ";
        params += "$" + std::to_string(i + 1) + ", ";
        conflict += (i ? ", k" : "k") + std::to_string(i);
    }
    const size_t n = t.key.size();
    auto p = [&](size_t i) { return "$" + std::to_string(n + i); };
    std::vector<Oid> types = key_oids(t);
    types.insert(types.end(), {INT8OID, INT8OID, INT4OID, INT8OID, INT8OID, BYTEAOID});
    SPIPlanPtr plan = prepare("INSERT INTO " + t.meta + "(" + cols + "gen, hlc, node, mseq, seq, cols) VALUES (" + params +
                                  p(1) + ", " + p(2) + ", " + p(3) + ", " + p(4) + ", " + p(5) + ", " + p(6) +
                                  ") ON CONFLICT (" + conflict +
                                  ") DO UPDATE SET gen = excluded.gen, hlc = excluded.hlc, node = excluded.node,"
                                  " mseq = excluded.mseq, seq = excluded.seq, cols = excluded.cols",
                              types);
    std::vector<Param> args = key;
    args.push_back(Param{INT8OID, Int64GetDatum(static_cast<int64>(sr.gen)), false});
    args.push_back(Param{INT8OID, Int64GetDatum(static_cast<int64>(sr.row_hlc)), false});
    args.push_back(Param{INT4OID, Int32GetDatum(static_cast<int32>(sr.row_node)), false});
    args.push_back(Param{INT8OID, Int64GetDatum(static_cast<int64>(sr.row_seq)), false});
    args.push_back(Param{INT8OID, Int64GetDatum(static_cast<int64>(st.max_seq())), false});
    Param blob{BYTEAOID, 0, sr.cols.empty()};
    if (!sr.cols.empty()) {
        pg_call([&] {
            bytea* b = static_cast<bytea*>(palloc(VARHDRSZ + sr.cols.size()));
            SET_VARSIZE(b, VARHDRSZ + sr.cols.size());
            memcpy(VARDATA(b), sr.cols.data(), sr.cols.size());
            blob.value = PointerGetDatum(b);
        });
    }
    args.push_back(blob);
    run(plan, args, false);
}

std::vector<int64_t> probe_user_rows(const TableInfo& t, SPITupleTable* meta, const std::vector<uint64_t>& meta_rows,
                                     int key_at, bool values) {
    std::vector<int64_t> at(meta_rows.size(), -1);
    if (meta_rows.empty()) return at;
    const size_t nkeys = t.key.size();
    std::vector<Oid> array_types(nkeys);
    std::vector<Param> arrays(nkeys);
    pg_call([&] {
        std::vector<Datum> elems(meta_rows.size());
        for (size_t k = 0; k < nkeys; ++k) {
            const Oid type = t.key_types[k].type;
            Oid array_type = get_array_type(type);
            Oid elem_type = type;
            if (!OidIsValid(array_type)) {  // a domain without an array type: its base type's
                elem_type = t.key_types[k].base;
                array_type = get_array_type(elem_type);
            }
            if (!OidIsValid(array_type)) elog(ERROR, "no array type for the key type of %s", t.name.c_str());
            int16 len;
            bool byval;
            char align;
            get_typlenbyvalalign(elem_type, &len, &byval, &align);
            for (size_t i = 0; i < meta_rows.size(); ++i) {
                bool isnull = false;
                elems[i] = SPI_getbinval(meta->vals[meta_rows[i]], meta->tupdesc, key_at + static_cast<int>(k) + 1, &isnull);
            }
            ArrayType* a = construct_array(elems.data(), static_cast<int>(meta_rows.size()), elem_type, len, byval, align);
            array_types[k] = array_type;
            arrays[k] = Param{array_type, PointerGetDatum(a), false};
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
    run(prepare(sql, array_types), arrays, false);
    for (uint64_t r = 0; r < SPI_processed; ++r) {
        const int64_t n = col_int64(r, 0);
        if (n >= 1 && static_cast<size_t>(n) <= meta_rows.size()) at[n - 1] = static_cast<int64_t>(r);
    }
    return at;
}

uint64_t max_stamp(const RowState& st) {
    uint64_t m = st.row.present ? st.row.stamp.hlc : 0;
    for (const auto& c : st.cols)
        if (c.present && c.stamp.hlc > m) m = c.stamp.hlc;
    return m;
}

}  // namespace lww::pg
