// SQLite adapter: lww_changes — the reads behind the core's feed (common/feed.h).
// One connection sees one snapshot: nothing commits while the feed reads.
#include "changes.h"
SQLITE_EXTENSION_INIT3

#include <algorithm>

#include "../common/feed.h"
#include "capture_log.h"

namespace lww::sq {

// The highest sequence committed (or written by this connection), read in
// the caller's snapshot: one statement, an index probe per table.
uint64_t committed_seq(Conn& c) {
    std::string sql = "SELECT CAST(value AS INTEGER) AS v FROM lww_state WHERE key = 'seq_floor'";
    for (const auto& t : c.tables()) sql += std::string(" UNION ALL SELECT max(") + t->max_seq + ") FROM " + t->meta;
    if (c.has_log()) sql += " UNION ALL SELECT max(seq) FROM lww_log";  // updates not folded yet
    Stmt st(c.db, "SELECT max(v) FROM (" + sql + ")");
    return st.step() && !st.is_null(0) ? static_cast<uint64_t>(st.int64(0)) : 0;
}

namespace {

// A table's rows in a sequence range, joined with their values: metadata,
// key and every tracked column in one statement.
class Scan : public FeedScan {
public:
    Scan(Conn& c, const TableInfo& t, uint64_t after, uint64_t upto)
        : c_(c), ncols_(t.cols.size()), nkey_(t.key.size()) {
        const std::string seq = std::string("m.") + t.max_seq;
        std::string sql = std::string("SELECT m.gen, m.hlc, m.node, m.") + t.row_seq + ", m.cols";
        for (size_t i = 0; i < t.key.size(); ++i) sql += ", m.k" + std::to_string(i);
        for (const auto& col : t.cols) sql += ", t." + quote_ident(col);
        sql += " FROM " + t.meta + " AS m LEFT JOIN " + quote_ident(t.name) + " AS t ON ";
        for (size_t i = 0; i < t.key.size(); ++i)
            sql += (i ? " AND " : "") + ("t." + quote_ident(t.key[i]) + " = m.k" + std::to_string(i));
        sql += " WHERE " + seq + " > ?1 AND " + seq + " <= ?2 ORDER BY " + seq;
        st_ = Stmt(c.db, sql);
        st_.bind_int(1, static_cast<int64_t>(after));
        st_.bind_int(2, static_cast<int64_t>(std::min<uint64_t>(upto, INT64_MAX)));
    }

    bool next(std::vector<FeedRow>& rows, size_t max) override {
        rows.clear();
        values_.clear();
        // A finished statement would start over at the next step.
        while (!done_ && rows.size() < max) {
            if (!st_.step()) {
                done_ = true;
                break;
            }
            FeedRow r;
            r.st = decode_row(stored_row(st_), ncols_, c_.nodes());
            r.at = rows.size();
            // The key and values now: the statement moves on. Columns the
            // row does not send cost a copy, not a statement.
            r.rc.key.reserve(nkey_);
            for (size_t i = 0; i < nkey_; ++i) r.rc.key.push_back(st_.value(kKeyAt + static_cast<int>(i)));
            for (size_t i = 0; i < ncols_; ++i) values_.push_back(st_.value(kKeyAt + static_cast<int>(nkey_ + i)));
            rows.push_back(std::move(r));
        }
        return !rows.empty();
    }

    void fill(const std::vector<FeedRow*>& rows) override {
        for (FeedRow* r : rows)
            for (auto& c : r->rc.cols) c.value = std::move(values_[r->at * ncols_ + c.col]);
    }

private:
    static constexpr int kKeyAt = 5;
    Conn& c_;
    size_t ncols_, nkey_;
    Stmt st_;
    bool done_ = false;
    std::vector<Value> values_;  // of the last `next`, ncols_ per row
};

class Source : public FeedSource {
public:
    explicit Source(Conn& c) : c_(c), all_(c.tables()) {
        for (const auto& t : all_) tables_.push_back(FeedTable{t->name, t->key, t->cols});
    }
    NodeId self() override { return c_.self(); }
    bool concurrent() const override { return false; }
    const std::vector<FeedTable>& tables() override { return tables_; }
    uint64_t final_seq(uint64_t) override { return committed_seq(c_); }

    uint64_t batch_cut(uint64_t after, uint64_t upto, int64_t limit) override {
        if (limit <= 0 || all_.empty()) return 0;
        std::string sql;
        for (const auto& t : all_)
            sql += (sql.empty() ? "" : " UNION ALL ") + (std::string("SELECT ") + t->max_seq + " AS s FROM " + t->meta +
                                                         " WHERE " + t->max_seq + " > ?1 AND " + t->max_seq + " <= ?2");
        Stmt st(c_.db, "SELECT s FROM (" + sql + ") ORDER BY s LIMIT 1 OFFSET ?3");
        st.bind_int(1, static_cast<int64_t>(after));
        st.bind_int(2, static_cast<int64_t>(std::min<uint64_t>(upto, INT64_MAX)));
        st.bind_int(3, limit - 1);  // the limit-th row ends the batch
        return st.step() ? static_cast<uint64_t>(st.int64(0)) : 0;
    }

    // One statement, an index probe per table: a small pull reads only the
    // tables it returns rows of.
    std::vector<size_t> tables_changed(uint64_t after, uint64_t upto) override {
        if (all_.empty() || upto <= after) return {};
        std::string sql;
        for (size_t i = 0; i < all_.size(); ++i)
            sql += (i ? " UNION ALL " : "") +
                   ("SELECT " + std::to_string(i) + " FROM (SELECT 1 FROM " + all_[i]->meta + " WHERE " +
                    all_[i]->max_seq + " > ?1 AND " + all_[i]->max_seq + " <= ?2 LIMIT 1)");
        Stmt st(c_.db, sql);
        st.bind_int(1, static_cast<int64_t>(after));
        st.bind_int(2, static_cast<int64_t>(std::min<uint64_t>(upto, INT64_MAX)));
        std::vector<size_t> out;
        while (st.step()) out.push_back(static_cast<size_t>(st.int64(0)));
        return out;
    }

    std::unique_ptr<FeedScan> scan(size_t table, uint64_t after, uint64_t upto) override {
        return std::make_unique<Scan>(c_, *all_.at(table), after, upto);
    }

private:
    Conn& c_;
    std::vector<TablePtr> all_;  // held: a reload does not pull them from under the scan
    std::vector<FeedTable> tables_;
};

}  // namespace

Batch collect_changes(Conn& c, const ChangesRequest& req) {
    c.ensure_ready();
    // One transaction: the cut, upto and every row come from one snapshot.
    // Updates waiting in the capture log are folded first, under the write
    // lock taken before anything is read: a read transaction that turns
    // into a write fails once another connection committed meanwhile.
    bool fold = log_pending(c);
    for (;;) {
        exec(c.db, "SAVEPOINT lww_changes");
        try {
            if (fold) {
                const char* why =
                    "local updates wait in the capture log (lww_log): reading changes folds "
                    "them into the metadata first, which needs the write lock "
                    "(a writable connection, outside a read transaction): ";
                try {
                    c.lock_for_write();
                } catch (const SqlError& e) {
                    throw SqlError(why + std::string(e.what()), e.code);  // SQLITE_READONLY, SQLITE_BUSY: kept
                } catch (const Error& e) {
                    throw Error(why + std::string(e.what()), e.kind());
                }
            } else {
                c.refresh();
                if (log_pending(c)) {  // logged since the probe: again, with the lock
                    exec(c.db, "RELEASE lww_changes");
                    fold = true;
                    continue;
                }
            }
            Source src(c);
            Batch r = collect_feed(src, req);
            exec(c.db, "RELEASE lww_changes");
            return r;
        } catch (...) {
            sqlite3_exec(c.db, "ROLLBACK TO lww_changes; RELEASE lww_changes", nullptr, nullptr, nullptr);
            throw;
        }
    }
}

}  // namespace lww::sq
