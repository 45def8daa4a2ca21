#include "apply.h"
#include "capture_log.h"
SQLITE_EXTENSION_INIT3

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <memory>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "../common/apply.h"
#include "../common/apply_order.h"
#include "../common/batch.h"
#include "evolve.h"
#include "../common/json.h"

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

// An order close to SQLite's for keys (storage class, then value), so a
// table's rows are merged in its B-trees' order: each page is read and
// written once however the sender ordered its rows (a pull comes in change
// order). Collations other than BINARY are not followed: only locality
// depends on it. A strict weak order for any input (NaN included).
bool key_less(const std::vector<Value>& a, const std::vector<Value>& b) {
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        const Value& x = a[i];
        const Value& y = b[i];
        if (x.kind != y.kind) return x.kind < y.kind;
        switch (x.kind) {
            case Value::Kind::Null: continue;
            case Value::Kind::Int:
                if (x.i != y.i) return x.i < y.i;
                continue;
            case Value::Kind::Real: {
                const bool xn = std::isnan(x.d), yn = std::isnan(y.d);
                if (xn != yn) return yn;
                if (!xn && x.d != y.d) return x.d < y.d;
                continue;
            }
            case Value::Kind::Text:
            case Value::Kind::Bytes: {
                const int c = x.s.compare(y.s);
                if (c) return c < 0;
                continue;
            }
        }
    }
    return a.size() < b.size();
}

// The rows of one table of a set, in key order (the set's own order when
// it already is: a snapshot comes in key order).
void in_key_order(const std::vector<RowChange>& rows, std::vector<const RowChange*>& out) {
    out.clear();
    out.reserve(rows.size());
    for (const RowChange& r : rows) out.push_back(&r);
    auto less = [](const RowChange* a, const RowChange* b) { return key_less(a->key, b->key); };
    if (!std::is_sorted(out.begin(), out.end(), less)) std::stable_sort(out.begin(), out.end(), less);
}

struct Item;

// One table's storage (common/apply.h): prepared statements, user-table
// writes cached by column set.
class TableWriter : public TableStore {
public:
    TableWriter(Conn& c, const TableInfo& t) : c_(c), t_(t) {
        std::string where;
        for (size_t i = 0; i < t.key.size(); ++i)
            where += (i ? " AND " : "") + ("k" + std::to_string(i) + " = ?" + std::to_string(i + 1));
        get_meta_ = c.prepare("SELECT gen, hlc, node, row_seq, cols FROM " + t.meta + " WHERE " + where);
        std::string cols, params;
        for (size_t i = 0; i < t.key.size(); ++i) {
            cols += "k" + std::to_string(i) + ", ";
            params += "?" + std::to_string(i + 1) + ", ";
        }
        const size_t n = t.key.size();
        put_meta_ = c.prepare(
            "INSERT OR REPLACE INTO " + t.meta + "(" + cols + "gen, hlc, node, row_seq, max_seq, cols) VALUES (" +
            params + "?" + std::to_string(n + 1) + ", ?" + std::to_string(n + 2) + ", ?" + std::to_string(n + 3) +
            ", ?" + std::to_string(n + 4) + ", ?" + std::to_string(n + 5) + ", ?" + std::to_string(n + 6) + ")");
        user_where_.clear();
        for (size_t i = 0; i < t.key.size(); ++i)
            user_where_ += (i ? " AND " : "") + (quote_ident(t.key[i]) + " = ?" + std::to_string(i + 1));
        del_user_ = c.prepare("DELETE FROM " + quote_ident(t.name) + " WHERE " + user_where_);
        if (c.has_log()) log_probe_ = c.prepare("SELECT 1 FROM lww_log LIMIT 1");
        // Keys known absent: everything while the metadata is empty, and
        // integer first key columns above its greatest (a snapshot comes
        // in key order, so each of its batches starts past the last).
        StmtPtr top = c.prepare("SELECT max(k0) FROM " + t.meta);
        if (top->step()) {
            absent_.known = top->is_null(0) || sqlite3_column_type(top->raw(), 0) == SQLITE_INTEGER;
            absent_.all = top->is_null(0);
            absent_.above = absent_.all ? 0 : top->int64(0);
            absent_.writes = c.local_writes;
        }
        top->reset();
    }

    // The set is merged a second time (a refused row made the run start
    // over), or parked rows are: a key may have been stored already.
    void forget_absent() { absent_.known = false; }

    // Merges `items` (rows of this table, distinct keys) through the core's
    // batch merge. Throws SqlError when the database refuses a write.
    void merge(const std::vector<Item*>& items, std::vector<NodeId>& new_nodes, const Receiver& who);
    void merge_one(Item& it, std::vector<NodeId>& new_nodes, const Receiver& who) {
        one_.assign(1, &it);
        merge(one_, new_nodes, who);
    }

    // The row's metadata; a fresh RowState for a key never seen.
    RowState load(const std::vector<Value>& key) {
        if (known_absent(key)) return RowState(t_.cols.size());
        get_meta_->reset();
        bind_key(*get_meta_, key);
        RowState st = get_meta_->step() ? decode_row(stored_row(*get_meta_), t_.cols.size(), c_.nodes())
                                        : RowState(t_.cols.size());
        get_meta_->reset();
        return st;
    }

    void store(const std::vector<Value>& key, const RowState& st, std::vector<NodeId>& new_nodes) {
        StoredRow sr = encode_row(st, c_.nodes(), &new_nodes);
        const int n = static_cast<int>(key.size());
        put_meta_->reset();
        bind_key(*put_meta_, key);
        put_meta_->bind_int(n + 1, static_cast<int64_t>(sr.gen));
        put_meta_->bind_int(n + 2, static_cast<int64_t>(sr.row_hlc));
        put_meta_->bind_int(n + 3, sr.row_node);
        put_meta_->bind_int(n + 4, static_cast<int64_t>(sr.row_seq));
        put_meta_->bind_int(n + 5, static_cast<int64_t>(st.max_seq()));
        if (sr.cols.empty()) put_meta_->bind_null(n + 6);
        else put_meta_->bind_blob(n + 6, sr.cols);
        put_meta_->step();
    }

    void delete_row(const std::vector<Value>& key) {
        del_user_->reset();
        bind_key(*del_user_, key);
        del_user_->step();
    }

    // Writes `cols` (local register index -> value) into the user row.
    void write_row(const std::vector<Value>& key, const WrittenCols& cols, bool insert) {
        // Statement cache key: the operation and one byte per written column.
        sig_.assign(t_.cols.size() + 1, '0');
        sig_[0] = insert ? 'i' : 'u';
        for (const auto& kv : cols) sig_[kv.first + 1] = '1';
        const std::string& sig = sig_;
        auto it = writes_.find(sig);
        if (it == writes_.end()) it = writes_.emplace(sig, prepare_write(cols, insert)).first;
        Stmt& st = *it->second;
        st.reset();
        bind_key(st, key);
        int i = static_cast<int>(key.size());
        for (const auto& kv : cols) st.bind(++i, *kv.second);
        st.step();
    }

private:
    // TableStore: metadata first, so an app trigger that writes a merged row
    // again records its write on top of the merged registers.
    void load(std::vector<MergeRow>& rows) override;
    bool admit(MergeRow&) override { return true; }
    void store(const std::vector<MergeRow*>& rows) override;
    void write_user(const std::vector<MergeRow*>& rows) override;
    uint64_t next_seq() override { return c_.next_seq(); }
    bool store_first() const override { return true; }
    void record_conflicts(const std::vector<MergeRow*>& rows) override;
    uint64_t gen_floor() override { return c_.gen_floor(t_.name); }
    bool holds_parked(const MergeRow& r) override;

    void bind_key(Stmt& st, const std::vector<Value>& key) {
        for (size_t i = 0; i < key.size(); ++i) st.bind(static_cast<int>(i + 1), key[i]);
    }

    // True only while the merge's own stores are the sole metadata writes
    // since the probe (no local write: an app trigger, a foreign-key action)
    // and each key of the set is merged once (the first run).
    bool known_absent(const std::vector<Value>& key) {
        if (!absent_.known) return false;
        if (c_.local_writes != absent_.writes) {
            absent_.known = false;
            return false;
        }
        return absent_.all || (!key.empty() && key[0].kind == Value::Kind::Int && key[0].i > absent_.above);
    }

    StmtPtr prepare_write(const WrittenCols& cols, bool insert) {
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
        return c_.prepare(sql);
    }

    Conn& c_;
    const TableInfo& t_;
    StmtPtr get_meta_, put_meta_, del_user_, log_probe_;  // Conn::prepare: reused across batches
    Stmt get_user_;
    uint64_t log_checked_ = ~uint64_t(0);  // c_.local_writes when lww_log was last probed
    struct {
        bool known = false;
        bool all = false;     // the metadata was empty
        int64_t above = 0;    // else: its greatest first key column, an integer
        uint64_t writes = 0;  // c_.local_writes at the probe
    } absent_;
    std::string user_where_;
    std::map<std::string, StmtPtr> writes_;
    std::string sig_;
    // Of the batch being merged.
    const std::vector<Item*>* items_ = nullptr;
    std::vector<NodeId>* new_nodes_ = nullptr;
    WrittenCols values_;
    // Reused from row to row (SQLite merges a batch of one row at a time).
    std::vector<IncomingRow> in_;
    std::vector<MergeRow> rows_;
    std::vector<Item*> one_;
};

// ------------------------------------------------------------ one row

// A row the database refuses rather than a failure of the engine: a
// constraint (UNIQUE, CHECK, NOT NULL, FOREIGN KEY RESTRICT, an app trigger's
// RAISE), a value its column cannot hold, a value over its limits.
bool refused_row(int code) {
    const int primary = code & 0xff;
    return primary == SQLITE_CONSTRAINT || primary == SQLITE_MISMATCH || primary == SQLITE_TOOBIG;
}

const char* kForeignKeyFailed = "FOREIGN KEY constraint failed";

// One row to merge: of the incoming set, or of lww_rejected (a retry).
struct Item {
    TableWriter* tw = nullptr;
    const TableInfo* t = nullptr;
    const RowChange* r = nullptr;
    const std::vector<size_t>* col_map = nullptr;
    const NodeId* origin = nullptr;
    bool retry = false;      // a row of lww_rejected
    std::string stored_key;  // retries: its lww_rejected.key
    size_t table_rank = 0;   // position of its table in parents-first order
    bool parked = false;     // refused (so far)
    std::string reason;
    char wrote = 0;               // user-row write of the last attempt: 'i', 'u', 'd' or 0
    ApplyCounts counts;           // of the last attempt
    bool registers_gone = false;  // retries: nothing left to write (landed or superseded)
    uint64_t seq = 0;             // of the last attempt: the sequence its merge took (0: none)
    bool relayed = false;         // ... and it brought a third node's register (MergeRow::relayed)
};

bool TableWriter::holds_parked(const MergeRow& r) {
    const Item& it = *(*items_)[r.item];
    if (it.retry) return true;
    Stmt parked(c_.db, "SELECT 1 FROM lww_rejected WHERE tbl = ?1 AND key = ?2");
    parked.bind_text(1, t_.name);
    parked.bind_text(2, key_json(it.r->key));
    return parked.step();
}

void TableWriter::merge(const std::vector<Item*>& items, std::vector<NodeId>& new_nodes, const Receiver& who) {
    in_.resize(items.size());
    rows_.resize(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
        Item& it = *items[i];
        it.wrote = 0;
        incoming_row(*it.r, *it.col_map, in_[i]);
        rows_[i].in = &in_[i];
        rows_[i].item = i;
        rows_[i].from = it.retry ? it.origin : nullptr;
    }
    items_ = &items;
    new_nodes_ = &new_nodes;
    merge_batch(*this, rows_, &who);
    for (size_t i = 0; i < items.size(); ++i) {
        items[i]->counts = rows_[i].counts;
        items[i]->seq = rows_[i].seq;
        items[i]->relayed = rows_[i].relayed;
    }
}

void TableWriter::load(std::vector<MergeRow>& rows) {
    // An app trigger fired by an earlier write of this merge may have
    // updated these rows: their metadata must say so before it is read.
    // Only this connection writes while it merges (it holds the write lock
    // and folded the log taking it), and only a local write appends.
    if (log_probe_ && c_.local_writes != log_checked_) {
        log_checked_ = c_.local_writes;
        log_probe_->reset();
        const bool pending = log_probe_->step();
        log_probe_->reset();
        if (pending) fold_log(c_);
    }
    for (MergeRow& r : rows) {
        r.st = load((*items_)[r.item]->r->key);
        r.there = r.st.alive();  // a tracked row exists exactly while its metadata says alive
    }
}

void TableWriter::store(const std::vector<MergeRow*>& rows) {
    for (const MergeRow* r : rows) store((*items_)[r->item]->r->key, r->st, *new_nodes_);
}

void TableWriter::write_user(const std::vector<MergeRow*>& rows) {
    for (const MergeRow* r : rows) {
        if (r->write == UserWrite::none) continue;
        Item& it = *(*items_)[r->item];
        values_.clear();
        for (size_t k : r->out.won_cols) values_.emplace_back(r->in->cols[k].first, &it.r->cols[k].value);
        std::sort(values_.begin(), values_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        const char op = r->write == UserWrite::remove ? 'd' : r->write == UserWrite::insert ? 'i' : 'u';
        MergeWrite& m = c_.merging;
        m = MergeWrite{true, op, &it.t->name, &it.r->key, &values_};
        try {
            if (op == 'd') delete_row(it.r->key);
            else write_row(it.r->key, values_, op == 'i');
        } catch (...) {
            m.active = false;
            throw;
        }
        m.active = false;
        // An app's BEFORE trigger may RAISE(IGNORE) the write: the row did not
        // land, so its registers must not count as merged.
        if (op != 'd' && sqlite3_changes(c_.db) == 0)
            throw SqlError(op == 'i' ? "the insert was ignored (a trigger's RAISE(IGNORE))"
                                     : "the update changed no row (a trigger's RAISE(IGNORE), or the row is missing)",
                           SQLITE_CONSTRAINT_TRIGGER);
        it.wrote = op;
    }
}

void TableWriter::record_conflicts(const std::vector<MergeRow*>& rows) {
    c_.ensure_conflict_log();
    if (!get_user_) {
        std::string cols;
        for (const auto& col : t_.cols) cols += (cols.empty() ? "" : ", ") + quote_ident(col);
        get_user_ = Stmt(c_.db, "SELECT " + (cols.empty() ? std::string("1") : cols) + " FROM " + quote_ident(t_.name) +
                                    " WHERE " + user_where_);
    }
    Stmt put(
        c_.db,
        "INSERT INTO lww_conflicts(at, tbl, key, col, kind, ours, our_hlc, our_node, theirs, their_hlc, their_node)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
    const int64_t now = static_cast<int64_t>(wall_clock_ms());
    for (const MergeRow* r : rows) {
        const Item& it = *(*items_)[r->item];
        // Our values: the user row as it is, before the batch writes it.
        get_user_.reset();
        bind_key(get_user_, it.r->key);
        std::vector<Value> ours;
        if (get_user_.step())
            for (size_t i = 0; i < t_.cols.size(); ++i) ours.push_back(get_user_.value(static_cast<int>(i)));
        get_user_.reset();
        const std::string key = key_json(it.r->key);
        for (const Conflict& k : r->conflicts) {
            put.reset();
            put.bind_int(1, now);
            put.bind_text(2, t_.name);
            put.bind_text(3, key);
            const bool row = k.reg == Conflict::kRow;
            if (row) put.bind_null(4);
            else put.bind_text(4, t_.cols[k.reg]);
            put.bind_text(5, k.kind == Conflict::Kind::lost ? "lost" : "overwrote");
            if (row) put.bind_text(6, k.ours_alive ? "present" : "deleted");
            else if (k.reg < ours.size()) put.bind(6, ours[k.reg]);
            else put.bind_null(6);
            put.bind_int(7, static_cast<int64_t>(k.ours.hlc));
            put.bind_text(8, k.ours.node.str());
            if (row) put.bind_text(9, k.theirs_alive ? "present" : "deleted");
            else put.bind(9, it.r->cols[k.in_col].value);
            put.bind_int(10, static_cast<int64_t>(k.theirs.hlc));
            put.bind_text(11, k.theirs.node.str());
            put.step();
        }
    }
    // Bounded: the oldest conflicts go first.
    Stmt cap(c_.db, "DELETE FROM lww_conflicts WHERE id <= (SELECT max(id) FROM lww_conflicts) - ?1");
    cap.bind_int(1, static_cast<int64_t>(c_.setting("conflict_log_rows", 10000)));
    cap.step();
}

// Merges one row (the core's batch merge, a batch of one: an app trigger
// that writes another row of the set must find its metadata stored first).
// False when nothing changed. Throws SqlError when the database refuses the write.
bool merge_item(Item& it, std::vector<NodeId>& new_nodes, const Receiver& who) {
    it.tw->merge_one(it, new_nodes, who);
    return it.counts.applied > 0 || it.wrote;
}

// ------------------------------------------------------------ foreign keys

bool same_name(const std::string& a, const std::string& b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

// Checks, for one written row, the foreign keys SQLite checks only at commit
// (deferred ones; lww_apply defers every foreign key while it merges, so
// tables and rows may come in any order, cycles included).
class FkChecker {
public:
    FkChecker(Conn& c, bool enforced) : c_(c), enforced_(enforced) {}

    // Does the row `it` wrote last leave a reference dangling? A living row
    // must find each parent it references; a deleted row must be referenced
    // by no child (through its primary key).
    bool dangling(const Item& it) {
        if (!enforced_ || !it.wrote) return false;
        const TableInfo& t = *it.t;
        for (const ForeignKey& fk : c_.foreign_keys()) {
            if (it.wrote != 'd' && same_name(fk.child, t.name)) {
                Stmt& st = stmt(child_sql(fk, t));
                bind_key(st, it.r->key);
                if (st.step()) return true;
            } else if (same_name(fk.parent, t.name)) {
                std::vector<int> pos;  // key position of each referenced column
                for (const auto& to : fk.to) {
                    auto k = std::find_if(t.key.begin(), t.key.end(),
                                          [&](const std::string& n) { return same_name(n, to); });
                    if (k == t.key.end()) break;
                    pos.push_back(static_cast<int>(k - t.key.begin()));
                }
                if (pos.size() != fk.to.size() || pos.empty()) {
                    // References other columns (UNIQUE ones), which an update
                    // or a delete may take from a child: any child left
                    // without its parent (a scan, for such keys only).
                    if (stmt(orphans_sql(fk)).step()) return true;
                    continue;
                }
                if (it.wrote != 'd') continue;
                std::string where;
                for (size_t i = 0; i < fk.from.size(); ++i)
                    where += (i ? " AND " : "") + quote_ident(fk.from[i]) + " = ?" + std::to_string(pos[i] + 1);
                Stmt& st = stmt("SELECT 1 FROM " + quote_ident(fk.child) + " WHERE " + where + " LIMIT 1");
                bind_key(st, it.r->key);
                if (st.step()) return true;
            }
        }
        return false;
    }

    // Any deferred violation pending in this transaction?
    bool pending() const {
        if (!enforced_) return false;
        int cur = 0, hi = 0;
        sqlite3_db_status(c_.db, SQLITE_DBSTATUS_DEFERRED_FKS, &cur, &hi, 0);
        return cur > 0;
    }

private:
    static std::string orphans_sql(const ForeignKey& fk) {
        std::string sql = "SELECT 1 FROM " + quote_ident(fk.child) + " AS c WHERE ";
        std::string match;
        for (size_t i = 0; i < fk.from.size() && i < fk.to.size(); ++i) {
            sql += "c." + quote_ident(fk.from[i]) + " IS NOT NULL AND ";
            match += (i ? " AND " : "") + ("p." + quote_ident(fk.to[i]) + " = c." + quote_ident(fk.from[i]));
        }
        return sql + "NOT EXISTS (SELECT 1 FROM " + quote_ident(fk.parent) + " AS p WHERE " + match + ") LIMIT 1";
    }
    static std::string child_sql(const ForeignKey& fk, const TableInfo& t) {
        std::string sql = "SELECT 1 FROM " + quote_ident(t.name) + " AS c WHERE ";
        for (size_t i = 0; i < t.key.size(); ++i)
            sql += "c." + quote_ident(t.key[i]) + " = ?" + std::to_string(i + 1) + " AND ";
        std::string match;
        for (size_t i = 0; i < fk.from.size() && i < fk.to.size(); ++i) {
            sql += "c." + quote_ident(fk.from[i]) + " IS NOT NULL AND ";
            match += (i ? " AND " : "") + ("p." + quote_ident(fk.to[i]) + " = c." + quote_ident(fk.from[i]));
        }
        return sql + "NOT EXISTS (SELECT 1 FROM " + quote_ident(fk.parent) + " AS p WHERE " + match + ")";
    }
    Stmt& stmt(const std::string& sql) {
        auto it = stmts_.find(sql);
        if (it == stmts_.end()) it = stmts_.emplace(sql, Stmt(c_.db, sql)).first;
        it->second.reset();
        return it->second;
    }
    static void bind_key(Stmt& st, const std::vector<Value>& key) {
        for (size_t i = 0; i < key.size(); ++i) st.bind(static_cast<int>(i + 1), key[i]);
    }

    Conn& c_;
    bool enforced_;
    std::map<std::string, Stmt> stmts_;
};

// ------------------------------------------------------------ lww_rejected

// A row in this database's register order (the form lww_rejected keeps).
RowChange to_local(const RowChange& r, const std::vector<size_t>& col_map) {
    RowChange out = r;
    for (auto& col : out.cols) col.col = static_cast<uint32_t>(col_map[col.col]);
    return out;
}

// Two parked versions of one row (local register order) joined by the merge
// rule: what a database holding both would hold.
RowChange join_parked(const RowChange& held, const RowChange& in, size_t ncols) {
    RowState st(ncols);
    std::vector<const Value*> vals(ncols, nullptr);
    st.gen = held.gen;
    if (held.has_row) st.row = Register{true, held.row, 0};
    for (const auto& col : held.cols)
        if (col.col < ncols) {
            st.cols[col.col] = Register{true, col.stamp, 0};
            vals[col.col] = &col.value;
        }
    std::vector<size_t> identity(ncols);
    for (size_t i = 0; i < ncols; ++i) identity[i] = i;
    const IncomingRow inc = incoming_row(in, identity);
    MergeOutcome out = merge_row(st, inc, 1);
    if (out.gen_raised) std::fill(vals.begin(), vals.end(), nullptr);
    for (size_t k : out.won_cols) vals[in.cols[k].col] = &in.cols[k].value;
    RowChange r;
    r.key = in.key;
    r.gen = st.gen;
    r.has_row = st.row.present;
    r.row = st.row.stamp;
    for (size_t i = 0; i < ncols; ++i)
        if (st.cols[i].present && vals[i])
            r.cols.push_back(ColChange{static_cast<uint32_t>(i), *vals[i], st.cols[i].stamp});
    if (!r.has_row && r.cols.empty()) return held;
    return r;
}

std::string one_row_set(const NodeId& origin, const TableInfo& t, const RowChange& local_row) {
    ChangeSetWriter w(origin, 0, 0);
    w.begin_table(t.name, t.key, t.cols);
    w.row(local_row);
    w.end_table();
    return w.finish(0, true);
}

// The key of a one-row set as JSON text (lww_rejected.key).
std::string key_json(const std::string& set) {
    rapidjson::Document d;
    std::string error;
    if (!parse_json(d, set, error)) throw Error("lww_rejected: " + error, ErrorKind::internal);
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    d["tables"][0]["rows"][0]["key"].Accept(w);
    return std::string(buf.GetString(), buf.GetSize());
}

// A row of lww_rejected, decoded for a retry.
struct Retry {
    std::string tbl, key;
    ChangeSet cs;
    TablePtr table;
    std::vector<size_t> col_map;
};

std::vector<std::unique_ptr<Retry>> load_retries(Conn& c) {
    std::vector<std::unique_ptr<Retry>> out;
    Stmt st(c.db, "SELECT tbl, key, changeset FROM lww_rejected ORDER BY first_seen, tbl, key LIMIT ?1");
    st.bind_int(1, kMaxRejectedRows);
    while (st.step()) {
        auto r = std::make_unique<Retry>();
        r->tbl = st.text(0);
        r->key = st.text(1);
        try {
            r->cs = decode_changeset(st.text(2));
            r->table = c.find_table(r->tbl);
            // A table untracked since, or changed beyond recognition: kept as it is.
            if (!r->table || r->cs.tables.size() != 1 || r->cs.tables[0].rows.size() != 1 ||
                r->cs.tables[0].name != r->tbl)
                continue;
            r->col_map = map_columns(r->cs.tables[0], r->table->key, r->table->cols);
        } catch (const Error&) {
            continue;
        }
        out.push_back(std::move(r));
    }
    return out;
}

// lww_applying() is true from here to the end of the merge, whatever ends it.
struct Applying {
    Conn& c;
    bool on = true;
    explicit Applying(Conn& c) : c(c) { ++c.applying; }
    void end() {
        if (on) --c.applying;
        on = false;
    }
    ~Applying() { end(); }
};

void finish_apply(Conn& c, const std::vector<NodeId>& new_nodes, int64_t deferred_before, Applying& applying) {
    c.persist_nodes(new_nodes);
    c.persist_clock();
    exec(c.db, deferred_before ? "PRAGMA defer_foreign_keys = ON" : "PRAGMA defer_foreign_keys = OFF");
    applying.end();
    exec(c.db, "RELEASE lww_apply");
}

}  // namespace

ApplyCounts apply_changeset(Conn& c, const ChangeSet& cs, Trust trust, uint64_t seen, RelayedRows* relayed,
                            bool restamp, bool adopt) {
    c.ensure_ready();
    refuse_own_changes(cs.origin, c.self());
    Receiver who{c.self(), seen, c.setting("conflict_log", 0) != 0, relayed ? &cs.origin : nullptr};
    if (restamp) who.restamp = [&c] { return c.local_stamp(); };
    if (adopt) who.adopt = [&c] { return c.local_stamp(); };
    // The sequences of the rows that landed bringing a third node's
    // registers, the set's and retried ones (a retry is its origin's): the
    // last attempt of each row is the one committed.
    auto collect_relayed = [&](const std::vector<Item>& items) {
        if (!relayed) return;
        const NodeId self = c.self();
        for (const Item& it : items)
            if (!it.parked && it.relayed && it.seq && *it.origin != self)
                relayed->push_back(RelayedRow{*it.origin, it.seq});
    };
    std::vector<TablePtr> held;  // the plans point at these, not into the connection's cache
    ChangeSet pending;           // tables and columns not here yet: held (evolve.cpp)
    std::vector<Plan> plans = plan_tables<TableInfo>(
        cs,
        [&](const std::string& name) {
            TablePtr t = c.find_table(name);
            if (t) held.push_back(t);
            return t.get();
        },
        &pending);
    // The setting as committed: a rolled-back lww_config must not linger.
    c.clock.set_max_drift_ms(c.setting("max_drift_ms", kDefaultMaxDriftMs));
    check_drift(cs, c.clock, wall_clock_ms(), trust);

    ApplyCounts stats;
    exec(c.db, "SAVEPOINT lww_apply");
    Applying applying(c);
    int64_t deferred_before = 0;
    try {
        {
            Stmt q(c.db, "PRAGMA defer_foreign_keys");
            deferred_before = q.step() ? q.int64(0) : 0;
        }
        c.lock_for_write();
        // Rows arrive in any order, cycles included: foreign keys are checked
        // at the end of the batch (FkChecker), and rows that leave one
        // dangling are parked.
        exec(c.db, "PRAGMA defer_foreign_keys = ON");
        bool fk_enforced = false;
        {
            Stmt q(c.db, "PRAGMA foreign_keys");
            fk_enforced = q.step() && q.int64(0) != 0;
        }
        // A write an app trigger makes while this set merges is stamped after
        // every stamp of the set, so it wins where it meant to.
        observe_stamps(cs, c.clock);
        std::vector<std::unique_ptr<Retry>> retries = load_retries(c);
        for (const auto& r : retries) {
            held.push_back(r->table);
            observe_stamps(r->cs, c.clock);
        }

        // Tables in foreign-key order: parents first.
        std::vector<const TableInfo*> tables;
        auto table_index = [&](const TableInfo* t) {
            for (size_t i = 0; i < tables.size(); ++i)
                if (tables[i] == t || tables[i]->name == t->name) return i;
            tables.push_back(t);
            return tables.size() - 1;
        };
        for (const auto& p : plans) table_index(p.local);
        for (const auto& r : retries) table_index(r->table.get());
        std::vector<std::vector<size_t>> parents(tables.size());
        if (fk_enforced)
            for (const ForeignKey& fk : c.foreign_keys())
                for (size_t i = 0; i < tables.size(); ++i)
                    if (same_name(fk.child, tables[i]->name))
                        for (size_t j = 0; j < tables.size(); ++j)
                            if (same_name(fk.parent, tables[j]->name)) parents[i].push_back(j);
        std::vector<size_t> rank(tables.size());
        {
            const std::vector<size_t> order = parents_first(parents);
            for (size_t k = 0; k < order.size(); ++k) rank[order[k]] = k;
        }
        std::map<std::string, std::unique_ptr<TableWriter>> writers;
        auto writer = [&](const TableInfo* t) {
            auto& w = writers[t->name];
            if (!w) w = std::make_unique<TableWriter>(c, *t);
            return w.get();
        };

        std::vector<Item> items;
        size_t total = 0;
        for (const auto& p : plans) total += p.in->rows.size();
        items.reserve(total + retries.size());
        std::vector<const RowChange*> by_key;
        for (const auto& p : plans) {
            const size_t ti = table_index(p.local);
            in_key_order(p.in->rows, by_key);
            for (const RowChange* r : by_key) {
                Item it;
                it.tw = writer(p.local);
                it.t = p.local;
                it.r = r;
                it.col_map = &p.col_map;
                it.origin = &cs.origin;
                it.table_rank = rank[ti];
                items.push_back(std::move(it));
            }
        }
        const size_t n_incoming = items.size();
        for (const auto& r : retries) {
            Item it;
            it.tw = writer(r->table.get());
            it.t = r->table.get();
            it.r = &r->cs.tables[0].rows[0];
            it.col_map = &r->col_map;
            it.origin = &r->cs.origin;
            it.retry = true;
            it.stored_key = r->key;
            it.parked = true;  // until it lands
            it.table_rank = rank[table_index(r->table.get())];
            items.push_back(std::move(it));
        }
        // Living rows parents first, deleted rows children first; within a
        // table, key order.
        auto ordered = [&](size_t from, size_t to) {
            std::vector<Item*> v;
            for (size_t i = from; i < to; ++i) v.push_back(&items[i]);
            auto before = [](const Item* a, const Item* b) {
                const bool da = !(a->r->gen & 1), db = !(b->r->gen & 1);
                if (da != db) return !da;
                return da ? a->table_rank > b->table_rank : a->table_rank < b->table_rank;
            };
            if (!std::is_sorted(v.begin(), v.end(), before)) std::stable_sort(v.begin(), v.end(), before);
            return v;
        };

        std::vector<NodeId> new_nodes;
        FkChecker fks(c, fk_enforced);
        auto wrap = [](const Item& it, const std::exception& e) {
            return Error("table \"" + it.t->name + "\" row " + describe_key(it.r->key) + ": " + e.what());
        };

        // 1. The set, in one go. A refused row rolls the pass back and the
        // pass runs again with a savepoint per row, parking what is refused;
        // rows that leave a foreign key dangling at the end are parked and
        // the pass runs again without them.
        const std::vector<Item*> order = ordered(0, n_incoming);
        bool careful = false;
        // The fast run, the row-by-row run, and (should a cascade leave a
        // reference dangling that the row checks did not see) a few more.
        constexpr int kMaxRuns = 6;
        int runs = 0;
        // A run is undone by rolling back to lww_apply (which stays open): no
        // savepoint of its own, which would cost SQLite a sub-journal.
        for (;;) {
            bool refused = false;
            for (Item* it : order) {
                if (it->parked) continue;
                if (!careful) {
                    try {
                        merge_item(*it, new_nodes, who);
                    } catch (const SqlError& e) {
                        if (!refused_row(e.code)) throw wrap(*it, e);
                        refused = true;
                        break;
                    }
                    continue;
                }
                exec(c.db, "SAVEPOINT lww_row");
                try {
                    // Row by row, foreign keys are checked at once: a row
                    // whose parent is not there (yet) waits for step 2, and
                    // its own children follow it there in this same run.
                    if (merge_item(*it, new_nodes, who) && fks.dangling(*it)) {
                        exec(c.db, "ROLLBACK TO lww_row; RELEASE lww_row");
                        it->parked = true;
                        it->reason = kForeignKeyFailed;
                        it->wrote = 0;
                        continue;
                    }
                    exec(c.db, "RELEASE lww_row");
                } catch (const SqlError& e) {
                    if (!refused_row(e.code)) throw wrap(*it, e);
                    exec(c.db, "ROLLBACK TO lww_row; RELEASE lww_row");
                    it->parked = true;
                    it->reason = e.what();
                    it->wrote = 0;
                }
            }
            if (++runs > kMaxRuns)
                throw Error("foreign keys did not settle in " + std::to_string(kMaxRuns) + " runs",
                            ErrorKind::internal);
            bool again = refused;
            if (!refused && fks.pending())
                for (Item* it : order)
                    if (!it->parked && fks.dangling(*it)) {
                        it->parked = true;
                        it->reason = kForeignKeyFailed;
                        again = true;
                    }
            if (!again) break;
            exec(c.db, "ROLLBACK TO lww_apply");
            careful = true;
            for (auto& w : writers) w.second->forget_absent();
        }
        // Registers for tables and columns not here yet wait in lww_pending
        // (after the runs: a run that starts over rolls back to lww_apply).
        stats.pending += hold_pending(c, pending);

        // 2. Parked rows — of this set, and of lww_rejected — again, one by
        // one, until a round lands none (a parent that came later in the set,
        // a UNIQUE value another row freed, a self reference).
        for (auto& w : writers) w.second->forget_absent();
        std::vector<Item*> waiting;
        for (Item* it : ordered(0, items.size()))
            if (it->parked) waiting.push_back(it);
        // Bounded: a peer's long chain of rows in the worst order costs at
        // most kMaxRetryRounds rounds here; what is left waits, parked, for
        // the next apply.
        constexpr int kMaxRetryRounds = 16;
        int rounds = 0;
        for (bool progress = !waiting.empty(); progress && rounds < kMaxRetryRounds; ++rounds) {
            progress = false;
            // Every other round backwards: rows of one table that depend on
            // each other land in one round in either order.
            if (rounds % 2) std::reverse(waiting.begin(), waiting.end());
            for (Item* it : waiting) {
                if (!it->parked) continue;
                exec(c.db, "SAVEPOINT lww_row");
                try {
                    const bool changed = merge_item(*it, new_nodes, who);
                    if (changed && fks.dangling(*it)) {
                        exec(c.db, "ROLLBACK TO lww_row; RELEASE lww_row");
                        it->reason = kForeignKeyFailed;
                        continue;
                    }
                    exec(c.db, "RELEASE lww_row");
                    it->parked = false;
                    it->registers_gone = true;
                    progress = true;
                } catch (const SqlError& e) {
                    if (!refused_row(e.code)) throw wrap(*it, e);
                    exec(c.db, "ROLLBACK TO lww_row; RELEASE lww_row");
                    it->reason = e.what();
                }
            }
        }

        // 3. Stats, and lww_rejected: rows that landed (or that newer
        // registers made moot) leave it, rows still refused stay or join it.
        if (items.size() == n_incoming &&
            std::none_of(items.begin(), items.end(), [](const Item& i) { return i.parked; })) {
            for (const Item& it : items) stats.add(it.counts);
            collect_relayed(items);
            finish_apply(c, new_nodes, deferred_before, applying);
            return stats;
        }
        const int64_t now = static_cast<int64_t>(wall_clock_ms());
        Stmt drop(c.db, "DELETE FROM lww_rejected WHERE tbl = ?1 AND key = ?2");
        Stmt seen(c.db, "UPDATE lww_rejected SET reason = ?3, last_seen = ?4 WHERE tbl = ?1 AND key = ?2");
        Stmt park(c.db,
                  "INSERT INTO lww_rejected(tbl, key, reason, first_seen, last_seen, origin, changeset)"
                  " VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6) ON CONFLICT(tbl, key) DO UPDATE SET reason = excluded.reason,"
                  " last_seen = excluded.last_seen, origin = excluded.origin, changeset = excluded.changeset");
        std::map<std::pair<std::string, std::string>, Item*> still_parked;  // retries, by (tbl, key)
        for (size_t i = n_incoming; i < items.size(); ++i) {
            Item& it = items[i];
            Stmt& st = it.parked ? seen : drop;
            st.reset();
            st.bind_text(1, it.t->name);
            st.bind_text(2, it.stored_key);
            if (it.parked) {
                st.bind_text(3, it.reason);
                st.bind_int(4, now);
                still_parked[{it.t->name, it.stored_key}] = &it;
            } else {
                stats.add(it.counts);
            }
            st.step();
        }
        for (size_t i = 0; i < n_incoming; ++i) {
            Item& it = items[i];
            if (!it.parked) {
                stats.add(it.counts);
                continue;
            }
            count_rejected(stats, incoming_row(*it.r, *it.col_map));
            RowChange local = to_local(*it.r, *it.col_map);
            const std::string key = key_json(one_row_set(*it.origin, *it.t, local));
            auto old = still_parked.find({it.t->name, key});
            NodeId set_origin = *it.origin;
            if (old != still_parked.end()) {
                local = join_parked(to_local(*old->second->r, *old->second->col_map), local, it.t->cols.size());
                // Registers of two senders in one row: when it lands it counts
                // as relayed by neither (its set is this database's), or no
                // echo would skip one sender's registers for the other.
                if (*old->second->origin != *it.origin) set_origin = c.self();
            }
            park.reset();
            park.bind_text(1, it.t->name);
            park.bind_text(2, key);
            park.bind_text(3, it.reason);
            park.bind_int(4, now);
            park.bind_text(5, it.origin->str());
            park.bind_text(6, one_row_set(set_origin, *it.t, local));
            park.step();
        }
        // Bounded: past kMaxRejectedRows, the rows parked longest ago go.
        Stmt cap(c.db,
                 "DELETE FROM lww_rejected WHERE (tbl, key) IN (SELECT tbl, key FROM lww_rejected"
                 " ORDER BY first_seen DESC, last_seen DESC LIMIT -1 OFFSET ?1)");
        cap.bind_int(1, kMaxRejectedRows);
        cap.step();

        collect_relayed(items);
        finish_apply(c, new_nodes, deferred_before, applying);
    } catch (...) {
        applying.end();
        c.merging.active = false;
        sqlite3_exec(c.db, "ROLLBACK TO lww_apply; RELEASE lww_apply", nullptr, nullptr, nullptr);
        sqlite3_exec(c.db, deferred_before ? "PRAGMA defer_foreign_keys = ON" : "PRAGMA defer_foreign_keys = OFF",
                     nullptr, nullptr, nullptr);
        c.reload();  // interned nodes and sequences of the failed batch are gone
        throw;
    }
    return stats;
}

ApplyCounts retry_rejected(Conn& c, RelayedRows* relayed) {
    c.ensure_ready();
    {
        Stmt any(c.db, "SELECT 1 FROM lww_rejected LIMIT 1");
        if (!any.step()) return {};
    }
    return apply_changeset(c, ChangeSet{}, Trust::chosen_server, 0, relayed);  // no rows: only the retries
}

}  // namespace lww::sq
