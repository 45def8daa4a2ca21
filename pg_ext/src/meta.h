// PostgreSQL adapter: reading and writing one row's metadata (the stored
// RowState of common/row_codec.h) in lwwsync.m_<relid>.
#pragma once
#include "spi.h"
#include "state.h"

namespace lww::pg {

std::string meta_table_name(Oid relid);  // unquoted, in schema lwwsync

// Key parameters from Datums of the user table's key columns.
std::vector<Param> key_params(const TableInfo& t, const std::vector<Datum>& key, const std::vector<bool>& nulls);

// Loads (and, with `lock`, row-locks) the metadata row; a fresh RowState when
// there is none. Lock order everywhere: the user row first, then its metadata.
RowState load_meta(const TableInfo& t, const std::vector<Param>& key, bool lock = true);
void store_meta(const TableInfo& t, const std::vector<Param>& key, const RowState& st);
// decode_row with a node directory refreshed when a row names a node it lacks.
RowState decode_meta(const StoredRow& sr, size_t ncols);
// Row `r` of the current SPI result whose first columns are gen, hlc, node, mseq, cols.
RowState meta_at(uint64_t r, size_t ncols);

// The highest stamp held anywhere in the row (a local write must beat it).
uint64_t max_stamp(const RowState& st);

}  // namespace lww::pg
