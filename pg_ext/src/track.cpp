// PostgreSQL adapter: lww_track / lww_untrack.
#include "track.h"
#include "meta.h"
#include "ddl.h"

#include "../../common/batch.h"

extern "C" {
#include "catalog/pg_class.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/array.h"
}

namespace lww::pg {

namespace {

constexpr const char* kCaptureTriggers[] = {"lwwsync_capture", "lwwsync_capture_ins", "lwwsync_capture_upd",
                                            "lwwsync_capture_del", "lwwsync_no_truncate"};

Param oid_param(Oid o) { return Param{OIDOID, ObjectIdGetDatum(o), false}; }

std::string text_array(const std::vector<std::string>& v) {
    std::string s = "ARRAY[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + quote_literal(v[i]);
    return s + "]::text[]";
}

// Writes made while a table was untracked were not recorded. Against the
// kept metadata: every row there is written anew (a deleted key comes back
// one generation later) and every row gone since is deleted — through the
// core's local-write rules, with stamps above everything the table held.
int64_t resume_table(Oid relid) {
    State& s = State::get();
    s.invalidate();
    const TablePtr t = s.find(relid);
    if (!t) throw Error("table with oid " + std::to_string(relid) + " is not tracked", ErrorKind::not_found);
    // The metadata as its owner; which of its rows the table holds, as the
    // table's owner (never user-table code with the metadata owner's rights).
    // Rows hashed at lww_untrack (ddl.cpp) are compared register by register.
    const std::vector<std::string> old_regs = remembered_registers(relid);
    const bool hashed = !old_regs.empty();
    std::string sql = "SELECT m.st";
    for (size_t i = 0; i < t->key.size(); ++i) sql += ", m.k" + std::to_string(i);
    if (hashed) sql += ", m.vh";
    sql += " FROM " + t->meta + " AS m";
    struct Pending {
        std::vector<Param> key;
        RowState st;
        bool present;
        UntrackedDrift drift;  // hashed rows: registers changed / columns added while untracked
        bool compare = false;
    };
    std::vector<Pending> rows;
    uint64_t floor = 0;
    {
        SpiResult meta;
        {
            AsMetadataOwner owner;
            meta = run_sql(sql, false);
        }
        const uint64_t n = meta.size();
        const int key_at = 1;
        std::vector<uint64_t> all(n);
        for (uint64_t r = 0; r < n; ++r) all[r] = r;
        UserRows user;
        const std::vector<int64_t>& present = user.at;
        std::vector<std::vector<uint64_t>> now(n);  // hashed rows: each register's value hash now
        {
            AsTableOwner owner(relid);
            user = probe_user_rows(*t, meta, all, key_at, hashed);
            if (hashed)
                for (uint64_t r = 0; r < n; ++r) {
                    if (present[r] < 0) continue;
                    for (size_t c = 0; c < t->cols.size(); ++c) {
                        bool isnull = false;
                        Datum d = user.rows.col(static_cast<uint64_t>(present[r]), static_cast<int>(c) + 1, &isnull);
                        now[r].push_back(value_hash(datum_to_value(d, isnull, t->col_types[c])));
                    }
                }
        }
        for (uint64_t r = 0; r < n; ++r) {
            RowState st = meta_at(meta, r, t->cols.size());
            bool isnull = false;
            Pending p{{}, std::move(st), present[r] >= 0, {}, false};
            if (hashed && p.present && p.st.alive()) {
                bool no_vh = false;
                const std::string vh = meta.bytes(r, key_at + static_cast<int>(t->key.size()), &no_vh);
                if (!no_vh) {
                    p.compare = true;
                    p.drift = untracked_drift(vh, old_regs, t->cols, now[r]);
                }
            }
            floor = std::max(floor, max_stamp(p.st));
            for (size_t i = 0; i < t->key.size(); ++i) {
                Datum d = meta.col(r, key_at + static_cast<int>(i), &isnull);
                Datum copy = 0;
                pg_call([&] { copy = datumCopy(d, t->key_types[i].byval, t->key_types[i].len); });
                p.key.push_back(Param{t->key_types[i].type, copy, false});
            }
            if (p.present || p.st.alive()) rows.push_back(std::move(p));
        }
    }
    const Stamp stamp{s.tick(floor), s.self()};
    int64_t rewritten = 0;
    for (auto& p : rows) {
        if (p.compare) {
            const UntrackedDrift& d = p.drift;
            if (!d.any_changed && !d.any_added) continue;  // unchanged: keeps its stamps
            const uint64_t seq = s.next_seq();
            if (d.any_changed) {
                local_update(p.st, d.changed, stamp, seq);
                ++rewritten;
            }
            for (size_t j = 0; j < d.added.size(); ++j)  // added while untracked: backfilled
                if (d.added[j]) p.st.cols[j] = Register{true, Stamp{kBackfillHlc, s.self()}, seq};
        } else if (p.present) {
            local_insert(p.st, stamp, s.next_seq());
            ++rewritten;
        } else {
            local_delete(p.st, stamp, s.next_seq());
        }
        store_meta(*t, p.key, p.st);
    }
    forget_untracked(relid, t->meta);
    return rewritten;
}

// Rows without metadata get their first stamps: one stamp, a sequence each.
// Their keys are read in chunks through a cursor as the table's owner; the
// keys without metadata are picked and their metadata written as its owner,
// from the keys passed as arrays. (One
// INSERT … SELECT over the user table would run the table owner's code, such
// as an index predicate, with the metadata owner's rights.)
int64_t stamp_new_rows(const TableInfo& t, uint64_t hlc) {
    State::get().next_seq();  // takes the change-feed barrier for this transaction
    const size_t nkeys = t.key.size();
    std::string names, sel, match;
    for (size_t i = 0; i < nkeys; ++i) {
        names += (i ? ", k" : "k") + std::to_string(i);
        sel += (i ? ", " : "") + ("t." + quote_ident(t.key[i]));
        match += (i ? " AND " : "") + ("m.k" + std::to_string(i) + " = u.k" + std::to_string(i) + t.key_collate[i]);
    }
    std::vector<Oid> array_types(nkeys);
    std::string params;
    pg_call([&] {
        for (size_t i = 0; i < nkeys; ++i) {
            array_types[i] = get_array_type(t.key_types[i].type);
            if (!OidIsValid(array_types[i])) array_types[i] = get_array_type(t.key_types[i].base);
            if (!OidIsValid(array_types[i])) elog(ERROR, "no array type for the key type of %s", t.name.c_str());
        }
    });
    for (size_t i = 0; i < nkeys; ++i) params += (i ? ", $" : "$") + std::to_string(i + 1);
    const std::string fresh_sql = "SELECT u.* FROM unnest(" + params + ") AS u(" + names +
                                  ") WHERE NOT EXISTS (SELECT 1 FROM " + t.meta + " AS m WHERE " + match + ")";
    const Stamp stamp{hlc, State::get().self()};
    Portal portal = nullptr;
    {
        AsTableOwner owner(t.relid);
        const std::string scan = "SELECT " + sel + " FROM " + t.qualified + " AS t";
        pg_call(
            [&] { portal = SPI_cursor_open_with_args(nullptr, scan.c_str(), 0, nullptr, nullptr, nullptr, true, 0); });
    }
    constexpr long kChunk = 10000;
    int64_t stamped = 0;
    for (;;) {
        SpiResult chunk;
        {
            AsTableOwner owner(t.relid);
            chunk = fetch(portal, kChunk);
        }
        const uint64_t n = chunk.size();
        if (n == 0) break;
        std::vector<Param> arrays(nkeys);
        std::vector<Datum> elems(n);
        pg_call([&] {
            for (size_t k = 0; k < nkeys; ++k) {
                const Oid elem = get_element_type(array_types[k]);
                int16 len;
                bool byval;
                char align;
                get_typlenbyvalalign(elem, &len, &byval, &align);
                for (uint64_t r = 0; r < n; ++r) {
                    bool isnull = false;
                    elems[r] =
                        SPI_getbinval(chunk.table->vals[r], chunk.table->tupdesc, static_cast<int>(k) + 1, &isnull);
                }
                arrays[k] =
                    Param{array_types[k],
                          PointerGetDatum(construct_array(elems.data(), static_cast<int>(n), elem, len, byval, align)),
                          false};
            }
        });
        SpiResult fresh;
        {
            AsMetadataOwner owner;
            fresh = run(prepare(fresh_sql, array_types), arrays, false);
        }
        std::vector<std::vector<Param>> fresh_keys(fresh.size());
        std::vector<RowState> rows(fresh.size(), RowState(t.cols.size()));
        for (uint64_t r = 0; r < fresh.size(); ++r) {
            for (size_t k = 0; k < nkeys; ++k) {
                bool isnull = false;
                fresh_keys[r].push_back(Param{t.key_types[k].type, fresh.col(r, static_cast<int>(k), &isnull), false});
            }
            local_insert(rows[r], stamp, State::get().next_seq());
        }
        // lww_track holds the table: nobody else writes these keys' metadata.
        if (!insert_meta_many(t, fresh_keys, rows))
            throw Error("table \"" + t.name + "\": metadata of its rows was written while they were stamped");
        stamped += static_cast<int64_t>(rows.size());
    }
    pg_call([&] { SPI_cursor_close(portal); });
    return stamped;
}

// Local writes are captured per statement (lwwsync_capture_ins/_upd/_del,
// transition tables, ENABLE ALWAYS: trigger.cpp), and row by row under
// session_replication_role = replica (lwwsync_capture, ENABLE REPLICA):
// lww_apply writes so (the app's ordinary triggers stay quiet), and the row
// trigger tells the merge's own write from every other. Created before the
// table is (re)described: the ALTERs fire lwwsync's event trigger, which must
// not see a half-written description. The same set as lwwsync--0.4--0.5.sql
// installs.
void install_capture_triggers(Oid relid, const std::string& qualified) {
    run_sql("CREATE OR REPLACE TRIGGER lwwsync_capture AFTER INSERT OR UPDATE OR DELETE ON " + qualified +
            " FOR EACH ROW EXECUTE FUNCTION lwwsync.lww_trigger()");
    // The row trigger alone, ALWAYS, capturing every write: before ALTER
    // EXTENSION lwwsync UPDATE to 0.5, and for a table in an inheritance tree
    // (a statement on a parent brings its children's rows in its transition
    // tables, and a partition's statement triggers do not fire for writes
    // made through its parent).
    bool per_statement = false;
    pg_call([&] {
        per_statement = OidIsValid(LookupFuncName(
            list_make2(makeString(pstrdup("lwwsync")), makeString(pstrdup("lww_capture"))), 0, nullptr, true));
    });
    if (per_statement) {
        const SpiResult res =
            run(prepare("SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = $1 OR inhparent = $1 LIMIT 1", {OIDOID}),
                {oid_param(relid)}, true);
        per_statement = res.empty();
    }
    if (!per_statement) {
        // A table that joined an inheritance tree since it was tracked.
        const SpiResult res =
            run(prepare("SELECT tgname::text FROM pg_catalog.pg_trigger WHERE tgrelid = $1"
                        " AND tgname IN ('lwwsync_capture_ins', 'lwwsync_capture_upd', 'lwwsync_capture_del')",
                        {OIDOID}),
                {oid_param(relid)}, true);
        std::vector<std::string> stale;
        for (uint64_t i = 0; i < res.size(); ++i) stale.push_back(res.text(i, 0));
        for (const auto& name : stale) run_sql("DROP TRIGGER " + quote_ident(name) + " ON " + qualified);
        run_sql("ALTER TABLE " + qualified + " ENABLE ALWAYS TRIGGER lwwsync_capture");
    } else {
        run_sql("CREATE OR REPLACE TRIGGER lwwsync_capture_ins AFTER INSERT ON " + qualified +
                " REFERENCING NEW TABLE AS lww_new FOR EACH STATEMENT EXECUTE FUNCTION lwwsync.lww_capture()");
        run_sql("CREATE OR REPLACE TRIGGER lwwsync_capture_upd AFTER UPDATE ON " + qualified +
                " REFERENCING OLD TABLE AS lww_old NEW TABLE AS lww_new FOR EACH STATEMENT"
                " EXECUTE FUNCTION lwwsync.lww_capture()");
        run_sql("CREATE OR REPLACE TRIGGER lwwsync_capture_del AFTER DELETE ON " + qualified +
                " REFERENCING OLD TABLE AS lww_old FOR EACH STATEMENT EXECUTE FUNCTION lwwsync.lww_capture()");
        run_sql("ALTER TABLE " + qualified +
                " ENABLE REPLICA TRIGGER lwwsync_capture, ENABLE ALWAYS TRIGGER lwwsync_capture_ins,"
                " ENABLE ALWAYS TRIGGER lwwsync_capture_upd, ENABLE ALWAYS TRIGGER lwwsync_capture_del");
    }
    run_sql("CREATE OR REPLACE TRIGGER lwwsync_no_truncate BEFORE TRUNCATE ON " + qualified +
            " FOR EACH STATEMENT EXECUTE FUNCTION lwwsync.lww_refuse_truncate()");
}

}  // namespace

namespace {

// The table's schema and name, refused unless it is an ordinary table
// outside lwwsync's own schema.
struct TableName {
    std::string nsp, rel;
};
TableName trackable_table(Oid relid) {
    char relkind = 0;
    const char* n = nullptr;
    const char* r = nullptr;
    pg_call([&] {
        relkind = get_rel_relkind(relid);
        n = get_namespace_name(get_rel_namespace(relid));
        r = get_rel_name(relid);
    });
    TableName name;
    if (n && r) {
        name.nsp = n;
        name.rel = r;
    }
    if (name.rel.empty()) throw Error("no such table (oid " + std::to_string(relid) + ")", ErrorKind::not_found);
    if (relkind != RELKIND_RELATION) throw Error("\"" + name.rel + "\" is not an ordinary table");
    if (name.nsp == "lwwsync") throw Error("\"" + name.rel + "\" is lwwsync metadata");
    return name;
}

// Key columns in key order (with their metadata column definitions), then
// the other stored columns.
struct TableColumns {
    std::vector<std::string> key, key_defs, cols;
};
TableColumns table_columns(Oid relid, const std::string& rel) {
    TableColumns c;
    {
        // Type names as the metadata owner will read them (search_path pinned).
        AsMetadataOwner as_owner;
        const SpiResult key_rows =
            run(prepare("SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),"
                        " CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation"
                        " THEN (SELECT quote_ident(nspname) || '.' || quote_ident(collname) FROM pg_collation c"
                        "  JOIN pg_namespace n ON n.oid = c.collnamespace WHERE c.oid = a.attcollation) END"
                        " FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                        " JOIN pg_type t ON t.oid = a.atttypid"
                        " WHERE i.indrelid = $1 AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)",
                        {OIDOID}),
                {oid_param(relid)}, true);
        for (uint64_t i = 0; i < key_rows.size(); ++i) {
            c.key.push_back(key_rows.text(i, 0));
            bool no_coll = false;
            std::string coll = key_rows.text(i, 2, &no_coll);
            c.key_defs.push_back(key_rows.text(i, 1) + (no_coll ? "" : " COLLATE " + coll));
        }
    }
    if (c.key.empty()) throw Error("table \"" + rel + "\" has no PRIMARY KEY; lwwsync names rows by their key");
    const SpiResult col_rows =
        run(prepare("SELECT attname::text FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped"
                    " AND attgenerated = '' AND attname <> ALL (SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                    " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1 AND i.indisprimary)"
                    " ORDER BY attnum",
                    {OIDOID}),
            {oid_param(relid)}, true);
    for (uint64_t i = 0; i < col_rows.size(); ++i) c.cols.push_back(col_rows.text(i, 0));
    return c;
}

// A table tracked already (a second lww_track): its register indexes stay
// stable, new columns go last, and neither its key nor a column may have gone.
void keep_register_order(const TableInfo& known, const std::string& rel, TableColumns& c) {
    if (known.key != c.key)
        throw Error("the primary key of \"" + rel + "\" changed since it was tracked; lww_untrack it first");
    std::vector<std::string> merged = known.cols;
    for (const auto& col : c.cols)
        if (std::find(merged.begin(), merged.end(), col) == merged.end()) merged.push_back(col);
    for (const auto& col : merged)
        if (std::find(c.cols.begin(), c.cols.end(), col) == c.cols.end())
            throw Error("column \"" + col + "\" of \"" + rel +
                        "\" was dropped since it was tracked; lww_untrack it first");
    c.cols = merged;
}

// Creates (or keeps, or resumes) the metadata table and records the table in
// lwwsync.tables, as the metadata owner. True when it resumes metadata
// lww_untrack kept (its generations and tombstones).
bool record_table(Oid relid, const std::string& wire, const std::string& meta_name, TableColumns& c, bool was_tracked) {
    const std::string meta = "lwwsync." + quote_ident(meta_name);
    AsMetadataOwner owner;
    if (!run(prepare("SELECT 1 FROM lwwsync.tables WHERE name = $1 AND relid <> $2", {TEXTOID, OIDOID}),
             {text_param(wire), oid_param(relid)}, true)
             .empty())
        throw Error("another tracked table already syncs as \"" + wire + "\"", ErrorKind::conflict);
    std::string defs, keys;
    for (size_t i = 0; i < c.key.size(); ++i) {
        defs += "k" + std::to_string(i) + " " + c.key_defs[i] + " NOT NULL, ";
        keys += (i ? ", k" : "k") + std::to_string(i);
    }
    // Metadata kept by lww_untrack: resume from it (its generations and
    // tombstones), unless the key changed meanwhile.
    const SpiResult kept_cols = run_sql(
        "SELECT count(*) FILTER (WHERE attname ~ '^k[0-9]+$'), count(*) FROM pg_attribute"
        " WHERE attrelid = to_regclass(" +
            quote_literal(meta) + ") AND attnum > 0 AND NOT attisdropped",
        false);
    const bool kept = kept_cols.integer(0, 1) > 0;
    const bool resuming = kept && !was_tracked && static_cast<size_t>(kept_cols.integer(0, 0)) == c.key.size();
    if (kept && !was_tracked && !resuming) run_sql("DROP TABLE " + meta);
    // The register order the kept metadata was written in (ddl.cpp).
    if (resuming) c.cols = resume_registers(relid, meta, c.cols);
    if (kept && (was_tracked || resuming)) {  // metadata from before 0.4: a deleted row's last values
        const SpiResult last = run_sql("SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(" +
                                           quote_literal(meta) + ") AND attname = 'last' AND NOT attisdropped",
                                       false);
        if (last.empty()) run_sql("ALTER TABLE " + meta + " ADD COLUMN last jsonb");
    }
    if (!kept || (!was_tracked && !resuming)) {  // a second lww_track keeps the metadata it has
        run_sql("CREATE TABLE " + meta + "(" + defs + "st bytea NOT NULL, last jsonb, PRIMARY KEY (" + keys + "))");
        // The feed's order. It only grows: full leaf pages (a split at the
        // right edge leaves the rest of the page empty otherwise).
        run_sql("CREATE INDEX " + quote_ident(meta_name + "_seq") + " ON " + meta + "((" + meta_seq() +
                ")) WITH (fillfactor = 100)");
        // Nobody but the schema owner reads it: lww_changes reads it as
        // the owner and the user rows with the caller's rights.
    }
    run_sql("INSERT INTO lwwsync.tables(relid, name, key_columns, columns, meta) VALUES (" + std::to_string(relid) +
            ", " + quote_literal(wire) + ", " + text_array(c.key) + ", " + text_array(c.cols) + ", " +
            quote_literal(meta) +
            ") ON CONFLICT (relid) DO UPDATE SET name = excluded.name,"
            " key_columns = excluded.key_columns, columns = excluded.columns, meta = excluded.meta");
    return resuming;
}

}  // namespace

int64_t track_table(Oid relid) {
    State& s = State::get();
    const TableName name = trackable_table(relid);
    TableColumns c = table_columns(relid, name.rel);
    const std::string wire = name.nsp == "public" ? name.rel : name.nsp + "." + name.rel;
    const TablePtr known = s.find(relid);
    if (known) keep_register_order(*known, name.rel, c);

    // The triggers are the table owner's business: created with the caller's rights.
    install_capture_triggers(relid, quote_ident(name.nsp) + "." + quote_ident(name.rel));
    const bool resuming = record_table(relid, wire, meta_table_name(relid), c, known != nullptr);
    s.invalidate();

    const int64_t stamped = resuming ? resume_table(relid) : 0;
    const TablePtr t = s.find(relid);
    if (!t) throw Error("table with oid " + std::to_string(relid) + " is not tracked", ErrorKind::not_found);
    return stamped + stamp_new_rows(*t, s.tick(0));
}

bool untrack_table(Oid relid) {
    State& s = State::get();
    const TablePtr t = s.find(relid);
    if (!t) return false;
    const std::string qualified = t->qualified;
    for (const char* name : kCaptureTriggers)
        run_sql("DROP TRIGGER IF EXISTS " + std::string(name) + " ON " + qualified);
    remember_untracked(*t);  // so lww_track stamps only what changes meanwhile (ddl.cpp)
    {
        AsMetadataOwner owner;
        // The metadata stays (generations, tombstones): lww_track resumes from it.
        run_sql("DELETE FROM lwwsync.tables WHERE relid = " + std::to_string(relid));
    }
    s.invalidate();
    return true;
}

}  // namespace lww::pg
