#include "apply.h"

#include <algorithm>

#include "error.h"

namespace lww {

void refuse_own_changes(const NodeId& origin, const NodeId& self) {
    if (origin == self)
        throw Error("the change set comes from this database's own node " + self.str() +
                    "; a node never applies its own changes");
}

UserWrite user_write(const MergeOutcome& out, bool row_there) {
    if (!out.alive) return row_there ? UserWrite::remove : UserWrite::none;
    if (!row_there) return UserWrite::insert;
    return out.won_cols.empty() ? UserWrite::none : UserWrite::update;
}

// A register of ours (stamped by this node) the sender had not received.
static bool unseen_own(const Displaced& d, const Receiver& who) {
    return d.stamp.node == who.self && !(who.seen && d.seq <= who.seen);
}

size_t overwritten(const MergeOutcome& out, const Receiver& who) {
    // Each incoming register displaces at most one: count them; the
    // registers a new generation drops count once, for the register that
    // brought it (the row's, or when the set leaves that out, a column's).
    size_t n = 0;
    bool by_generation = false;
    for (const Displaced& d : out.displaced) {
        if (!unseen_own(d, who)) continue;
        if (d.by == Displaced::kGeneration) by_generation = true;
        else ++n;
    }
    if (by_generation && n == 0 && out.applied > 0) ++n;
    return n;
}

std::vector<Conflict> conflicts_of(const MergeOutcome& out, const IncomingRow& in, const RowState& merged,
                                   const Receiver& who) {
    std::vector<Conflict> cs;
    const bool theirs_alive = (in.gen & 1) != 0;
    // The stamp an incoming row brings (its row register, else a column's).
    const Stamp theirs_row = in.has_row || in.cols.empty() ? in.row : in.cols.front().second;
    if (out.older_generation) {
        Conflict c;
        c.ours = merged.row.stamp;
        c.theirs = theirs_row;
        c.ours_alive = merged.alive();
        c.theirs_alive = theirs_alive;
        cs.push_back(c);
        return cs;
    }
    for (size_t k : out.lost_regs) {
        Conflict c;
        if (k == Displaced::kRowRegister) {
            c.ours = merged.row.stamp;
            c.theirs = in.row;
            c.ours_alive = merged.alive();
            c.theirs_alive = theirs_alive;
        } else {
            c.reg = in.cols[k].first;
            c.in_col = k;
            c.ours = merged.cols[c.reg].stamp;
            c.theirs = in.cols[k].second;
        }
        cs.push_back(c);
    }
    bool by_generation = false;
    Stamp newest_of_ours{};
    for (const Displaced& d : out.displaced) {
        if (!unseen_own(d, who)) continue;
        if (d.by == Displaced::kGeneration || d.by == Displaced::kRowRegister) {
            if (!by_generation || stamp_less(newest_of_ours, d.stamp)) newest_of_ours = d.stamp;
            by_generation = true;
            continue;
        }
        Conflict c;
        c.kind = Conflict::Kind::overwrote;
        c.reg = in.cols[d.by].first;
        c.in_col = d.by;
        c.ours = d.stamp;
        c.theirs = in.cols[d.by].second;
        cs.push_back(c);
    }
    if (by_generation) {  // the row itself: one entry
        Conflict c;
        c.kind = Conflict::Kind::overwrote;
        c.ours = newest_of_ours;
        c.theirs = theirs_row;
        c.ours_alive = out.was_alive;
        c.theirs_alive = out.alive;
        cs.push_back(c);
    }
    return cs;
}

// Registers that did not win, as the merge rule classed them.
static void count_unapplied(ApplyCounts& c, const MergeOutcome& out) {
    c.duplicate += out.duplicate;
    c.lost += out.lost;
    c.ignored += out.ignored;
}

void count_merged(ApplyCounts& c, const MergeOutcome& out, const Receiver* who) {
    ++c.rows;
    c.received += out.applied + out.ignored;
    c.applied += out.applied;
    if (who && !out.displaced.empty()) c.overwrote += overwritten(out, *who);
    count_unapplied(c, out);
}

void count_refused(ApplyCounts& c, const MergeOutcome& out) {
    ++c.rows;
    c.received += out.applied + out.ignored;
    c.rejected += out.applied;
    count_unapplied(c, out);
}

void count_rejected(ApplyCounts& c, const IncomingRow& in) {
    const size_t n = (in.has_row ? 1 : 0) + in.cols.size();
    ++c.rows;
    c.received += n;
    c.rejected += n;
}

void assign_seq(RowState& st, uint64_t seq) {
    if (st.row.seq == kUnassignedSeq) st.row.seq = seq;
    for (auto& c : st.cols)
        if (c.seq == kUnassignedSeq) c.seq = seq;
}

// Whether the merge of `r` won a register stamped by a node other than its
// sender and this database: one the sender relayed (docs/PROTOCOL.md, "No echo").
static bool brings_relayed(const MergeRow& r, const NodeId& sender, const NodeId& self) {
    auto third = [&](const Stamp& s) { return s.node != sender && s.node != self; };
    if (r.out.row_won && third(r.in->row)) return true;
    for (size_t k : r.out.won_cols)
        if (third(r.in->cols[k].second)) return true;
    return false;
}

// Receiver::adopt, for a row of a key held nothing of here from at or below
// the table's purge floor: an insert is taken after the floor and stamped
// anew; a column change lost to the purged delete (returns false, the
// outcome says so), unless it completes a row of the key parked here. A
// delete merges as usual: its tombstone supersedes a parked row.
static bool adopt_below_floor(TableStore& store, MergeRow& r, uint64_t floor, const Receiver& who) {
    if (r.adopted && r.in == r.adopted.get()) return true;  // merged again (a redo): as adopted
    r.adopted.reset();
    if (r.st.gen != 0 || r.in->gen > floor || !(r.in->gen & 1)) return true;
    if (!r.in->has_row) {
        if (store.holds_parked(r)) return true;
        r.out = MergeOutcome{};
        r.out.ignored = r.out.lost = r.in->cols.size();
        r.out.older_generation = true;
        return false;
    }
    auto row = std::make_shared<IncomingRow>(*r.in);
    row->gen = gen_after_insert(floor);
    row->row = who.adopt();
    for (auto& c : row->cols) c.second = row->row;
    r.adopted = row;
    r.in = row.get();
    return true;
}

void merge_batch(TableStore& store, std::vector<MergeRow>& rows, const Receiver* who) {
    store.load(rows);
    const uint64_t floor = who && who->adopt ? store.gen_floor() : 0;
    std::vector<MergeRow*> kept;
    for (MergeRow& r : rows) {
        r.counts = ApplyCounts{};
        r.won.clear();
        r.write = UserWrite::none;
        r.keep = r.redo = r.relayed = r.restamped = false;
        r.seq = 0;
        if (floor && !adopt_below_floor(store, r, floor, *who)) {
            count_merged(r.counts, r.out, who);
            continue;
        }
        r.out = merge_row(r.st, *r.in, kUnassignedSeq);
        if (r.adopted && r.in == r.adopted.get()) {
            // Every column of the adopted row is this database's: the ones
            // the sender left out (registers stamped here, which a feed never
            // sends back) take their DEFAULT here and travel with it, so no
            // peer keeps a value of the purged generation in them.
            for (Register& c : r.st.cols)
                if (!c.present) c = Register{true, r.in->row, kUnassignedSeq};
        }
        if (!r.out.changed()) {
            count_merged(r.counts, r.out, who);
            if (r.out.older_generation && who && who->restamp && r.st.gen > r.in->gen) {
                // The whole row travels again as this database's: a peer
                // without it gets every register — also the one that
                // stamped them, which a feed never sends its own back.
                r.st.row.stamp = who->restamp();
                r.st.row.seq = kUnassignedSeq;
                for (Register& c : r.st.cols)
                    if (c.present) c = Register{true, r.st.row.stamp, kUnassignedSeq};
                r.keep = r.restamped = true;
                kept.push_back(&r);
            }
            continue;
        }
        for (size_t k : r.out.won_cols) r.won.push_back(r.in->cols[k].first);
        std::sort(r.won.begin(), r.won.end());
        r.write = user_write(r.out, r.there);
        if (!store.admit(r)) {
            count_refused(r.counts, r.out);
            r.write = UserWrite::none;
            continue;
        }
        r.keep = true;
        kept.push_back(&r);
    }
    if (who && who->log_conflicts) {
        std::vector<MergeRow*> with;
        for (MergeRow& r : rows) {
            r.conflicts.clear();
            if (r.out.lost_regs.empty() && !r.out.older_generation && r.out.displaced.empty()) continue;
            if (r.out.changed() && !r.keep) continue;  // refused: nothing of it was merged
            r.conflicts = conflicts_of(r.out, *r.in, r.st, *who);
            if (!r.conflicts.empty()) with.push_back(&r);
        }
        if (!with.empty()) store.record_conflicts(with);
    }
    if (kept.empty()) return;
    auto store_kept = [&] {
        if (kept.empty()) return;
        for (MergeRow* r : kept) {
            r->seq = store.next_seq();
            assign_seq(r->st, r->seq);
            const NodeId* sender = r->from ? r->from : who ? who->sender : nullptr;
            r->relayed = who && sender && brings_relayed(*r, *sender, who->self);
        }
        store.store(kept);
    };
    if (store.store_first()) {
        store_kept();
        store.write_user(kept);  // may not ask for a redo: the metadata is stored
    } else {
        store.write_user(kept);
        for (MergeRow* r : kept) r->keep = !r->redo;
        kept.erase(std::remove_if(kept.begin(), kept.end(), [](const MergeRow* r) { return r->redo; }), kept.end());
        store_kept();
    }
    for (MergeRow* r : kept) {
        if (r->redo) throw Error("a row was redone after its metadata was stored", ErrorKind::internal);
        if (!r->restamped) count_merged(r->counts, r->out, who);
    }
}

}  // namespace lww
