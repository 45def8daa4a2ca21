// PostgreSQL adapter: lww_apply — validate everything, then merge with the
// caller's rights (GRANTs and row-level security apply to the user-table
// writes). The calling statement's transaction makes it all or nothing.
#include "changes.h"

#include "../../common/batch.h"

namespace lww::pg {

namespace {

using Plan = TablePlan<TableInfo>;

class UserWriter {
public:
    explicit UserWriter(const TableInfo& t) : t_(t) {
        for (size_t i = 0; i < t.key.size(); ++i)
            where_ += (i ? " AND " : "") + (quote_ident(t.key[i]) + " = $" + std::to_string(i + 1));
    }

    // False when no row was deleted although the metadata says it lives:
    // deleted concurrently, or hidden by row-level security.
    bool remove(const std::vector<Param>& key) {
        return run(prepare("DELETE FROM " + t_.qualified + " WHERE " + where_, key_types()), key, false) == 1;
    }

    // False when the row was not there to write: a concurrent transaction
    // inserted the key first (the insert waited for it) or deleted the row.
    // The caller then merges again against what that transaction committed.
    bool write(const std::vector<Param>& key, const std::map<size_t, Param>& cols, bool insert) {
        std::vector<Oid> types = key_types();
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
        return run(prepare(sql, types), args, false) == 1;
    }

private:
    std::vector<Oid> key_types() const {
        std::vector<Oid> o;
        for (const auto& k : t_.key_types) o.push_back(k.type);
        return o;
    }
    const TableInfo& t_;
    std::string where_;
};

}  // namespace

ApplyCounts apply_changeset(const ChangeSet& cs, Trust trust) {
    State& s = State::get();
    if (cs.origin == s.self())
        throw Error("the change set comes from this database's own node " + s.self().str() +
                    "; a node never applies its own changes");
    std::vector<Plan> plans = plan_tables<TableInfo>(cs, [&](const std::string& name) { return s.find(name); });
    check_drift(cs, s.clock(), wall_clock_ms(), trust);

    CanonicalSettings canonical;
    ApplyCounts stats;
    ++s.applying;
    try {
        for (const auto& t : cs.tables)
            for (const auto& r : t.rows) {
                if (r.has_row) s.ensure_node(r.row.node);
                for (const auto& c : r.cols) s.ensure_node(c.stamp.node);
            }
        for (const auto& p : plans) {
            UserWriter writer(*p.local);
            for (const auto& r : p.in->rows) {
                std::vector<Param> key(r.key.size());
                for (size_t i = 0; i < r.key.size(); ++i) {
                    bool isnull = false;
                    key[i].type = p.local->key_types[i].type;
                    key[i].value = value_to_datum(r.key[i], p.local->key_types[i], &isnull);
                    key[i].null = isnull;
                }
                const IncomingRow in = incoming_row(r, p.col_map);
                std::map<size_t, Param> values;
                for (size_t k = 0; k < r.cols.size(); ++k) {
                    const size_t idx = in.cols[k].first;
                    Param prm;
                    bool isnull = false;
                    prm.type = p.local->col_types[idx].type;
                    prm.value = value_to_datum(r.cols[k].value, p.local->col_types[idx], &isnull);
                    prm.null = isnull;
                    values[idx] = prm;
                }
                for (int attempt = 0;; ++attempt) {
                    if (attempt == 5)
                        throw Error("table \"" + p.local->name + "\": a row kept changing under lww_apply (or row-level "
                                    "security hides it); giving up");
                    RowState st = load_meta(*p.local, key);
                    // A sequence is taken only when the merge changes something.
                    MergeOutcome out = merge_row(st, in, UINT64_MAX);
                    if (out.changed()) {
                        std::map<size_t, Param> won;
                        for (size_t k : out.won_cols) won[in.cols[k].first] = values[in.cols[k].first];
                        bool written = true;
                        if (out.was_alive && !out.alive) written = writer.remove(key);
                        else if (!out.was_alive && out.alive) written = writer.write(key, won, true);
                        else if (out.alive && !won.empty()) written = writer.write(key, won, false);
                        if (!written) continue;  // merge again against the committed row
                        const uint64_t seq = s.next_seq();
                        if (st.row.seq == UINT64_MAX) st.row.seq = seq;
                        for (auto& c : st.cols)
                            if (c.seq == UINT64_MAX) c.seq = seq;
                        store_meta(*p.local, key, st);
                    }
                    ++stats.rows;
                    stats.received += out.applied + out.ignored;
                    stats.applied += out.applied;
                    stats.ignored += out.ignored;
                    break;
                }
            }
        }
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
