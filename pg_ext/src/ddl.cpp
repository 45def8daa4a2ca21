// PostgreSQL adapter: schema evolution — the event triggers and the pending
// store (docs/SCHEMA.md).
//
// Register order is positional: lwwsync.tables.columns[i] is register i of
// every metadata blob, and attnums[i] the attribute it follows (stable across
// RENAME COLUMN and ALTER TYPE, never reused after DROP COLUMN). At the end
// of an ALTER TABLE of a tracked table:
//   RENAME COLUMN   the register keeps its slot, takes the new name
//   ALTER TYPE      nothing: registers keep their stamps
//   DROP COLUMN     its slot is retired: entries removed from every blob,
//                   later registers move down one slot
//   ADD COLUMN      a register appended; every living row gets it at the
//                   backfill stamp (kBackfillHlc, this node) with a fresh
//                   sequence, so the value (the DEFAULT) travels and loses to
//                   any real write; then lwwsync.pending lands
//   key changes     refused: the DDL fails with a hint
// DROP TABLE untracks the table and drops its metadata.
#include "ddl.h"

#include "apply.h"
#include "meta.h"

#include <algorithm>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "../../common/batch.h"
#include "../../common/row_codec.h"

extern "C" {
#include "commands/event_trigger.h"
#include "storage/itemptr.h"

PG_FUNCTION_INFO_V1(lww_ddl_end);
PG_FUNCTION_INFO_V1(lww_ddl_drop);
}

namespace lww::pg {

namespace {

Param oid_param(Oid o) { return Param{OIDOID, ObjectIdGetDatum(o), false}; }

template <class T, class F>
std::string json_array(const std::vector<T>& v, F&& put) {
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    w.StartArray();
    for (const auto& x : v) put(w, x);
    w.EndArray();
    return buf.GetString();
}

std::string names_json(const std::vector<std::string>& v) {
    return json_array(
        v, [](auto& w, const std::string& s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); });
}

bool metadata_present() {
    bool present = false;
    pg_call([&] {
        Oid nsp = get_namespace_oid("lwwsync", true);
        present = OidIsValid(nsp) && OidIsValid(get_relname_relid("tables", nsp));
    });
    return present;
}

// What an older lwwsync schema (ALTER EXTENSION ... UPDATE not run yet) lacks.
bool has_pending_store() {
    bool present = false;
    pg_call([&] {
        Oid nsp = get_namespace_oid("lwwsync", true);
        present = OidIsValid(nsp) && OidIsValid(get_relname_relid("pending", nsp));
    });
    return present;
}

[[noreturn]] void refuse(const std::string& msg, const std::string& hint) {
    pg_call([&] {
        ereport(ERROR,
                (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("%s", msg.c_str()), errhint("%s", hint.c_str())));
    });
    throw Error(msg);  // not reached
}

struct Register {
    std::string name;
    int attnum = 0;  // 0: unknown (a column that was gone when 0.4 was installed)
};

struct Tracked {
    std::string wire, meta, rel;
    std::vector<std::string> key;
    std::vector<Register> regs;
};

bool load_tracked(Oid relid, Tracked& t) {
    AsMetadataOwner owner;
    const SpiResult row =
        run(prepare("SELECT name, meta FROM lwwsync.tables WHERE relid = $1", {OIDOID}), {oid_param(relid)}, false);
    if (row.size() != 1) return false;
    t.wire = row.text(0, 0);
    t.meta = row.text(0, 1);
    const SpiResult keys = run(
        prepare(
            "SELECT k FROM lwwsync.tables, unnest(key_columns) WITH ORDINALITY AS u(k, n) WHERE relid = $1 ORDER BY n",
            {OIDOID}),
        {oid_param(relid)}, false);
    for (uint64_t i = 0; i < keys.size(); ++i) t.key.push_back(keys.text(i, 0));
    const SpiResult regs = run(
        prepare("SELECT c, coalesce(a, 0) FROM lwwsync.tables, unnest(columns, attnums) WITH ORDINALITY AS u(c, a, n)"
                " WHERE relid = $1 AND c IS NOT NULL ORDER BY n",
                {OIDOID}),
        {oid_param(relid)}, false);
    for (uint64_t i = 0; i < regs.size(); ++i)
        t.regs.push_back(Register{regs.text(i, 0), static_cast<int>(regs.integer(i, 1))});
    return true;
}

void store_registers(Oid relid, const std::vector<Register>& regs) {
    std::vector<std::string> names;
    for (const auto& r : regs) names.push_back(r.name);
    const std::string nums = json_array(regs, [](auto& w, const Register& r) { w.Int(r.attnum); });
    AsMetadataOwner owner;
    run(prepare(
            "UPDATE lwwsync.tables SET"
            " columns = ARRAY(SELECT x FROM pg_catalog.jsonb_array_elements_text($2::pg_catalog.jsonb)"
            "  WITH ORDINALITY AS e(x, n) ORDER BY n),"
            " attnums = ARRAY(SELECT x::pg_catalog.int2 FROM pg_catalog.jsonb_array_elements_text($3::pg_catalog.jsonb)"
            "  WITH ORDINALITY AS e(x, n) ORDER BY n)"
            " WHERE relid = $1",
            {OIDOID, TEXTOID, TEXTOID}),
        {oid_param(relid), text_param(names_json(names)), text_param(nums)}, false);
}

// Rewrites every metadata blob of `meta`: registers `gone` (old indexes)
// retired, registers from `first_new` on (new indexes) backfilled in
// living rows.
void rewrite_blobs(const std::string& meta, const std::vector<size_t>& gone, size_t first_new, size_t nregs) {
    State& s = State::get();
    struct Row {
        ItemPointerData tid;
        std::string st;
    };
    std::vector<Row> rows;
    {
        AsMetadataOwner owner;
        const SpiResult res = run_sql("SELECT ctid, st FROM " + meta + " FOR UPDATE", false);
        rows.resize(res.size());
        for (uint64_t r = 0; r < res.size(); ++r) {
            bool isnull = false;
            Datum d = res.col(r, 0, &isnull);
            ItemPointerCopy(reinterpret_cast<ItemPointer>(DatumGetPointer(d)), &rows[r].tid);
            rows[r].st = res.bytes(r, 1);
        }
    }
    std::vector<size_t> down = gone;
    std::sort(down.rbegin(), down.rend());
    std::vector<bool> added(nregs, false);
    for (size_t i = first_new; i < nregs; ++i) added[i] = true;
    const bool backfill = first_new < nregs;
    for (auto& r : rows) {
        uint64_t was = 0;
        StoredRow sr = unpack_stored(r.st, &was);
        const std::string before = sr.cols;
        for (size_t g : down) sr.cols = blob_drop_column(sr.cols, g);
        uint64_t seq = was;
        if (backfill && (sr.gen & 1)) {
            seq = s.next_seq();
            sr.cols = blob_set_columns(sr.cols, nregs, added, kBackfillHlc, seq);
        }
        if (sr.cols == before && seq == was) continue;
        AsMetadataOwner owner;
        run(prepare("UPDATE " + meta + " SET st = $1 WHERE ctid = $2", {BYTEAOID, TIDOID}),
            {bytea_param(pack_stored(sr, seq)), Param{TIDOID, PointerGetDatum(&r.tid), false}}, false);
    }
}

// One ALTER TABLE of a tracked table, at its end.
void reconcile(Oid relid) {
    Tracked t;
    if (!load_tracked(relid, t)) return;
    const char* r = nullptr;
    pg_call([&] { r = get_rel_name(relid); });
    t.rel = r ? r : "?";
    const std::string rel = quote_ident(t.rel);
    // The key: same columns, names and types as the metadata's.
    std::vector<std::string> key, key_types, meta_types;
    {
        AsMetadataOwner owner;
        const SpiResult keys = run(
            prepare("SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod) || ' ' || a.attcollation"
                    " FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid"
                    " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1 AND i.indisprimary"
                    " ORDER BY pg_catalog.array_position(i.indkey::pg_catalog.int2[], a.attnum)",
                    {OIDOID}),
            {oid_param(relid)}, false);
        for (uint64_t i = 0; i < keys.size(); ++i) {
            key.push_back(keys.text(i, 0));
            key_types.push_back(keys.text(i, 1));
        }
        const SpiResult types = run(
            prepare(
                "SELECT pg_catalog.format_type(atttypid, atttypmod) || ' ' || attcollation FROM pg_catalog.pg_attribute"
                " WHERE attrelid = pg_catalog.to_regclass($1) AND attnum > 0 AND NOT attisdropped"
                " AND attname ~ '^k[0-9]+$' ORDER BY attnum",
                {TEXTOID}),
            {text_param(t.meta)}, false);
        for (uint64_t i = 0; i < types.size(); ++i) meta_types.push_back(types.text(i, 0));
    }
    const std::string hint = "lwwsync names rows by their primary key. To change it: lww_untrack('" + t.rel +
                             "'), change the key, lww_track('" + t.rel +
                             "') again, and make the same change on every peer (docs/SCHEMA.md).";
    if (key.empty()) refuse("cannot drop the primary key of tracked table " + rel, hint);
    if (key != t.key)
        refuse(
            "cannot change the primary key of tracked table " + rel + " (it was (" +
                [&] {
                    std::string s;
                    for (const auto& k : t.key) s += (s.empty() ? "" : ", ") + k;
                    return s;
                }() +
                "))",
            hint);
    if (key_types != meta_types)
        refuse("cannot change the type or collation of a primary-key column of tracked table " + rel, hint);

    // Columns by attribute number.
    struct Attr {
        std::string name;
        bool live;
    };
    std::map<int, Attr> attrs;
    {
        AsMetadataOwner owner;
        const SpiResult res = run(
            prepare("SELECT attnum, attname::text, NOT attisdropped AND attgenerated = '' FROM pg_catalog.pg_attribute"
                    " WHERE attrelid = $1 AND attnum > 0 ORDER BY attnum",
                    {OIDOID}),
            {oid_param(relid)}, false);
        for (uint64_t i = 0; i < res.size(); ++i) {
            bool isnull = false;
            attrs[static_cast<int>(res.integer(i, 0))] = Attr{res.text(i, 1), DatumGetBool(res.col(i, 2, &isnull))};
        }
    }
    std::vector<Register> regs;
    std::vector<size_t> gone;
    bool renamed = false;
    for (size_t i = 0; i < t.regs.size(); ++i) {
        const Register& r = t.regs[i];
        auto a = attrs.find(r.attnum);
        if (r.attnum <= 0 || a == attrs.end() || !a->second.live) {
            gone.push_back(i);
            continue;
        }
        renamed |= a->second.name != r.name;
        regs.push_back(Register{a->second.name, r.attnum});
    }
    const size_t first_new = regs.size();
    for (const auto& [num, a] : attrs) {
        if (!a.live || std::find(key.begin(), key.end(), a.name) != key.end()) continue;
        bool known = false;
        for (const auto& r : regs) known |= r.attnum == num;
        if (!known) regs.push_back(Register{a.name, num});
    }
    if (gone.empty() && !renamed && first_new == regs.size()) return;
    if (!gone.empty() || first_new < regs.size()) rewrite_blobs(t.meta, gone, first_new, regs.size());
    store_registers(relid, regs);
    State::get().invalidate();
    if (first_new < regs.size()) land_pending(t.wire);
}

void dropped(Oid relid) {
    AsMetadataOwner owner;
    const SpiResult res =
        run(prepare("DELETE FROM lwwsync.tables WHERE relid = $1 RETURNING meta", {OIDOID}), {oid_param(relid)}, false);
    if (res.size() != 1) return;
    const std::string meta = res.text(0, 0);
    run_sql("DROP TABLE IF EXISTS " + meta);
    State::get().invalidate();
}

std::vector<Oid> relids_of(const std::string& sql) {
    const SpiResult res = run_sql(sql, false);
    std::vector<Oid> out;
    for (uint64_t i = 0; i < res.size(); ++i) out.push_back(static_cast<Oid>(res.integer(i, 0)));
    return out;
}

}  // namespace

void after_track(Oid relid) {
    if (!has_pending_store()) return;  // lwwsync before 0.4
    SpiResult res;
    {
        AsMetadataOwner owner;
        res = run(
            prepare("UPDATE lwwsync.tables AS t SET attnums = ARRAY(SELECT a.attnum FROM pg_catalog.unnest(t.columns)"
                    " WITH ORDINALITY AS c(name, n) JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid"
                    " AND a.attname = c.name AND NOT a.attisdropped ORDER BY c.n) WHERE relid = $1 RETURNING name",
                    {OIDOID}),
            {oid_param(relid)}, false);
    }
    if (res.size() == 1) land_pending(res.text(0, 0));
}

void hold_pending(const ChangeSet& pending, const OwnStamps* own, ApplyCounts& stats) {
    if (pending.tables.empty()) return;
    ChangeSet kept = pending;
    if (own) {
        for (auto& t : kept.tables) {
            std::vector<RowChange> rows;
            for (auto& r : t.rows) {
                // Nothing is held here, so every register would win: each
                // must be the caller's own (docs/SECURITY.md).
                const size_t before = (r.has_row ? 1 : 0) + r.cols.size();
                if (r.has_row && !own->has(r.row.node)) r.has_row = false;
                std::vector<ColChange> cols;
                for (auto& c : r.cols)
                    if (own->has(c.stamp.node)) cols.push_back(std::move(c));
                r.cols = std::move(cols);
                const size_t after = (r.has_row ? 1 : 0) + r.cols.size();
                stats.received += before - after;
                stats.rejected += before - after;
                if (after) rows.push_back(std::move(r));
            }
            t.rows = std::move(rows);
        }
    }
    const std::vector<PendingRow> rows = pending_rows(kept);
    if (rows.empty()) return;
    if (!has_pending_store())
        throw Error("the change set names table \"" + rows[0].table +
                    "\" or a column of it, which this database does not have, and its lwwsync schema is older "
                    "than 0.4 (no lwwsync.pending): run ALTER EXTENSION lwwsync UPDATE");
    const Principal who = current_principal();
    const std::string origin = pending.origin.str();
    AsMetadataOwner owner;
    const SpiResult res =
        run(prepare("SELECT count(*), coalesce(sum(pg_catalog.octet_length(changeset)), 0)::int8 FROM lwwsync.pending"
                    " WHERE origin = $1::uuid",
                    {TEXTOID}),
            {text_param(origin)}, false);
    int64_t n = res.integer(0, 0), bytes = res.integer(0, 1);
    const SpiResult max = run_sql("SELECT value FROM lwwsync.state WHERE key = 'pending_max_rows'", false);
    const int64_t max_rows = max.empty() ? kMaxPendingRowsPerNode : std::stoll(max.text(0, 0));
    SPIPlanPtr ins = prepare(
        "INSERT INTO lwwsync.pending(tbl, columns, origin, role, subject, registers, changeset)"
        " VALUES ($1, ARRAY(SELECT x FROM pg_catalog.jsonb_array_elements_text($2::pg_catalog.jsonb) WITH ORDINALITY"
        " AS e(x, k) ORDER BY k), $3::uuid, $4, $5, $6, $7) ON CONFLICT (tbl, pg_catalog.md5(changeset)) DO NOTHING",
        {TEXTOID, TEXTOID, TEXTOID, NAMEOID, TEXTOID, INT4OID, TEXTOID});
    for (const auto& r : rows) {
        const std::string json = encode_changeset(r.cs);
        Param role{NAMEOID, 0, false};
        pg_call([&] {
            Name nm = static_cast<Name>(palloc0(NAMEDATALEN));
            namestrcpy(nm, who.role.c_str());
            role.value = NameGetDatum(nm);
        });
        if (run(ins,
                {text_param(r.table), text_param(names_json(r.columns)), text_param(origin), role,
                 text_param(who.subject), Param{INT4OID, Int32GetDatum(static_cast<int32>(r.registers)), false},
                 text_param(json)},
                false)
                .size() == 1) {  // a row already held (a retried batch) costs nothing
            if (n + 1 > max_rows || bytes + static_cast<int64_t>(json.size()) > kMaxPendingBytesPerNode)
                pending_limit(pending.origin, n, bytes, max_rows);  // the statement's transaction undoes it
            ++n;
            bytes += static_cast<int64_t>(json.size());
        }
        stats.pending += r.registers;
    }
}

size_t land_pending(const std::string& wire) {
    std::vector<std::pair<int64_t, std::string>> held;
    if (!has_pending_store()) return 0;
    {
        AsMetadataOwner owner;
        // Rows brought by a role that may neither insert into nor update the
        // table now are dropped, not landed: a peer cannot plant rows in a
        // table before it exists to have them written with the rights of
        // whoever creates it. (Rows brought by a superuser land.)
        run(prepare("DELETE FROM lwwsync.pending AS p USING lwwsync.tables AS t WHERE p.tbl = $1 AND t.name = p.tbl"
                    " AND p.role <> '' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS r WHERE r.rolname = p.role"
                    " AND (r.rolsuper OR pg_catalog.has_table_privilege(r.oid, t.relid, 'INSERT, UPDATE')))",
                    {TEXTOID}),
            {text_param(wire)}, false);
        const SpiResult rows =
            run(prepare("SELECT id, changeset FROM lwwsync.pending WHERE tbl = $1 ORDER BY id", {TEXTOID}),
                {text_param(wire)}, false);
        for (uint64_t i = 0; i < rows.size(); ++i) held.emplace_back(rows.integer(i, 0), rows.text(i, 1));
    }
    State& s = State::get();
    s.invalidate();
    size_t landed = 0;
    for (const auto& [id, json] : held) {
        // Each row in a subtransaction: one that cannot land (a value the
        // new column's type or a constraint refuses) stays held, with a
        // warning, and never fails the DDL or lww_track that lands the rest.
        std::string origin = "?";
        MemoryContext ctx = CurrentMemoryContext;
        ResourceOwner res = CurrentResourceOwner;
        auto back = [&] {
            MemoryContextSwitchTo(ctx);
            CurrentResourceOwner = res;
        };
        pg_call([&] { BeginInternalSubTransaction(nullptr); });
        try {
            {
                AsMetadataOwner owner;
                run(prepare("DELETE FROM lwwsync.pending WHERE id = $1", {INT8OID}),
                    {Param{INT8OID, Int64GetDatum(id), false}}, false);
            }
            ChangeSet cs = decode_changeset(json);
            origin = cs.origin.str();
            // Checked when it arrived (drift, node binding, own stamps);
            // merged now with the rights of whoever runs the DDL or lww_track.
            if (cs.origin != s.self()) apply_changeset(cs, Trust::chosen_server);
            pg_call([&] {
                ReleaseCurrentSubTransaction();
                back();
            });
            ++landed;
        } catch (const std::exception& e) {
            const std::string msg = e.what();
            pg_call([&] {
                RollbackAndReleaseCurrentSubTransaction();
                back();
            });
            s.invalidate();
            pg_call([&] {
                ereport(WARNING, (errmsg("a held row of table %s from node %s could not land: %s", wire.c_str(),
                                         origin.c_str(), msg.c_str()),
                                  errhint("It stays in lwwsync.pending; fix the value or delete the row there.")));
            });
        }
    }
    return landed;
}

// ------------------------------------------------------------ re-tracking

namespace {

bool has_untracked_store() {
    bool present = false;
    pg_call([&] {
        Oid nsp = get_namespace_oid("lwwsync", true);
        present = OidIsValid(nsp) && OidIsValid(get_relname_relid("untracked", nsp));
    });
    return present;
}

}  // namespace

void remember_untracked(const TableInfo& t) {
    if (!has_untracked_store()) return;
    SpiResult rows;
    const int key_at = 1;
    {
        AsMetadataOwner owner;
        run(prepare("INSERT INTO lwwsync.untracked(relid, columns, attnums) SELECT relid, columns, attnums"
                    " FROM lwwsync.tables WHERE relid = $1 ON CONFLICT (relid) DO UPDATE"
                    " SET columns = excluded.columns, attnums = excluded.attnums",
                    {OIDOID}),
            {oid_param(t.relid)}, false);
        const SpiResult vh =
            run(prepare("SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = pg_catalog.to_regclass($1)"
                        " AND attname = 'vh' AND NOT attisdropped",
                        {TEXTOID}),
                {text_param(t.meta)}, false);
        if (!vh.empty()) run_sql("UPDATE " + t.meta + " SET vh = NULL WHERE vh IS NOT NULL");
        else run_sql("ALTER TABLE " + t.meta + " ADD COLUMN vh bytea");
        std::string sql = "SELECT ctid";
        for (size_t i = 0; i < t.key.size(); ++i) sql += ", k" + std::to_string(i);
        rows = run_sql(sql + " FROM " + t.meta + " WHERE lwwsync.meta_gen(st) % 2 = 1", false);
    }
    const uint64_t n = rows.size();
    std::vector<ItemPointerData> tids(n);
    for (uint64_t r = 0; r < n; ++r) {
        bool isnull = false;
        ItemPointerCopy(reinterpret_cast<ItemPointer>(DatumGetPointer(rows.col(r, 0, &isnull))), &tids[r]);
    }
    std::vector<uint64_t> all(n);
    for (uint64_t r = 0; r < n; ++r) all[r] = r;
    UserRows user;
    std::vector<std::string> hashes(n);
    const std::vector<int64_t>& at = user.at;
    {
        AsTableOwner owner(t.relid);
        user = probe_user_rows(t, rows, all, key_at, true);
        for (uint64_t r = 0; r < n; ++r) {
            if (at[r] < 0) continue;
            for (size_t c = 0; c < t.cols.size(); ++c) {
                bool isnull = false;
                Datum d = user.rows.col(static_cast<uint64_t>(at[r]), static_cast<int>(c) + 1, &isnull);
                append_value_hash(hashes[r], datum_to_value(d, isnull, t.col_types[c]));
            }
        }
    }
    AsMetadataOwner owner;
    SPIPlanPtr up = prepare("UPDATE " + t.meta + " SET vh = $1 WHERE ctid = $2", {BYTEAOID, TIDOID});
    for (uint64_t r = 0; r < n; ++r) {
        if (at[r] < 0) continue;
        Param b{BYTEAOID, 0, false};
        pg_call([&] {
            bytea* v = static_cast<bytea*>(palloc(VARHDRSZ + hashes[r].size()));
            SET_VARSIZE(v, VARHDRSZ + hashes[r].size());
            memcpy(VARDATA(v), hashes[r].data(), hashes[r].size());
            b.value = PointerGetDatum(v);
        });
        run(up, {b, Param{TIDOID, PointerGetDatum(&tids[r]), false}}, false);
    }
}

std::vector<std::string> remembered_registers(Oid relid) {
    std::vector<std::string> old;
    if (!has_untracked_store()) return old;
    AsMetadataOwner owner;
    const SpiResult res = run(
        prepare(
            "SELECT c FROM lwwsync.untracked, unnest(columns) WITH ORDINALITY AS u(c, n) WHERE relid = $1 ORDER BY n",
            {OIDOID}),
        {oid_param(relid)}, false);
    for (uint64_t i = 0; i < res.size(); ++i) old.push_back(res.text(i, 0));
    return old;
}

std::vector<std::string> resume_registers(Oid relid, const std::string& meta, const std::vector<std::string>& current) {
    const std::vector<std::string> old = remembered_registers(relid);
    if (old.empty()) return current;
    std::vector<std::string> regs;
    std::vector<size_t> gone;
    for (size_t i = 0; i < old.size(); ++i) {
        if (std::find(current.begin(), current.end(), old[i]) == current.end()) gone.push_back(i);
        else regs.push_back(old[i]);
    }
    for (const auto& c : current)
        if (std::find(regs.begin(), regs.end(), c) == regs.end()) regs.push_back(c);
    if (!gone.empty()) rewrite_blobs(meta, gone, regs.size(), regs.size());
    return regs;
}

void forget_untracked(Oid relid, const std::string& meta) {
    if (!has_untracked_store()) return;
    AsMetadataOwner owner;
    run(prepare("DELETE FROM lwwsync.untracked WHERE relid = $1", {OIDOID}), {oid_param(relid)}, false);
    const SpiResult vh = run(
        prepare("SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = pg_catalog.to_regclass($1) AND attname = 'vh'"
                " AND NOT attisdropped",
                {TEXTOID}),
        {text_param(meta)}, false);
    if (!vh.empty()) run_sql("UPDATE " + meta + " SET vh = NULL WHERE vh IS NOT NULL");
}

}  // namespace lww::pg

using namespace lww;
using namespace lww::pg;

extern "C" Datum lww_ddl_end(PG_FUNCTION_ARGS) {
    return guarded_entry("lwwsync", [&]() -> Datum {
        if (!CALLED_AS_EVENT_TRIGGER(fcinfo)) throw Error("lww_ddl_end must be called as an event trigger");
        SpiSession spi;
        if (!metadata_present()) return PointerGetDatum(nullptr);
        const std::vector<Oid> relids = relids_of(
            "SELECT DISTINCT objid::pg_catalog.int8 FROM pg_catalog.pg_event_trigger_ddl_commands()"
            " WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass");
        for (Oid r : relids) reconcile(r);
        return PointerGetDatum(nullptr);
    });
}

extern "C" Datum lww_ddl_drop(PG_FUNCTION_ARGS) {
    return guarded_entry("lwwsync", [&]() -> Datum {
        if (!CALLED_AS_EVENT_TRIGGER(fcinfo)) throw Error("lww_ddl_drop must be called as an event trigger");
        SpiSession spi;
        if (!metadata_present()) return PointerGetDatum(nullptr);
        const std::vector<Oid> relids = relids_of(
            "SELECT objid::pg_catalog.int8 FROM pg_catalog.pg_event_trigger_dropped_objects()"
            " WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND objsubid = 0"
            " AND object_type = 'table'");
        for (Oid r : relids) dropped(r);
        return PointerGetDatum(nullptr);
    });
}
