#include "schema.h"
#include "capture_log.h"
#include "evolve.h"
SQLITE_EXTENSION_INIT3

#include <algorithm>
#include <cctype>
#include <map>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace lww::sq {

namespace {

struct Columns {
    std::vector<std::string> key;
    std::vector<std::string> key_defs;  // affinity + collation per key column, for the metadata table
    bool rowid_key = false;             // the key is the table's rowid (INTEGER PRIMARY KEY)
    std::vector<std::string> cols;
};

// The affinity SQLite derives from a declared type (datatype3.html, 3.1).
const char* affinity_of(std::string decl) {
    for (auto& ch : decl) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (decl.find("INT") != std::string::npos) return "INTEGER";
    if (decl.find("CHAR") != std::string::npos || decl.find("CLOB") != std::string::npos ||
        decl.find("TEXT") != std::string::npos)
        return "TEXT";
    if (decl.empty() || decl.find("BLOB") != std::string::npos) return "BLOB";
    if (decl.find("REAL") != std::string::npos || decl.find("FLOA") != std::string::npos ||
        decl.find("DOUB") != std::string::npos)
        return "REAL";
    return "NUMERIC";
}

Columns introspect(sqlite3* db, const std::string& table) {
    // table_xinfo also lists generated columns (hidden 2/3): those are not data.
    Stmt st(db, "SELECT name, pk, hidden, type FROM pragma_table_xinfo(?1, 'main') ORDER BY cid");
    st.bind_text(1, table);
    std::vector<std::pair<int, std::string>> pk;
    std::map<std::string, std::string> pk_types;
    Columns out;
    bool any = false;
    while (st.step()) {
        any = true;
        if (st.int64(2) == 2 || st.int64(2) == 3) continue;
        if (st.int64(1) > 0) {
            pk.emplace_back(static_cast<int>(st.int64(1)), st.text(0));
            pk_types[st.text(0)] = st.text(3);
        } else {
            out.cols.push_back(st.text(0));
        }
    }
    if (!any) throw Error("no such table: \"" + table + "\"", ErrorKind::not_found);
    if (pk.empty()) throw Error("table \"" + table + "\" has no PRIMARY KEY; lwwsync names rows by their key");
    std::sort(pk.begin(), pk.end());
    // Metadata keys compare exactly like the user's keys (same affinity and
    // collation), so key lookups from triggers use the metadata primary key.
    for (auto& p : pk) {
        out.key.push_back(p.second);
        std::string def = affinity_of(pk_types[p.second]);
        const char *decl = nullptr, *coll = nullptr;
        if (sqlite3_table_column_metadata(db, "main", table.c_str(), p.second.c_str(), &decl, &coll, nullptr, nullptr,
                                          nullptr) == SQLITE_OK &&
            coll)
            def += " COLLATE " + quote_ident(coll);
        out.key_defs.push_back(def);
    }
    // An INTEGER PRIMARY KEY of a rowid table is the rowid: its metadata can
    // be a rowid table too, whose rows SQLite updates in place.
    if (pk.size() == 1) {
        std::string decl = pk_types[pk[0].second];
        for (auto& ch : decl) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        Stmt idx(db, "SELECT 1 FROM pragma_index_list(?1, 'main') WHERE origin = 'pk'");
        idx.bind_text(1, table);
        out.rowid_key = decl == "INTEGER" && !idx.step();
    }
    return out;
}

// "k0, k1" — metadata key column names.
std::string meta_keys(size_t n, const char* prefix = "") {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::string(prefix) + "k" + std::to_string(i);
    return s;
}

// NEW."id", NEW."b"
std::string row_keys(const std::vector<std::string>& key, const char* row) {
    std::string s;
    for (size_t i = 0; i < key.size(); ++i) s += (i ? ", " : "") + std::string(row) + "." + quote_ident(key[i]);
    return s;
}

// k0 = OLD."id" AND k1 = OLD."b"
std::string key_match(const std::vector<std::string>& key, const char* row) {
    std::string s;
    for (size_t i = 0; i < key.size(); ++i)
        s += (i ? " AND " : "") + std::string("k") + std::to_string(i) + " = " + row + "." + quote_ident(key[i]);
    return s;
}

std::string trigger_name(const std::string& table, const char* what) {
    return quote_ident("lww__" + table + "__" + what);
}

void drop_triggers(sqlite3* db, const std::string& table) {
    for (const char* w : {"ins", "upd", "upd_key", "del"}) exec(db, "DROP TRIGGER IF EXISTS " + trigger_name(table, w));
}

// Upsert of a row register written by an insert: a fresh key starts at
// generation 1 — above every tombstone of the table that was purged
// (lww_first_gen): a peer may still hold the row at such a generation —
// and a deleted key comes back one generation later.
std::string insert_meta(const std::string& table, const std::string& meta, size_t nkeys, const std::string& keys,
                        const char* seq_expr) {
    return "INSERT INTO " + meta + "(" + meta_keys(nkeys) + ", gen, hlc, node, row_seq, max_seq, cols) VALUES (" +
           keys + ", lww_first_gen(" + quote_literal(table) + "), lww_hlc(), 0, " + seq_expr + ", " + seq_expr +
           ", NULL) ON CONFLICT DO UPDATE SET" +
           " gen = lww_gen_after_insert(gen), hlc = excluded.hlc, node = 0, row_seq = excluded.row_seq," +
           " max_seq = excluded.max_seq, cols = NULL;";
}

std::string delete_meta(const std::string& meta, const std::vector<std::string>& key) {
    return "UPDATE " + meta + " SET gen = lww_gen_after_delete(gen), hlc = lww_hlc(), node = 0," +
           " row_seq = lww_write_seq(), max_seq = lww_write_seq(), cols = NULL WHERE " + key_match(key, "OLD") + ";";
}

// lww_valid_text('t', offset, NEW.a, NEW.b, ...) AND ...: refuses a write
// whose text is not UTF-8 (it could not travel in a change set), naming the
// column; chunks stay under SQLite's 127-argument limit.
std::string valid_text(const std::string& table, const std::vector<std::string>& names, const char* row) {
    constexpr size_t kChunk = 120;
    std::string out;
    for (size_t base = 0; base < names.size(); base += kChunk) {
        std::string call = "lww_valid_text(" + quote_literal(table) + ", " + std::to_string(base);
        for (size_t i = base; i < names.size() && i < base + kChunk; ++i)
            call += ", " + std::string(row) + "." + quote_ident(names[i]);
        out += (out.empty() ? "" : " AND ") + call + ")";
    }
    return out;
}

std::vector<std::string> all_columns(const Columns& c) {
    std::vector<std::string> all = c.key;
    all.insert(all.end(), c.cols.begin(), c.cols.end());
    return all;
}

// lww_row('t', 'i', NEW."id"): names the row a capture trigger records, so
// lww_apply silences exactly its own write (lwwsync.cpp, fn_row).
std::string row_note(const std::string& table, char op, const std::vector<std::string>& key, const char* row) {
    return "lww_row(" + quote_literal(table) + ", '" + std::string(1, op) + "', " + row_keys(key, row) + ")";
}

void create_triggers(sqlite3* db, const std::string& table, const Columns& c) {
    const std::string t = quote_ident(table);
    const std::string new_text = valid_text(table, all_columns(c), "NEW");
    const std::string meta = quote_ident(meta_table_name(table));
    std::string key_same, key_changed;
    for (size_t i = 0; i < c.key.size(); ++i) {
        std::string n = quote_ident(c.key[i]);
        key_same += (i ? " AND " : "") + ("NEW." + n + " IS OLD." + n);
    }
    key_changed = "NOT (" + key_same + ")";

    // lww_row names the row, then lww_begin_write: 0 for lww_apply's own
    // write of a merged row, and the text check (of values its change set
    // already checked) is skipped.
    exec(db, "CREATE TRIGGER " + trigger_name(table, "ins") + " AFTER INSERT ON " + t + " WHEN " +
                 row_note(table, 'i', c.key, "NEW") + " AND lww_begin_write(1) AND " + new_text + " BEGIN " +
                 insert_meta(table, meta, c.key.size(), row_keys(c.key, "NEW"), "lww_write_seq()") + " END");

    exec(db, "CREATE TRIGGER " + trigger_name(table, "del") + " AFTER DELETE ON " + t + " WHEN " +
                 row_note(table, 'd', c.key, "OLD") + " AND lww_begin_write(1) BEGIN " + delete_meta(meta, c.key) +
                 " END");

    // A key change is a delete of the old key and an insert of the new one.
    // Only an UPDATE naming a key column (or the rowid, which an INTEGER
    // PRIMARY KEY is) can change the key: SQLite skips the trigger, WHEN and
    // all, for the others.
    std::string key_cols;
    for (const auto& k : c.key) key_cols += quote_ident(k) + ", ";
    exec(db, "CREATE TRIGGER " + trigger_name(table, "upd_key") + " AFTER UPDATE OF " + key_cols +
                 "rowid, oid, _rowid_ ON " + t + " WHEN " + key_changed + " AND lww_begin_write(2) AND " + new_text +
                 " BEGIN " + delete_meta(meta, c.key) + " " +
                 insert_meta(table, meta, c.key.size(), row_keys(c.key, "NEW"), "lww_write_seq() + 1") + " END");

    if (c.cols.empty()) return;  // a key-only table has nothing else to update
    // Which columns changed, decided once in WHEN and kept for the body.
    // lww_begin_update compares NEW/OLD pairs in the canonical value model
    // (type and bytes: 2 -> 2.0 and 0.0 -> -0.0 are changes). Past 63
    // columns SQLite's argument limit forces masks built in SQL
    // (IS NOT plus typeof), which cannot see the sign of zero.
    // lww_begin_update also refuses changed text that is not UTF-8.
    std::string args;
    if (c.cols.size() <= kMaxPairColumns) {
        for (size_t i = 0; i < c.cols.size(); ++i) {
            std::string n = quote_ident(c.cols[i]);
            args += ", NEW." + n + ", OLD." + n;
        }
        args = "lww_begin_update(" + quote_literal(table) + args + ")";
    } else {
        args = "lww_begin_update_mask(" + std::to_string(c.cols.size());
        for (size_t base = 0; base < c.cols.size(); base += 62) {
            std::string m;
            for (size_t i = base; i < c.cols.size() && i < base + 62; ++i) {
                std::string n = quote_ident(c.cols[i]);
                m += (i > base ? " | " : "") + std::string("((NEW.") + n + " IS NOT OLD." + n + " OR typeof(NEW." + n +
                     ") <> typeof(OLD." + n + ")) << " + std::to_string(i - base) + ")";
            }
            args += ", " + m;
        }
        args += ")";
        args += " AND " + valid_text(table, all_columns(c), "NEW");
    }
    // The body appends to the capture log; the metadata row is brought up
    // to date before anything reads it (capture_log.h).
    ensure_log(db, c.key.size());
    exec(db, "CREATE TRIGGER " + trigger_name(table, "upd") + " AFTER UPDATE ON " + t + " WHEN " + key_same + " AND " +
                 row_note(table, 'u', c.key, "NEW") + " AND " + args + " BEGIN " + log_append_sql(table, c.key) +
                 " END");
}

}  // namespace

void upgrade_metadata(Conn& c) {
    // Schema 6 renamed the sequence columns, in every metadata table: the
    // tracked tables' and the kept metadata of untracked ones.
    std::vector<std::string> renamed;
    {
        Stmt old(c.db,
                 "SELECT m.name FROM sqlite_master AS m WHERE m.type = 'table' AND m.name GLOB 'lww__*'"
                 " AND EXISTS (SELECT 1 FROM pragma_table_info(m.name, 'main') WHERE name = 'mseq')"
                 " AND EXISTS (SELECT 1 FROM pragma_table_info(m.name, 'main') WHERE name = 'seq')");
        while (old.step()) renamed.push_back(old.text(0));
    }
    for (const auto& meta : renamed)
        exec(c.db, "ALTER TABLE " + quote_ident(meta) + " RENAME COLUMN mseq TO row_seq; ALTER TABLE " +
                       quote_ident(meta) + " RENAME COLUMN seq TO max_seq");
    for (const auto& t : c.tables()) {
        Columns cols = introspect(c.db, t->name);
        cols.cols = t->cols;  // register order as tracked
        drop_triggers(c.db, t->name);
        create_triggers(c.db, t->name, cols);
    }
}

int64_t track_table(Conn& c, const std::string& table) {
    c.ensure_ready();
    Columns cols = introspect(c.db, table);
    if (table.rfind("lww_", 0) == 0) throw Error("\"" + table + "\" is an lwwsync metadata table");

    exec(c.db, "SAVEPOINT lww_track");
    try {
        fold_log(c);  // register order and triggers may change below
        if (const TablePtr known = c.find_table(table)) {
            if (known->key != cols.key)
                throw Error("the primary key of \"" + table + "\" changed since it was tracked; lww_untrack it first");
            // Keep register indexes stable: known columns first, new ones appended.
            std::vector<std::string> merged = known->cols;
            for (const auto& n : cols.cols)
                if (std::find(merged.begin(), merged.end(), n) == merged.end()) merged.push_back(n);
            for (const auto& n : merged)
                if (std::find(cols.cols.begin(), cols.cols.end(), n) == cols.cols.end())
                    throw Error("column \"" + n + "\" of \"" + table +
                                "\" was dropped since it was tracked; lww_untrack it first");
            cols.cols = merged;
        }
        const std::string meta = quote_ident(meta_table_name(table));
        // Metadata kept by lww_untrack: resume from it (its generations and
        // tombstones), unless the table's key changed meanwhile.
        bool resuming = false;
        if (!c.find_table(table)) {
            Stmt kept(
                c.db,
                "SELECT count(*) FILTER (WHERE name GLOB 'k[0-9]*'), count(*) FROM pragma_table_info(?1, 'main')");
            kept.bind_text(1, meta_table_name(table));
            if (kept.step() && kept.int64(1) > 0) {
                resuming = static_cast<size_t>(kept.int64(0)) == cols.key.size();
                if (!resuming) exec(c.db, "DROP TABLE " + meta);
            }
            // The register order the kept metadata was written in (evolve.cpp).
            if (resuming) cols.cols = resume_registers(c, table, cols.cols);
        }
        const std::string registers =
            "gen INTEGER NOT NULL, hlc INTEGER NOT NULL, node INTEGER NOT NULL, row_seq INTEGER NOT NULL,"
            " max_seq INTEGER NOT NULL, cols BLOB";
        if (cols.rowid_key) {
            exec(c.db, "CREATE TABLE IF NOT EXISTS " + meta + "(k0 INTEGER PRIMARY KEY, " + registers + ")");
        } else {
            std::string keydefs;
            for (size_t i = 0; i < cols.key.size(); ++i)
                keydefs += "k" + std::to_string(i) + " " + cols.key_defs[i] + " NOT NULL, ";
            exec(c.db, "CREATE TABLE IF NOT EXISTS " + meta + "(" + keydefs + registers + ", PRIMARY KEY(" +
                           meta_keys(cols.key.size()) + ")) WITHOUT ROWID");
        }
        exec(c.db, "CREATE INDEX IF NOT EXISTS " + quote_ident(meta_table_name(table) + "__seq") + " ON " + meta +
                       "(max_seq)");
        drop_triggers(c.db, table);
        create_triggers(c.db, table, cols);

        Stmt reg(c.db,
                 "INSERT INTO lww_tables(name, key_columns, columns) VALUES (?1, ?2, ?3)"
                 " ON CONFLICT(name) DO UPDATE SET key_columns = excluded.key_columns, columns = excluded.columns");
        reg.bind_text(1, table);
        reg.bind_text(2, json_array(cols.key));
        reg.bind_text(3, json_array(cols.cols));
        reg.step();
        c.reload();
        // Rows already there must be able to travel too.
        exec(c.db, "SELECT count(*) FROM " + quote_ident(table) + " AS NEW WHERE NOT (" +
                       valid_text(table, all_columns(cols), "NEW") + ")");

        std::string join;
        for (size_t i = 0; i < cols.key.size(); ++i)
            join += (i ? " AND " : "") + std::string("m.k") + std::to_string(i) + " = t." + quote_ident(cols.key[i]);
        int64_t stamped = 0;
        if (resuming) {
            // Writes made while untracked were not recorded: every row there is
            // written anew (a deleted key comes back one generation later), and
            // every row gone since is deleted.
            // Rows whose values were hashed at lww_untrack: only what changed (evolve.cpp).
            stamped += resume_hashed(c, table, cols.key, cols.cols);
            const std::string here = "EXISTS (SELECT 1 FROM " + quote_ident(table) + " AS t WHERE " + join + ")";
            const std::string hashed = has_vh(c, table) ? " AND NOT (vh IS NOT NULL AND (gen & 1) = 1)" : "";
            exec(c.db, "UPDATE " + meta +
                           " AS m SET gen = lww_gen_after_insert(gen), hlc = lww_hlc(), node = 0,"
                           " row_seq = lww_write_seq(), max_seq = lww_write_seq(), cols = NULL WHERE " +
                           here + hashed + " AND lww_begin_write(1)");
            stamped += sqlite3_changes(c.db);
            exec(c.db,
                 "UPDATE " + meta +
                     " AS m SET gen = lww_gen_after_delete(gen), hlc = lww_hlc(), node = 0,"
                     " row_seq = lww_write_seq(), max_seq = lww_write_seq(), cols = NULL WHERE (gen & 1) = 1 AND NOT " +
                     here + " AND lww_begin_write(1)");
        }
        // Rows without metadata get their first stamps, one write each (above
        // the table's purged generations, as any insert: lww_first_gen).
        exec(c.db, "INSERT INTO " + meta + "(" + meta_keys(cols.key.size()) +
                       ", gen, hlc, node, row_seq, max_seq, cols) SELECT " + row_keys(cols.key, "t") +
                       ", lww_first_gen(" + quote_literal(table) +
                       "), lww_hlc(), 0, lww_write_seq(), lww_write_seq(),"
                       " NULL FROM " +
                       quote_ident(table) + " AS t WHERE NOT EXISTS (SELECT 1 FROM " + meta + " AS m WHERE " + join +
                       ") AND lww_begin_write(1)");
        stamped += sqlite3_changes(c.db);
        if (resuming) finish_resume(c, table);
        exec(c.db, "RELEASE lww_track");
        return stamped;
    } catch (...) {
        exec(c.db, "ROLLBACK TO lww_track; RELEASE lww_track");
        c.reload();
        throw;
    }
}

bool untrack_table(Conn& c, const std::string& table) {
    c.ensure_ready();
    const TablePtr t = c.find_table(table);
    if (!t) return false;
    exec(c.db, "SAVEPOINT lww_untrack");
    try {
        c.lock_for_write();
        // Sequences must never run backwards, even once this table's rows are gone.
        c.set_setting("seq_floor", static_cast<int64_t>(c.last_seq()));
        c.persist_clock();
        drop_triggers(c.db, table);
        remember_untracked(c, *t);  // so lww_track stamps only what changes meanwhile
        // The metadata stays (generations, tombstones): lww_track resumes from it.
        Stmt del(c.db, "DELETE FROM lww_tables WHERE name = ?1");
        del.bind_text(1, table);
        del.step();
        exec(c.db, "RELEASE lww_untrack");
    } catch (...) {
        exec(c.db, "ROLLBACK TO lww_untrack; RELEASE lww_untrack");
        throw;
    }
    c.reload();
    return true;
}

// ------------------------------------------------ schema evolution (evolve.cpp)

bool table_exists(Conn& c, const std::string& table) {
    Stmt st(c.db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1");
    st.bind_text(1, table);
    return st.step();
}

std::vector<std::string> table_columns(Conn& c, const std::string& table, std::vector<std::string>* key) {
    Columns cols = introspect(c.db, table);
    if (key) *key = cols.key;
    return cols.cols;
}

void drop_table_triggers(Conn& c, const std::string& table) { drop_triggers(c.db, table); }

void rebuild_triggers(Conn& c, const std::string& table, const std::vector<std::string>& registers) {
    Columns cols = introspect(c.db, table);
    cols.cols = registers;
    drop_triggers(c.db, table);
    create_triggers(c.db, table, cols);
}

// A JSON array of names (lww_tables, lww_pending, lww_untracked).
std::string json_array(const std::vector<std::string>& names) {
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    w.StartArray();
    for (const auto& n : names) w.String(n.data(), static_cast<rapidjson::SizeType>(n.size()));
    w.EndArray();
    return buf.GetString();
}

}  // namespace lww::sq
