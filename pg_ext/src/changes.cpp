// PostgreSQL adapter: lww_changes — a change feed that never skips.
//
// Concurrent transactions take change sequences in one order and commit in
// another. Every transaction that takes a sequence first takes a shared
// advisory lock (State::next_seq) and keeps it until it ends. A puller reads
// the highest sequence handed out (m), lists the transactions holding that
// lock — every one that may still hold a sequence <= m is among them — and
// waits for each to end (VirtualXactLock, as CREATE INDEX CONCURRENTLY does).
// Writers that start later are neither waited for nor blocked. It then reads,
// with a fresh snapshot, every row with seq <= m. Nothing at or below m can
// commit later, so a cursor at m never skips a change.
#include "changes.h"

#include "../../common/feed.h"

#include <algorithm>
#include <chrono>

extern "C" {
#include "access/xlog.h"
#include "storage/procarray.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/rls.h"
}

namespace lww::pg {

namespace {

uint64_t last_sequence() {
    AsMetadataOwner owner;
    return static_cast<uint64_t>(
        run_sql("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM lwwsync.seq", true).integer(0, 0));
}

void wait_for_writers() {
    const SpiResult res = run(
        prepare("SELECT virtualtransaction FROM pg_catalog.pg_locks WHERE locktype = 'advisory'"
                " AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())"
                " AND classid = $1::oid AND objid = $2::oid AND objsubid = 2 AND granted AND pid <> pg_backend_pid()",
                {INT8OID, INT8OID}),
        {Param{INT8OID, Int64GetDatum(static_cast<int64>(static_cast<uint32>(kBarrierKey1))), false},
         Param{INT8OID, Int64GetDatum(kBarrierKey2), false}},
        false);
    std::vector<VirtualTransactionId> writers;
    for (uint64_t i = 0; i < res.size(); ++i) {
        std::string v = res.text(i, 0);  // "backendId/localXid"
        size_t slash = v.find('/');
        if (slash == std::string::npos) continue;
        VirtualTransactionId vxid;
        vxid.backendId = std::stoi(v.substr(0, slash));
        vxid.localTransactionId = static_cast<LocalTransactionId>(std::stoul(v.substr(slash + 1)));
        writers.push_back(vxid);
    }
    for (const auto& vxid : writers) pg_call([&] { VirtualXactLock(vxid, true); });
}

// The feed's bound on a hot standby, where the primary's writers hold no
// lock and the sequence reads up to 32 values past what was handed out (it
// is WAL-logged ahead). The bound is the highest sequence a committed row
// carries: every lower value was handed out before that row committed, to a
// transaction that had already written (its row, before the capture trigger
// took the value), so the WAL replayed here names it. Waiting for every
// transaction in progress in a snapshot taken after reading the bound
// makes every sequence up to it final: a cursor there never skips.
constexpr std::chrono::milliseconds kStandbyWait{2000};

uint64_t standby_bound(const std::vector<TablePtr>& tables, uint64_t after) {
    if (tables.empty()) return 0;
    std::string sql;
    for (const auto& t : tables)
        sql += (sql.empty() ? "" : " UNION ALL ") + ("SELECT max(" + meta_seq() + ") AS s FROM " + t->meta);
    uint64_t bound = 0;
    {
        AsMetadataOwner owner;
        bound = static_cast<uint64_t>(run_sql("SELECT coalesce(max(s), 0) FROM (" + sql + ") m", true).integer(0, 0));
    }
    if (bound <= after) return bound;  // nothing new: nothing to wait for
    Snapshot snap = nullptr;
    pg_call([&] { snap = GetLatestSnapshot(); });
    // Copied outside pg_call; the arrays stay until the next snapshot is taken.
    // In recovery every running xid is in subxip (snapmgr.h), xip too elsewhere.
    std::vector<TransactionId> running(snap->xip, snap->xip + snap->xcnt);
    running.insert(running.end(), snap->subxip, snap->subxip + std::max<int32>(snap->subxcnt, 0));
    // The primary's transactions hold no lock here: poll their end, as
    // XactLockTableWait does on a standby, but interruptibly. Any running
    // transaction counts (which ones took a sequence is not visible here),
    // so one that stays open, even idle, would stall every pull: past a
    // bound the pull goes to the primary instead (25006; the gateway
    // retries it there).
    const auto start = std::chrono::steady_clock::now();
    for (const TransactionId xid : running) {
        for (;;) {
            bool in_progress = false;
            pg_call([&] { in_progress = TransactionIdIsInProgress(xid); });
            if (!in_progress) break;
            if (std::chrono::steady_clock::now() - start > kStandbyWait)
                throw Error("this standby cannot end its feed yet: transaction " + std::to_string(xid) +
                                " of the primary has been running for over " + std::to_string(kStandbyWait.count()) +
                                " ms; pull from the primary",
                            ErrorKind::read_only);
            pg_call([&] {
                (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 2L, PG_WAIT_EXTENSION);
                ResetLatch(MyLatch);
                CHECK_FOR_INTERRUPTS();
            });
        }
    }
    return bound;
}

uint64_t batch_cut(const std::vector<TablePtr>& tables, uint64_t after, uint64_t upto, int64_t limit) {
    if (limit <= 0 || tables.empty()) return 0;
    std::string sql;
    for (const auto& t : tables)
        sql += (sql.empty() ? "" : " UNION ALL ") + ("SELECT " + meta_seq() + " AS seq FROM " + t->meta + " WHERE " +
                                                     meta_seq() + " > $1 AND " + meta_seq() + " <= $2");
    AsMetadataOwner owner;
    const SpiResult res =
        run(prepare("SELECT seq FROM (" + sql + ") s ORDER BY seq LIMIT 1 OFFSET $3", {INT8OID, INT8OID, INT8OID}),
            {Param{INT8OID, Int64GetDatum(static_cast<int64>(after)), false},
             Param{INT8OID, Int64GetDatum(static_cast<int64>(upto)), false},
             Param{INT8OID, Int64GetDatum(limit - 1), false}},
            false);
    return res.empty() ? 0 : static_cast<uint64_t>(res.integer(0, 0));
}

// The tables among `tables` with a row changed in (after, upto]: one
// statement, one index probe per table, so a pull that finds a few rows runs
// the same statements however many tables are tracked.
std::vector<size_t> changed_between(const std::vector<TablePtr>& tables, uint64_t after, uint64_t upto) {
    if (tables.empty() || upto <= after) return {};
    std::string sql;
    for (size_t i = 0; i < tables.size(); ++i)
        sql += (i ? " UNION ALL " : "") +
               ("SELECT " + std::to_string(i) + " WHERE EXISTS (SELECT FROM " + tables[i]->meta + " WHERE " +
                meta_seq() + " > $1 AND " + meta_seq() + " <= $2)");
    AsMetadataOwner owner;
    const SpiResult res =
        run(prepare(sql, {INT8OID, INT8OID}),
            {Param{INT8OID, Int64GetDatum(static_cast<int64>(after)), false},
             Param{INT8OID, Int64GetDatum(static_cast<int64>(std::min<uint64_t>(upto, INT64_MAX))), false}},
            false);
    std::vector<size_t> out;
    for (uint64_t r = 0; r < res.size(); ++r) {
        const int64_t i = res.integer(r, 0);
        if (i >= 0 && static_cast<size_t>(i) < tables.size()) out.push_back(static_cast<size_t>(i));
    }
    return out;
}

// A pull carries only the tables whose every tracked column the caller may
// SELECT; the others are skipped, not fatal.
bool readable(const TableInfo& t) {
    bool ok = false;
    pg_call([&] {
        const Oid user = GetUserId();
        ok = pg_class_aclcheck(t.relid, user, ACL_SELECT) == ACLCHECK_OK;
        if (ok) return;
        ok = true;
        for (AttrNumber a : t.key_attnums)
            ok = ok && pg_attribute_aclcheck(t.relid, a, user, ACL_SELECT) == ACLCHECK_OK;
        for (AttrNumber a : t.col_attnums)
            ok = ok && pg_attribute_aclcheck(t.relid, a, user, ACL_SELECT) == ACLCHECK_OK;
    });
    return ok;
}

// Tombstones under row-level security. A deleted row has no user row to
// probe, so its tombstone keeps the row's last values (trigger.cpp), and the
// table's SELECT policies that apply to the caller are evaluated, with the
// caller's rights, over those values in a row named as the table:
// permissive policies OR'ed, restrictive ones AND'ed; no permissive policy,
// or no values kept, and the tombstone is not sent. Only for callers under
// row-level security (check_enable_rls: not the owner, no BYPASSRLS).
class TombstoneJudge {
public:
    explicit TombstoneJudge(const TableInfo& t) {
        pg_call([&] { active_ = check_enable_rls(t.relid, InvalidOid, true) == RLS_ENABLED; });
        if (!active_) return;
        const SpiResult res =
            run(prepare("SELECT p.polpermissive, pg_catalog.pg_get_expr(p.polqual, p.polrelid)"
                        " FROM pg_catalog.pg_policy p WHERE p.polrelid = $1 AND p.polcmd IN ('r', '*')"
                        " AND ('{0}'::oid[] @> p.polroles OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p.polroles) r"
                        "  WHERE r <> 0 AND pg_catalog.pg_has_role(CURRENT_USER, r, 'MEMBER')))"
                        " ORDER BY p.polname",
                        {OIDOID}),
                {Param{OIDOID, ObjectIdGetDatum(t.relid), false}}, true);
        std::string permissive, restrictive;
        for (uint64_t r = 0; r < res.size(); ++r) {
            bool isnull = false;
            const bool perm = DatumGetBool(res.col(r, 0, &isnull));
            bool noqual = false;
            std::string q = res.text(r, 1, &noqual);
            if (noqual) q = "false";
            std::string& into = perm ? permissive : restrictive;
            into += (into.empty() ? "(" : (perm ? " OR (" : " AND (")) + q + ")";
        }
        if (permissive.empty()) return;  // nothing visible
        const char* relname = nullptr;
        const char* rowtype = nullptr;
        pg_call([&] {
            relname = get_rel_name(t.relid);
            if (!relname) elog(ERROR, "cache lookup failed for relation %u", t.relid);
            rowtype = format_type_be(get_rel_type_id(t.relid));
        });
        sql_ =
            "SELECT k.i FROM pg_catalog.jsonb_array_elements($1::jsonb) WITH ORDINALITY AS k(j, i)"
            " CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::" +
            std::string(rowtype) + ", k.j) AS " + quote_ident(relname) + " WHERE (" + permissive + ")" +
            (restrictive.empty() ? "" : " AND (" + restrictive + ")");
    }
    bool active() const { return active_; }

    // For each JSON object of `rows` (the deleted rows' last values), whether
    // the caller's SELECT policies show it.
    std::vector<bool> visible(const std::vector<std::string>& rows) {
        std::vector<bool> out(rows.size(), false);
        if (sql_.empty() || rows.empty()) return out;
        std::string arr = "[";
        for (size_t i = 0; i < rows.size(); ++i) arr += (i ? "," : "") + rows[i];
        arr += "]";
        Param p{TEXTOID, 0, false};
        pg_call([&] { p.value = PointerGetDatum(cstring_to_text_with_len(arr.data(), static_cast<int>(arr.size()))); });
        const SpiResult res = run(prepare(sql_, {TEXTOID}), {p}, true);
        for (uint64_t r = 0; r < res.size(); ++r) {
            const int64_t i = res.integer(r, 0);
            if (i >= 1 && static_cast<size_t>(i) <= rows.size()) out[static_cast<size_t>(i - 1)] = true;
        }
        return out;
    }

private:
    bool active_ = false;
    std::string sql_;  // empty: nothing visible
};

}  // namespace

namespace {

// One table's rows in a sequence range: the metadata read as its owner
// (nobody else may read it), values read as the caller when the feed keeps
// a row (GRANTs and row-level security decide).
class Scan : public FeedScan {
public:
    Scan(const TableInfo& t, TombstoneJudge& judge, uint64_t after, uint64_t upto) : t_(t), judge_(judge) {
        std::string sql = "SELECT m.st";
        for (size_t i = 0; i < t.key.size(); ++i) sql += ", m.k" + std::to_string(i);
        if (judge.active()) sql += ", m.last::text";
        const std::string seq = meta_seq("m.");
        sql += " FROM " + t.meta + " AS m WHERE " + seq + " > $1 AND " + seq + " <= $2 ORDER BY " + seq;
        AsMetadataOwner owner;
        // read_only = false: a fresh snapshot, taken after the feed's wait.
        meta_ = run(prepare(sql, {INT8OID, INT8OID}),
                    {Param{INT8OID, Int64GetDatum(static_cast<int64>(after)), false},
                     Param{INT8OID, Int64GetDatum(static_cast<int64>(std::min<uint64_t>(upto, INT64_MAX))), false}},
                    false);
    }

    bool next(std::vector<FeedRow>& rows, size_t max) override {
        rows.clear();
        for (; pos_ < meta_.size() && rows.size() < max; ++pos_) {
            FeedRow r;
            r.st = meta_at(meta_, pos_, t_.cols.size());
            r.at = pos_;
            rows.push_back(std::move(r));
        }
        return !rows.empty();
    }

    void fill(const std::vector<FeedRow*>& rows) override {
        // Tombstones the caller's policies would not have shown it: not sent.
        if (judge_.active()) {
            const int last_at = kKeyAt + static_cast<int>(t_.key.size());
            std::vector<FeedRow*> dead;
            std::vector<std::string> last;
            for (FeedRow* r : rows) {
                if (r->st.alive()) continue;
                bool isnull = false;
                std::string j = meta_.text(r->at, last_at, &isnull);
                if (isnull) {
                    r->send = false;
                    continue;
                }
                dead.push_back(r);
                last.push_back(std::move(j));
            }
            const std::vector<bool> shown = judge_.visible(last);
            for (size_t k = 0; k < dead.size(); ++k) dead[k]->send = shown[k];
        }
        // A living row the caller may not read (row-level security) is not sent at all.
        std::vector<FeedRow*> live;
        std::vector<uint64_t> live_rows;
        for (FeedRow* r : rows)
            if (r->send && r->st.alive()) {
                live.push_back(r);
                live_rows.push_back(r->at);
            }
        UserRows values;
        if (!live.empty()) values = probe_user_rows(t_, meta_, live_rows, kKeyAt, true);
        for (size_t j = 0; j < live.size(); ++j) {
            FeedRow& r = *live[j];
            if (values.at[j] < 0) {
                r.send = false;
                continue;
            }
            for (auto& c : r.rc.cols) {
                bool isnull = false;
                Datum d = values.rows.col(static_cast<uint64_t>(values.at[j]), 1 + static_cast<int>(c.col), &isnull);
                c.value = datum_to_value(d, isnull, t_.col_types[c.col]);
            }
        }
        for (FeedRow* r : rows) {
            if (!r->send) continue;
            r->rc.key.clear();
            for (size_t k = 0; k < t_.key.size(); ++k) {
                bool isnull = false;
                Datum d = meta_.col(r->at, kKeyAt + static_cast<int>(k), &isnull);
                r->rc.key.push_back(datum_to_value(d, isnull, t_.key_types[k]));
            }
        }
    }

private:
    static constexpr int kKeyAt = 1;
    const TableInfo& t_;
    TombstoneJudge& judge_;
    SpiResult meta_;
    uint64_t pos_ = 0;
};

class Source : public FeedSource {
public:
    Source() {
        State& s = State::get();
        all_ = s.tables();
        for (const auto& t : all_)
            if (readable(*t)) {
                readable_.push_back(t);
                tables_.push_back(FeedTable{t->name, t->key, t->cols});
            }
        judges_.resize(readable_.size());
    }
    NodeId self() override { return State::get().self(); }
    // Writers in other sessions commit while the feed reads.
    bool concurrent() const override { return true; }
    const std::vector<FeedTable>& tables() override { return tables_; }

    uint64_t final_seq(uint64_t after) override {
        bool standby = false;
        pg_call([&] { standby = RecoveryInProgress(); });
        if (standby) return standby_bound(all_, after);
        const uint64_t m = last_sequence();
        wait_for_writers();
        return m;
    }
    uint64_t batch_cut(uint64_t after, uint64_t upto, int64_t limit) override {
        return pg::batch_cut(readable_, after, upto, limit);
    }
    std::vector<size_t> tables_changed(uint64_t after, uint64_t upto) override {
        return changed_between(readable_, after, upto);
    }
    std::unique_ptr<FeedScan> scan(size_t table, uint64_t after, uint64_t upto) override {
        auto& judge = judges_.at(table);
        if (!judge) judge = std::make_unique<TombstoneJudge>(*readable_[table]);
        return std::make_unique<Scan>(*readable_[table], *judge, after, upto);
    }

private:
    std::vector<TablePtr> all_, readable_;  // held: an invalidation does not pull them from under the feed
    std::vector<FeedTable> tables_;
    std::vector<std::unique_ptr<TombstoneJudge>> judges_;
};

}  // namespace

Batch collect_changes(const ChangesRequest& req) {
    if (IsolationUsesXactSnapshot())
        throw Error(
            "lww_changes needs READ COMMITTED: a repeatable-read snapshot could miss changes committed after it");
    Source src;
    CanonicalSettings canonical;
    return collect_feed(src, req);
}

}  // namespace lww::pg
