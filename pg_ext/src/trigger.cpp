// PostgreSQL adapter: the row trigger that stamps local writes, in C++.
#include "changes.h"

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

// One local write to one row: stamp above everything the row holds.
template <class Op>
void write(const TableInfo& t, const std::vector<Param>& key, Op&& op) {
    State& s = State::get();
    RowState st = load_meta(t, key);
    Stamp stamp{s.tick(max_stamp(st)), s.self()};
    op(st, stamp, s.next_seq());
    store_meta(t, key, st);
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
            if (!written[i] && !same_value(oldt, newt, desc, t.col_attnums[i], t.col_types[i])) *any = changed[i] = true;
    return changed;
}

// A deleted row's values, kept in its tombstone when the table has row-level
// security (only then: the cost is one UPDATE of the metadata per delete).
void keep_last_values(const TableInfo& t, Relation rel, HeapTuple tup, TupleDesc desc) {
    if (!rel->rd_rel->relrowsecurity) return;
    std::string json;
    pg_call([&] {
        Datum row = heap_copy_tuple_as_datum(tup, desc);
        text* j = DatumGetTextPP(DirectFunctionCall1(row_to_json, row));
        json.assign(VARDATA_ANY(j), VARSIZE_ANY_EXHDR(j));
    });
    store_last_values(t, key_of(t, tup, desc), json);
}

}  // namespace

void replay_local_ops(const TableInfo& t, const std::vector<Param>& key, const std::vector<LocalOp>& ops) {
    for (const LocalOp& op : ops) {
        switch (op.kind) {
            case LocalOp::insert: write(t, key, local_insert); break;
            case LocalOp::remove: write(t, key, local_delete); break;
            case LocalOp::update:
                write(t, key, [&](RowState& st, const Stamp& stamp, uint64_t seq) { local_update(st, op.changed, stamp, seq); });
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
    // The trigger fires ALWAYS (also under session_replication_role =
    // replica, which lww_apply sets): every write is a local write except the
    // merge's own one (State::own).
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
        write(*t, key_of(*t, tup, desc), local_delete);
    } else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event)) {
        HeapTuple oldt = td->tg_trigtuple, newt = td->tg_newtuple;
        bool key_changed = false;
        for (size_t i = 0; i < t->key.size(); ++i)
            if (!same_value(oldt, newt, desc, t->key_attnums[i], t->key_types[i])) key_changed = true;
        if (key_changed) {  // a key change is a delete of the old key and an insert of the new one
            if (OwnWrite* ow = marked(own, *t, oldt, desc)) ow->ops.push_back(LocalOp{LocalOp::remove, {}});
            else write(*t, key_of(*t, oldt, desc), local_delete);
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
