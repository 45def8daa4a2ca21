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
// Locks come in one order, as for local writes: the user row, then its
// metadata, rows sorted by key and tables by name. The calling statement's
// transaction makes it all or nothing.
#include "changes.h"
#include "principal.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "../../common/batch.h"

extern "C" {
#include "utils/acl.h"
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

[[noreturn]] void deny(const TableInfo& t, const std::string& why) {
    throw permission_denied("permission denied for table " + t.name + ": " + why);
}

// A total order on keys, the same in every transaction (lock order).
int compare(const Value& a, const Value& b) {
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
        if (int c = compare(a[i], b[i])) return c < 0;
    return a.size() < b.size();
}

class UserWriter {
public:
    explicit UserWriter(const TableInfo& t) : t_(t) {
        for (size_t i = 0; i < t.key.size(); ++i)
            where_ += (i ? " AND " : "") + (quote_ident(t.key[i]) + " = $" + std::to_string(i + 1));
        for (const auto& k : t.key_types) key_types_.push_back(k.type);
    }

    // Locks the row before its metadata, as a local write does. Taken as the
    // table's owner: a lock is not a write, and the caller's rights are
    // checked by what follows. True when the row exists.
    bool lock(const std::vector<Param>& key) {
        AsTableOwner owner(t_.relid);
        return run(prepare("SELECT 1 FROM " + t_.qualified + " WHERE " + where_ + " FOR UPDATE", key_types_), key,
                   false) == 1;
    }

    // Whether the caller sees the row (row-level security).
    bool visible(const std::vector<Param>& key) {
        return run(prepare("SELECT 1 FROM " + t_.qualified + " WHERE " + where_, key_types_), key, true) == 1;
    }

    // Whether the row is there at all, whoever may see it.
    bool exists(const std::vector<Param>& key) {
        AsTableOwner owner(t_.relid);
        return run(prepare("SELECT 1 FROM " + t_.qualified + " WHERE " + where_, key_types_), key, true) == 1;
    }

    uint64_t remove(const std::vector<Param>& key) {
        return run(prepare("DELETE FROM " + t_.qualified + " WHERE " + where_, key_types_), key, false);
    }

    // Whether the caller's DELETE of the row would delete it (privileges and
    // every DELETE policy), without deleting it: the DELETE runs in a
    // subtransaction that is rolled back, with triggers (the app's and
    // foreign-key actions) off, so nothing else happens meanwhile.
    bool may_delete(const std::vector<Param>& key) {
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
            std::string conflict;
            for (size_t i = 0; i < n; ++i) conflict += (i ? ", " : "") + quote_ident(t_.key[i]);
            sql = "INSERT INTO " + t_.qualified + "(" + names + ") VALUES (" + params + ") ON CONFLICT (" + conflict +
                  ") DO NOTHING";
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
        return run(prepare(sql, types), args, false);
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
};

void count(ApplyCounts& stats, const MergeOutcome& out) {
    ++stats.rows;
    stats.received += out.applied + out.ignored;
    stats.applied += out.applied;
    stats.ignored += out.ignored;
}

struct Context {
    Trust trust;
    Principal caller;
    OwnStamps own;
    bool guarded() const { return trust == Trust::caller && !caller.relay; }
};

// Merges one incoming row; false when it must be merged again (a concurrent
// transaction inserted the key first).
// `unseen`: the key has no metadata (the unlocked read said so). Its row is
// then most likely not there either, and neither lock would hold anything:
// it is inserted straight away; if a row turns out to be there, the INSERT
// writes nothing and the row is merged again, locked.
bool merge_one(const Plan& p, const Rights& rights, const Context& ctx, UserWriter& writer, const IncomingRow& in,
               const std::vector<Param>& key, std::map<size_t, Param>& values, ApplyCounts& stats,
               const RowState* unseen) {
    State& s = State::get();
    const TableInfo& t = *p.local;
    const bool exists = unseen ? false : writer.lock(key);
    RowState st = unseen ? *unseen : load_meta(t, key);
    // A sequence is taken only when the merge changes something.
    MergeOutcome out = merge_row(st, in, UINT64_MAX);
    if (!out.changed()) {
        count(stats, out);
        return true;
    }
    std::map<size_t, Param> won;
    for (size_t k : out.won_cols) won[in.cols[k].first] = values[in.cols[k].first];
    const bool checked = ctx.trust == Trust::caller;
    if (out.alive) {
        // A new generation over a living row is a delete and an insert: the
        // caller must be allowed to delete that row (privilege and policies).
        if (checked && out.gen_raised && out.was_alive &&
            (!rights.del || (exists && rights.rls && !writer.may_delete(key))))
            deny(t, "the change set deletes and re-inserts a row the caller may not delete");
        if (!exists) {
            if (writer.write(key, won, true) != 1) return false;  // inserted meanwhile: merge again
        } else if (!won.empty()) {
            // The row is locked and there: no row means a policy hid it.
            if (writer.write(key, won, false) != 1) deny(t, "row-level security forbids updating this row");
        } else if (checked) {
            // Only the row register: an insert of the row as it already is.
            if (!rights.insert) deny(t, "the change set re-inserts a row (needs INSERT)");
            if (!writer.visible(key)) deny(t, "row-level security hides this row");
        }
    } else {
        if (exists) {
            // Postgres checks the DELETE itself; the row is locked and there.
            if (writer.remove(key) != 1) deny(t, "row-level security forbids deleting this row");
        } else if (checked && !(rights.del && rights.select_keys)) {
            deny(t, "the change set deletes a row (needs DELETE and SELECT on its key)");
        } else if (out.gen_raised && rights.rls && ctx.guarded()) {
            // A tombstone of a row this database does not hold: no policy can
            // judge it, and it would delete the key wherever it lives. Not kept.
            ++stats.rows;
            stats.received += out.applied + out.ignored;
            stats.rejected += out.applied;
            stats.ignored += out.ignored;
            return true;
        }
    }
    const uint64_t seq = s.next_seq();
    if (st.row.seq == UINT64_MAX) st.row.seq = seq;
    for (auto& c : st.cols)
        if (c.seq == UINT64_MAX) c.seq = seq;
    store_meta(t, key, st);
    count(stats, out);
    return true;
}

// One incoming row with its key as Postgres stores it.
struct KeyedRow {
    const RowChange* row;
    std::vector<Param> key;
    std::vector<Value> stored;  // the key read back from its column types: 1 and "1" are one row
};

// Counts a row refused whole by the receiver's rules (not an error).
void reject(ApplyCounts& stats, const IncomingRow& in) {
    const size_t n = (in.has_row ? 1 : 0) + in.cols.size();
    ++stats.rows;
    stats.received += n;
    stats.rejected += n;
}

void merge_table(const Plan& p, const Context& ctx, ApplyCounts& stats) {
    const TableInfo& t = *p.local;
    const Rights rights = rights_of(t);
    const bool guarded = ctx.guarded();
    // Nothing of a table the caller may not write, not even "ignored": that
    // answer would tell it what the table's metadata holds.
    if (guarded && !(rights.select_keys && (rights.insert || rights.update || rights.del)))
        deny(t, "the caller may not write it");
    UserWriter writer(t);
    std::vector<KeyedRow> rows;
    rows.reserve(p.in->rows.size());
    for (const RowChange& r : p.in->rows) {
        KeyedRow kr{&r, std::vector<Param>(r.key.size()), {}};
        for (size_t k = 0; k < r.key.size(); ++k) {
            bool isnull = false;
            kr.key[k].type = t.key_types[k].type;
            kr.key[k].value = value_to_datum(r.key[k], t.key_types[k], &isnull);
            kr.key[k].null = isnull;
            kr.stored.push_back(datum_to_value(kr.key[k].value, isnull, t.key_types[k]));
        }
        rows.push_back(std::move(kr));
    }
    // Locks in one order: by the key as stored, whatever its spelling on the wire.
    std::stable_sort(rows.begin(), rows.end(), [](const KeyedRow& a, const KeyedRow& b) { return key_less(a.stored, b.stored); });
    for (size_t i = 1; i < rows.size(); ++i)
        if (!key_less(rows[i - 1].stored, rows[i].stored))
            throw Error("table \"" + t.name + "\": the change set names one row twice (two spellings of one key)");

    for (const KeyedRow& kr : rows) {
        const RowChange& r = *kr.row;
        const std::vector<Param>& key = kr.key;
        IncomingRow in = incoming_row(r, p.col_map);
        // A living row row-level security hides from the caller: refused
        // whole, whatever the merge would do, so the answer says nothing of it.
        if (guarded && rights.rls && !writer.visible(key) && writer.exists(key)) {
            reject(stats, in);
            continue;
        }
        // Echoes and stale registers change nothing: known without a lock
        // (a row's state only grows, so what loses now loses later too).
        bool unseen = false;
        {
            RowState pre = load_meta(t, key, false);
            unseen = pre.gen == 0;
            MergeOutcome probe = merge_row(pre, in, UINT64_MAX);
            if (!probe.changed()) {
                count(stats, probe);
                continue;
            }
            // A caller brings its own writes (its node's, its principal's
            // other devices') and echoes of what this database holds, which
            // never win. Another node's register that would win is not its
            // to bring: refused, the rest applies.
            if (guarded) {
                if (probe.row_won && !ctx.own.has(in.row)) {
                    reject(stats, in);
                    continue;
                }
                size_t dropped = 0;
                std::vector<std::pair<size_t, Stamp>> kept;
                std::vector<bool> won(in.cols.size(), false);
                for (size_t k : probe.won_cols) won[k] = true;
                for (size_t k = 0; k < in.cols.size(); ++k) {
                    if (won[k] && !ctx.own.has(in.cols[k].second)) ++dropped;
                    else kept.push_back(in.cols[k]);
                }
                if (dropped) {
                    stats.received += dropped;
                    stats.rejected += dropped;
                    in.cols = std::move(kept);
                    if (!in.has_row && in.cols.empty()) {
                        ++stats.rows;
                        continue;
                    }
                }
            }
        }
        std::map<size_t, Param> values;
        for (size_t k = 0; k < r.cols.size(); ++k) {
            const size_t idx = p.col_map[r.cols[k].col];
            Param prm;
            bool isnull = false;
            prm.type = t.col_types[idx].type;
            prm.value = value_to_datum(r.cols[k].value, t.col_types[idx], &isnull);
            prm.null = isnull;
            values[idx] = prm;
        }
        for (int attempt = 0;; ++attempt) {
            if (attempt == 5) throw Error("table \"" + t.name + "\": a row kept changing under lww_apply; giving up");
            const RowState fresh(t.cols.size());
            if (merge_one(p, rights, ctx, writer, in, key, values, stats, unseen && attempt == 0 ? &fresh : nullptr))
                break;
        }
    }
}

}  // namespace

ApplyCounts apply_changeset(const ChangeSet& cs, Trust trust) {
    State& s = State::get();
    const NodeId self = s.self();
    if (cs.origin == self)
        throw Error("the change set comes from this database's own node " + self.str() +
                    "; a node never applies its own changes");
    // The plans point at table descriptions held here, not into the cache: a
    // user trigger may roll back a savepoint or track a table, which rebuilds it.
    std::vector<TablePtr> held;
    std::vector<Plan> plans = plan_tables<TableInfo>(cs, [&](const std::string& name) {
        TablePtr t = s.find(name);
        if (t) held.push_back(t);
        return t.get();
    });
    std::sort(plans.begin(), plans.end(), [](const Plan& a, const Plan& b) { return a.local->name < b.local->name; });
    check_drift(cs, s.clock(), wall_clock_ms(), trust);

    Context ctx{trust, {}, {}};
    if (trust == Trust::caller) {
        ctx.caller = current_principal();
        // Applying a node's changes is acting as that node, unless the caller
        // relays for other servers.
        if (!ctx.caller.relay) {
            bind_node(cs.origin, ctx.caller);
            ctx.own = OwnStamps(cs, ctx.caller);
        }
    }

    CanonicalSettings canonical;
    ApplyCounts stats;
    ++s.applying;
    try {
        // Node ids are recorded when a register of theirs is stored
        // (store_meta), never for registers that lose or are refused.
        for (const auto& p : plans) merge_table(p, ctx, stats);
        observe_stamps(cs, s.clock());
        s.persist_clock();
    } catch (...) {
        --s.applying;
        throw;
    }
    --s.applying;
    return stats;
}

}  // namespace lww::pg
