#include "apply.h"
SQLITE_EXTENSION_INIT3

#include <map>

#include "../common/batch.h"
#include "evolve.h"

namespace lww::sq {

namespace {

using Plan = TablePlan<TableInfo>;

std::string describe_key(const std::vector<Value>& key) {
    std::string s = "(";
    for (size_t i = 0; i < key.size(); ++i) {
        const Value& v = key[i];
        if (i) s += ", ";
        switch (v.kind) {
            case Value::Kind::Null: s += "NULL"; break;
            case Value::Kind::Int: s += std::to_string(v.i); break;
            case Value::Kind::Real: s += std::to_string(v.d); break;
            case Value::Kind::Text: s += "'" + v.s.substr(0, 40) + "'"; break;
            case Value::Kind::Bytes: s += "<" + std::to_string(v.s.size()) + " bytes>"; break;
        }
    }
    return s + ")";
}

// Prepared statements for one table, user-table writes cached by column set.
class TableWriter {
public:
    TableWriter(Conn& c, const TableInfo& t) : c_(c), t_(t) {
        std::string where;
        for (size_t i = 0; i < t.key.size(); ++i)
            where += (i ? " AND " : "") + ("k" + std::to_string(i) + " = ?" + std::to_string(i + 1));
        get_meta_ = Stmt(c.db, "SELECT gen, hlc, node, mseq, cols FROM " + t.meta + " WHERE " + where);
        std::string cols, params;
        for (size_t i = 0; i < t.key.size(); ++i) {
            cols += "k" + std::to_string(i) + ", ";
            params += "?" + std::to_string(i + 1) + ", ";
        }
        const size_t n = t.key.size();
        put_meta_ = Stmt(c.db, "INSERT OR REPLACE INTO " + t.meta + "(" + cols + "gen, hlc, node, mseq, seq, cols) VALUES (" +
                                   params + "?" + std::to_string(n + 1) + ", ?" + std::to_string(n + 2) + ", ?" +
                                   std::to_string(n + 3) + ", ?" + std::to_string(n + 4) + ", ?" +
                                   std::to_string(n + 5) + ", ?" + std::to_string(n + 6) + ")");
        user_where_.clear();
        for (size_t i = 0; i < t.key.size(); ++i)
            user_where_ += (i ? " AND " : "") + (quote_ident(t.key[i]) + " = ?" + std::to_string(i + 1));
        del_user_ = Stmt(c.db, "DELETE FROM " + quote_ident(t.name) + " WHERE " + user_where_);
    }

    // The row's metadata; a fresh RowState for a key never seen.
    RowState load(const std::vector<Value>& key) {
        get_meta_.reset();
        bind_key(get_meta_, key);
        RowState st = get_meta_.step() ? decode_row(stored_row(get_meta_), t_.cols.size(), c_.nodes())
                                       : RowState(t_.cols.size());
        get_meta_.reset();
        return st;
    }

    void store(const std::vector<Value>& key, const RowState& st, std::vector<NodeId>& new_nodes) {
        StoredRow sr = encode_row(st, c_.nodes(), &new_nodes);
        const int n = static_cast<int>(key.size());
        put_meta_.reset();
        bind_key(put_meta_, key);
        put_meta_.bind_int(n + 1, static_cast<int64_t>(sr.gen));
        put_meta_.bind_int(n + 2, static_cast<int64_t>(sr.row_hlc));
        put_meta_.bind_int(n + 3, sr.row_node);
        put_meta_.bind_int(n + 4, static_cast<int64_t>(sr.row_seq));
        put_meta_.bind_int(n + 5, static_cast<int64_t>(st.max_seq()));
        if (sr.cols.empty()) put_meta_.bind_null(n + 6);
        else put_meta_.bind_blob(n + 6, sr.cols);
        put_meta_.step();
    }

    void delete_row(const std::vector<Value>& key) {
        del_user_.reset();
        bind_key(del_user_, key);
        del_user_.step();
    }

    // Writes `cols` (local register index -> value) into the user row.
    void write_row(const std::vector<Value>& key, const std::map<size_t, const Value*>& cols, bool insert) {
        // Statement cache key: the operation and one byte per written column.
        sig_.assign(t_.cols.size() + 1, '0');
        sig_[0] = insert ? 'i' : 'u';
        for (const auto& kv : cols) sig_[kv.first + 1] = '1';
        const std::string& sig = sig_;
        auto it = writes_.find(sig);
        if (it == writes_.end()) it = writes_.emplace(sig, prepare_write(cols, insert)).first;
        Stmt& st = it->second;
        st.reset();
        bind_key(st, key);
        int i = static_cast<int>(key.size());
        for (const auto& kv : cols) st.bind(++i, *kv.second);
        st.step();
    }

private:
    void bind_key(Stmt& st, const std::vector<Value>& key) {
        for (size_t i = 0; i < key.size(); ++i) st.bind(static_cast<int>(i + 1), key[i]);
    }

    Stmt prepare_write(const std::map<size_t, const Value*>& cols, bool insert) {
        const size_t n = t_.key.size();
        std::string sql;
        if (insert) {
            std::string names, params;
            for (size_t i = 0; i < n; ++i) {
                names += (i ? ", " : "") + quote_ident(t_.key[i]);
                params += (i ? ", ?" : "?") + std::to_string(i + 1);
            }
            size_t p = n;
            for (const auto& kv : cols) {
                names += ", " + quote_ident(t_.cols[kv.first]);
                params += ", ?" + std::to_string(++p);
            }
            sql = "INSERT INTO " + quote_ident(t_.name) + "(" + names + ") VALUES (" + params + ")";
        } else {
            std::string sets;
            size_t p = n;
            for (const auto& kv : cols) {
                if (p > n) sets += ", ";
                sets += quote_ident(t_.cols[kv.first]) + " = ?" + std::to_string(++p);
            }
            sql = "UPDATE " + quote_ident(t_.name) + " SET " + sets + " WHERE " + user_where_;
        }
        return Stmt(c_.db, sql);
    }

    Conn& c_;
    const TableInfo& t_;
    Stmt get_meta_, put_meta_, del_user_;
    std::string user_where_;
    std::map<std::string, Stmt> writes_;
    std::string sig_;
};

void merge_table(Conn& c, const Plan& p, ApplyStats& stats, std::vector<NodeId>& new_nodes) {
    TableWriter tw(c, *p.local);
    std::map<size_t, const Value*> values;
    for (const auto& r : p.in->rows) {
        RowState st = tw.load(r.key);
        const IncomingRow in = incoming_row(r, p.col_map);

        const uint64_t seq = c.last_seq() + 1;
        MergeOutcome out = merge_row(st, in, seq);
        ++stats.rows;
        stats.received += out.applied + out.ignored;
        stats.applied += out.applied;
        stats.ignored += out.ignored;
        if (!out.changed()) continue;
        c.next_seq();

        values.clear();
        for (size_t k : out.won_cols) values[in.cols[k].first] = &r.cols[k].value;
        try {
            if (out.was_alive && !out.alive) tw.delete_row(r.key);
            else if (!out.was_alive && out.alive) tw.write_row(r.key, values, true);
            else if (out.alive && !values.empty()) tw.write_row(r.key, values, false);
        } catch (const Error& e) {
            throw Error("table \"" + p.local->name + "\" row " + describe_key(r.key) + ": " + e.what());
        }
        tw.store(r.key, st, new_nodes);
    }
}

}  // namespace

ApplyStats apply_changeset(Conn& c, const ChangeSet& cs, Trust trust) {
    c.ensure_ready();
    if (cs.origin == c.self())
        throw Error("the change set comes from this database's own node " + c.self().str() +
                    "; a node never applies its own changes");
    std::vector<TablePtr> held;  // the plans point at these, not into the connection's cache
    ChangeSet pending;  // tables and columns not here yet: held (evolve.cpp)
    std::vector<Plan> plans = plan_tables<TableInfo>(cs, [&](const std::string& name) {
        TablePtr t = c.find_table(name);
        if (t) held.push_back(t);
        return t.get();
    }, &pending);
    // The setting as committed: a rolled-back lww_config must not linger.
    c.clock.set_max_drift_ms(c.setting("max_drift_ms", kDefaultMaxDriftMs));
    check_drift(cs, c.clock, wall_clock_ms(), trust);

    ApplyStats stats;
    exec(c.db, "SAVEPOINT lww_apply");
    ++c.applying;
    try {
        c.lock_for_write();
        // Tables arrive in any order: foreign keys are checked at commit.
        exec(c.db, "PRAGMA defer_foreign_keys = ON");
        std::vector<NodeId> new_nodes;
        for (const auto& p : plans) merge_table(c, p, stats, new_nodes);
        c.persist_nodes(new_nodes);
        stats.pending += hold_pending(c, pending);
        observe_stamps(cs, c.clock);
        c.persist_clock();
        --c.applying;
        exec(c.db, "RELEASE lww_apply");
    } catch (...) {
        --c.applying;
        sqlite3_exec(c.db, "ROLLBACK TO lww_apply; RELEASE lww_apply", nullptr, nullptr, nullptr);
        c.reload();  // interned nodes and sequences of the failed batch are gone
        throw;
    }
    return stats;
}

}  // namespace lww::sq
