// PostgreSQL adapter: lww_apply — validate everything, then merge with the
// caller's rights. Every outcome that changes this database is checked as
// the equivalent SQL would be (docs/SECURITY.md):
//
//   outcome                         equivalent SQL, run or checked as the caller
//   alive -> dead                   DELETE of the row (GRANT and policies)
//   dead -> alive                   INSERT of the winning columns
//   alive -> alive, columns won     UPDATE of the winning columns
//   alive -> alive, row stamp only  INSERT privilege, and the row visible
//   alive -> alive, new generation  the UPDATE, plus DELETE privilege
//   dead -> dead (a tombstone)      DELETE privilege and SELECT on the key;
//                                   a new generation of a row this database
//                                   does not hold is rejected under
//                                   row-level security (no policy can judge
//                                   a row that is not there)
//
// Order (docs/ARCHITECTURE.md, "Apply order"): rows that live (inserts,
// updates) first, tables parents before children (foreign keys among the
// tables of the batch, lww::parents_first; name order otherwise), then
// deletes, children before parents; within a table by key as stored. Locks
// follow that order: the user row, then its metadata.
//
// Triggers: the merge writes with session_replication_role = replica, as
// logical replication's apply does: ordinary (ENABLE / origin) triggers do
// not fire, ENABLE ALWAYS / REPLICA ones do. Foreign keys, whose triggers
// replica mode switches off, are enforced here as Postgres' RI triggers do
// (parents locked FOR KEY SHARE; a merged delete of a referenced row runs
// the constraint's action, a cascade as an ordinary local write).
//
// Set-based (docs/ARCHITECTURE.md, "Set-based apply"): a batch's rows of
// one table merge as a group, read, locked and written with a few
// statements per table (merge_group); rows and tables only the row-by-row
// merge handles (Item::batchable, set_based_table) merge row by row
// (merge_one), as does every redo after a refusal.
//
// A row the receiver cannot apply (a constraint, a policy, a privilege) is
// parked in lwwsync.rejected (view lww_rejected), not fatal: the batch runs
// in one subtransaction; on a refusal it is redone row by row, each row in
// its own subtransaction, retrying refused rows until no progress. Parked
// rows of the caller are retried on every later apply.
#include "apply.h"
#include "trigger.h"
#include "principal.h"
#include "ddl.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <numeric>
#include <optional>
#include <set>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "../../common/apply.h"
#include "../../common/apply_order.h"
#include "../../common/batch.h"
#include "../../common/json.h"

extern "C" {
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "utils/acl.h"
#include "storage/proc.h"
#include "utils/resowner.h"
#include "utils/rls.h"
}

namespace lww::pg {

namespace {

using Plan = TablePlan<TableInfo>;

// What the caller may do to a table, read once per apply.
struct Rights {
    bool insert = false, update = false, del = false, select_keys = false;
    bool rls = false;  // row-level security applies to the caller
};

Rights rights_of(const TableInfo& t) {
    Rights r;
    pg_call([&] {
        const Oid user = GetUserId();
        auto table_or_keys = [&](AclMode mode) {
            if (pg_class_aclcheck(t.relid, user, mode) == ACLCHECK_OK) return true;
            for (AttrNumber a : t.key_attnums)
                if (pg_attribute_aclcheck(t.relid, a, user, mode) != ACLCHECK_OK) return false;
            return true;
        };
        r.insert = table_or_keys(ACL_INSERT);
        r.update = pg_class_aclcheck(t.relid, user, ACL_UPDATE) == ACLCHECK_OK ||
                   pg_attribute_aclcheck_all(t.relid, user, ACL_UPDATE, ACLMASK_ANY) == ACLCHECK_OK;
        r.select_keys = table_or_keys(ACL_SELECT);
        r.del = pg_class_aclcheck(t.relid, user, ACL_DELETE) == ACLCHECK_OK;
        r.rls = check_enable_rls(t.relid, InvalidOid, true) == RLS_ENABLED;
    });
    return r;
}

// The whole change set is refused (a table the caller may not write at all).
[[noreturn]] void deny(const TableInfo& t, const std::string& why) {
    throw permission_denied("permission denied for table " + t.name + ": " + why);
}

// One row is refused by this database's rules: parked, the rest applies.
class RowRefused : public std::exception {
public:
    explicit RowRefused(std::string why) : why_(std::move(why)) {}
    const char* what() const noexcept override { return why_.c_str(); }

private:
    std::string why_;
};

[[noreturn]] void refuse(const TableInfo& t, const std::string& why) {
    throw RowRefused("table " + t.name + ": " + why);
}

// Another transaction stored the metadata of a key this merge took for new
// (no metadata when read, so nothing to lock) while it wrote: what it wrote
// was decided against a state that was not the row's. The rows are merged
// again, their metadata locked (Item::unseen cleared).
class StoredMeanwhile : public std::exception {
public:
    const char* what() const noexcept override { return "a new key's metadata was stored meanwhile"; }
};

// A Postgres error one row's statements raised that parks the row: a
// constraint (class 23: foreign key, UNIQUE, CHECK, NOT NULL, exclusion) or
// a privilege or policy (42501, row-level security's WITH CHECK included).
bool refusable(const PgError& e) {
    if (!e.data()) return false;
    const int code = e.data()->sqlerrcode;
    return ERRCODE_TO_CATEGORY(code) == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION ||
           code == ERRCODE_INSUFFICIENT_PRIVILEGE;
}

// A parked row being retried must never block a sync: whatever fails in it
// (a value that no longer fits a changed column, a trigger's error) keeps it
// parked, except what stops the whole statement (cancel, deadlock,
// serialization failure, shutdown).
bool fatal_anyway(const PgError& e) {
    if (!e.data()) return true;
    const int code = e.data()->sqlerrcode;
    const int cat = ERRCODE_TO_CATEGORY(code);
    return cat == ERRCODE_TO_CATEGORY(ERRCODE_QUERY_CANCELED) ||
           cat == ERRCODE_TO_CATEGORY(ERRCODE_T_R_SERIALIZATION_FAILURE) ||
           cat == ERRCODE_TO_CATEGORY(ERRCODE_ADMIN_SHUTDOWN) ||
           cat == ERRCODE_TO_CATEGORY(ERRCODE_INSUFFICIENT_RESOURCES) ||
           cat == ERRCODE_TO_CATEGORY(ERRCODE_INTERNAL_ERROR);
}

std::string reason_of(const PgError& e) {
    std::string r = e.what();
    if (e.data()) r += std::string(" (SQLSTATE ") + unpack_sql_state(e.data()->sqlerrcode) + ")";
    return r;
}

// session_replication_role for a scope (GUC nest level: as AsTableOwner).
// Changing it resets the plan cache, so it is set once per batch.
class ReplicationRole {
public:
    explicit ReplicationRole(const char* role) {
        pg_call([&] {
            level_ = NewGUCNestLevel();
            set_config_option("session_replication_role", role, PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
                              false);
        });
    }
    ~ReplicationRole() {
        if (level_) AtEOXact_GUC(true, level_);
    }
    ReplicationRole(const ReplicationRole&) = delete;
    ReplicationRole& operator=(const ReplicationRole&) = delete;

private:
    int level_ = 0;
};

// An internal subtransaction, as plpgsql's exception blocks use them: work
// runs in the caller's memory context; rolled back unless committed.
class SubXact {
public:
    SubXact() : ctx_(CurrentMemoryContext), owner_(CurrentResourceOwner) {
        pg_call([&] {
            BeginInternalSubTransaction(nullptr);
            MemoryContextSwitchTo(ctx_);
        });
    }
    ~SubXact() {
        if (!done_) {
            try {
                rollback();
            } catch (...) {
            }
        }
    }
    void commit() {
        done_ = true;
        pg_call([&] {
            ReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(ctx_);
            CurrentResourceOwner = owner_;
        });
    }
    void rollback() {
        done_ = true;
        pg_call([&] {
            RollbackAndReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(ctx_);
            CurrentResourceOwner = owner_;
        });
    }
    SubXact(const SubXact&) = delete;
    SubXact& operator=(const SubXact&) = delete;

private:
    MemoryContext ctx_;
    ResourceOwner owner_;
    bool done_ = false;
};

// ---------------------------------------------------------------------------
// Foreign keys, from pg_constraint, cached per transaction.

struct ForeignKey {
    std::string name;
    Oid child = InvalidOid, parent = InvalidOid;
    std::string child_q, parent_q;                     // quoted schema.table
    std::string child_from, parent_from;               // ONLY schema.table (a partitioned table: all of it)
    std::vector<std::string> child_cols, parent_cols;  // quoted
    std::vector<Oid> child_types;
    std::vector<bool> set_col;  // SET NULL / SET DEFAULT (col list): which child columns are set
    bool deferrable = false;
    char del_action = 'a';  // a no action, r restrict, c cascade, n set null, d set default
    char match = 's';       // s simple, f full
};

struct ForeignKeys {
    std::vector<ForeignKey> out;  // this table references
    std::vector<ForeignKey> in;   // reference this table
};

std::string qualified_name(Oid relid) {
    const char* n = nullptr;
    const char* r = nullptr;
    pg_call([&] {
        n = get_namespace_name(get_rel_namespace(relid));
        r = get_rel_name(relid);
        if (!n || !r) elog(ERROR, "cache lookup failed for relation %u", relid);
    });
    return quote_ident(n) + "." + quote_ident(r);
}

const ForeignKeys& foreign_keys(Oid relid) {
    static std::map<Oid, ForeignKeys> cache;
    static LocalTransactionId lxid = InvalidLocalTransactionId;
    if (lxid != MyProc->lxid) {
        cache.clear();
        lxid = MyProc->lxid;
    }
    auto found = cache.find(relid);
    if (found != cache.end()) return found->second;
    ForeignKeys fks;
    const SpiResult res =
        run(prepare("SELECT c.oid, c.conname::text, c.conrelid, c.confrelid, c.condeferrable, c.confdeltype::text,"
                    " c.confmatchtype::text, ca.attname::text, pa.attname::text, ca.atttypid,"
                    " c.confdelsetcols IS NULL OR k.ck = ANY (c.confdelsetcols)"
                    " FROM pg_catalog.pg_constraint c"
                    " CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(c.conkey), pg_catalog.unnest(c.confkey))"
                    " WITH ORDINALITY AS k(ck, pk, i)"
                    " JOIN pg_catalog.pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = k.ck"
                    " JOIN pg_catalog.pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.pk"
                    " WHERE c.contype = 'f' AND c.conparentid = 0 AND (c.conrelid = $1 OR c.confrelid = $1)"
                    " ORDER BY c.oid, k.i",
                    {OIDOID}),
            {Param{OIDOID, ObjectIdGetDatum(relid), false}}, true);
    struct RowOf {
        int64_t oid;
        std::string name;
        Oid child, parent;
        bool deferrable;
        std::string del, match, ccol, pcol;
        Oid ctype;
        bool set;
    };
    std::vector<RowOf> rows;
    for (uint64_t r = 0; r < res.size(); ++r) {
        bool isnull = false;
        RowOf x;
        x.oid = static_cast<int64_t>(DatumGetObjectId(res.col(r, 0, &isnull)));
        x.name = res.text(r, 1);
        x.child = DatumGetObjectId(res.col(r, 2, &isnull));
        x.parent = DatumGetObjectId(res.col(r, 3, &isnull));
        x.deferrable = DatumGetBool(res.col(r, 4, &isnull));
        x.del = res.text(r, 5);
        x.match = res.text(r, 6);
        x.ccol = res.text(r, 7);
        x.pcol = res.text(r, 8);
        x.ctype = DatumGetObjectId(res.col(r, 9, &isnull));
        x.set = DatumGetBool(res.col(r, 10, &isnull));
        rows.push_back(std::move(x));
    }
    for (size_t r = 0; r < rows.size();) {
        ForeignKey fk;
        const RowOf& first = rows[r];
        fk.name = first.name;
        fk.child = first.child;
        fk.parent = first.parent;
        fk.deferrable = first.deferrable;
        fk.del_action = first.del.empty() ? 'a' : first.del[0];
        fk.match = first.match.empty() ? 's' : first.match[0];
        fk.child_q = qualified_name(fk.child);
        fk.parent_q = qualified_name(fk.parent);
        char child_kind = 0, parent_kind = 0;
        pg_call([&] {
            child_kind = get_rel_relkind(fk.child);
            parent_kind = get_rel_relkind(fk.parent);
        });
        fk.child_from = (child_kind == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ") + fk.child_q;
        fk.parent_from = (parent_kind == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ") + fk.parent_q;
        for (; r < rows.size() && rows[r].oid == first.oid; ++r) {
            fk.child_cols.push_back(quote_ident(rows[r].ccol));
            fk.parent_cols.push_back(quote_ident(rows[r].pcol));
            fk.child_types.push_back(rows[r].ctype);
            fk.set_col.push_back(rows[r].set);
        }
        if (fk.child == relid) fks.out.push_back(fk);
        if (fk.parent == relid) fks.in.push_back(fk);
    }
    return cache.emplace(relid, std::move(fks)).first->second;
}

std::string match_clause(const std::vector<std::string>& cols, size_t from = 1) {
    std::string w;
    for (size_t i = 0; i < cols.size(); ++i) w += (i ? " AND x." : "x.") + cols[i] + " = $" + std::to_string(i + from);
    return w;
}

std::vector<Oid> types_of(const std::vector<Param>& v) {
    std::vector<Oid> t;
    for (const auto& p : v) t.push_back(p.type);
    return t;
}

// Whether the parent row of `fk` with these values is there, locked FOR KEY
// SHARE as Postgres' RI check does (as the parent's owner). Null values
// pass: any of them (MATCH SIMPLE) or all of them (MATCH FULL).
bool parent_present(const ForeignKey& fk, const std::vector<Param>& vals) {
    size_t nulls = 0;
    for (const auto& v : vals) nulls += v.null;
    if (nulls == vals.size()) return true;
    if (nulls) return fk.match != 'f';
    AsTableOwner owner(fk.parent);
    return run(prepare("SELECT 1 FROM " + fk.parent_from + " x WHERE " + match_clause(fk.parent_cols) +
                           " FOR KEY SHARE OF x",
                       types_of(vals)),
               vals, false)
               .size() > 0;
}

// Whether rows of the child table still reference these values (locked FOR
// KEY SHARE, as the child's owner).
bool children_present(const ForeignKey& fk, const std::vector<Param>& vals) {
    for (const auto& v : vals)
        if (v.null) return false;
    AsTableOwner owner(fk.child);
    return run(prepare("SELECT 1 FROM " + fk.child_from + " x WHERE " + match_clause(fk.child_cols) +
                           " LIMIT 1 FOR KEY SHARE OF x",
                       types_of(vals)),
               vals, false)
               .size() > 0;
}

// ON DELETE CASCADE / SET NULL / SET DEFAULT of a merged delete: ordinary
// local writes (session_replication_role origin: the child's triggers, its
// own foreign keys and the capture trigger fire as for any local write).
void referential_action(const ForeignKey& fk, const std::vector<Param>& vals) {
    for (const auto& v : vals)
        if (v.null) return;
    std::string sql;
    if (fk.del_action == 'c') {
        sql = "DELETE FROM " + fk.child_from + " x WHERE " + match_clause(fk.child_cols);
    } else {
        std::string sets;
        for (size_t i = 0; i < fk.child_cols.size(); ++i)
            if (fk.set_col[i])
                sets +=
                    (sets.empty() ? "" : ", ") + fk.child_cols[i] + (fk.del_action == 'n' ? " = NULL" : " = DEFAULT");
        sql = "UPDATE " + fk.child_from + " x SET " + sets + " WHERE " + match_clause(fk.child_cols);
    }
    ReplicationRole origin("origin");
    AsTableOwner owner(fk.child);
    run(prepare(sql, types_of(vals)), vals, false);
}

// A check of a deferrable foreign key, run at the end of the batch.
struct Deferred {
    size_t item;
    const ForeignKey* fk;
    bool child_side;         // the written row must have its parent
    const TableInfo* table;  // child side: the row's table and key
    std::vector<Param> key;
    std::vector<Param> vals;  // parent side: the deleted row's referenced values
};

// A row's foreign key to check at the end of the batch's first, whole run
// (one set-based query per key instead of one per row).
struct ChildCheck {
    size_t item;
    const ForeignKey* fk;
    std::vector<Param> vals;
};

// The items whose parent row is not there, for the checks of one key, and
// the parents that are locked FOR KEY SHARE (as the parent's owner).
std::set<size_t> missing_parents(const ForeignKey& fk, const std::vector<const ChildCheck*>& checks) {
    std::set<size_t> missing;
    const size_t ncol = fk.child_cols.size();
    std::vector<const ChildCheck*> todo;
    for (const ChildCheck* c : checks) {
        size_t nulls = 0;
        for (const auto& v : c->vals) nulls += v.null;
        if (nulls == ncol) continue;
        if (nulls) {
            if (fk.match == 'f') missing.insert(c->item);
            continue;
        }
        todo.push_back(c);
    }
    if (todo.empty()) return missing;
    std::vector<Param> arrays(ncol);
    std::string cols, match;
    // Column k's values at d[k * todo.size()]: gathered before pg_call.
    std::vector<Datum> d(ncol * todo.size());
    for (size_t k = 0; k < ncol; ++k)
        for (size_t r = 0; r < todo.size(); ++r) d[k * todo.size() + r] = todo[r]->vals[k].value;
    pg_call([&] {
        for (size_t k = 0; k < ncol; ++k) {
            const Oid elem = todo[0]->vals[k].type;
            const Oid arr = get_array_type(elem);
            if (!OidIsValid(arr)) elog(ERROR, "no array type for type %u", elem);
            int16 len;
            bool byval;
            char align;
            get_typlenbyvalalign(elem, &len, &byval, &align);
            arrays[k] = Param{arr,
                              PointerGetDatum(construct_array(d.data() + k * todo.size(), static_cast<int>(todo.size()),
                                                              elem, len, byval, align)),
                              false};
        }
    });
    for (size_t k = 0; k < ncol; ++k) {
        cols += "a" + std::to_string(k) + ", ";
        match += (k ? " AND x." : "x.") + fk.parent_cols[k] + " = v.a" + std::to_string(k);
    }
    std::string params;
    for (size_t k = 0; k < ncol; ++k) params += (k ? ", $" : "$") + std::to_string(k + 1);
    AsTableOwner owner(fk.parent);
    const SpiResult res =
        run(prepare(
                "SELECT v.i FROM ROWS FROM (" +
                    [&] {
                        std::string u;
                        for (size_t k = 0; k < ncol; ++k)
                            u += (k ? ", pg_catalog.unnest($" : "pg_catalog.unnest($") + std::to_string(k + 1) + ")";
                        return u;
                    }() +
                    ") WITH ORDINALITY AS v(" + cols + "i) LEFT JOIN LATERAL (SELECT 1 AS hit FROM " + fk.parent_from +
                    " x WHERE " + match + " FOR KEY SHARE OF x) h ON true WHERE h.hit IS NULL",
                types_of(arrays)),
            arrays, false);
    for (uint64_t r = 0; r < res.size(); ++r) {
        const int64_t i = res.integer(r, 0);
        if (i >= 1 && static_cast<size_t>(i) <= todo.size()) missing.insert(todo[static_cast<size_t>(i - 1)]->item);
    }
    return missing;
}

// The rows whose foreign keys (collected in `checks`) fail; `reason` gets
// the reason of the first failing key of each.
std::map<size_t, std::string> failed_child_checks(const std::vector<ChildCheck>& checks) {
    std::map<const ForeignKey*, std::vector<const ChildCheck*>> by_key;
    for (const ChildCheck& c : checks) {
        // One array type per column: values typed otherwise (a domain) go alone.
        by_key[c.fk].push_back(&c);
    }
    std::map<size_t, std::string> failed;
    for (const auto& [fk, list] : by_key) {
        std::map<std::vector<Oid>, std::vector<const ChildCheck*>> by_types;
        for (const ChildCheck* c : list) by_types[types_of(c->vals)].push_back(c);
        for (const auto& [types, same] : by_types)
            for (size_t item : missing_parents(*fk, same))
                failed.emplace(
                    item, "foreign key \"" + fk->name + "\": the referenced row of " + fk->parent_q + " is not there");
    }
    return failed;
}

// ---------------------------------------------------------------------------

// Whether a batch may write the rows of `t` with multi-row statements: no
// BEFORE ROW trigger fires during the merge (ENABLE ALWAYS / REPLICA; one
// could skip or rewrite rows of a multi-row statement, or write a row the
// statement reaches later), and every key and tracked column has an array
// type to bind, and the primary key is not deferrable (INSERT ... ON
// CONFLICT cannot use it). The triggers from the relcache (of every
// partition of a partitioned table): current after any DDL, no query.
bool set_based_table(const TableInfo& t) {
    if (primary_key_deferrable(t.relid)) return false;
    for (const ColumnType& c : t.key_types)
        if (!has_array_type(c)) return false;
    for (const ColumnType& c : t.col_types)
        if (!has_array_type(c)) return false;
    bool ok = true;
    pg_call([&] {
        List* rels = find_all_inheritors(t.relid, NoLock, nullptr);
        ListCell* lc;
        foreach (lc, rels) {
            Relation rel = RelationIdGetRelation(lfirst_oid(lc));
            if (!RelationIsValid(rel)) continue;
            if (const TriggerDesc* td = rel->trigdesc)
                for (int i = 0; i < td->numtriggers; ++i) {
                    const Trigger& tg = td->triggers[i];
                    if (!tg.tgisinternal && TRIGGER_FOR_ROW(tg.tgtype) && TRIGGER_FOR_BEFORE(tg.tgtype) &&
                        (tg.tgenabled == TRIGGER_FIRES_ALWAYS || tg.tgenabled == TRIGGER_FIRES_ON_REPLICA))
                        ok = false;
                }
            RelationClose(rel);
        }
    });
    return ok;
}

// The command id the next statement runs at (SPI does not advance an unused
// one): its own tuples carry it, later writes a higher one.
CommandId statement_cid() {
    CommandId cid = InvalidCommandId;
    pg_call([&] {
        (void)GetCurrentCommandId(true);
        CommandCounterIncrement();
        cid = GetCurrentCommandId(false);
    });
    return cid;
}

class UserWriter {
public:
    explicit UserWriter(const TableInfo& t) : t_(t) {
        for (size_t i = 0; i < t.key.size(); ++i)
            where_ += (i ? " AND " : "") + (quote_ident(t.key[i]) + " = $" + std::to_string(i + 1));
        for (const auto& k : t.key_types) key_types_.push_back(k.type);
        deferrable_key_ = primary_key_deferrable(t.relid);
    }

    // Locks the row before its metadata, as a local write does. Taken as the
    // table's owner: a lock is not a write, and the caller's rights are
    // checked by what follows. True when the row exists.
    bool lock(const std::vector<Param>& key) {
        AsTableOwner owner(t_.relid);
        return run(prepare("SELECT 1 FROM " + t_.qualified + " WHERE " + where_ + " FOR UPDATE", key_types_), key,
                   false)
                   .size() == 1;
    }

    // Whether the caller sees the row (row-level security).
    bool visible(const std::vector<Param>& key) {
        return run(prepare("SELECT 1 FROM " + t_.qualified + " WHERE " + where_, key_types_), key, false).size() == 1;
    }

    // Whether the row is there at all, whoever may see it. (read_only false:
    // a fresh snapshot, which sees the rows this batch wrote so far.)
    bool exists(const std::vector<Param>& key) {
        AsTableOwner owner(t_.relid);
        return run(prepare("SELECT 1 FROM " + t_.qualified + " WHERE " + where_, key_types_), key, false).size() == 1;
    }

    // The values of `cols` (quoted names, types `types`) of the row, copied,
    // read as the table's owner; false when the row is not there.
    bool read(const std::vector<std::string>& cols, const std::vector<Oid>& types, const std::vector<Param>& key,
              std::vector<Param>& out) {
        std::string list;
        for (const auto& c : cols) list += (list.empty() ? "" : ", ") + c;
        AsTableOwner owner(t_.relid);
        const SpiResult res =
            run(prepare("SELECT " + list + " FROM " + t_.qualified + " WHERE " + where_, key_types_), key, false);
        if (res.size() != 1) return false;
        out.assign(cols.size(), Param{});
        for (size_t i = 0; i < cols.size(); ++i) {
            bool isnull = false;
            Datum d = res.col(0, static_cast<int>(i), &isnull);
            out[i].type = types.empty() ? res.type(static_cast<int>(i)) : types[i];
            out[i].null = isnull;
            const Oid typ = res.type(static_cast<int>(i));
            pg_call([&] {
                int16 len = 0;
                bool byval = false;
                get_typlenbyval(typ, &len, &byval);
                out[i].value = isnull ? Datum(0) : datumCopy(d, byval, len);
            });
        }
        return true;
    }

    uint64_t remove(const std::vector<Param>& key) {
        return run(prepare("DELETE FROM " + t_.qualified + " WHERE " + where_, key_types_), key, false).size();
    }

    // Whether the caller's DELETE of the row would delete it (privileges and
    // every DELETE policy), without deleting it: the DELETE runs in a
    // subtransaction that is rolled back, with triggers (the app's and
    // foreign-key actions) off, so nothing else happens meanwhile. The
    // capture trigger (ALWAYS) sees it as the merge's own write.
    bool may_delete(const std::vector<Param>& key, const std::vector<Value>& stored) {
        MemoryContext ctx = CurrentMemoryContext;
        ResourceOwner owner = CurrentResourceOwner;
        pg_call([&] {
            BeginInternalSubTransaction(nullptr);
            set_config_option("session_replication_role", "replica", PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true,
                              0, false);
        });
        uint64_t deleted = 0;
        bool denied = false;
        try {
            OwnWriteScope mine(t_, stored, LocalOp::remove, nullptr);
            deleted = remove(key);
        } catch (const PgError& e) {
            if (!e.data() || e.data()->sqlerrcode != ERRCODE_INSUFFICIENT_PRIVILEGE) {
                rollback_probe(ctx, owner);
                throw;
            }
            denied = true;
        } catch (...) {
            rollback_probe(ctx, owner);
            throw;
        }
        rollback_probe(ctx, owner);
        return !denied && deleted == 1;
    }

    // Inserts (ON CONFLICT DO NOTHING: a concurrent insert of the key makes
    // it write nothing) or updates `cols`; returns the rows written.
    uint64_t write(const std::vector<Param>& key, const std::map<size_t, Param>& cols, bool insert) {
        std::vector<Oid> types = key_types_;
        std::vector<Param> args = key;
        std::string sql;
        const size_t n = t_.key.size();
        size_t p = n;
        if (insert) {
            std::string names, params;
            for (size_t i = 0; i < n; ++i) {
                names += (i ? ", " : "") + quote_ident(t_.key[i]);
                params += (i ? ", $" : "$") + std::to_string(i + 1);
            }
            for (const auto& [idx, param] : cols) {
                names += ", " + quote_ident(t_.cols[idx]);
                params += ", $" + std::to_string(++p);
                types.push_back(t_.col_types[idx].type);
                args.push_back(param);
            }
            sql = "INSERT INTO " + t_.qualified + "(" + names + ") VALUES (" + params + ")";
            // ON CONFLICT cannot use a deferrable key: a concurrent insert of
            // the key then fails this one when the key is checked (23505:
            // the row is parked and merged again at the next apply).
            if (!deferrable_key_) {
                std::string conflict;
                for (size_t i = 0; i < n; ++i) conflict += (i ? ", " : "") + quote_ident(t_.key[i]);
                sql += " ON CONFLICT (" + conflict + ") DO NOTHING";
            }
        } else {
            std::string sets;
            for (const auto& [idx, param] : cols) {
                if (p > n) sets += ", ";
                sets += quote_ident(t_.cols[idx]) + " = $" + std::to_string(++p);
                types.push_back(t_.col_types[idx].type);
                args.push_back(param);
            }
            sql = "UPDATE " + t_.qualified + " SET " + sets + " WHERE " + where_;
        }
        return run(prepare(sql, types), args, false).size();
    }

    // Set-based forms for a batch (merge_group): `keys` sorted in lock
    // order, one statement each. `own[i]`: row i's entry in State::own.
    using Keys = std::vector<const std::vector<Param>*>;

    // Locks the rows of `keys` that are there, in the order of `keys` (as
    // lock() does, one probe per key); true for those there.
    std::vector<bool> lock_many(const Keys& keys) {
        std::vector<bool> there(keys.size(), false);
        if (keys.empty()) return there;
        std::vector<Param> args = key_arrays(keys);
        std::string sql = "SELECT u.n FROM " + unnest_keys(args.size(), 0) + " JOIN LATERAL (SELECT 1 FROM " +
                          t_.qualified + " AS x WHERE " + match_keys() + " OFFSET 0 FOR UPDATE OF x) AS l ON true";
        AsTableOwner owner(t_.relid);
        return returned(run(prepare(sql, types_of(args)), args, false), keys.size());
    }

    // Inserts rows with the registers `cols` (ON CONFLICT DO NOTHING, as
    // write()); `columns[c]` holds every row's value of cols[c]. Returns
    // which went in (RETURNING the key, in the order the rows were given).
    std::vector<bool> insert_many(const Keys& keys, const std::vector<size_t>& cols,
                                  const std::vector<std::vector<Param>>& columns, const std::vector<OwnWrite*>& own,
                                  const std::vector<const std::vector<Value>*>& stored) {
        std::vector<Param> args = key_arrays(keys);
        for (size_t c = 0; c < cols.size(); ++c) args.push_back(array_param(t_.col_types[cols[c]], columns[c]));
        std::string names, ret;
        for (size_t i = 0; i < t_.key.size(); ++i) names += (i ? ", " : "") + quote_ident(t_.key[i]);
        ret = names;
        for (size_t c : cols) names += ", " + quote_ident(t_.cols[c]);
        SPIPlanPtr plan =
            prepare("INSERT INTO " + t_.qualified + "(" + names + ") SELECT * FROM ROWS FROM (" +
                        unnest_list(args.size()) + ") ON CONFLICT (" + ret + ") DO NOTHING RETURNING " + ret,
                    types_of(args));
        mark(own, LocalOp::insert, cols, columns);
        const SpiResult res = run(plan, args, false);
        unmark(own);
        // The rows come back in the order given: matched walking both, a
        // lookup only if they did not.
        std::vector<bool> in(keys.size(), false);
        std::vector<Value> k(t_.key.size());
        size_t next = 0;
        std::unique_ptr<std::unordered_map<std::vector<Value>, size_t, KeyHash, KeyEqual>> at;
        for (uint64_t r = 0; r < res.size(); ++r) {
            for (size_t i = 0; i < t_.key.size(); ++i) {
                bool isnull = false;
                Datum d = res.col(r, static_cast<int>(i), &isnull);
                k[i] = datum_to_value(d, isnull, t_.key_types[i]);
            }
            while (next < stored.size() && !KeyEqual()(*stored[next], k)) ++next;
            if (next < stored.size()) {
                in[next++] = true;
                continue;
            }
            if (!at) {
                at = std::make_unique<std::unordered_map<std::vector<Value>, size_t, KeyHash, KeyEqual>>();
                for (size_t i = 0; i < stored.size(); ++i) at->emplace(*stored[i], i);
            }
            auto found = at->find(k);
            if (found != at->end()) in[found->second] = true;
        }
        return in;
    }

    // Updates the registers `cols` of rows; which were updated.
    std::vector<bool> update_many(const Keys& keys, const std::vector<size_t>& cols,
                                  const std::vector<std::vector<Param>>& columns, const std::vector<OwnWrite*>& own) {
        std::vector<Param> args = key_arrays(keys);
        for (size_t c = 0; c < cols.size(); ++c) args.push_back(array_param(t_.col_types[cols[c]], columns[c]));
        std::string sets;
        for (size_t c = 0; c < cols.size(); ++c)
            sets += (c ? ", " : "") + quote_ident(t_.cols[cols[c]]) + " = u.v" + std::to_string(c);
        SPIPlanPtr plan =
            prepare("UPDATE " + t_.qualified + " AS x SET " + sets + " FROM " +
                        unnest_keys(t_.key.size(), cols.size()) + " WHERE " + match_keys() + " RETURNING u.n",
                    types_of(args));
        mark(own, LocalOp::update, cols, columns);
        const SpiResult res = run(plan, args, false);
        unmark(own);
        return returned(res, keys.size());
    }

    // Deletes rows; which were deleted.
    std::vector<bool> remove_many(const Keys& keys, const std::vector<OwnWrite*>& own) {
        std::vector<Param> args = key_arrays(keys);
        SPIPlanPtr plan = prepare("DELETE FROM " + t_.qualified + " AS x USING " + unnest_keys(t_.key.size(), 0) +
                                      " WHERE " + match_keys() + " RETURNING u.n",
                                  types_of(args));
        mark(own, LocalOp::remove, {}, {});
        const SpiResult res = run(plan, args, false);
        unmark(own);
        return returned(res, keys.size());
    }

    // Marks the merge's own write for the capture trigger (State::own) for
    // one statement; the local writes seen meanwhile end in `ops`.
    class OwnWriteScope {
    public:
        OwnWriteScope(const TableInfo& t, const std::vector<Value>& key, LocalOp::Kind kind,
                      const std::map<size_t, Param>* written, std::vector<LocalOp>* ops = nullptr)
            : ops_(ops) {
            OwnWrites& o = State::get().own;
            o = OwnWrites{};
            OwnWrite& w = o.rows[key];
            w.kind = kind;
            if (written)
                for (const auto& [idx, p] : *written) w.written.push_back({idx, {p.value, p.null}});
            w.cid = statement_cid();
            w.writing = true;
            o.relid = t.relid;
        }
        ~OwnWriteScope() {
            OwnWrites& o = State::get().own;
            if (ops_ && !o.rows.empty()) *ops_ = std::move(o.rows.begin()->second.ops);
            o = OwnWrites{};
        }
        OwnWriteScope(const OwnWriteScope&) = delete;
        OwnWriteScope& operator=(const OwnWriteScope&) = delete;

    private:
        std::vector<LocalOp>* ops_;
    };

private:
    std::vector<Param> key_arrays(const Keys& keys) const {
        std::vector<Param> arrays, column(keys.size());
        for (size_t k = 0; k < t_.key.size(); ++k) {
            for (size_t i = 0; i < keys.size(); ++i) column[i] = (*keys[i])[k];
            arrays.push_back(array_param(t_.key_types[k], column));
        }
        return arrays;
    }

    // unnest($1..) WITH ORDINALITY AS u(k0.., v0.., n): keys, then values.
    static std::string unnest_keys(size_t nkeys, size_t nvals) {
        std::string sql = "ROWS FROM (" + unnest_list(nkeys + nvals) + ") WITH ORDINALITY AS u(";
        for (size_t i = 0; i < nkeys; ++i) sql += "k" + std::to_string(i) + ", ";
        for (size_t i = 0; i < nvals; ++i) sql += "v" + std::to_string(i) + ", ";
        return sql + "n)";
    }

    static std::string unnest_list(size_t n) {
        std::string sql;
        for (size_t i = 0; i < n; ++i)
            sql += (i ? ", pg_catalog.unnest($" : "pg_catalog.unnest($") + std::to_string(i + 1) + ")";
        return sql;
    }

    std::string match_keys() const {
        std::string w;
        for (size_t k = 0; k < t_.key.size(); ++k)
            w += (k ? " AND x." : "x.") + quote_ident(t_.key[k]) + " = u.k" + std::to_string(k) + t_.key_collate[k];
        return w;
    }

    // The rows of a statement RETURNING u.n.
    static std::vector<bool> returned(const SpiResult& res, size_t n) {
        std::vector<bool> hit(n, false);
        for (uint64_t r = 0; r < res.size(); ++r) {
            const int64_t i = res.integer(r, 0);
            if (i >= 1 && static_cast<size_t>(i) <= n) hit[static_cast<size_t>(i - 1)] = true;
        }
        return hit;
    }

    // The statement about to run writes these rows (kind, values of
    // `cols`): its own events on them are the merge's (trigger.cpp).
    static void mark(const std::vector<OwnWrite*>& own, LocalOp::Kind kind, const std::vector<size_t>& cols,
                     const std::vector<std::vector<Param>>& columns) {
        const CommandId cid = statement_cid();
        for (size_t i = 0; i < own.size(); ++i) {
            OwnWrite& w = *own[i];
            w.writing = true;
            w.kind = kind;
            w.cid = cid;
            w.written.clear();
            for (size_t c = 0; c < cols.size(); ++c)
                w.written.push_back({cols[c], {columns[c][i].value, columns[c][i].null}});
        }
    }
    static void unmark(const std::vector<OwnWrite*>& own) {
        for (OwnWrite* w : own) w->writing = false;
    }

private:
    static void rollback_probe(MemoryContext ctx, ResourceOwner owner) {
        pg_call([&] {
            RollbackAndReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(ctx);
            CurrentResourceOwner = owner;
        });
    }

    const TableInfo& t_;
    std::string where_;
    std::vector<Oid> key_types_;
    bool deferrable_key_ = false;  // INSERT without ON CONFLICT (write())
};

struct Context {
    Trust trust;
    Principal caller;
    OwnStamps own;
    Receiver receiver;  // this database, and what the sender holds of it (the overwrote count)
    bool guarded() const { return trust == Trust::caller && !caller.relay; }
};

// One table of one change set (the batch, or a parked row's).
struct TableRun {
    Plan plan;
    const Context* ctx = nullptr;
    Rights rights;
    std::unique_ptr<UserWriter> writer;
    size_t rank = 0;         // position in parents-first order
    bool set_based = false;  // its rows may merge in set-based groups (set_based_table)
};

// One incoming row waiting to be merged.
struct Item {
    TableRun* run = nullptr;
    const RowChange* row = nullptr;
    std::vector<Param> key;
    std::vector<Value> stored;  // the key read back from its column types: 1 and "1" are one row
    IncomingRow in;
    std::vector<Param> values;  // by register: the incoming values (those it carries)
    bool unseen = false;
    // May merge in a set-based group (merge_group): its unlocked pre-read
    // shows none of the outcomes only the row-by-row merge handles (a
    // DELETE probe under row-level security, a changed value other rows
    // reference, a delete of a referenced table's row).
    bool batchable = false;
    uint64_t seq = 0;      // of the last merge of it: the sequence it took (0: none)
    bool relayed = false;  // ... and it brought a third node's register (MergeRow::relayed)
    bool live = true;      // the incoming row is alive (inserts, updates) rather than a tombstone
    size_t pos = 0;        // position in its table run, by key as stored
    long parked = -1;      // index of the parked entry it comes from, -1: the batch
    bool refused = false;
    std::string reason;
};

// The conflict log (lww_config('conflict_log', 1); docs/PROTOCOL.md,
// "Conflict log"): the conflicts one incoming row settled, with our values
// as the user row holds them before the merge writes it (read as the
// table's owner: the log is readable by the database's owner). Bounded by
// conflict_log_rows, the oldest going first. In the merge's subtransaction:
// a run rolled back and redone logs its conflicts once.
void log_conflicts(UserWriter& writer, const TableInfo& t, const std::vector<Param>& key,
                   const std::vector<Value>& stored, const RowChange& in, const std::vector<Conflict>& conflicts) {
    if (conflicts.empty()) return;
    std::vector<Value> ours;
    std::vector<std::string> cols;
    for (const auto& c : t.cols) cols.push_back(quote_ident(c));
    std::vector<Param> values;
    if (!cols.empty() && writer.read(cols, {}, key, values))
        for (size_t c = 0; c < values.size(); ++c)
            ours.push_back(datum_to_value(values[c].value, values[c].null, t.col_types[c]));
    const SPIPlanPtr put = prepare(
        "INSERT INTO lwwsync.conflicts(tbl, key, col, kind, ours, our_hlc, our_node, theirs, their_hlc, their_node)"
        " VALUES ($1, $2::jsonb, $3, $4, $5::jsonb, $6, $7::uuid, $8::jsonb, $9, $10::uuid)",
        {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID});
    const Param null_text{TEXTOID, 0, true};
    const std::string key_text = key_json(stored);
    AsMetadataOwner owner;
    for (const Conflict& k : conflicts) {
        const bool row = k.reg == Conflict::kRow;
        Param our_value = null_text, their_value = null_text;
        if (row) {
            our_value = text_param(k.ours_alive ? "\"present\"" : "\"deleted\"");
            their_value = text_param(k.theirs_alive ? "\"present\"" : "\"deleted\"");
        } else {
            if (k.reg < ours.size()) our_value = text_param(value_json(ours[k.reg]));
            if (k.in_col < in.cols.size()) their_value = text_param(value_json(in.cols[k.in_col].value));
        }
        run(put,
            {text_param(t.name), text_param(key_text), row ? null_text : text_param(t.cols.at(k.reg)),
             text_param(k.kind == Conflict::Kind::lost ? "lost" : "overwrote"), our_value,
             Param{INT8OID, Int64GetDatum(static_cast<int64>(k.ours.hlc)), false}, text_param(k.ours.node.str()),
             their_value, Param{INT8OID, Int64GetDatum(static_cast<int64>(k.theirs.hlc)), false},
             text_param(k.theirs.node.str())},
            false);
    }
    const Param keep{INT8OID, Int64GetDatum(State::get().conflict_log().rows), false};
    run(prepare("DELETE FROM lwwsync.conflicts WHERE id <= (SELECT max(id) FROM lwwsync.conflicts) - $1", {INT8OID}),
        {keep}, false);
}

// Foreign keys after a row's merged write. `written`: the registers the
// merge wrote; `inserted`: the row is new here (every key is checked), else
// only keys with a written column are (as Postgres' RI check on UPDATE);
// `exact`: no trigger changed what the merge wrote, so written values need
// no re-read.
void check_child(Item& it, size_t idx, std::vector<Deferred>& deferred, std::vector<ChildCheck>* later,
                 const std::map<size_t, Param>& written, bool inserted, bool exact) {
    const TableInfo& t = *it.run->plan.local;
    for (const ForeignKey& fk : foreign_keys(t.relid).out) {
        // The key's values as the merge wrote them, where it wrote them all.
        std::vector<Param> vals;
        bool known = exact, touched = false;
        for (const std::string& c : fk.child_cols) {
            bool found = false;
            for (size_t k = 0; k < t.key.size() && !found; ++k)
                if (quote_ident(t.key[k]) == c) {
                    vals.push_back(it.key[k]);
                    found = true;
                }
            for (const auto& [reg, prm] : written) {
                if (found) break;
                if (quote_ident(t.cols[reg]) == c) {
                    vals.push_back(prm);
                    found = touched = true;
                }
            }
            if (!found) known = false;
        }
        if (!inserted && !touched) continue;
        if (fk.deferrable) {
            deferred.push_back(Deferred{idx, &fk, true, &t, it.key, {}});
            continue;
        }
        if (!known && !it.run->writer->read(fk.child_cols, {}, it.key, vals)) continue;
        if (later) {
            later->push_back(ChildCheck{idx, &fk, std::move(vals)});
            continue;
        }
        if (!parent_present(fk, vals))
            refuse(t, "foreign key \"" + fk.name + "\": the referenced row of " + fk.parent_q + " is not there");
    }
}

// What the caller's rights (docs/SECURITY.md) let a merge outcome of `it`
// keep, for both stores: refused (RowRefused: the row is parked), false to
// keep nothing of it, true to write it. `set_based`: outcomes only the row
// path handles (a DELETE probe under row-level security, a changed value
// other rows reference, a delete of a referenced table's row) are refused
// too, and the batch then merges row by row.
bool admit_merged(const MergeRow& r, Item& it, const ForeignKeys& fks, bool set_based) {
    const TableInfo& t = *it.run->plan.local;
    const Rights& rights = it.run->rights;
    const bool checked = it.run->ctx->trust == Trust::caller;
    UserWriter& writer = *it.run->writer;
    const MergeOutcome& out = r.out;
    if (out.alive) {
        // A new generation over a living row is a delete and an insert: the
        // caller must be allowed to delete that row (privilege and policies).
        if (checked && out.gen_raised && out.was_alive) {
            if (!rights.del) refuse(t, "the change set deletes and re-inserts a row the caller may not delete");
            if (r.there && rights.rls) {
                if (set_based) refuse(t, "a new generation under row-level security: merged row by row");
                if (!writer.may_delete(it.key, it.stored))
                    refuse(t, "the change set deletes and re-inserts a row the caller may not delete");
            }
        }
        if (set_based && r.write == UserWrite::update)
            for (const ForeignKey& fk : fks.in)
                for (const std::string& c : fk.parent_cols)
                    for (size_t w : r.won)
                        if (quote_ident(t.cols[w]) == c) refuse(t, "a referenced value changes: merged row by row");
        if (r.write == UserWrite::none && checked) {
            // Only the row register: an insert of the row as it already is.
            if (!rights.insert) refuse(t, "the change set re-inserts a row (needs INSERT)");
            if (!writer.visible(it.key)) refuse(t, "row-level security hides this row");
        }
        return true;
    }
    if (r.there) {
        // Postgres checks the DELETE itself (privilege, policies, references).
        if (set_based && !fks.in.empty()) refuse(t, "a merged delete of a referenced table's row: merged row by row");
        return true;
    }
    if (checked && !(rights.del && rights.select_keys))
        refuse(t, "the change set deletes a row (needs DELETE and SELECT on its key)");
    // A tombstone of a row this database does not hold: no policy can judge
    // it, and it would delete the key wherever it lives. Not kept.
    return !(out.gen_raised && rights.rls && it.run->ctx->guarded());
}

// TableStore::holds_parked: a row of the item's key parked here (by anyone:
// a tombstone or a later change of it is for all of them), or the item is
// such a parked row retried.
bool parked_here(const Item& it) {
    if (it.parked >= 0) return true;
    AsMetadataOwner owner;
    return !run(prepare("SELECT 1 FROM lwwsync.rejected WHERE tbl = $1 AND key = $2::jsonb LIMIT 1",
                        {TEXTOID, TEXTOID}),
                {text_param(it.run->plan.in->name), text_param(key_json(it.row->key))}, true)
                .empty();
}

// The row path as a TableStore for the core's batch merge (a batch of one):
// the row locked, then its metadata, every check an outcome needs.
// `unseen`: the key has no metadata (the unlocked read said so). Its row is
// then most likely not there either, and neither lock would hold anything:
// it is inserted straight away; if a row turns out to be there, the INSERT
// writes nothing and the row is marked for a redo, locked.
class RowStore : public TableStore {
public:
    RowStore(Item& it, size_t idx, std::vector<Deferred>& deferred, std::vector<ChildCheck>* later, bool unseen)
        : it_(it),
          idx_(idx),
          deferred_(deferred),
          later_(later),
          unseen_(unseen),
          t_(*it.run->plan.local),
          writer_(*it.run->writer),
          fks_(foreign_keys(t_.relid)) {}

    void load(std::vector<MergeRow>& rows) override {
        MergeRow& r = rows.at(0);
        if (unseen_) {
            r.st = RowState(t_.cols.size());
            r.there = false;
            return;
        }
        r.there = writer_.lock(it_.key);
        r.st = load_meta(t_, it_.key);
    }

    bool admit(MergeRow& r) override { return admit_merged(r, it_, fks_, false); }

    void write_user(const std::vector<MergeRow*>& rows) override {
        MergeRow& r = *rows.at(0);
        won_.clear();
        for (size_t reg : r.won) won_[reg] = it_.values[reg];
        const std::vector<Param>& key = it_.key;
        uint64_t n = 0;
        switch (r.write) {
            case UserWrite::none: return;
            case UserWrite::insert: {
                {
                    UserWriter::OwnWriteScope mine(t_, it_.stored, LocalOp::insert, &won_, &ops_);
                    n = writer_.write(key, won_, true);
                }
                if (n != 1) {
                    if (writer_.exists(key)) {  // inserted meanwhile: merge again, locked
                        r.redo = true;
                        return;
                    }
                    refuse(t_, "a trigger skipped the insert of this row");
                }
                wrote_ = true;
                return;
            }
            case UserWrite::update: {
                // A referenced column other than the key (a foreign key to a
                // UNIQUE column) the merge changes: its old values, to check below.
                std::vector<std::pair<const ForeignKey*, std::vector<Param>>> old_refs;
                for (const ForeignKey& fk : fks_.in) {
                    bool touched = false;
                    for (const std::string& c : fk.parent_cols)
                        for (const auto& w : won_) touched |= quote_ident(t_.cols[w.first]) == c;
                    if (!touched) continue;
                    std::vector<Param> vals;
                    if (writer_.read(fk.parent_cols, {}, key, vals)) old_refs.emplace_back(&fk, std::move(vals));
                }
                {
                    UserWriter::OwnWriteScope mine(t_, it_.stored, LocalOp::update, &won_, &ops_);
                    n = writer_.write(key, won_, false);
                }
                // The row is locked and there: no row means a policy hid it (or a trigger skipped it).
                if (n != 1) refuse(t_, "row-level security forbids updating this row");
                wrote_ = true;
                // Rows still referencing the old values: refused, whatever the
                // key's ON UPDATE action (a merged update runs none).
                for (const auto& [fk, vals] : old_refs) {
                    if (fk->deferrable) {
                        deferred_.push_back(Deferred{idx_, fk, false, nullptr, {}, vals});
                    } else if (children_present(*fk, vals) && !parent_present(*fk, vals)) {
                        refuse(t_, "foreign key \"" + fk->name + "\": the changed value is still referenced from " +
                                       fk->child_q);
                    }
                }
                return;
            }
            case UserWrite::remove: {
                referenced_.resize(fks_.in.size());
                for (size_t f = 0; f < fks_.in.size(); ++f)
                    writer_.read(fks_.in[f].parent_cols, {}, key, referenced_[f]);
                {
                    UserWriter::OwnWriteScope mine(t_, it_.stored, LocalOp::remove, nullptr, &ops_);
                    n = writer_.remove(key);
                }
                // Postgres checks the DELETE itself; the row is locked and there.
                if (n != 1) refuse(t_, "row-level security forbids deleting this row");
                removed_ = true;
                return;
            }
        }
    }

    void record_conflicts(const std::vector<MergeRow*>& rows) override {
        log_conflicts(writer_, t_, it_.key, it_.stored, *it_.row, rows.at(0)->conflicts);
    }

    void store(const std::vector<MergeRow*>& rows) override {
        if (!unseen_) return store_meta(t_, it_.key, rows.at(0)->st);
        if (!insert_new_meta(t_, {it_.key}, {rows.at(0)->st}).at(0)) {
            it_.unseen = false;
            throw StoredMeanwhile();
        }
    }
    uint64_t next_seq() override { return State::get().next_seq(); }
    bool store_first() const override { return false; }
    uint64_t gen_floor() override { return State::get().gen_floor(t_.relid); }
    bool holds_parked(const MergeRow&) override { return parked_here(it_); }

    // After the merge: foreign keys of the written row, writes the
    // statement's triggers made to it (local writes, stamped above the
    // merged registers), the referencing rows of a merged delete.
    void finish(const MergeRow& r) {
        if (wrote_ && !fks_.out.empty())
            check_child(it_, idx_, deferred_, later_, won_, !r.there || r.out.gen_raised, ops_.empty());
        if (!ops_.empty()) replay_local_ops(t_, it_.key, ops_);
        if (!removed_) return;
        // Refused (NO ACTION, RESTRICT), or the constraint's action, as a
        // local write (CASCADE, SET NULL, SET DEFAULT).
        for (size_t f = 0; f < fks_.in.size(); ++f) {
            const ForeignKey& fk = fks_.in[f];
            if (referenced_[f].empty()) continue;
            if (fk.del_action == 'a' || fk.del_action == 'r') {
                if (fk.deferrable && fk.del_action == 'a') {
                    deferred_.push_back(Deferred{idx_, &fk, false, nullptr, {}, referenced_[f]});
                } else if (children_present(fk, referenced_[f])) {
                    refuse(t_, "foreign key \"" + fk.name + "\": the row is still referenced from " + fk.child_q);
                }
            } else {
                referential_action(fk, referenced_[f]);
            }
        }
    }

private:
    Item& it_;
    size_t idx_;
    std::vector<Deferred>& deferred_;
    std::vector<ChildCheck>* later_;
    bool unseen_;
    const TableInfo& t_;
    UserWriter& writer_;
    const ForeignKeys& fks_;
    std::map<size_t, Param> won_;
    std::vector<LocalOp> ops_;                    // local writes to this row made by triggers meanwhile
    std::vector<std::vector<Param>> referenced_;  // referenced values before a merged delete, per referencing key
    bool wrote_ = false, removed_ = false;
};

// Merges one incoming row, row by row. `later`: where a whole batch collects
// its rows' foreign-key checks (null: each row is checked at once).
void merge_item(Item& it, size_t idx, ApplyCounts& stats, std::vector<Deferred>& deferred,
                std::vector<ChildCheck>* later = nullptr) {
    const TableInfo& t = *it.run->plan.local;
    for (int attempt = 0;; ++attempt) {
        if (attempt == 5) throw Error("table \"" + t.name + "\": a row kept changing under lww_apply; giving up");
        RowStore store(it, idx, deferred, later, it.unseen && attempt == 0);
        std::vector<MergeRow> rows(1);
        rows[0].in = &it.in;
        merge_batch(store, rows, &it.run->ctx->receiver);
        it.seq = rows[0].seq;
        it.relayed = rows[0].relayed;
        if (rows[0].redo) continue;
        if (rows[0].keep) store.finish(rows[0]);
        stats.add(rows[0].counts);
        return;
    }
}

// The merge's own writes of a set-based group (State::own), reset however
// the group ends.
class GroupOwnWrites {
public:
    // `keys[i]` null: a row not written (no entry).
    GroupOwnWrites(const TableInfo& t, const std::vector<const std::vector<Value>*>& keys, std::vector<OwnWrite*>& at)
        : own_(State::get().own) {
        own_ = OwnWrites{};
        own_.rows.reserve(keys.size());
        at.assign(keys.size(), nullptr);
        for (size_t i = 0; i < keys.size(); ++i)
            if (keys[i]) at[i] = &own_.rows[*keys[i]];  // stable: an unordered_map never moves its elements
        own_.relid = t.relid;
    }
    ~GroupOwnWrites() { own_ = OwnWrites{}; }
    void forget(const std::vector<Value>& key) { own_.rows.erase(key); }
    // Whether any trigger wrote a row of the group (one pass, not a lookup per row).
    bool any_ops() const {
        for (const auto& [key, w] : own_.rows)
            if (!w.ops.empty()) return true;
        return false;
    }
    GroupOwnWrites(const GroupOwnWrites&) = delete;
    GroupOwnWrites& operator=(const GroupOwnWrites&) = delete;

private:
    OwnWrites& own_;
};

// The set-based path (docs/ARCHITECTURE.md, "Set-based apply") as a
// TableStore: rows locked with one statement, their metadata locked with
// one, written with one INSERT per set of won columns, one UPDATE per set
// of won columns and one DELETE, the metadata stored with one statement.
// The same checks as RowStore, per outcome; what only the row path handles
// (see Item::batchable), or a refusal, throws RowRefused: the whole batch is
// then redone row by row. Rows a concurrent transaction inserted first are
// marked for a redo (merged again, locked, by merge_item).
class GroupStore : public TableStore {
public:
    GroupStore(std::vector<Item*>& items, size_t a, std::vector<Deferred>& deferred, std::vector<ChildCheck>& later)
        : items_(items),
          a_(a),
          deferred_(deferred),
          later_(later),
          run_(*items[a]->run),
          t_(*run_.plan.local),
          writer_(*run_.writer),
          fks_(foreign_keys(t_.relid)) {}

    // Lock order: the user rows, then their metadata, each by key. Unseen
    // keys (no metadata when read unlocked) are most likely not there: no
    // lock to take, they are inserted straight away.
    void load(std::vector<MergeRow>& rows) override {
        std::vector<std::vector<Param>> seen_keys;
        UserWriter::Keys seen_ptrs;
        std::vector<MergeRow*> seen;
        for (MergeRow& r : rows) {
            r.st = RowState(t_.cols.size());
            r.there = false;
            if (item(r).unseen) continue;
            seen_keys.push_back(item(r).key);
            seen_ptrs.push_back(&item(r).key);
            seen.push_back(&r);
        }
        const std::vector<bool> there = writer_.lock_many(seen_ptrs);
        std::vector<RowState> metas = load_meta_many(t_, seen_keys, true);
        for (size_t j = 0; j < seen.size(); ++j) {
            seen[j]->there = there[j];
            seen[j]->st = std::move(metas[j]);
        }
    }

    bool admit(MergeRow& r) override { return admit_merged(r, item(r), fks_, true); }

    // The user rows, a statement per kind of write and set of won columns.
    void write_user(const std::vector<MergeRow*>& rows) override {
        std::vector<const std::vector<Value>*> stored_keys;
        for (const MergeRow* r : rows) stored_keys.push_back(&item(*r).stored);
        own_.emplace(t_, stored_keys, own_at_);
        kept_ = rows;
        std::map<std::pair<UserWrite, std::vector<size_t>>, std::vector<size_t>> statements;
        for (size_t i = 0; i < rows.size(); ++i) {
            const UserWrite w = rows[i]->write;
            if (w == UserWrite::none) continue;
            statements[{w, w == UserWrite::remove ? std::vector<size_t>{} : rows[i]->won}].push_back(i);
        }
        for (const auto& [what, at] : statements) {
            const UserWrite kind = what.first;
            const std::vector<size_t>& cols = what.second;
            UserWriter::Keys keys;
            std::vector<const std::vector<Value>*> stored;
            std::vector<OwnWrite*> marks;
            std::vector<std::vector<Param>> columns(cols.size());
            for (auto& column : columns) column.reserve(at.size());
            for (size_t i : at) {
                Item& it = item(*rows[i]);
                keys.push_back(&it.key);
                stored.push_back(&it.stored);
                marks.push_back(own_at_[i]);
                for (size_t c = 0; c < cols.size(); ++c) columns[c].push_back(it.values[cols[c]]);
            }
            std::vector<bool> done;
            if (kind == UserWrite::insert) done = writer_.insert_many(keys, cols, columns, marks, stored);
            else if (kind == UserWrite::update) done = writer_.update_many(keys, cols, columns, marks);
            else done = writer_.remove_many(keys, marks);
            for (size_t k = 0; k < at.size(); ++k) {
                if (done[k]) continue;
                const size_t i = at[k];
                Item& it = item(*rows[i]);
                if (kind == UserWrite::insert) {
                    if (!writer_.exists(it.key)) refuse(t_, "a trigger skipped the insert of this row");
                    // Merged again, on its own: a trigger's write to it
                    // meanwhile would be lost with the group's record of it.
                    if (!own_at_[i]->ops.empty())
                        refuse(t_, "a trigger wrote a row inserted meanwhile: merged row by row");
                    own_->forget(it.stored);
                    own_at_[i] = nullptr;
                    rows[i]->redo = true;
                } else if (kind == UserWrite::update) {
                    refuse(t_, "row-level security forbids updating this row");
                } else {
                    refuse(t_, "row-level security forbids deleting this row");
                }
            }
        }
    }

    void record_conflicts(const std::vector<MergeRow*>& rows) override {
        for (const MergeRow* r : rows)
            log_conflicts(writer_, t_, item(*r).key, item(*r).stored, *item(*r).row, r->conflicts);
    }

    // Rows read with metadata are locked: stored over it. New keys are
    // inserted; one another transaction stored meanwhile redoes the group.
    void store(const std::vector<MergeRow*>& rows) override {
        std::vector<std::vector<Param>> keys, new_keys;
        std::vector<RowState> states, new_states;
        std::vector<Item*> new_items;
        for (const MergeRow* r : rows) {
            Item& it = item(*r);
            (it.unseen ? new_keys : keys).push_back(it.key);
            (it.unseen ? new_states : states).push_back(r->st);
            if (it.unseen) new_items.push_back(&it);
        }
        store_meta_many(t_, keys, states);
        const std::vector<bool> stored = insert_new_meta(t_, new_keys, new_states);
        if (std::find(stored.begin(), stored.end(), false) == stored.end()) return;
        for (size_t j = 0; j < stored.size(); ++j)
            if (!stored[j]) new_items[j]->unseen = false;
        throw StoredMeanwhile();
    }
    uint64_t next_seq() override { return State::get().next_seq(); }
    bool store_first() const override { return false; }
    uint64_t gen_floor() override { return State::get().gen_floor(t_.relid); }
    bool holds_parked(const MergeRow& r) override { return parked_here(*items_[a_ + r.item]); }

    // After the merge: foreign keys of the written rows, and writes the
    // statements' triggers made to these rows (local writes, stamped above
    // the merged registers, as RowStore).
    void finish() {
        if (!own_) return;
        const bool any_ops = own_->any_ops();
        for (size_t i = 0; i < kept_.size(); ++i) {
            const MergeRow& r = *kept_[i];
            if (!r.keep) continue;
            Item& it = item(r);
            std::vector<LocalOp> ops;
            if (any_ops) ops = std::move(own_at_[i]->ops);
            if (r.write != UserWrite::none && r.write != UserWrite::remove && !fks_.out.empty()) {
                std::map<size_t, Param> written;
                for (size_t w : r.won) written[w] = it.values[w];
                check_child(it, a_ + r.item, deferred_, &later_, written,
                            r.write == UserWrite::insert || r.out.gen_raised, ops.empty());
            }
            if (!ops.empty()) replay_local_ops(t_, it.key, ops);
        }
    }

private:
    Item& item(const MergeRow& r) { return *items_[a_ + r.item]; }

    std::vector<Item*>& items_;
    size_t a_;
    std::vector<Deferred>& deferred_;
    std::vector<ChildCheck>& later_;
    const TableRun& run_;
    const TableInfo& t_;
    UserWriter& writer_;
    const ForeignKeys& fks_;
    std::optional<GroupOwnWrites> own_;  // from the user writes to the end of finish
    std::vector<OwnWrite*> own_at_;      // by position in kept_
    std::vector<MergeRow*> kept_;
};

// Merges items[a, b) — batchable rows of one table run, distinct keys in
// lock order — set-based, through the core's batch merge (GroupStore).
void merge_group(std::vector<Item*>& items, size_t a, size_t b, ApplyCounts& stats, std::vector<Deferred>& deferred,
                 std::vector<ChildCheck>& later) {
    std::vector<MergeRow> rows(b - a);
    for (size_t i = 0; i < rows.size(); ++i) {
        rows[i].in = &items[a + i]->in;
        rows[i].item = i;
    }
    {
        GroupStore store(items, a, deferred, later);
        merge_batch(store, rows, &items[a]->run->ctx->receiver);
        store.finish();
    }
    for (MergeRow& r : rows) {
        if (!r.redo) {
            items[a + r.item]->seq = r.seq;
            items[a + r.item]->relayed = r.relayed;
            stats.add(r.counts);
            continue;
        }
        Item& it = *items[a + r.item];
        it.unseen = false;
        merge_item(it, a + r.item, stats, deferred, &later);
    }
}

// The items whose deferred foreign-key check fails now.
std::set<size_t> failed_deferred(const std::vector<Deferred>& deferred, std::vector<Item*>& items) {
    std::set<size_t> failed;
    for (const Deferred& d : deferred) {
        if (failed.count(d.item)) continue;
        bool ok = true;
        if (d.child_side) {
            std::vector<Param> vals;
            if (items[d.item]->run->writer->read(d.fk->child_cols, {}, d.key, vals)) ok = parent_present(*d.fk, vals);
            if (!ok)
                items[d.item]->reason = "table " + d.table->name + ": foreign key \"" + d.fk->name +
                                        "\" (deferrable): the referenced row of " + d.fk->parent_q + " is not there";
        } else {
            ok = !children_present(*d.fk, d.vals) || parent_present(*d.fk, d.vals);
            if (!ok)
                items[d.item]->reason = "foreign key \"" + d.fk->name +
                                        "\" (deferrable): the row is still referenced from " + d.fk->child_q;
        }
        if (!ok) failed.insert(d.item);
    }
    return failed;
}

// Groups of fewer rows merge row by row: set-based statements pay off from
// a few rows on.
constexpr size_t kMinGroup = 4;

// The end of the set-based group starting at items[at]: the batch's
// batchable rows of one table run, alive or not alike, keys strictly
// ascending (the lock order). `at` itself when it starts none.
size_t group_end(const std::vector<Item*>& items, size_t at) {
    const Item& first = *items[at];
    if (!first.batchable || !first.run->set_based) return at;
    size_t end = at + 1;
    while (end < items.size() && items[end]->batchable && items[end]->run == first.run &&
           items[end]->live == first.live && key_less(items[end - 1]->stored, items[end]->stored))
        ++end;
    return end;
}

// Rounds of the whole batch, each without the rows whose foreign keys failed
// at the end of the one before, before it is redone row by row.
constexpr int kMaxRounds = 3;
// Runs of the whole batch redone because a key it took for new was stored
// meanwhile (each clears at least one key's unseen, so this only bounds the
// work a busy key costs), before it goes row by row.
constexpr int kMaxRaces = 3;

// Merges `items` in their order; returns the ones refused (reason set).
// First the whole batch in one subtransaction (rows whose foreign keys fail
// at its end taken out, up to kMaxRounds runs); on a refusal, row by row,
// each in its own subtransaction, refused rows retried while others apply
// (a child before its parent in a cycle, a UNIQUE value freed later in the
// batch); deferrable foreign keys are checked at the end, and a row failing
// there is taken out and the batch redone without it.
std::vector<Item*> merge_items(std::vector<Item*>& items, ApplyCounts& stats) {
    ReplicationRole replica("replica");
    // The whole batch (set-based where it can), in one subtransaction. Rows
    // whose foreign keys fail at its end are taken out and it runs again
    // without them (a parent taken out fails its children in the next
    // round); any other refusal redoes it row by row.
    std::set<size_t> out;  // taken out: refused, reason set
    int raced = 0;         // runs redone for a new key stored meanwhile
    for (int round = 0; round < kMaxRounds; ++round) {
        SubXact batch;
        std::vector<Item*> now;
        std::vector<size_t> orig;  // index in `items` of now[i]
        for (size_t i = 0; i < items.size(); ++i)
            if (!out.count(i)) {
                now.push_back(items[i]);
                orig.push_back(i);
            }
        std::vector<Deferred> deferred;
        ApplyCounts c, other;  // other: parked rows retried, not part of the answer
        bool refused = false, meanwhile = false;
        std::map<size_t, std::string> failed;  // by index in `now`
        size_t at = 0;
        try {
            std::vector<ChildCheck> later;
            for (at = 0; at < now.size();) {
                const size_t end = group_end(now, at);
                if (end - at >= kMinGroup) {
                    merge_group(now, at, end, c, deferred, later);
                    at = end;
                } else {
                    merge_item(*now[at], at, now[at]->parked < 0 ? c : other, deferred, &later);
                    ++at;
                }
            }
            failed = failed_child_checks(later);
            for (auto& [i, why] : failed) why = "table " + now[i]->run->plan.local->name + ": " + why;
            for (size_t i : failed_deferred(deferred, now)) failed.emplace(i, now[i]->reason);
        } catch (const RowRefused&) {
            refused = true;
        } catch (const StoredMeanwhile&) {
            meanwhile = true;
        } catch (const PgError& e) {
            const bool retry = at < now.size() && now[at]->parked >= 0 && !fatal_anyway(e);
            if (!refusable(e) && !retry) throw;
            refused = true;
        } catch (const Cancelled&) {
            throw;
        } catch (const Error&) {
            if (!(at < now.size() && now[at]->parked >= 0)) throw;
            refused = true;
        }
        if (!refused && !meanwhile && failed.empty()) {
            batch.commit();
            stats.add(c);
            std::vector<Item*> refused_rows;
            for (size_t i : out) refused_rows.push_back(items[i]);
            return refused_rows;
        }
        batch.rollback();
        if (meanwhile) {
            // The same run again, the raced keys locked this time; a batch
            // that keeps racing goes row by row.
            if (++raced > kMaxRaces) break;
            --round;
            continue;
        }
        if (refused) break;
        for (const auto& [i, why] : failed) {
            now[i]->reason = why;
            out.insert(orig[i]);
        }
    }
    std::set<size_t> excluded;
    for (;;) {
        SubXact batch;
        std::vector<Deferred> deferred;
        ApplyCounts c;
        std::vector<size_t> pending;
        for (size_t i = 0; i < items.size(); ++i)
            if (!excluded.count(i)) pending.push_back(i);
        // At most kMaxPasses passes (a chain listed backwards progresses one
        // row a pass): what is left is parked and retried by the next apply.
        constexpr int kMaxPasses = 16;
        for (int pass = 0; pass < kMaxPasses && !pending.empty(); ++pass) {
            std::vector<size_t> again;
            bool progress = false;
            for (size_t i : pending) {
                SubXact row;
                ApplyCounts rc;
                const size_t mark = deferred.size();
                try {
                    merge_item(*items[i], i, rc, deferred);
                    row.commit();
                    if (items[i]->parked < 0) c.add(rc);
                    progress = true;
                    continue;
                } catch (const RowRefused& e) {
                    items[i]->reason = e.what();
                } catch (const StoredMeanwhile& e) {
                    items[i]->reason = e.what();
                    progress = true;  // locked next pass: it cannot race again
                } catch (const PgError& e) {
                    if (!refusable(e) && !(items[i]->parked >= 0 && !fatal_anyway(e))) throw;
                    items[i]->reason = reason_of(e);
                } catch (const Cancelled&) {
                    throw;
                } catch (const Error& e) {
                    if (items[i]->parked < 0) throw;
                    items[i]->reason = e.what();
                }
                row.rollback();
                deferred.erase(deferred.begin() + static_cast<std::ptrdiff_t>(mark), deferred.end());
                again.push_back(i);
            }
            if (!progress) break;
            pending = std::move(again);
        }
        const std::set<size_t> failed = failed_deferred(deferred, items);
        if (failed.empty()) {
            batch.commit();
            stats.add(c);
            std::vector<Item*> out;
            for (size_t i = 0; i < items.size(); ++i)
                if (excluded.count(i) || std::find(pending.begin(), pending.end(), i) != pending.end())
                    out.push_back(items[i]);
            return out;
        }
        excluded.insert(failed.begin(), failed.end());
        batch.rollback();
    }
}

// Prepares the rows of one table: keys as stored, echoes and stale
// registers counted at once, rows refused before any write marked.
void prepare_rows(TableRun& tr, long parked, std::deque<Item>& items, ApplyCounts& stats) {
    const Plan& p = tr.plan;
    const TableInfo& t = *p.local;
    const Context& ctx = *tr.ctx;
    const Rights& rights = tr.rights;
    const bool guarded = ctx.guarded();
    UserWriter& writer = *tr.writer;
    std::vector<Item> rows;
    rows.reserve(p.in->rows.size());
    for (const RowChange& r : p.in->rows) {
        Item it;
        it.run = &tr;
        it.row = &r;
        it.parked = parked;
        it.key.resize(r.key.size());
        for (size_t k = 0; k < r.key.size(); ++k) {
            bool isnull = false;
            it.key[k].type = t.key_types[k].type;
            it.key[k].value = value_to_datum(r.key[k], t.key_types[k], &isnull);
            it.key[k].null = isnull;
            it.stored.push_back(datum_to_value(it.key[k].value, isnull, t.key_types[k]));
        }
        rows.push_back(std::move(it));
    }
    {  // Sorted by key as stored (indexes sorted: an Item is costly to move).
        std::vector<size_t> order(rows.size());
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](size_t a, size_t b) { return key_less(rows[a].stored, rows[b].stored); });
        std::vector<Item> sorted;
        sorted.reserve(rows.size());
        for (size_t i : order) sorted.push_back(std::move(rows[i]));
        rows = std::move(sorted);
        for (size_t i = 0; i < rows.size(); ++i) rows[i].pos = i;
    }
    for (size_t i = 1; i < rows.size(); ++i)
        if (!key_less(rows[i - 1].stored, rows[i].stored))
            throw Error("table \"" + t.name + "\": the change set names one row twice (two spellings of one key)");

    // Echoes and stale registers change nothing: known without a lock (a
    // row's state only grows, so what loses now loses later too). One
    // statement for the table's rows.
    std::vector<std::vector<Param>> keys;
    keys.reserve(rows.size());
    for (const Item& it : rows) keys.push_back(it.key);
    std::vector<RowState> pres = load_meta_many(t, keys, false);
    const ForeignKeys& fks = foreign_keys(t.relid);
    for (size_t at = 0; at < rows.size(); ++at) {
        Item& it = rows[at];
        const RowChange& r = *it.row;
        it.in = incoming_row(r, p.col_map);
        it.live = (r.gen & 1) != 0;
        // A living row row-level security hides from the caller: refused
        // whole, whatever the merge would do, so the answer says nothing of it.
        if (guarded && rights.rls && !writer.visible(it.key) && writer.exists(it.key)) {
            count_rejected(stats, it.in);
            it.refused = true;
            it.reason = "table " + t.name + ": row-level security refuses this row";
            items.push_back(std::move(it));
            continue;
        }
        {
            RowState& pre = pres[at];
            it.unseen = pre.gen == 0;
            MergeOutcome probe = merge_row(pre, it.in, UINT64_MAX);
            if (!probe.changed()) {
                count_merged(stats, probe);
                // Registers that lost to ours: what the locked merge would have logged.
                if (ctx.receiver.log_conflicts && (!probe.lost_regs.empty() || probe.older_generation))
                    log_conflicts(writer, t, it.key, it.stored, r, conflicts_of(probe, it.in, pre, ctx.receiver));
                continue;
            }
            // What the locked merge can do is bounded by this one (a row's
            // state only grows): a new generation under row-level security
            // (a DELETE probe), a value other rows reference changing, a
            // delete of a row other rows may reference go row by row.
            bool batchable = parked < 0 && !(ctx.trust == Trust::caller && rights.rls && probe.gen_raised) &&
                             (it.live || fks.in.empty());
            for (size_t k : probe.won_cols)
                for (const ForeignKey& fk : fks.in)
                    for (const std::string& c : fk.parent_cols)
                        if (quote_ident(t.cols[it.in.cols[k].first]) == c) batchable = false;
            it.batchable = batchable;
            // A caller brings its own writes (its node's, its principal's
            // other devices') and echoes of what this database holds, which
            // never win. Another node's register that would win is not its
            // to bring: refused (not parked: not the caller's), the rest applies.
            if (guarded) {
                if (probe.row_won && !ctx.own.has(it.in.row)) {
                    count_rejected(stats, it.in);
                    continue;
                }
                size_t dropped = 0;
                std::vector<std::pair<size_t, Stamp>> kept;
                std::vector<bool> won(it.in.cols.size(), false);
                for (size_t k : probe.won_cols) won[k] = true;
                for (size_t k = 0; k < it.in.cols.size(); ++k) {
                    if (won[k] && !ctx.own.has(it.in.cols[k].second)) ++dropped;
                    else kept.push_back(it.in.cols[k]);
                }
                if (dropped) {
                    stats.received += dropped;
                    stats.rejected += dropped;
                    it.in.cols = std::move(kept);
                    if (!it.in.has_row && it.in.cols.empty()) {
                        ++stats.rows;
                        continue;
                    }
                }
            }
        }
        it.values.resize(t.cols.size());
        for (size_t k = 0; k < r.cols.size(); ++k) {
            const size_t idx = p.col_map[r.cols[k].col];
            Param prm;
            bool isnull = false;
            prm.type = t.col_types[idx].type;
            prm.value = value_to_datum(r.cols[k].value, t.col_types[idx], &isnull);
            prm.null = isnull;
            it.values[idx] = prm;
        }
        items.push_back(std::move(it));
    }
}

// ---------------------------------------------------------------------------
// The parking store: lwwsync.rejected, one row per refused incoming row, per
// principal (role and JWT subject); the view lww_rejected shows a caller its own.

struct ParkedEntry {
    int64_t id = 0;
    bool trusted = false;  // parked from a peer this database pulled from (Trust::chosen_server)
    ChangeSet cs;
    std::vector<Plan> plans;
    bool usable = false;  // still matches this database's tables
    bool again = false;   // refused again
    std::string reason;
};

// How many parked rows each principal keeps (lww_config('rejected_max')); the
// oldest go first. Retried per apply: the least recently tried first.
int64_t rejected_max() {
    AsMetadataOwner owner;
    const SpiResult res = run_sql("SELECT value FROM lwwsync.state WHERE key = 'rejected_max'", true);
    return res.empty() ? 1000 : std::stoll(res.text(0, 0));
}
constexpr int64_t kRetriesPerApply = 200;

std::deque<ParkedEntry> load_parked(const Principal& who, std::vector<TablePtr>& held) {
    std::deque<ParkedEntry> out;
    std::vector<std::pair<int64_t, std::pair<bool, std::string>>> rows;
    {
        AsMetadataOwner owner;
        const SpiResult res =
            run(prepare("SELECT id, trusted, changeset FROM lwwsync.rejected WHERE role = $1::name AND subject = $2"
                        " ORDER BY last_seen, id LIMIT " +
                            std::to_string(kRetriesPerApply),
                        {TEXTOID, TEXTOID}),
                {text_param(who.role), text_param(who.subject)}, true);
        for (uint64_t r = 0; r < res.size(); ++r) {
            bool isnull = false;
            rows.push_back(
                {DatumGetInt64(res.col(r, 0, &isnull)), {DatumGetBool(res.col(r, 1, &isnull)), res.text(r, 2)}});
        }
    }
    State& s = State::get();
    for (auto& [id, rest] : rows) {
        ParkedEntry e;
        e.id = id;
        e.trusted = rest.first;
        try {
            e.cs = decode_changeset(rest.second);
            e.plans = plan_tables<TableInfo>(e.cs, [&](const std::string& name) {
                TablePtr t = s.find(name);
                if (t) held.push_back(t);
                return t.get();
            });
            e.usable = true;
        } catch (const Error& err) {
            e.reason = err.what();
            e.again = true;
        }
        out.push_back(std::move(e));
    }
    return out;
}

std::string key_json(const std::string& changeset) {
    rapidjson::Document d;
    std::string error;
    if (!parse_json(d, changeset, error) || !d.IsObject()) return "null";
    auto tables = d.FindMember("tables");
    if (tables == d.MemberEnd() || !tables->value.IsArray() || tables->value.Empty()) return "null";
    const auto& t0 = tables->value[0];
    if (!t0.IsObject()) return "null";
    auto rows = t0.FindMember("rows");
    if (rows == t0.MemberEnd() || !rows->value.IsArray() || rows->value.Empty() || !rows->value[0].IsObject())
        return "null";
    auto k = rows->value[0].FindMember("key");
    if (k == rows->value[0].MemberEnd()) return "null";
    const auto& key = k->value;
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    key.Accept(w);
    return buf.GetString();
}

void store_parked(const Principal& who, const NodeId& origin, Trust trust, const std::vector<Item*>& refused,
                  std::deque<ParkedEntry>& entries) {
    AsMetadataOwner owner;
    for (ParkedEntry& e : entries) {
        const Param id{INT8OID, Int64GetDatum(e.id), false};
        if (e.again)
            run(prepare("UPDATE lwwsync.rejected SET reason = $2, last_seen = pg_catalog.now() WHERE id = $1",
                        {INT8OID, TEXTOID}),
                {id, text_param(e.reason)}, false);
        else run(prepare("DELETE FROM lwwsync.rejected WHERE id = $1", {INT8OID}), {id}, false);
    }
    bool added = false;
    for (const Item* it : refused) {
        if (it->parked >= 0) continue;
        const Plan& p = it->run->plan;
        ChangeSet one;
        one.origin = origin;
        TableChanges tc;
        tc.name = p.in->name;
        tc.key = p.in->key;
        tc.columns = p.in->columns;
        tc.rows.push_back(*it->row);
        one.tables.push_back(std::move(tc));
        const std::string json = encode_changeset(one);
        run(prepare("INSERT INTO lwwsync.rejected(role, subject, tbl, key, reason, trusted, changeset)"
                    " VALUES ($1::name, $2, $3, $4::jsonb, $5, $6, $7)",
                    {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, TEXTOID}),
            {text_param(who.role), text_param(who.subject), text_param(p.in->name), text_param(key_json(json)),
             text_param(it->reason), Param{BOOLOID, BoolGetDatum(trust != Trust::caller), false}, text_param(json)},
            false);
        added = true;
    }
    if (added) {
        const int64_t max = rejected_max();
        run(prepare("DELETE FROM lwwsync.rejected WHERE id IN (SELECT id FROM lwwsync.rejected"
                    " WHERE role = $1::name AND subject = $2 ORDER BY last_seen DESC, id DESC OFFSET $3)",
                    {TEXTOID, TEXTOID, INT8OID}),
            {text_param(who.role), text_param(who.subject), Param{INT8OID, Int64GetDatum(max), false}}, false);
    }
}

bool has_parked(const Principal& who) {
    AsMetadataOwner owner;
    return run(prepare("SELECT 1 FROM lwwsync.rejected WHERE role = $1::name AND subject = $2 LIMIT 1",
                       {TEXTOID, TEXTOID}),
               {text_param(who.role), text_param(who.subject)}, true)
               .size() > 0;
}

// `from_origin`: a change set of a node (checked, bound to the caller);
// false: no rows, only the caller's parked rows retried.
ApplyCounts apply_impl(const ChangeSet& cs, Trust trust, bool from_origin, uint64_t seen,
                       RelayedRows* relayed = nullptr, bool adopt = false) {
    State& s = State::get();
    const NodeId self = s.self();
    if (from_origin) refuse_own_changes(cs.origin, self);
    // The plans point at table descriptions held here, not into the cache: a
    // user trigger may roll back a savepoint or track a table, which rebuilds it.
    std::vector<TablePtr> held;
    auto find = [&](const std::string& name) {
        TablePtr t = s.find(name);
        if (t) held.push_back(t);
        return t.get();
    };
    ChangeSet pending;  // tables and columns not here yet: held (ddl.cpp)
    std::vector<Plan> plans = plan_tables<TableInfo>(cs, find, &pending);
    check_drift(cs, s.clock(), wall_clock_ms(), trust);

    std::deque<Context> contexts;
    contexts.push_back(
        Context{trust, {}, {}, Receiver{self, seen, State::get().conflict_log().on, relayed ? &cs.origin : nullptr}});
    Context& ctx = contexts.front();
    if (adopt)
        ctx.receiver.adopt = [] {
            State& st = State::get();
            return Stamp{st.tick(0), st.self()};
        };
    if (trust == Trust::caller) {
        ctx.caller = current_principal();
        // Applying a node's changes is acting as that node, unless the caller
        // relays for other servers.
        if (!ctx.caller.relay && from_origin) {
            bind_node(cs.origin, ctx.caller);
            ctx.own = OwnStamps(cs, ctx.caller);
        }
    }
    const Principal who = trust == Trust::caller ? ctx.caller : current_principal();

    CanonicalSettings canonical;
    ApplyCounts stats;
    ++s.applying;
    try {
        std::deque<TableRun> runs;
        std::deque<Item> items;
        auto add_run = [&](const Plan& p, const Context* c) -> TableRun& {
            runs.emplace_back();
            TableRun& tr = runs.back();
            tr.plan = p;
            tr.ctx = c;
            tr.rights = rights_of(*p.local);
            tr.writer = std::make_unique<UserWriter>(*p.local);
            tr.set_based = set_based_table(*p.local);
            return tr;
        };
        std::sort(plans.begin(), plans.end(),
                  [](const Plan& a, const Plan& b) { return a.local->name < b.local->name; });
        for (const Plan& p : plans) {
            TableRun& tr = add_run(p, &ctx);
            // Nothing of a table the caller may not write, not even "ignored": that
            // answer would tell it what the table's metadata holds.
            if (ctx.guarded() && !(tr.rights.select_keys && (tr.rights.insert || tr.rights.update || tr.rights.del)))
                deny(*p.local, "the caller may not write it");
            prepare_rows(tr, -1, items, stats);
        }
        // The caller's parked rows, retried with the batch.
        std::deque<ParkedEntry> parked = load_parked(who, held);
        ApplyCounts retried;  // not part of this change set's answer
        for (size_t e = 0; e < parked.size(); ++e) {
            ParkedEntry& pe = parked[e];
            if (!pe.usable) continue;
            // A parked row that lands counts as relayed by the peer it came
            // from (no echo), as it would have had it landed at once.
            contexts.push_back(
                Context{pe.trusted ? Trust::chosen_server : Trust::caller,
                        who,
                        {},
                        Receiver{self, 0, State::get().conflict_log().on, relayed ? &pe.cs.origin : nullptr}});
            Context& pc = contexts.back();
            const size_t before = items.size();
            // In a subtransaction: nothing a parked row brings may fail the apply.
            SubXact guard;
            try {
                if (!pe.trusted && !who.relay) {
                    bind_node(pe.cs.origin, who);  // still this principal's
                    pc.own = OwnStamps(pe.cs, who);
                }
                for (Plan& p : pe.plans) {
                    TableRun& tr = add_run(p, &pc);
                    if (pc.guarded() &&
                        !(tr.rights.select_keys && (tr.rights.insert || tr.rights.update || tr.rights.del))) {
                        pe.again = true;
                        pe.reason = "table " + p.local->name + ": the caller may not write it";
                        continue;
                    }
                    prepare_rows(tr, static_cast<long>(e), items, retried);
                }
                guard.commit();
            } catch (const Cancelled&) {
                throw;
            } catch (const PgError& err) {
                if (fatal_anyway(err)) throw;
                guard.rollback();
                items.resize(before);
                pe.again = true;
                pe.reason = reason_of(err);
            } catch (const Error& err) {
                guard.rollback();
                items.resize(before);
                pe.again = true;
                pe.reason = err.what();
            }
            for (size_t i = before; i < items.size(); ++i)
                if (items[i].refused) {
                    pe.again = true;
                    pe.reason = items[i].reason;
                }
        }
        // Table ranks: parents before children among the tables of the batch.
        std::vector<Oid> relids;
        std::vector<std::string> names;
        for (const TableRun& tr : runs)
            if (std::find(relids.begin(), relids.end(), tr.plan.local->relid) == relids.end()) {
                relids.push_back(tr.plan.local->relid);
                names.push_back(tr.plan.local->name);
            }
        std::vector<size_t> by_name(relids.size());
        std::iota(by_name.begin(), by_name.end(), 0);
        std::sort(by_name.begin(), by_name.end(), [&](size_t a, size_t b) { return names[a] < names[b]; });
        std::vector<std::vector<size_t>> parents(relids.size());
        for (size_t i = 0; i < by_name.size(); ++i)
            for (const ForeignKey& fk : foreign_keys(relids[by_name[i]]).out)
                for (size_t j = 0; j < by_name.size(); ++j)
                    if (relids[by_name[j]] == fk.parent) parents[i].push_back(j);
        const std::vector<size_t> order = parents_first(parents);
        std::map<Oid, size_t> rank;
        for (size_t k = 0; k < order.size(); ++k) rank[relids[by_name[order[k]]]] = k;
        for (TableRun& tr : runs) tr.rank = rank[tr.plan.local->relid];

        std::vector<Item*> todo;
        std::vector<Item*> refused;
        for (Item& it : items) (it.refused ? refused : todo).push_back(&it);
        std::stable_sort(todo.begin(), todo.end(), [](const Item* a, const Item* b) {
            if (a->live != b->live) return a->live;
            if (a->run->rank != b->run->rank)
                return a->live ? a->run->rank < b->run->rank : a->run->rank > b->run->rank;
            if (a->run == b->run) return a->pos < b->pos;  // key order, known
            if (key_less(a->stored, b->stored)) return true;
            if (key_less(b->stored, a->stored)) return false;
            return a->parked < b->parked;
        });
        if (!todo.empty()) {
            std::vector<Item*> more = merge_items(todo, stats);
            // The rows that landed bringing a third node's registers (their
            // last merge is the one committed), the set's and parked ones,
            // each for the peer it came from: no echo.
            if (relayed) {
                const std::set<const Item*> not_landed(more.begin(), more.end());
                for (const Item* it : todo) {
                    if (!it->relayed || !it->seq || not_landed.count(it)) continue;
                    const ChangeSet& from = it->parked < 0 ? cs : parked[static_cast<size_t>(it->parked)].cs;
                    relayed->push_back(RelayedRow{from.origin, it->seq});
                }
            }
            // Counted by row: a parked row's registers are "rejected", nothing of it applied.
            for (Item* it : more) {
                if (it->parked < 0) {
                    count_rejected(stats, it->in);
                } else {
                    parked[static_cast<size_t>(it->parked)].again = true;
                    parked[static_cast<size_t>(it->parked)].reason = it->reason;
                }
                refused.push_back(it);
            }
        }
        // Retried rows' counts stay out of this answer, the rows refused
        // before the merge are already counted.
        (void)retried;
        store_parked(who, cs.origin, trust, refused, parked);
        // Node ids are recorded when a register of theirs is stored
        // (store_meta), never for registers that lose or are refused.
        hold_pending(pending, ctx.guarded() ? &ctx.own : nullptr, stats);
        observe_stamps(cs, s.clock());
        s.persist_clock();
    } catch (...) {
        --s.applying;
        throw;
    }
    --s.applying;
    return stats;
}

}  // namespace

ApplyCounts apply_changeset(const ChangeSet& cs, Trust trust, uint64_t seen, RelayedRows* relayed, bool adopt) {
    return apply_impl(cs, trust, true, seen, relayed, adopt);
}

ApplyCounts retry_parked_rows(RelayedRows* relayed) {
    if (!has_parked(current_principal())) return {};
    return apply_impl(ChangeSet{}, Trust::caller, false, 0, relayed);
}

}  // namespace lww::pg
