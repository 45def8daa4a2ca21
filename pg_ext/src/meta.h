// PostgreSQL adapter: reading and writing one row's metadata (the stored
// RowState of common/row_codec.h) in lwwsync.m_<relid>.
#pragma once
#include "spi.h"
#include "state.h"

namespace lww::pg {

std::string meta_table_name(Oid relid);  // unquoted, in schema lwwsync

// A metadata row is its key columns, st (the packed StoredRow, common/
// row_codec.h pack_stored) and rarely-set extras (last, vh). Its change
// sequence lives in st and is indexed as this expression, which statements
// filter and order by: `alias` "m." gives lwwsync.meta_seq(m.st).
std::string meta_seq(const std::string& alias = "");

// Whether the table's primary key is DEFERRABLE (checked at the end of the
// statement or transaction, not row by row): the table may hold a key twice
// meanwhile, and INSERT ... ON CONFLICT cannot use it as arbiter.
bool primary_key_deferrable(Oid relid);

// Key parameters from Datums of the user table's key columns.
std::vector<Param> key_params(const TableInfo& t, const std::vector<Datum>& key, const std::vector<bool>& nulls);

// Loads (and, with `lock`, row-locks) the metadata row; a fresh RowState when
// there is none. Lock order everywhere: the user row first, then its metadata.
RowState load_meta(const TableInfo& t, const std::vector<Param>& key, bool lock = true);
void store_meta(const TableInfo& t, const std::vector<Param>& key, const RowState& st);
// Metadata of many rows of one table in one statement: result[i] belongs to keys[i]
// (RowState(t.cols.size()) when the key has none). lock = FOR UPDATE, rows locked in the
// order of `keys` (callers pass keys sorted by the lock order, apply.cpp's key_less).
std::vector<RowState> load_meta_many(const TableInfo& t, const std::vector<std::vector<Param>>& keys, bool lock);
// The same, with the identity of each key's metadata row in `row_ids` (0:
// none): two spellings of one key (a case-insensitive collation, 1.0 and
// 1.00) find the same row.
std::vector<RowState> load_meta_many_ids(const TableInfo& t, const std::vector<std::vector<Param>>& keys, bool lock,
                                         std::vector<uint64_t>* row_ids);
// Stores the metadata of many distinct rows in one INSERT ... ON CONFLICT statement
// (arrays bound as parameters, unnest), the same columns store_meta writes.
void store_meta_many(const TableInfo& t, const std::vector<std::vector<Param>>& keys,
                     const std::vector<RowState>& rows);
// Stores the metadata of rows that had none when it was read, locked or not
// (no lock holds a key nobody stored yet): INSERT ... ON CONFLICT DO NOTHING,
// which waits for a transaction inserting the same key. Per row, whether it
// was stored: false where another transaction stored the key first; the
// caller reads it again, locked, and merges onto it, never over it.
std::vector<bool> insert_new_meta(const TableInfo& t, const std::vector<std::vector<Param>>& keys,
                                  const std::vector<RowState>& rows);
// store_meta_many for rows that had no metadata when it was read: a plain
// INSERT (ON CONFLICT's speculative insertion costs as much again), in a
// subtransaction. False, and nothing stored, when another transaction
// stored one of the rows meanwhile.
bool insert_meta_many(const TableInfo& t, const std::vector<std::vector<Param>>& keys,
                      const std::vector<RowState>& rows);

// An array parameter of values of type `type` (a domain without an array
// type: an array of its base type, which unnest hands back for the column
// to coerce). has_array_type false: no array type at all (an array-typed
// column), such values are written row by row.
// How an array of a column's values is built (meta.cpp array_elem).
struct ArrayElem {
    Oid type = InvalidOid, array = InvalidOid;
    int16 len = 0;
    bool byval = false;
    char align = 'i';
};
bool has_array_type(const ColumnType& type);
Param array_param(const ColumnType& type, const std::vector<Param>& values);
// Keeps a deleted row's last values (JSON of the row) in its tombstone, for
// tables under row-level security: lww_changes judges the tombstone against
// the puller's SELECT policies with them (docs/SECURITY.md).
void store_last_values(const TableInfo& t, const std::vector<Param>& key, const std::string& json);
// decode_row with the backend's node directory, which looks up nodes it lacks.
RowState decode_meta(const StoredRow& sr, size_t ncols);
// Row `r` of `res`, whose first column is st.
RowState meta_at(const SpiResult& res, uint64_t r, size_t ncols);

// The user rows of `meta_rows` (rows of `meta`, whose key columns start at
// `key_at`), one primary-key probe each, with whatever identity is current
// (the caller's, or AsTableOwner). at[i]: meta_rows[i]'s row in `rows`, or
// -1 when not found (or not visible); with `values`, the columns 1.. of
// `rows` are the tracked columns.
struct UserRows {
    SpiResult rows;
    std::vector<int64_t> at;
};
UserRows probe_user_rows(const TableInfo& t, const SpiResult& meta, const std::vector<uint64_t>& meta_rows, int key_at,
                         bool values);

// The highest stamp held anywhere in the row (a local write must beat it).
uint64_t max_stamp(const RowState& st);

}  // namespace lww::pg
