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

#include "../../common/batch.h"

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
    const SpiResult res = run(prepare("SELECT virtualtransaction FROM pg_catalog.pg_locks WHERE locktype = 'advisory'"
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
    for (const auto& t : tables) sql += (sql.empty() ? "" : " UNION ALL ") + ("SELECT max(seq) AS s FROM " + t->meta);
    uint64_t bound = 0;
    {
        AsMetadataOwner owner;
        bound = static_cast<uint64_t>(run_sql("SELECT coalesce(max(s), 0) FROM (" + sql + ") m", true).integer(0, 0));
    }
    if (bound <= after) return bound;  // nothing new: nothing to wait for
    std::vector<TransactionId> running;
    pg_call([&] {
        Snapshot snap = GetLatestSnapshot();
        // In recovery every running xid is in subxip (snapmgr.h), xip too elsewhere.
        running.assign(snap->xip, snap->xip + snap->xcnt);
        running.insert(running.end(), snap->subxip, snap->subxip + std::max<int32>(snap->subxcnt, 0));
    });
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
                                " of the primary has been running for over " +
                                std::to_string(kStandbyWait.count()) + " ms; pull from the primary",
                            ErrorKind::read_only);
            pg_call([&] {
                (void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 2L, PG_WAIT_EXTENSION);
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
        sql += (sql.empty() ? "" : " UNION ALL ") + ("SELECT seq FROM " + t->meta + " WHERE seq > $1 AND seq <= $2");
    AsMetadataOwner owner;
    const SpiResult res =
        run(prepare("SELECT seq FROM (" + sql + ") s ORDER BY seq LIMIT 1 OFFSET $3", {INT8OID, INT8OID, INT8OID}),
        {Param{INT8OID, Int64GetDatum(static_cast<int64>(after)), false},
         Param{INT8OID, Int64GetDatum(static_cast<int64>(upto)), false},
         Param{INT8OID, Int64GetDatum(limit - 1), false}},
        false);
    return res.empty() ? 0 : static_cast<uint64_t>(res.integer(0, 0));
}

// The tables among `tables` with a row changed past `after`: one statement,
// one index probe per table, so a pull that finds a few rows runs the same
// statements however many tables are tracked.
std::vector<TablePtr> changed_since(const std::vector<TablePtr>& tables, uint64_t after) {
    if (tables.empty()) return {};
    std::string sql;
    for (size_t i = 0; i < tables.size(); ++i)
        sql += (i ? " UNION ALL " : "") + ("SELECT " + std::to_string(i) + " WHERE EXISTS (SELECT FROM " +
                                            tables[i]->meta + " WHERE seq > $1)");
    AsMetadataOwner owner;
    const SpiResult res =
        run(prepare(sql, {INT8OID}), {Param{INT8OID, Int64GetDatum(static_cast<int64>(after)), false}}, false);
    std::vector<TablePtr> out;
    for (uint64_t r = 0; r < res.size(); ++r) {
        const int64_t i = res.integer(r, 0);
        if (i >= 0 && static_cast<size_t>(i) < tables.size()) out.push_back(tables[static_cast<size_t>(i)]);
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
        for (AttrNumber a : t.key_attnums) ok = ok && pg_attribute_aclcheck(t.relid, a, user, ACL_SELECT) == ACLCHECK_OK;
        for (AttrNumber a : t.col_attnums) ok = ok && pg_attribute_aclcheck(t.relid, a, user, ACL_SELECT) == ACLCHECK_OK;
    });
    return ok;
}

// A row of the feed waiting for its values.
struct Pending {
    uint64_t meta_row;  // in the metadata result
    bool alive;
    RowChange rc;       // registers to send, values not yet read
};

// The values of the living rows among `rows`, read as the caller (GRANTs and
// row-level security decide). at[i]: rows[i]'s row in the result, or -1 when
// the caller does not see it.
UserRows read_values(const TableInfo& t, const SpiResult& meta, const std::vector<Pending>& rows, int key_at) {
    UserRows out;
    out.at.assign(rows.size(), -1);
    std::vector<uint64_t> live_rows;
    std::vector<size_t> live;
    for (size_t i = 0; i < rows.size(); ++i)
        if (rows[i].alive) {
            live.push_back(i);
            live_rows.push_back(rows[i].meta_row);
        }
    if (live.empty()) return out;
    UserRows found = probe_user_rows(t, meta, live_rows, key_at, true);
    out.rows = found.rows;
    for (size_t j = 0; j < live.size(); ++j) out.at[live[j]] = found.at[j];
    return out;
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
        const SpiResult res = run(prepare("SELECT p.polpermissive, pg_catalog.pg_get_expr(p.polqual, p.polrelid)"
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
        std::string relname, rowtype;
        pg_call([&] {
            relname = get_rel_name(t.relid);
            rowtype = format_type_be(get_rel_type_id(t.relid));
        });
        sql_ = "SELECT k.i FROM pg_catalog.jsonb_array_elements($1::jsonb) WITH ORDINALITY AS k(j, i)"
               " CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::" + rowtype + ", k.j) AS " +
               quote_ident(relname) + " WHERE (" + permissive + ")" +
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

Batch collect_changes(const ChangesRequest& req) {
    if (IsolationUsesXactSnapshot())
        throw Error("lww_changes needs READ COMMITTED: a repeatable-read snapshot could miss changes committed after it");
    State& s = State::get();
    std::vector<TablePtr> tables;
    for (const auto& t : s.tables())
        if (readable(*t)) tables.push_back(t);
    const NodeId self = s.self();

    bool standby = false;
    pg_call([&] { standby = RecoveryInProgress(); });
    uint64_t m = 0;
    if (standby) {
        m = standby_bound(s.tables(), req.after);
    } else {
        m = last_sequence();
        wait_for_writers();
    }
    CanonicalSettings canonical;

    if (req.after < req.since) throw Error("after must not be below since");
    Batch b;
    b.since = req.since;
    b.after = req.after;
    const uint64_t cut = batch_cut(tables, req.after, m, req.limit);
    b.complete = cut == 0;
    b.upto = cut ? cut : std::max(req.after, m);

    ChangeSetWriter w(self, req.since, req.after);
    // Read after the wait, with a fresh snapshot, as the rows below are.
    for (const auto& tp : changed_since(tables, req.after)) {
        const TableInfo& t = *tp;
        bool opened = false;
        TombstoneJudge judge(t);
        // Rows whose latest change is in (after, upto]; then, for a set that
        // is not cut by the limit, rows already changed again past upto by
        // writers that started after the wait: their registers <= upto are
        // part of this set too, or a cursor at upto would skip them.
        for (const bool past_upto : {false, true}) {
            if (past_upto && cut) break;
            // The metadata, read as its owner: nobody else may read it.
            std::string sql = "SELECT m.gen, m.hlc, m.node, m.mseq, m.cols";
            for (size_t i = 0; i < t.key.size(); ++i) sql += ", m.k" + std::to_string(i);
            if (judge.active()) sql += ", m.last::text";
            sql += " FROM " + t.meta + " AS m";
            sql += past_upto ? " WHERE m.seq > $2 ORDER BY m.seq" : " WHERE m.seq > $1 AND m.seq <= $2 ORDER BY m.seq";
            SpiResult meta;
            {
                AsMetadataOwner owner;
                // read_only = false: a fresh snapshot, taken after the wait.
                meta = run(prepare(sql, {INT8OID, INT8OID}),
                    {Param{INT8OID, Int64GetDatum(static_cast<int64>(req.after)), false},
                     Param{INT8OID, Int64GetDatum(static_cast<int64>(b.upto)), false}},
                    false);
            }
            const int key_at = 5;
            std::vector<Pending> rows;
            const auto no_value = [](size_t) { return Value::null(); };
            for (uint64_t r = 0; r < meta.size(); ++r) {
                RowState st = meta_at(meta, r, t.cols.size());
                Pending p{r, st.alive(), {}};
                if (registers_to_send(st, req.since, req.skip_node, p.rc, no_value, b.upto))
                    rows.push_back(std::move(p));
            }
            if (rows.empty()) continue;
            // Tombstones the caller's policies would not have shown it: not sent.
            std::vector<bool> hidden(rows.size(), false);
            if (judge.active()) {
                const int last_at = key_at + static_cast<int>(t.key.size());
                std::vector<size_t> dead;
                std::vector<std::string> last;
                for (size_t i = 0; i < rows.size(); ++i) {
                    if (rows[i].alive) continue;
                    bool isnull = false;
                    std::string j = meta.text(rows[i].meta_row, last_at, &isnull);
                    if (isnull) {
                        hidden[i] = true;
                        continue;
                    }
                    dead.push_back(i);
                    last.push_back(std::move(j));
                }
                const std::vector<bool> shown = judge.visible(last);
                for (size_t k = 0; k < dead.size(); ++k) hidden[dead[k]] = !shown[k];
            }
            const UserRows values = read_values(t, meta, rows, key_at);
            const std::vector<int64_t>& at = values.at;
            for (size_t i = 0; i < rows.size(); ++i) {
                Pending& p = rows[i];
                // A living row the caller may not read (row-level security) is not sent at all.
                if (p.alive && at[i] < 0) continue;
                if (hidden[i]) continue;
                if (p.alive) {
                    for (auto& c : p.rc.cols) {
                        bool isnull = false;
                        Datum d = values.rows.col(static_cast<uint64_t>(at[i]), 1 + static_cast<int>(c.col), &isnull);
                        c.value = datum_to_value(d, isnull, t.col_types[c.col]);
                    }
                }
                p.rc.key.clear();
                for (size_t k = 0; k < t.key.size(); ++k) {
                    bool isnull = false;
                    Datum d = meta.col(p.meta_row, key_at + static_cast<int>(k), &isnull);
                    p.rc.key.push_back(datum_to_value(d, isnull, t.key_types[k]));
                }
                if (!opened) {
                    w.begin_table(t.name, t.key, t.cols);
                    opened = true;
                }
                w.row(p.rc);
            }
        }
        if (opened) w.end_table();
    }
    b.rows = w.rows_written();
    b.json = w.finish(b.upto, b.complete);
    return b;
}

}  // namespace lww::pg
