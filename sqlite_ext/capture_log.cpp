// SQLite adapter: the capture log (capture_log.h).
//
// Why: a tracked UPDATE used to rewrite its row's metadata (found by key)
// and move the row's entry in the sequence index: about 12x a plain UPDATE
// on a text key. An append to a rowid table keyed by the sequence itself is
// one B-tree insert at the right edge. The metadata is brought up to date
// in one pass, in sequence order, before anything reads it.
#include "capture_log.h"
SQLITE_EXTENSION_INIT3

#include <map>

#include "../common/changeset.h"
#include "../common/row_codec.h"

namespace lww::sq {

namespace {

size_t log_key_columns(sqlite3* db) {
    Stmt st(db, "SELECT count(*) FROM pragma_table_info('lww_log', 'main') WHERE name GLOB 'k[0-9]*'");
    return st.step() ? static_cast<size_t>(st.int64(0)) : 0;
}

// One table's fold: one UPDATE per entry, found by key. A row written
// whole since the entry (an insert, a delete, a key change: its register
// seq is above the entry's) is left alone, as is a key without metadata
// (the trigger's UPDATE found none either).
struct TableFold {
    TableFold(Conn& c, const TablePtr& table) : t(table) {
        std::string where;
        for (size_t i = 0; i < t->key.size(); ++i)
            where += (i ? " AND k" : "k") + std::to_string(i) + " = ?" + std::to_string(i + 1);
        const size_t n = t->key.size();
        auto param = [&](size_t i) { return "?" + std::to_string(n + i); };  // after the key's
        put = Stmt(c.db, "UPDATE " + t->meta + " SET cols = lww_fold_cols(cols, " + std::to_string(t->cols.size()) +
                             ", " + param(1) + ", " + param(2) + ", " + param(3) + "), max_seq = max(max_seq, " +
                             param(3) + ") WHERE " + where + " AND row_seq <= " + param(3));
    }
    TablePtr t;
    Stmt put;
};

}  // namespace

bool has_log(sqlite3* db) {
    Stmt st(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lww_log'");
    return st.step();
}

void ensure_log(sqlite3* db, size_t nkeys) {
    // Key columns without a type: they keep the key values exactly as the
    // trigger saw them.
    exec(db,
         "CREATE TABLE IF NOT EXISTS lww_log(seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, hlc INTEGER NOT NULL,"
         " cols BLOB NOT NULL)");
    for (size_t i = log_key_columns(db); i < nkeys; ++i)
        exec(db, "ALTER TABLE lww_log ADD COLUMN k" + std::to_string(i));
}

std::string log_append_sql(const std::string& table, const std::vector<std::string>& key) {
    std::string names, values;
    for (size_t i = 0; i < key.size(); ++i) {
        names += ", k" + std::to_string(i);
        values += ", NEW." + quote_ident(key[i]);
    }
    return "INSERT INTO lww_log(seq, tbl, hlc, cols" + names + ") VALUES (lww_write_seq(), " + quote_literal(table) +
           ", lww_hlc(), lww_changed()" + values + ");";
}

std::string changed_mask(const std::vector<bool>& changed) {
    std::string mask((changed.size() + 7) / 8, '\0');
    for (size_t i = 0; i < changed.size(); ++i)
        if (changed[i]) mask[i / 8] = static_cast<char>(mask[i / 8] | (1 << (i % 8)));
    return mask;
}

std::vector<bool> changed_columns(std::string_view mask, size_t ncols) {
    if (mask.size() > (ncols + 7) / 8)
        throw Error("lwwsync metadata is damaged: a capture log entry names more columns than its table has",
                    ErrorKind::internal);
    std::vector<bool> changed(ncols, false);
    for (size_t i = 0; i < mask.size() * 8; ++i) {
        if (!(static_cast<unsigned char>(mask[i / 8]) >> (i % 8) & 1)) continue;
        if (i >= ncols)
            throw Error("lwwsync metadata is damaged: a capture log entry names a column its table lacks",
                        ErrorKind::internal);
        changed[i] = true;
    }
    return changed;
}

uint64_t logged_seq(int64_t seq) {
    if (seq < 1 || static_cast<uint64_t>(seq) >= kMaxSequence / 2)
        throw Error("lwwsync metadata is damaged: the capture log holds sequence " + std::to_string(seq),
                    ErrorKind::internal);
    return static_cast<uint64_t>(seq);
}

void note_append(Conn& c) {
    if (++c.log_appended >= c.log_fold_rows) fold_log(c);
}

bool log_pending(Conn& c) {
    if (!c.has_log()) return false;  // made before the log existed, on a connection that could not upgrade it
    Stmt probe(c.db, "SELECT 1 FROM lww_log LIMIT 1");
    return probe.step();
}

void fold_log(Conn& c) {
    c.log_appended = 0;
    if (!log_pending(c)) return;
    const size_t width = log_key_columns(c.db);
    std::string keys;
    for (size_t i = 0; i < width; ++i) keys += ", k" + std::to_string(i);
    Stmt entries(c.db, "SELECT seq, tbl, hlc, cols" + keys + " FROM lww_log ORDER BY seq");
    std::map<std::string, TableFold> tables;  // prepared on first use
    while (entries.step()) {
        const uint64_t seq = logged_seq(entries.int64(0));
        const std::string name = entries.text(1);
        auto it = tables.find(name);
        if (it == tables.end()) {
            const TablePtr t = c.find_table(name);
            if (!t) continue;  // untracked since: its metadata no longer moves
            it = tables.emplace(name, TableFold(c, t)).first;
        }
        TableFold& f = it->second;
        const size_t nkeys = f.t->key.size();
        if (nkeys > width)
            throw Error("lwwsync metadata is damaged: the capture log lacks key columns", ErrorKind::internal);
        f.put.reset();
        // Values as stored: the key exactly as the trigger saw it.
        for (size_t i = 0; i < nkeys; ++i)
            sqlite3_bind_value(f.put.raw(), static_cast<int>(i + 1),
                               sqlite3_column_value(entries.raw(), static_cast<int>(i + 4)));
        sqlite3_bind_value(f.put.raw(), static_cast<int>(nkeys + 1), sqlite3_column_value(entries.raw(), 3));
        f.put.bind_int(static_cast<int>(nkeys + 2), entries.int64(2));
        f.put.bind_int(static_cast<int>(nkeys + 3), static_cast<int64_t>(seq));
        f.put.step();
    }
    entries = Stmt();
    exec(c.db, "DELETE FROM lww_log");
}

}  // namespace lww::sq
