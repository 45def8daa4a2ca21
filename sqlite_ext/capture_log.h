// SQLite adapter: the capture log. A local UPDATE of a tracked row appends
// (seq, table, hlc, changed columns, key) to lww_log instead of rewriting the
// row's metadata and moving its sequence index entry; the log is folded into
// the metadata before anything reads the metadata (docs/ARCHITECTURE.md,
// "Capture"). One log for every table: whether anything waits is one probe,
// whatever the number of tables.
#pragma once
#include <string>
#include <vector>

#include "conn.h"

namespace lww::sq {

// Makes lww_log, with at least `nkeys` key columns (k0, k1, ...).
void ensure_log(sqlite3* db, size_t nkeys);
bool has_log(sqlite3* db);

// The update trigger's body: one append, stamped by lww_begin_update.
std::string log_append_sql(const std::string& table, const std::vector<std::string>& key);

// The changed-columns bitmap a log entry holds (bit i: register i), and back.
std::string changed_mask(const std::vector<bool>& changed);
std::vector<bool> changed_columns(std::string_view mask, size_t ncols);

// Folds the log into the metadata, oldest entry first, and empties it. An
// entry older than its row's register (an insert or a delete since) is
// superseded and dropped. Cost: one probe when the log is empty.
void fold_log(Conn& c);
// After the update trigger stamped a write (it appends next): every
// log_fold_rows appends (lww_config), the connection folds the log itself,
// so the log stays bounded while nothing reads the metadata.
void note_append(Conn& c);
// Whether the log holds an update (one probe).
bool log_pending(Conn& c);
// A sequence read from the log, checked: the log is a table anyone with the
// file can write, and a sequence out of range would wrap the counter.
uint64_t logged_seq(int64_t seq);

}  // namespace lww::sq
