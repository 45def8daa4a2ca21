// PostgreSQL adapter: the row trigger that stamps local writes, in C++.
#include "meta.h"

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

}  // namespace

Datum capture_trigger(FunctionCallInfo fcinfo) {
    if (!CALLED_AS_TRIGGER(fcinfo)) throw Error("lww_trigger must be called as a trigger");
    TriggerData* td = reinterpret_cast<TriggerData*>(fcinfo->context);
    if (!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_AFTER(td->tg_event))
        throw Error("lww_trigger must fire AFTER ... FOR EACH ROW");
    State& s = State::get();
    if (s.applying) return PointerGetDatum(nullptr);  // merged changes are not local writes

    SpiSession spi;
    const TablePtr t = s.find(RelationGetRelid(td->tg_relation));
    if (!t) return PointerGetDatum(nullptr);
    TupleDesc desc = RelationGetDescr(td->tg_relation);

    if (TRIGGER_FIRED_BY_INSERT(td->tg_event)) {
        write(*t, key_of(*t, td->tg_trigtuple, desc), local_insert);
    } else if (TRIGGER_FIRED_BY_DELETE(td->tg_event)) {
        write(*t, key_of(*t, td->tg_trigtuple, desc), local_delete);
    } else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event)) {
        HeapTuple oldt = td->tg_trigtuple, newt = td->tg_newtuple;
        bool key_changed = false;
        for (size_t i = 0; i < t->key.size(); ++i)
            if (!same_value(oldt, newt, desc, t->key_attnums[i], t->key_types[i])) key_changed = true;
        if (key_changed) {  // a key change is a delete of the old key and an insert of the new one
            write(*t, key_of(*t, oldt, desc), local_delete);
            write(*t, key_of(*t, newt, desc), local_insert);
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
