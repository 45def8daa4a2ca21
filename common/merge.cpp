#include "merge.h"

#include "error.h"

namespace lww {

uint64_t RowState::max_seq() const {
    uint64_t m = row.seq;
    for (const auto& c : cols)
        if (c.present && c.seq > m) m = c.seq;
    return m;
}

static uint64_t next_gen(uint64_t gen) {
    if (gen >= kMaxGeneration)
        throw Error(
            "the row's generation reached its limit (2^53 - 1 inserts and deletes of one key); "
            "it can no longer be deleted or re-inserted",
            ErrorKind::limit);
    return gen + 1;
}

uint64_t gen_after_insert(uint64_t gen) { return gen == 0 ? 1 : (gen & 1 ? gen : next_gen(gen)); }
uint64_t gen_after_delete(uint64_t gen) { return gen & 1 ? next_gen(gen) : gen; }

void local_insert(RowState& st, const Stamp& s, uint64_t seq) {
    st.gen = gen_after_insert(st.gen);
    st.row = Register{true, s, seq};
    for (auto& c : st.cols) c = Register{true, s, seq};
}

void local_update(RowState& st, const std::vector<bool>& changed, const Stamp& s, uint64_t seq) {
    if (!st.alive()) {  // the table holds a row the log thought deleted: record it whole
        local_insert(st, s, seq);
        return;
    }
    for (size_t i = 0; i < st.cols.size() && i < changed.size(); ++i)
        if (changed[i]) st.cols[i] = Register{true, s, seq};
}

void local_delete(RowState& st, const Stamp& s, uint64_t seq) {
    st.gen = gen_after_delete(st.gen);
    st.row = Register{true, s, seq};
    for (auto& c : st.cols) c = Register{};
}

static bool wins(const Register& local, const Stamp& incoming) {
    return !local.present || stamp_less(local.stamp, incoming);
}

MergeOutcome merge_row(RowState& st, const IncomingRow& in, uint64_t seq) {
    MergeOutcome out;
    out.was_alive = st.alive();
    const size_t received = (in.has_row ? 1 : 0) + in.cols.size();
    if (in.gen == 0 || in.gen > kMaxGeneration) throw Error("generation out of range (1 to 2^53 - 1)");
    if (in.gen > st.gen && in.gen - st.gen > kMaxGenerationStep)
        throw Error("a change raises a row's generation from " + std::to_string(st.gen) + " to " +
                    std::to_string(in.gen) + ", more than 2^32 at once");
    if (in.gen < st.gen) {
        out.alive = out.was_alive;
        out.ignored = out.lost = received;
        out.older_generation = true;
        return out;
    }
    if (in.gen > st.gen) {
        if (st.row.present) out.displaced.push_back(Displaced{Displaced::kGeneration, st.row.stamp, st.row.seq});
        for (const auto& c : st.cols)
            if (c.present) out.displaced.push_back(Displaced{Displaced::kGeneration, c.stamp, c.seq});
        st.gen = in.gen;
        st.row = Register{};
        for (auto& c : st.cols) c = Register{};
        out.gen_raised = true;
    }
    // What did not win is a duplicate when it is the register held here.
    auto lose = [&](const Register& held, const Stamp& incoming, size_t k) {
        if (held.present && stamp_equal(held.stamp, incoming)) {
            ++out.duplicate;
        } else {
            ++out.lost;
            out.lost_regs.push_back(k);
        }
    };
    if (in.has_row) {
        if (wins(st.row, in.row)) {
            if (st.row.present) out.displaced.push_back(Displaced{Displaced::kRowRegister, st.row.stamp, st.row.seq});
            st.row = Register{true, in.row, seq};
            out.row_won = true;
            ++out.applied;
        } else {
            lose(st.row, in.row, Displaced::kRowRegister);
        }
    }
    for (size_t k = 0; k < in.cols.size(); ++k) {
        const auto& [idx, stamp] = in.cols[k];
        if (idx >= st.cols.size()) throw Error("column index out of range");
        // Column registers only exist for a living generation.
        if (!(st.gen & 1)) {
            ++out.lost;
            continue;
        }
        if (wins(st.cols[idx], stamp)) {
            if (st.cols[idx].present) out.displaced.push_back(Displaced{k, st.cols[idx].stamp, st.cols[idx].seq});
            st.cols[idx] = Register{true, stamp, seq};
            out.won_cols.push_back(k);
            ++out.applied;
        } else {
            lose(st.cols[idx], stamp, k);
        }
    }
    out.ignored = received - out.applied;
    out.alive = st.alive();
    return out;
}

}  // namespace lww
