#include "changes.h"
SQLITE_EXTENSION_INIT3

#include "../common/batch.h"

namespace lww::sq {

// The highest sequence committed (or written by this connection), read in
// the caller's snapshot: one statement, an index probe per table.
uint64_t committed_seq(Conn& c) {
    std::string sql = "SELECT CAST(value AS INTEGER) AS v FROM lww_state WHERE key = 'seq_floor'";
    for (const auto& t : c.tables()) sql += " UNION ALL SELECT max(seq) FROM " + t->meta;
    Stmt st(c.db, "SELECT max(v) FROM (" + sql + ")");
    return st.step() && !st.is_null(0) ? static_cast<uint64_t>(st.int64(0)) : 0;
}

// The sequence at which a batch of `limit` rows ends, or 0 when everything fits.
static uint64_t batch_cut(Conn& c, uint64_t after, int64_t limit) {
    if (limit <= 0 || c.tables().empty()) return 0;
    std::string sql;
    for (const auto& t : c.tables())
        sql += (sql.empty() ? "" : " UNION ALL ") + ("SELECT seq FROM " + t->meta + " WHERE seq > ?1");
    Stmt st(c.db, "SELECT seq FROM (" + sql + ") ORDER BY seq LIMIT 1 OFFSET ?2");
    st.bind_int(1, static_cast<int64_t>(after));
    st.bind_int(2, limit - 1);  // the limit-th row ends the batch
    return st.step() ? static_cast<uint64_t>(st.int64(0)) : 0;
}

static Batch collect(Conn& c, const ChangesRequest& req);

// The tables holding rows in (after, upto], found by one statement (an index
// probe per table), so a small pull reads only the tables it returns rows of.
static std::vector<TablePtr> tables_with_changes(Conn& c, uint64_t after, uint64_t upto) {
    const std::vector<TablePtr> all = c.tables();
    if (all.empty() || upto <= after) return {};
    std::string sql;
    for (size_t i = 0; i < all.size(); ++i)
        sql += (i ? " UNION ALL " : "") + ("SELECT " + std::to_string(i) + " FROM (SELECT 1 FROM " + all[i]->meta +
                                           " WHERE seq > ?1 AND seq <= ?2 LIMIT 1)");
    Stmt st(c.db, sql);
    st.bind_int(1, static_cast<int64_t>(after));
    st.bind_int(2, static_cast<int64_t>(upto));
    std::vector<TablePtr> out;
    while (st.step()) out.push_back(all.at(static_cast<size_t>(st.int64(0))));
    return out;
}

Batch collect_changes(Conn& c, const ChangesRequest& req) {
    c.ensure_ready();
    // One read transaction: the cut, upto and every row come from one snapshot.
    exec(c.db, "SAVEPOINT lww_changes");
    try {
        Batch r = collect(c, req);
        exec(c.db, "RELEASE lww_changes");
        return r;
    } catch (...) {
        sqlite3_exec(c.db, "ROLLBACK TO lww_changes; RELEASE lww_changes", nullptr, nullptr, nullptr);
        throw;
    }
}

static Batch collect(Conn& c, const ChangesRequest& req) {
    c.refresh();
    Batch res;
    res.since = req.since;
    res.after = req.after;
    if (req.after < req.since) throw Error("after must not be below since");
    const uint64_t cut = batch_cut(c, req.after, req.limit);
    res.complete = cut == 0;
    // In this snapshot: a row whose latest write is past `upto` would leave
    // its older registers (at or below it) behind for good.
    res.upto = cut ? cut : std::max(req.after, committed_seq(c));

    ChangeSetWriter w(c.self(), req.since, req.after);
    for (const TablePtr& tp : tables_with_changes(c, req.after, res.upto)) {
        const TableInfo& t = *tp;
        std::string sql = "SELECT m.gen, m.hlc, m.node, m.mseq, m.cols";
        for (size_t i = 0; i < t.key.size(); ++i) sql += ", m.k" + std::to_string(i);
        for (const auto& col : t.cols) sql += ", t." + quote_ident(col);
        sql += " FROM " + t.meta + " AS m LEFT JOIN " + quote_ident(t.name) + " AS t ON ";
        for (size_t i = 0; i < t.key.size(); ++i)
            sql += (i ? " AND " : "") + ("t." + quote_ident(t.key[i]) + " = m.k" + std::to_string(i));
        sql += " WHERE m.seq > ?1 AND m.seq <= ?2 ORDER BY m.seq";
        Stmt st(c.db, sql);
        st.bind_int(1, static_cast<int64_t>(req.after));
        st.bind_int(2, static_cast<int64_t>(res.upto));

        const int key_at = 5;
        const int col_at = key_at + static_cast<int>(t.key.size());
        bool opened = false;
        RowChange rc;
        while (st.step()) {
            RowState rs = decode_row(stored_row(st), t.cols.size(), c.nodes());
            if (!registers_to_send(rs, req.since, req.skip_node, rc,
                                   [&](size_t i) { return st.value(col_at + static_cast<int>(i)); }))
                continue;
            rc.key.clear();
            for (size_t i = 0; i < t.key.size(); ++i) rc.key.push_back(st.value(key_at + static_cast<int>(i)));
            if (!opened) {
                w.begin_table(t.name, t.key, t.cols);
                opened = true;
            }
            w.row(rc);
        }
        if (opened) w.end_table();
    }
    res.rows = w.rows_written();
    res.json = w.finish(res.upto, res.complete);
    return res;
}

}  // namespace lww::sq
