#include "merge.h"

#include "error.h"

namespace lww {

uint64_t RowState::max_seq() const {
    uint64_t m = row.seq;
    for (const auto& c : cols)
        if (c.present && c.seq > m) m = c.seq;
    return m;
}

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
    if (in.gen == 0) throw Error("generation 0 is not a valid row generation");
    if (in.gen < st.gen) {
        out.alive = out.was_alive;
        out.ignored = received;
        return out;
    }
    if (in.gen > st.gen) {
        st.gen = in.gen;
        st.row = Register{};
        for (auto& c : st.cols) c = Register{};
        out.gen_raised = true;
    }
    if (in.has_row && wins(st.row, in.row)) {
        st.row = Register{true, in.row, seq};
        out.row_won = true;
        ++out.applied;
    }
    for (size_t k = 0; k < in.cols.size(); ++k) {
        const auto& [idx, stamp] = in.cols[k];
        if (idx >= st.cols.size()) throw Error("column index out of range");
        // Column registers only exist for a living generation.
        if (!(st.gen & 1)) continue;
        if (wins(st.cols[idx], stamp)) {
            st.cols[idx] = Register{true, stamp, seq};
            out.won_cols.push_back(k);
            ++out.applied;
        }
    }
    out.ignored = received - out.applied;
    out.alive = st.alive();
    return out;
}

}  // namespace lww
