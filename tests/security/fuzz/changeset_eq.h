// Deep equality of decoded change sets, for the round-trip properties.
#pragma once
#include "../../../common/changeset.h"

namespace fuzz {

inline bool same_stamp(const lww::Stamp& a, const lww::Stamp& b) { return lww::stamp_equal(a, b); }

inline bool same_values(const std::vector<lww::Value>& a, const std::vector<lww::Value>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (!lww::identical(a[i], b[i])) return false;
    return true;
}

inline bool same_changeset(const lww::ChangeSet& a, const lww::ChangeSet& b) {
    if (!(a.origin == b.origin) || a.since != b.since || a.after != b.after || a.upto != b.upto ||
        a.complete != b.complete || a.tables.size() != b.tables.size())
        return false;
    for (size_t t = 0; t < a.tables.size(); ++t) {
        const auto &x = a.tables[t], &y = b.tables[t];
        if (x.name != y.name || x.key != y.key || x.columns != y.columns || x.rows.size() != y.rows.size())
            return false;
        for (size_t r = 0; r < x.rows.size(); ++r) {
            const auto &p = x.rows[r], &q = y.rows[r];
            if (!same_values(p.key, q.key) || p.gen != q.gen || p.has_row != q.has_row ||
                (p.has_row && !same_stamp(p.row, q.row)) || p.cols.size() != q.cols.size())
                return false;
            for (size_t c = 0; c < p.cols.size(); ++c)
                if (p.cols[c].col != q.cols[c].col || !lww::identical(p.cols[c].value, q.cols[c].value) ||
                    !same_stamp(p.cols[c].stamp, q.cols[c].stamp))
                    return false;
        }
    }
    return true;
}

}  // namespace fuzz
