// PostgreSQL adapter: the triggers that stamp local writes, in C++.
//
// Local writes are captured per statement: three AFTER ... FOR EACH
// STATEMENT triggers with transition tables (one per event: Postgres allows
// transition tables on single-event triggers only) read the statement's rows,
// load the metadata of all their keys in one locked statement, stamp in
// C++ and store it back in one statement. Postgres keeps transition tables
// per query level and drops them with the statement, so nested statements
// (an app trigger writing a tracked table), savepoints rolled back and
// errors need no bookkeeping here. Under session_replication_role = replica
// (lww_apply writes so) the row trigger captures instead, row by row, as it
// must tell the merge's own write from every other (State::own): it is
// ENABLE REPLICA, so it costs nothing otherwise.
#include <set>

#include "trigger.h"

extern "C" {
#include "executor/tuptable.h"
#include "utils/tuplestore.h"
}

namespace lww::pg {

namespace {

std::vector<Param> key_of(const TableInfo& t, HeapTuple tup, TupleDesc desc) {
    std::vector<Datum> vals(t.key.size());
    std::vector<bool> nulls(t.key.size());
    for (size_t i = 0; i < t.key.size(); ++i) {
        bool isnull = false;
        pg_call([&] { vals[i] = heap_getattr(tup, t.key_attnums[i], desc, &isnull); });
        nulls[i] = isnull;
    }
    return key_params(t, vals, nulls);
}

bool same_value(HeapTuple a, HeapTuple b, TupleDesc desc, AttrNumber att, const ColumnType& type) {
    bool an = false, bn = false, same = false;
    pg_call([&] {
        Datum ad = heap_getattr(a, att, desc, &an);
        Datum bd = heap_getattr(b, att, desc, &bn);
        same = (an && bn) || (!an && !bn && datum_image_eq(ad, bd, type.byval, type.len));
    });
    return same;
}

// One local write to one row: stamp above everything the row holds. A row
// with no metadata yet is inserted, never upserted (record() says why): if
// another transaction stored it meanwhile, the write is stamped onto that.
template <class Op>
void write(const TableInfo& t, const std::vector<Param>& key, Op&& op) {
    State& s = State::get();
    RowState st = load_meta(t, key);
    const bool had_meta = st.gen != 0;
    if (!had_meta) st.gen = s.gen_floor(t.relid);  // as deleted at the purged generations
    auto stamped = [&](RowState& row) {
        Stamp stamp{s.tick(max_stamp(row)), s.self()};
        op(row, stamp, s.next_seq());
    };
    stamped(st);
    if (had_meta) return store_meta(t, key, st);
    if (insert_new_meta(t, {key}, {st}).at(0)) return;
    st = load_meta(t, key);
    stamped(st);
    store_meta(t, key, st);
}

// Whether the table holds a row with this key, whoever may see it.
bool still_there(const TableInfo& t, const std::vector<Param>& key) {
    std::string where;
    std::vector<Oid> types;
    for (size_t i = 0; i < t.key.size(); ++i) {
        where += (i ? " AND " : "") + quote_ident(t.key[i]) + " = $" + std::to_string(i + 1);
        types.push_back(t.key_types[i].type);
    }
    AsTableOwner owner(t.relid);
    return !run(prepare("SELECT 1 FROM " + t.qualified + " WHERE " + where, types), key, false).empty();
}

// The merge's write of this row, if a merge is writing it (by key as stored).
OwnWrite* marked(OwnWrites& own, const TableInfo& t, HeapTuple tup, TupleDesc desc) {
    if (own.relid != t.relid) return nullptr;
    std::vector<Value> key(t.key.size());
    for (size_t i = 0; i < t.key.size(); ++i) {
        bool isnull = false;
        Datum d = 0;
        pg_call([&] { d = heap_getattr(tup, t.key_attnums[i], desc, &isnull); });
        key[i] = datum_to_value(d, isnull, t.key_types[i]);
    }
    auto found = own.rows.find(key);
    return found == own.rows.end() ? nullptr : &found->second;
}

// Whether `tup` was written by the statement with command id `cid`.
bool written_by(HeapTuple tup, CommandId cid) {
    bool yes = false;
    pg_call([&] {
        if (TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetRawXmin(tup->t_data)))
            yes = HeapTupleHeaderGetCmin(tup->t_data) == cid;
    });
    return yes;
}

// Registers whose value in `newt` differs from what the merge wrote (a BEFORE
// trigger changed them) or, for those the merge did not write, from `oldt`.
std::vector<bool> changed_by_triggers(const TableInfo& t, const OwnWrite& own, HeapTuple oldt, HeapTuple newt,
                                      TupleDesc desc, bool* any) {
    std::vector<bool> changed(t.cols.size(), false);
    std::vector<bool> written(t.cols.size(), false);
    *any = false;
    for (const auto& [idx, d] : own.written) {
        written[idx] = true;
        bool isnull = false, same = false;
        pg_call([&] {
            Datum nd = heap_getattr(newt, t.col_attnums[idx], desc, &isnull);
            same = (isnull && d.second) ||
                   (!isnull && !d.second && datum_image_eq(nd, d.first, t.col_types[idx].byval, t.col_types[idx].len));
        });
        if (!same) *any = changed[idx] = true;
    }
    if (oldt)
        for (size_t i = 0; i < t.cols.size(); ++i)
            if (!written[i] && !same_value(oldt, newt, desc, t.col_attnums[i], t.col_types[i]))
                *any = changed[i] = true;
    return changed;
}

// A deleted row's values, kept in its tombstone when the table has row-level
// security (only then: the cost is one UPDATE of the metadata per delete).
void keep_last_values(const TableInfo& t, Relation rel, HeapTuple tup, TupleDesc desc) {
    if (!rel->rd_rel->relrowsecurity) return;
    const text* j = nullptr;
    pg_call([&] {
        Datum row = heap_copy_tuple_as_datum(tup, desc);
        j = DatumGetTextPP(DirectFunctionCall1(row_to_json, row));
    });
    store_last_values(t, key_of(t, tup, desc), std::string(VARDATA_ANY(j), VARSIZE_ANY_EXHDR(j)));
}

// One local write of a statement, in the statement's row order.
struct StatementOp {
    LocalOp::Kind kind = LocalOp::update;
    size_t key = 0;             // the row's key (index into the statement's keys)
    std::vector<bool> changed;  // update: the registers whose value changed
    std::string last;           // delete of a row under row-level security: its values
};

// Fewer new rows than this go with the rest through INSERT ... ON CONFLICT:
// the plain INSERT's subtransaction costs more than it saves.
constexpr size_t kPlainInsertFrom = 32;

// A total order on keys as stored (compare_values, meta.cpp): lock order of
// the statement's metadata rows, the same as lww_apply's (key_less), and
// grouping of a key the statement wrote twice (byte identity).
int compare_keys(const std::vector<Value>& a, const std::vector<Value>& b) {
    for (size_t i = 0; i < a.size() && i < b.size(); ++i)
        if (int c = compare_values(a[i], b[i])) return c;
    return a.size() < b.size() ? -1 : a.size() > b.size();
}

// Reads a transition table from its start, all attributes deformed.
class TransitionRows {
public:
    TransitionRows(Tuplestorestate* rows, TupleDesc desc) : rows_(rows) {
        pg_call([&] {
            slot_ = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
            const int ptr = tuplestore_alloc_read_pointer(rows_, EXEC_FLAG_REWIND);
            tuplestore_select_read_pointer(rows_, ptr);
            tuplestore_rescan(rows_);
        });
    }
    ~TransitionRows() { ExecDropSingleTupleTableSlot(slot_); }
    TransitionRows(const TransitionRows&) = delete;
    TransitionRows& operator=(const TransitionRows&) = delete;

    bool next() {
        bool more = false;
        pg_call([&] {
            more = tuplestore_gettupleslot(rows_, true, false, slot_);
            if (more) slot_getallattrs(slot_);
        });
        return more;
    }
    Datum value(AttrNumber att, bool* isnull) const {
        *isnull = slot_->tts_isnull[att - 1];
        return slot_->tts_values[att - 1];
    }
    TupleTableSlot* slot() const { return slot_; }

private:
    Tuplestorestate* rows_;
    TupleTableSlot* slot_ = nullptr;
};

bool same_attr(const TransitionRows& a, const TransitionRows& b, AttrNumber att, const ColumnType& type) {
    bool an = false, bn = false, same = false;
    const Datum ad = a.value(att, &an), bd = b.value(att, &bn);
    if (an || bn) return an && bn;
    pg_call([&] { same = datum_image_eq(ad, bd, type.byval, type.len); });
    return same;
}

// The rows of one statement's local writes, keyed and in order.
class StatementWrites {
public:
    explicit StatementWrites(const TableInfo& t) : t_(t) {}

    void add(LocalOp::Kind kind, const TransitionRows& row, std::vector<bool> changed = {}, std::string last = {}) {
        std::vector<Value> v(t_.key.size());
        std::vector<Param> p(t_.key.size());
        for (size_t i = 0; i < t_.key.size(); ++i) {
            bool isnull = false;
            const Datum d = row.value(t_.key_attnums[i], &isnull);
            if (isnull) throw Error("a key value of table " + t_.name + " is NULL");
            v[i] = datum_to_value(d, false, t_.key_types[i]);
            Datum copy = d;
            if (!t_.key_types[i].byval)  // the slot moves on to the next row
                pg_call([&] { copy = datumCopy(d, false, t_.key_types[i].len); });
            p[i] = Param{t_.key_types[i].type, copy, false};
        }
        values_.push_back(std::move(v));
        params_.push_back(std::move(p));
        ops_.push_back(StatementOp{kind, ops_.size(), std::move(changed), std::move(last)});
    }

    // Under a deferrable key a table may hold one key twice until the check
    // (an INSERT of the new row, then a DELETE of the old one): a key this
    // statement deleted that the table still holds lives on, as a new
    // generation with the values it holds.
    void revive_present() {
        // Keys by index into values_ (which grows below).
        auto less = [this](size_t a, size_t b) { return compare_keys(values_[a], values_[b]) < 0; };
        std::set<size_t, decltype(less)> inserted(less);
        for (const StatementOp& op : ops_)
            if (op.kind == LocalOp::insert) inserted.insert(op.key);
        const size_t n = ops_.size();
        for (size_t i = 0; i < n; ++i) {
            if (ops_[i].kind != LocalOp::remove || inserted.count(ops_[i].key)) continue;
            if (!still_there(t_, params_[ops_[i].key])) continue;
            const size_t k = ops_[i].key;
            values_.push_back(values_[k]);
            params_.push_back(params_[k]);
            ops_.push_back(StatementOp{LocalOp::insert, values_.size() - 1, {}, {}});
            inserted.insert(k);
        }
    }

    // Stamps every write above what its row holds, a fresh sequence each in
    // the statement's row order, and stores the rows' metadata.
    void record() {
        if (ops_.empty()) return;
        State& s = State::get();
        // Distinct keys in lock order; a key written twice (a key change
        // onto a key the statement also leaves) is one row.
        std::vector<size_t> order(ops_.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::stable_sort(order.begin(), order.end(),
                         [&](size_t a, size_t b) { return compare_keys(values_[a], values_[b]) < 0; });
        std::vector<std::vector<Param>> keys;
        std::vector<size_t> key_of_op(ops_.size());
        for (size_t i = 0; i < order.size(); ++i) {
            if (i == 0 || compare_keys(values_[order[i - 1]], values_[order[i]]) != 0)
                keys.push_back(std::move(params_[order[i]]));
            key_of_op[order[i]] = keys.size() - 1;
        }
        std::vector<RowState> rows;
        std::vector<size_t> same_row(keys.size());  // two spellings of one key: the first one's row
        for (size_t k = 0; k < keys.size(); ++k) same_row[k] = k;
        std::vector<uint64_t> ids;  // each key's metadata row (0: none)
        if (keys.size() == 1) {
            rows.push_back(load_meta(t_, keys[0]));
        } else {
            rows = load_meta_many_ids(t_, keys, true, &ids);
            std::map<uint64_t, size_t> first;
            for (size_t k = 0; k < keys.size(); ++k)
                if (ids[k] && !first.emplace(ids[k], k).second) same_row[k] = first[ids[k]];
        }
        auto stamp = [&](RowState& st, const StatementOp& op) {
            const Stamp at{s.tick(max_stamp(st)), s.self()};
            const uint64_t seq = s.next_seq();
            switch (op.kind) {
                case LocalOp::insert: local_insert(st, at, seq); break;
                case LocalOp::remove: local_delete(st, at, seq); break;
                case LocalOp::update: local_update(st, op.changed, at, seq); break;
            }
        };
        // Keys moved onto each other (UPDATE ... SET id = 3 - id swaps 1
        // and 2): in row order a later row's delete of its old key would
        // bury the key an earlier row moved onto. The statement's end
        // state holds every new key, so then all its deletes go first.
        std::vector<char> inserted(keys.size(), 0);
        bool buried = false;
        for (const StatementOp& op : ops_) {
            const size_t k = same_row[key_of_op[op.key]];
            if (op.kind == LocalOp::insert) inserted[k] = 1;
            else if (op.kind == LocalOp::remove && inserted[k]) buried = true;
        }
        if (buried)
            std::stable_partition(ops_.begin(), ops_.end(),
                                  [](const StatementOp& op) { return op.kind == LocalOp::remove; });
        // Keys with no metadata yet: nothing locked them, so another
        // transaction (a merge of a tombstone this database never had the
        // row of) may store one meanwhile. They are inserted, never upserted.
        std::vector<bool> had_meta(keys.size());
        for (size_t k = 0; k < keys.size(); ++k) had_meta[k] = keys.size() == 1 ? rows[0].gen != 0 : ids[k] != 0;
        // A key without metadata is taken to be deleted at the table's
        // purged generations: a peer may still hold it that high.
        if (const uint64_t floor = s.gen_floor(t_.relid))
            for (size_t k = 0; k < keys.size(); ++k)
                if (!had_meta[k] && rows[k].gen == 0) rows[k].gen = floor;
        std::vector<bool> written(keys.size(), false);
        for (const StatementOp& op : ops_) {
            const size_t k = same_row[key_of_op[op.key]];
            stamp(rows[k], op);
            written[k] = true;
        }
        std::vector<std::vector<Param>> old_keys, new_keys;
        std::vector<RowState> old_rows, new_rows;
        std::vector<size_t> new_at;  // the key of each of new_keys
        for (size_t k = 0; k < keys.size(); ++k) {
            if (!written[k]) continue;
            (had_meta[k] ? old_keys : new_keys).push_back(keys[k]);
            (had_meta[k] ? old_rows : new_rows).push_back(std::move(rows[k]));
            if (!had_meta[k]) new_at.push_back(k);
        }
        if (old_keys.size() == 1) store_meta(t_, old_keys[0], old_rows[0]);
        else store_meta_many(t_, old_keys, old_rows);
        // Many new rows (most of a bulk INSERT's) take a plain INSERT, all
        // or nothing (ON CONFLICT's speculative insertion costs as much
        // again); a few take INSERT ... ON CONFLICT DO NOTHING.
        std::vector<bool> stored;
        if (new_keys.size() >= kPlainInsertFrom)
            stored.assign(new_keys.size(), insert_meta_many(t_, new_keys, new_rows));
        else stored = insert_new_meta(t_, new_keys, new_rows);
        // Rows another transaction stored since they were read: read again,
        // locked, with this statement's writes to them stamped on top. A key
        // still without metadata at that read is inserted again, never
        // upserted (a third transaction may be storing it); each round waits
        // for the transactions it met, so the second round stores them all.
        std::vector<std::vector<const StatementOp*>> ops_of(keys.size());
        std::vector<std::vector<Param>> again_keys;
        std::vector<size_t> again_at;
        for (size_t j = 0; j < new_keys.size(); ++j)
            if (!stored[j]) {
                again_keys.push_back(new_keys[j]);
                again_at.push_back(new_at[j]);
            }
        if (!again_keys.empty())
            for (const StatementOp& op : ops_) ops_of[same_row[key_of_op[op.key]]].push_back(&op);
        for (int round = 0; !again_keys.empty(); ++round) {
            if (round == 8) throw Error("table \"" + t_.name + "\": metadata of new rows kept changing under a write");
            std::vector<RowState> again = load_meta_many(t_, again_keys, true);
            std::vector<std::vector<Param>> there_keys, missing_keys;
            std::vector<RowState> there_rows, missing_rows;
            std::vector<size_t> missing_at;
            for (size_t j = 0; j < again_keys.size(); ++j) {
                const bool there = again[j].gen != 0;
                for (const StatementOp* op : ops_of[again_at[j]]) stamp(again[j], *op);
                (there ? there_keys : missing_keys).push_back(std::move(again_keys[j]));
                (there ? there_rows : missing_rows).push_back(std::move(again[j]));
                if (!there) missing_at.push_back(again_at[j]);
            }
            if (there_keys.size() == 1) store_meta(t_, there_keys[0], there_rows[0]);
            else store_meta_many(t_, there_keys, there_rows);
            const std::vector<bool> done = insert_new_meta(t_, missing_keys, missing_rows);
            again_keys.clear();
            again_at.clear();
            for (size_t j = 0; j < missing_keys.size(); ++j)
                if (!done[j]) {
                    again_keys.push_back(std::move(missing_keys[j]));
                    again_at.push_back(missing_at[j]);
                }
        }
        for (const StatementOp& op : ops_)
            if (!op.last.empty()) store_last_values(t_, keys[key_of_op[op.key]], op.last);
    }

private:
    const TableInfo& t_;
    std::vector<StatementOp> ops_;
    std::vector<std::vector<Value>> values_;  // per op: its key, canonical
    std::vector<std::vector<Param>> params_;  // per op: its key, as bound
};

// A deleted row's values, for its tombstone when the table has row-level
// security (keep_last_values).
std::string last_values(Relation rel, const TransitionRows& row) {
    if (!rel->rd_rel->relrowsecurity) return {};
    const text* j = nullptr;
    pg_call([&] {
        bool should_free = false;
        HeapTuple tup = ExecFetchSlotHeapTuple(row.slot(), false, &should_free);
        Datum d = heap_copy_tuple_as_datum(tup, RelationGetDescr(rel));
        j = DatumGetTextPP(DirectFunctionCall1(row_to_json, d));
    });
    return std::string(VARDATA_ANY(j), VARSIZE_ANY_EXHDR(j));
}

size_t row_count(Tuplestorestate* rows) {
    int64 n = 0;
    if (rows) pg_call([&] { n = tuplestore_tuple_count(rows); });
    return static_cast<size_t>(n);
}

}  // namespace

Datum capture_statement(FunctionCallInfo fcinfo) {
    if (!CALLED_AS_TRIGGER(fcinfo)) throw Error("lww_capture must be called as a trigger");
    TriggerData* td = reinterpret_cast<TriggerData*>(fcinfo->context);
    if (!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) || !TRIGGER_FIRED_AFTER(td->tg_event))
        throw Error("lww_capture must fire AFTER ... FOR EACH STATEMENT");
    // Replica mode (lww_apply's writes, and all that fires meanwhile): the
    // row trigger, ENABLE REPLICA, captured every row of this statement.
    if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA) return PointerGetDatum(nullptr);
    State& s = State::get();
    Tuplestorestate* olds = td->tg_oldtable;
    Tuplestorestate* news = td->tg_newtable;
    if (row_count(olds) == 0 && row_count(news) == 0) return PointerGetDatum(nullptr);

    SpiSession spi;
    const TablePtr t = s.find(RelationGetRelid(td->tg_relation));
    if (!t) return PointerGetDatum(nullptr);
    TupleDesc desc = RelationGetDescr(td->tg_relation);
    StatementWrites writes(*t);
    if (TRIGGER_FIRED_BY_INSERT(td->tg_event)) {
        if (!news) throw Error("lww_capture: INSERT without its NEW TABLE");
        TransitionRows row(news, desc);
        while (row.next()) writes.add(LocalOp::insert, row);
    } else if (TRIGGER_FIRED_BY_DELETE(td->tg_event)) {
        if (!olds) throw Error("lww_capture: DELETE without its OLD TABLE");
        TransitionRows row(olds, desc);
        while (row.next()) writes.add(LocalOp::remove, row, {}, last_values(td->tg_relation, row));
    } else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event)) {
        if (!olds || !news) throw Error("lww_capture: UPDATE without its OLD and NEW TABLE");
        // Postgres adds each updated row to both tables at once, so the
        // i-th old row is the i-th new row's before image. (Were they ever
        // not, a pair would read as a key change: more recorded, none lost.)
        TransitionRows before(olds, desc), after(news, desc);
        for (;;) {
            const bool more_before = before.next(), more_after = after.next();
            if (more_before != more_after) throw Error("lww_capture: the UPDATE's old and new rows differ in number");
            if (!more_before) break;
            bool key_changed = false;
            for (size_t i = 0; i < t->key.size() && !key_changed; ++i)
                key_changed = !same_attr(before, after, t->key_attnums[i], t->key_types[i]);
            if (key_changed) {  // a delete of the old key and an insert of the new one
                writes.add(LocalOp::remove, before, {}, last_values(td->tg_relation, before));
                writes.add(LocalOp::insert, after);
                continue;
            }
            std::vector<bool> changed(t->cols.size());
            bool any = false;
            for (size_t i = 0; i < t->cols.size(); ++i)
                any |= changed[i] = !same_attr(before, after, t->col_attnums[i], t->col_types[i]);
            if (any) writes.add(LocalOp::update, after, std::move(changed));
        }
    }
    if (!TRIGGER_FIRED_BY_INSERT(td->tg_event) && primary_key_deferrable(RelationGetRelid(td->tg_relation)))
        writes.revive_present();
    writes.record();
    return PointerGetDatum(nullptr);
}

namespace {

// A local delete, row path. Under a deferrable primary key the table may
// still hold the key (a swap: row 1->2, then 2->1, each event on its own):
// then the row lives on, as a new generation (StatementWrites::revive_present).
void deleted(const TableInfo& t, Relation rel, const std::vector<Param>& key) {
    write(t, key, local_delete);
    if (primary_key_deferrable(rel->rd_id) && still_there(t, key)) write(t, key, local_insert);
}

}  // namespace

void replay_local_ops(const TableInfo& t, const std::vector<Param>& key, const std::vector<LocalOp>& ops) {
    for (const LocalOp& op : ops) {
        switch (op.kind) {
            case LocalOp::insert: write(t, key, local_insert); break;
            case LocalOp::remove: write(t, key, local_delete); break;
            case LocalOp::update:
                write(t, key, [&](RowState& st, const Stamp& stamp, uint64_t seq) {
                    local_update(st, op.changed, stamp, seq);
                });
                break;
        }
    }
}

Datum capture_trigger(FunctionCallInfo fcinfo) {
    if (!CALLED_AS_TRIGGER(fcinfo)) throw Error("lww_trigger must be called as a trigger");
    TriggerData* td = reinterpret_cast<TriggerData*>(fcinfo->context);
    if (!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_AFTER(td->tg_event))
        throw Error("lww_trigger must fire AFTER ... FOR EACH ROW");
    State& s = State::get();

    SpiSession spi;
    const TablePtr t = s.find(RelationGetRelid(td->tg_relation));
    if (!t) return PointerGetDatum(nullptr);
    TupleDesc desc = RelationGetDescr(td->tg_relation);
    // The trigger fires in replica mode (ENABLE REPLICA; before the 0.5
    // upgrade, ALWAYS): lww_apply writes so. Every write is a local write
    // except the merge's own one (State::own).
    OwnWrites& own = s.own;

    if (TRIGGER_FIRED_BY_INSERT(td->tg_event)) {
        HeapTuple tup = td->tg_trigtuple;
        if (OwnWrite* ow = marked(own, *t, tup, desc)) {
            if (ow->writing && ow->kind == LocalOp::insert && !ow->seen && written_by(tup, ow->cid)) {
                ow->seen = true;
                bool any = false;
                std::vector<bool> changed = changed_by_triggers(*t, *ow, nullptr, tup, desc, &any);
                if (any) ow->ops.push_back(LocalOp{LocalOp::update, std::move(changed)});
            } else {
                ow->ops.push_back(LocalOp{LocalOp::insert, {}});
            }
            return PointerGetDatum(nullptr);
        }
        write(*t, key_of(*t, tup, desc), local_insert);
    } else if (TRIGGER_FIRED_BY_DELETE(td->tg_event)) {
        HeapTuple tup = td->tg_trigtuple;
        keep_last_values(*t, td->tg_relation, tup, desc);
        if (OwnWrite* ow = marked(own, *t, tup, desc)) {
            if (ow->writing && ow->kind == LocalOp::remove && !ow->seen) ow->seen = true;
            else ow->ops.push_back(LocalOp{LocalOp::remove, {}});
            return PointerGetDatum(nullptr);
        }
        deleted(*t, td->tg_relation, key_of(*t, tup, desc));
    } else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event)) {
        HeapTuple oldt = td->tg_trigtuple, newt = td->tg_newtuple;
        bool key_changed = false;
        for (size_t i = 0; i < t->key.size(); ++i)
            if (!same_value(oldt, newt, desc, t->key_attnums[i], t->key_types[i])) key_changed = true;
        if (key_changed) {  // a key change is a delete of the old key and an insert of the new one
            if (OwnWrite* ow = marked(own, *t, oldt, desc)) ow->ops.push_back(LocalOp{LocalOp::remove, {}});
            else deleted(*t, td->tg_relation, key_of(*t, oldt, desc));
            keep_last_values(*t, td->tg_relation, oldt, desc);
            if (OwnWrite* ow = marked(own, *t, newt, desc)) ow->ops.push_back(LocalOp{LocalOp::insert, {}});
            else write(*t, key_of(*t, newt, desc), local_insert);
        } else if (OwnWrite* ow = marked(own, *t, newt, desc)) {
            if (ow->writing && ow->kind == LocalOp::update && !ow->seen && written_by(newt, ow->cid)) {
                ow->seen = true;
                bool any = false;
                std::vector<bool> changed = changed_by_triggers(*t, *ow, oldt, newt, desc, &any);
                if (any) ow->ops.push_back(LocalOp{LocalOp::update, std::move(changed)});
            } else {
                std::vector<bool> changed(t->cols.size());
                bool any = false;
                for (size_t i = 0; i < t->cols.size(); ++i)
                    any |= changed[i] = !same_value(oldt, newt, desc, t->col_attnums[i], t->col_types[i]);
                if (any) ow->ops.push_back(LocalOp{LocalOp::update, std::move(changed)});
            }
        } else {
            std::vector<bool> changed(t->cols.size());
            bool any = false;
            for (size_t i = 0; i < t->cols.size(); ++i)
                any |= changed[i] = !same_value(oldt, newt, desc, t->col_attnums[i], t->col_types[i]);
            if (any)
                write(*t, key_of(*t, newt, desc),
                      [&](RowState& st, const Stamp& stamp, uint64_t seq) { local_update(st, changed, stamp, seq); });
        }
    }
    return PointerGetDatum(nullptr);
}

}  // namespace lww::pg
