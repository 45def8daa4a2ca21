#include "evolve.h"
SQLITE_EXTENSION_INIT3

#include <algorithm>
#include <cctype>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "../common/batch.h"
#include "../common/json.h"
#include "apply.h"
#include "schema.h"

namespace lww::sq {

namespace {

const char* kPendingSql =
    "CREATE TABLE IF NOT EXISTS lww_pending(id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, columns TEXT NOT NULL,"
    " origin TEXT NOT NULL, registers INTEGER NOT NULL, changeset TEXT NOT NULL,"
    " received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), UNIQUE(tbl, changeset));"
    "CREATE INDEX IF NOT EXISTS lww_pending_origin ON lww_pending(origin);";

bool has_pending_table(Conn& c) {
    Stmt st(c.db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lww_pending'");
    return st.step();
}

struct Summary {
    std::vector<std::string> altered;
    size_t added = 0, dropped = 0, renamed = 0, untracked = 0, landed = 0;
    std::string json() const {
        return "{\"altered\":" + json_array(altered) + ",\"added\":" + std::to_string(added) +
               ",\"dropped\":" + std::to_string(dropped) + ",\"renamed\":" + std::to_string(renamed) +
               ",\"untracked\":" + std::to_string(untracked) + ",\"landed\":" + std::to_string(landed) + "}";
    }
};

// Brings one tracked table's registers in step with its columns. `strict`
// (lww_alter): a changed primary key is an error; detection leaves such a
// table alone (lww_track names the problem). True when the table changed.
bool reconcile_table(Conn& c, const TableInfo& t, bool strict, bool rebuild, Summary& sum,
                     std::vector<std::string>& land) {
    const std::string& name = t.name;
    if (!table_exists(c, name)) {
        // DROP TABLE: untracked, and its metadata dropped with it (docs/SCHEMA.md).
        // Sequences must never run backwards once its rows are gone: peers'
        // cursors and the no-echo ranges (lww_relayed) name them.
        c.lock_for_write();
        c.set_setting("seq_floor", static_cast<int64_t>(c.last_seq()));
        Stmt del(c.db, "DELETE FROM lww_tables WHERE name = ?1");
        del.bind_text(1, name);
        del.step();
        exec(c.db, "DROP TABLE IF EXISTS " + t.meta);
        sum.altered.push_back(name);
        ++sum.untracked;
        return true;
    }
    std::vector<std::string> key;
    const std::vector<std::string> cur = table_columns(c, name, &key);
    if (key != t.key) {
        if (strict)
            throw Error("the primary key of tracked table \"" + name +
                        "\" changed; lwwsync names rows by their key: lww_untrack the table, change the key, "
                        "lww_track it again (peers must make the same change)");
        return false;
    }
    std::vector<std::string> regs = t.cols, gone, added;
    for (const auto& r : regs)
        if (std::find(cur.begin(), cur.end(), r) == cur.end()) gone.push_back(r);
    for (const auto& n : cur)
        if (std::find(regs.begin(), regs.end(), n) == regs.end()) added.push_back(n);
    if (gone.empty() && added.empty()) {
        if (rebuild) rebuild_triggers(c, name, regs);
        return false;
    }
    if (gone.size() == added.size()) {  // as many names gone as came: renames, in order
        for (size_t i = 0; i < gone.size(); ++i) *std::find(regs.begin(), regs.end(), gone[i]) = added[i];
        sum.renamed += gone.size();
        gone.clear();
        added.clear();
    }
    for (const auto& g : gone) {  // the register slot is retired: later ones move down
        const size_t idx = static_cast<size_t>(std::find(regs.begin(), regs.end(), g) - regs.begin());
        Stmt up(c.db, "UPDATE " + t.meta + " SET cols = lww_cols_drop(cols, ?1) WHERE cols IS NOT NULL");
        up.bind_int(1, static_cast<int64_t>(idx));
        up.step();
        regs.erase(regs.begin() + static_cast<std::ptrdiff_t>(idx));
        ++sum.dropped;
    }
    for (const auto& a : added) {  // a new register, backfilled below every real write
        regs.push_back(a);
        Stmt up(c.db, "UPDATE " + t.meta +
                          " SET cols = lww_cols_backfill(cols, ?1), max_seq = lww_write_seq()"
                          " WHERE (gen & 1) = 1 AND lww_begin_write(1)");
        up.bind_int(1, static_cast<int64_t>(regs.size() - 1));
        up.step();
        ++sum.added;
    }
    Stmt reg(c.db, "UPDATE lww_tables SET columns = ?2 WHERE name = ?1");
    reg.bind_text(1, name);
    reg.bind_text(2, json_array(regs));
    reg.step();
    rebuild_triggers(c, name, regs);
    sum.altered.push_back(name);
    land.push_back(name);
    return true;
}

// Every tracked table, in one savepoint; pending registers land afterwards.
Summary reconcile_all(Conn& c, bool strict, bool rebuild) {
    Summary sum;
    std::vector<std::string> land;
    for (const auto& t : c.tables()) reconcile_table(c, *t, strict, rebuild, sum, land);
    c.reload();
    for (const auto& name : land) sum.landed += land_pending(c, name);
    return sum;
}

template <class F>
auto in_savepoint(Conn& c, const char* name, F&& body) {
    exec(c.db, std::string("SAVEPOINT ") + name);
    ++c.evolving;
    try {
        auto r = body();
        --c.evolving;
        exec(c.db, std::string("RELEASE ") + name);
        return r;
    } catch (...) {
        --c.evolving;
        sqlite3_exec(c.db, (std::string("ROLLBACK TO ") + name + "; RELEASE " + name).c_str(), nullptr, nullptr,
                     nullptr);
        c.reload();
        throw;
    }
}

// Runs `sql` statement by statement, each of them DDL (checked by its first
// keyword before it runs).
void run_ddl(Conn& c, const std::string& sql) {
    const char* p = sql.c_str();
    const char* end = p + sql.size();
    size_t statements = 0;
    while (p < end) {
        sqlite3_stmt* st = nullptr;
        const char* tail = nullptr;
        if (sqlite3_prepare_v2(c.db, p, static_cast<int>(end - p), &st, &tail) != SQLITE_OK)
            throw Error(sqlite3_errmsg(c.db));
        if (st) {
            std::string head = sqlite3_sql(st);
            size_t i = head.find_first_not_of(" \t\r\n");
            std::string word;
            while (i < head.size() && std::isalpha(static_cast<unsigned char>(head[i])))
                word += static_cast<char>(std::toupper(static_cast<unsigned char>(head[i++])));
            if (word != "ALTER" && word != "CREATE" && word != "DROP") {
                sqlite3_finalize(st);
                throw Error("lww_alter runs schema changes only (ALTER, CREATE, DROP); run \"" + head.substr(0, 40) +
                            "\" on its own, where the triggers record it");
            }
            int rc;
            while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            }
            sqlite3_finalize(st);
            if (rc != SQLITE_DONE) throw Error(sqlite3_errmsg(c.db));
            ++statements;
        }
        if (!tail || tail == p) break;
        p = tail;
    }
    if (!statements) throw Error("no statement given");
}

}  // namespace

void detect_schema_changes(Conn& c) {
    if (c.evolving || c.applying || sqlite3_db_readonly(c.db, "main") == 1) return;
    const int64_t cookie = c.schema_version();
    if (cookie == c.schema_cookie) return;
    bool changed = false;
    for (const auto& t : c.tables()) {
        if (!table_exists(c, t->name)) {
            changed = true;
            break;
        }
        std::vector<std::string> key;
        std::vector<std::string> cur = table_columns(c, t->name, &key), regs = t->cols;
        std::sort(cur.begin(), cur.end());
        std::sort(regs.begin(), regs.end());
        if (key == t->key && cur != regs) {
            changed = true;
            break;
        }
    }
    if (changed)
        in_savepoint(c, "lww_evolve", [&] {
            c.lock_for_write();
            return reconcile_all(c, false, false);
        });
    c.schema_cookie = c.schema_version();
}

std::string alter(Conn& c, const std::string& sql) {
    c.ensure_ready();
    Summary sum = in_savepoint(c, "lww_alter", [&] {
        c.lock_for_write();
        for (const auto& t : c.tables()) drop_table_triggers(c, t->name);
        run_ddl(c, sql);
        return reconcile_all(c, true, true);
    });
    c.schema_cookie = c.schema_version();
    return sum.json();
}

size_t hold_pending(Conn& c, const ChangeSet& pending) {
    if (pending.tables.empty()) return 0;
    exec(c.db, kPendingSql);
    const std::string origin = pending.origin.str();
    Stmt held(c.db,
              "SELECT count(*), coalesce(sum(length(CAST(changeset AS BLOB))), 0) FROM lww_pending WHERE origin = ?1");
    held.bind_text(1, origin);
    held.step();
    int64_t rows = held.int64(0), bytes = held.int64(1);
    const int64_t max_rows = static_cast<int64_t>(c.setting("pending_max_rows", kMaxPendingRowsPerNode));
    Stmt ins(
        c.db,
        "INSERT OR IGNORE INTO lww_pending(tbl, columns, origin, registers, changeset) VALUES (?1, ?2, ?3, ?4, ?5)");
    size_t registers = 0;
    for (const auto& r : pending_rows(pending)) {
        const std::string json = encode_changeset(r.cs);
        ins.reset();
        ins.bind_text(1, r.table);
        ins.bind_text(2, json_array(r.columns));
        ins.bind_text(3, origin);
        ins.bind_int(4, static_cast<int64_t>(r.registers));
        ins.bind_text(5, json);
        ins.step();
        if (sqlite3_changes(c.db) > 0) {  // a row already held (a retried batch) costs nothing
            if (rows + 1 > max_rows || bytes + static_cast<int64_t>(json.size()) > kMaxPendingBytesPerNode)
                pending_limit(pending.origin, rows, bytes, max_rows);  // lww_apply's savepoint undoes it
            ++rows;
            bytes += static_cast<int64_t>(json.size());
        }
        registers += r.registers;
    }
    return registers;
}

size_t land_pending(Conn& c, const std::string& table) {
    if (!has_pending_table(c)) return 0;
    std::vector<std::pair<int64_t, std::string>> rows;
    {
        Stmt st(c.db, "SELECT id, changeset FROM lww_pending WHERE tbl = ?1 ORDER BY id");
        st.bind_text(1, table);
        while (st.step()) rows.emplace_back(st.int64(0), st.text(1));
    }
    if (rows.empty()) return 0;
    return in_savepoint(c, "lww_land", [&] {
        size_t landed = 0;
        for (const auto& [id, json] : rows) {
            // Each row in a savepoint of its own: one that cannot land (a
            // constraint of the new column refuses its value) stays held and
            // never fails what lands the rest.
            exec(c.db, "SAVEPOINT lww_land_row");
            try {
                Stmt del(c.db, "DELETE FROM lww_pending WHERE id = ?1");
                del.bind_int(1, id);
                del.step();
                ChangeSet cs = decode_changeset(json);
                // Stamps were checked against the drift limit when they arrived.
                // A row the table's rules refuse moves on to lww_rejected
                // (parked, retried every sync): not landed.
                const bool parked = cs.origin != c.self() && apply_changeset(c, cs, Trust::chosen_server).rejected > 0;
                exec(c.db, "RELEASE lww_land_row");
                if (!parked) ++landed;
            } catch (const std::exception&) {
                sqlite3_exec(c.db, "ROLLBACK TO lww_land_row; RELEASE lww_land_row", nullptr, nullptr, nullptr);
                c.reload();
            }
        }
        return landed;
    });
}

// ------------------------------------------------------------ re-tracking

namespace {

constexpr size_t kMaxHashedColumns = 120;  // lww_row_hash's arguments stay below SQLite's limit

bool has_column(Conn& c, const std::string& table, const std::string& col) {
    Stmt st(c.db, "SELECT 1 FROM pragma_table_info(?1, 'main') WHERE name = ?2");
    st.bind_text(1, table);
    st.bind_text(2, col);
    return st.step();
}

std::vector<std::string> names_of(const std::string& json) {
    std::vector<std::string> out;
    rapidjson::Document d;
    std::string error;
    if (parse_json(d, json, error) && d.IsArray())
        for (const auto& v : d.GetArray())
            if (v.IsString()) out.emplace_back(v.GetString(), v.GetStringLength());
    return out;
}

std::string join_keys(const std::vector<std::string>& key) {
    std::string join;
    for (size_t i = 0; i < key.size(); ++i)
        join += (i ? " AND " : "") + std::string("m.k") + std::to_string(i) + " = t." + quote_ident(key[i]);
    return join;
}

}  // namespace

void remember_untracked(Conn& c, const TableInfo& t) {
    exec(c.db, "CREATE TABLE IF NOT EXISTS lww_untracked(name TEXT PRIMARY KEY, columns TEXT NOT NULL) WITHOUT ROWID");
    Stmt put(c.db, "INSERT OR REPLACE INTO lww_untracked(name, columns) VALUES (?1, ?2)");
    put.bind_text(1, t.name);
    put.bind_text(2, json_array(t.cols));
    put.step();
    if (!has_column(c, meta_table_name(t.name), "vh")) exec(c.db, "ALTER TABLE " + t.meta + " ADD COLUMN vh BLOB");
    if (t.cols.empty() || t.cols.size() > kMaxHashedColumns) {
        exec(c.db, "UPDATE " + t.meta + " SET vh = NULL");
        return;
    }
    std::string args;
    for (const auto& col : t.cols) args += (args.empty() ? "t." : ", t.") + quote_ident(col);
    exec(c.db, "UPDATE " + t.meta + " AS m SET vh = (SELECT lww_row_hash(" + args + ") FROM " + quote_ident(t.name) +
                   " AS t WHERE " + join_keys(t.key) + ") WHERE (gen & 1) = 1");
}

std::vector<std::string> resume_registers(Conn& c, const std::string& table, const std::vector<std::string>& current) {
    {
        Stmt has(c.db, "SELECT 1 FROM sqlite_master WHERE name = 'lww_untracked'");
        if (!has.step()) return current;
    }
    Stmt st(c.db, "SELECT columns FROM lww_untracked WHERE name = ?1");
    st.bind_text(1, table);
    if (!st.step()) return current;
    const std::vector<std::string> old = names_of(st.text(0));
    std::vector<std::string> regs;
    for (size_t i = old.size(); i-- > 0;) {
        if (std::find(current.begin(), current.end(), old[i]) != current.end()) continue;
        Stmt up(c.db, "UPDATE " + quote_ident(meta_table_name(table)) +
                          " SET cols = lww_cols_drop(cols, ?1) WHERE cols IS NOT NULL");
        up.bind_int(1, static_cast<int64_t>(i));
        up.step();
    }
    for (const auto& n : old)
        if (std::find(current.begin(), current.end(), n) != current.end()) regs.push_back(n);
    for (const auto& n : current)
        if (std::find(regs.begin(), regs.end(), n) == regs.end()) regs.push_back(n);
    return regs;
}

int64_t resume_hashed(Conn& c, const std::string& table, const std::vector<std::string>& key,
                      const std::vector<std::string>& regs) {
    const std::string meta = quote_ident(meta_table_name(table));
    if (!has_column(c, meta_table_name(table), "vh")) return 0;
    std::vector<std::string> old;
    {
        Stmt has(c.db, "SELECT 1 FROM sqlite_master WHERE name = 'lww_untracked'");
        if (!has.step()) return 0;
    }
    {
        Stmt st(c.db, "SELECT columns FROM lww_untracked WHERE name = ?1");
        st.bind_text(1, table);
        if (st.step()) old = names_of(st.text(0));
    }
    int64_t stamped = 0;
    if (!old.empty() && regs.size() <= kMaxHashedColumns) {
        std::string sel = "SELECT m.cols, m.vh";
        for (const auto& r : regs) sel += ", t." + quote_ident(r);
        for (size_t i = 0; i < key.size(); ++i) sel += ", m.k" + std::to_string(i);
        sel += " FROM " + meta + " AS m JOIN " + quote_ident(table) + " AS t ON " + join_keys(key) +
               " WHERE m.vh IS NOT NULL AND (m.gen & 1) = 1";
        struct Row {
            std::string cols;
            UntrackedDrift drift;
            std::vector<Value> key;
        };
        std::vector<Row> rows;
        {
            Stmt st(c.db, sel);
            while (st.step()) {
                Row r;
                r.cols = st.blob(0);
                std::vector<uint64_t> now(regs.size());
                for (size_t j = 0; j < regs.size(); ++j) now[j] = value_hash(st.value(2 + static_cast<int>(j)));
                r.drift = untracked_drift(st.blob(1), old, regs, now);
                if (!r.drift.any_changed && !r.drift.any_added) continue;
                for (size_t i = 0; i < key.size(); ++i)
                    r.key.push_back(st.value(2 + static_cast<int>(regs.size() + i)));
                rows.push_back(std::move(r));
            }
        }
        std::string where;
        for (size_t i = 0; i < key.size(); ++i)
            where += (i ? " AND k" : "k") + std::to_string(i) + " = ?" + std::to_string(i + 3);
        Stmt up(c.db, "UPDATE " + meta + " SET cols = ?1, max_seq = ?2 WHERE " + where);
        for (auto& r : rows) {
            const uint64_t seq = c.next_seq();
            std::string blob = r.cols;
            const bool changed = r.drift.any_changed;
            if (changed) blob = blob_set_columns(blob, regs.size(), r.drift.changed, c.local_stamp().hlc, seq);
            blob = blob_set_columns(blob, regs.size(), r.drift.added, kBackfillHlc, seq);
            up.reset();
            up.bind_blob(1, blob);
            up.bind_int(2, static_cast<int64_t>(seq));
            for (size_t i = 0; i < r.key.size(); ++i) up.bind(static_cast<int>(i + 3), r.key[i]);
            up.step();
            if (changed) ++stamped;
        }
    }
    return stamped;
}

bool has_vh(Conn& c, const std::string& table) { return has_column(c, meta_table_name(table), "vh"); }

void finish_resume(Conn& c, const std::string& table) {
    if (has_vh(c, table))
        exec(c.db, "UPDATE " + quote_ident(meta_table_name(table)) + " SET vh = NULL WHERE vh IS NOT NULL");
    Stmt del(c.db, "SELECT 1 FROM sqlite_master WHERE name = 'lww_untracked'");
    if (!del.step()) return;
    Stmt d(c.db, "DELETE FROM lww_untracked WHERE name = ?1");
    d.bind_text(1, table);
    d.step();
}

}  // namespace lww::sq
