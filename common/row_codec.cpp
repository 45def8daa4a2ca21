#include "row_codec.h"

#include <algorithm>
#include <cstring>

#include "error.h"

namespace lww {

void NodeDirectory::remember(uint32_t idx, const NodeId& id) const {
    by_idx_[idx] = id;
    by_id_[key(id)] = idx;
    if (idx >= next_) next_ = idx + 1;
}

uint32_t NodeDirectory::intern(const NodeId& id, bool* added) {
    uint32_t idx = 0;
    if (find(id, &idx)) {
        if (added) *added = false;
        return idx;
    }
    // A new node takes an index above every persisted one and every one
    // interned here but not yet persisted.
    idx = next_;
    if (source_) idx = std::max(idx, source_->next_index());
    if (idx == UINT32_MAX) throw Error("too many nodes");
    remember(idx, id);
    if (added) *added = true;
    return idx;
}

bool NodeDirectory::find(const NodeId& id, uint32_t* idx) const {
    auto it = by_id_.find(key(id));
    uint32_t found = 0;
    if (it != by_id_.end()) {
        found = it->second;
    } else if (source_ && source_->index_of(id, &found)) {
        remember(found, id);
    } else {
        return false;
    }
    if (idx) *idx = found;
    return true;
}

void NodeDirectory::put(uint32_t idx, const NodeId& id) { remember(idx, id); }

const NodeId& NodeDirectory::id(uint32_t idx) const {
    auto it = by_idx_.find(idx);
    if (it != by_idx_.end()) return it->second;
    NodeId found;
    if (!source_ || !source_->id_at(idx, &found))
        throw Error("metadata names unknown node index " + std::to_string(idx));
    remember(idx, found);
    return by_idx_.at(idx);
}

void NodeDirectory::forget_others() {
    const NodeId self = by_idx_.at(0);
    by_idx_.clear();
    by_id_.clear();
    next_ = 1;
    remember(0, self);
}

namespace {

void put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7F) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}

uint64_t get_varint(std::string_view in, size_t& pos) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (pos >= in.size()) throw Error("corrupt lwwsync metadata blob (truncated varint)");
        uint8_t b = static_cast<uint8_t>(in[pos++]);
        v |= static_cast<uint64_t>(b & 0x7F) << shift;
        if (!(b & 0x80)) return v;
    }
    throw Error("corrupt lwwsync metadata blob (varint too long)");
}

// Entry: varint column, tag byte (0 absent, 1 present), then hlc (8 bytes LE),
// varint node index, varint seq when present.
void put_entry(std::string& out, size_t col, bool present, uint64_t hlc, uint32_t node, uint64_t seq) {
    put_varint(out, col);
    out.push_back(present ? 1 : 0);
    if (!present) return;
    char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(hlc >> (8 * i));
    out.append(b, 8);
    put_varint(out, node);
    put_varint(out, seq);
}

struct Entry {
    size_t col;
    bool present;
    uint64_t hlc;
    uint32_t node;
    uint64_t seq;
};

Entry get_entry(std::string_view in, size_t& pos) {
    Entry e{};
    e.col = get_varint(in, pos);
    if (pos >= in.size()) throw Error("corrupt lwwsync metadata blob (truncated entry)");
    e.present = in[pos++] != 0;
    if (!e.present) return e;
    if (pos + 8 > in.size()) throw Error("corrupt lwwsync metadata blob (truncated stamp)");
    for (int i = 0; i < 8; ++i) e.hlc |= static_cast<uint64_t>(static_cast<uint8_t>(in[pos + i])) << (8 * i);
    pos += 8;
    e.node = static_cast<uint32_t>(get_varint(in, pos));
    e.seq = get_varint(in, pos);
    return e;
}

bool same_as_row(const Register& c, const Register& row) {
    return c.present == row.present && c.seq == row.seq && stamp_equal(c.stamp, row.stamp);
}

}  // namespace

RowState decode_row(const StoredRow& s, size_t ncols, const NodeDirectory& nodes) {
    RowState st(ncols);
    st.gen = s.gen;
    if (s.row_hlc != 0) st.row = Register{true, Stamp{s.row_hlc, nodes.id(s.row_node)}, s.row_seq};
    if (!st.alive()) return st;  // a dead row has no column registers
    for (auto& c : st.cols) c = st.row;
    size_t pos = 0;
    while (pos < s.cols.size()) {
        Entry e = get_entry(s.cols, pos);
        if (e.col >= ncols) continue;  // a column dropped from tracking
        st.cols[e.col] = e.present ? Register{true, Stamp{e.hlc, nodes.id(e.node)}, e.seq} : Register{};
    }
    return st;
}

StoredRow encode_row(const RowState& st, NodeDirectory& nodes, std::vector<NodeId>* new_nodes) {
    auto index_of = [&](const NodeId& id) {
        bool added = false;
        uint32_t idx = nodes.intern(id, &added);
        if (added && new_nodes) new_nodes->push_back(id);
        return idx;
    };
    StoredRow s;
    s.gen = st.gen;
    if (st.row.present) {
        s.row_hlc = st.row.stamp.hlc;
        s.row_node = index_of(st.row.stamp.node);
        s.row_seq = st.row.seq;
    }
    if (!st.alive()) return s;
    for (size_t i = 0; i < st.cols.size(); ++i) {
        const Register& c = st.cols[i];
        if (same_as_row(c, st.row)) continue;
        put_entry(s.cols, i, c.present, c.stamp.hlc, c.present ? index_of(c.stamp.node) : 0, c.seq);
    }
    return s;
}

std::string blob_set_columns(std::string_view blob, size_t ncols, const std::vector<bool>& changed, uint64_t hlc,
                             uint64_t seq) {
    // Keep entries of unchanged columns, then append the changed ones (order is free).
    std::string out;
    out.reserve(blob.size() + 16);
    size_t pos = 0;
    while (pos < blob.size()) {
        size_t start = pos;
        Entry e = get_entry(blob, pos);
        if (e.col < changed.size() && changed[e.col]) continue;
        out.append(blob.substr(start, pos - start));
    }
    for (size_t i = 0; i < ncols && i < changed.size(); ++i)
        if (changed[i]) put_entry(out, i, true, hlc, 0, seq);
    return out;
}

std::string blob_drop_column(std::string_view blob, size_t col) {
    std::string out;
    out.reserve(blob.size());
    size_t pos = 0;
    while (pos < blob.size()) {
        Entry e = get_entry(blob, pos);
        if (e.col == col) continue;
        put_entry(out, e.col > col ? e.col - 1 : e.col, e.present, e.hlc, e.node, e.seq);
    }
    return out;
}

namespace {

void put_hlc(std::string& out, uint64_t hlc) {
    char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(hlc >> (8 * i));
    out.append(b, 8);
}

uint64_t get_hlc(std::string_view in, size_t& pos) {
    if (pos + 8 > in.size()) throw Error("corrupt lwwsync metadata blob (truncated stamp)");
    uint64_t hlc = 0;
    for (int i = 0; i < 8; ++i) hlc |= static_cast<uint64_t>(static_cast<uint8_t>(in[pos + i])) << (8 * i);
    pos += 8;
    return hlc;
}

uint64_t distance_below(uint64_t seq, uint64_t reg_seq) {
    if (reg_seq > seq) throw Error("lwwsync metadata: a register's seq is above its row's");
    return seq - reg_seq;
}

uint64_t back_from(uint64_t seq, std::string_view in, size_t& pos) {
    const uint64_t d = get_varint(in, pos);
    if (d > seq) throw Error("corrupt lwwsync metadata blob (seq distance past the row's seq)");
    return seq - d;
}

uint32_t get_node(std::string_view in, size_t& pos) {
    const uint64_t n = get_varint(in, pos);
    if (n > UINT32_MAX) throw Error("corrupt lwwsync metadata blob (node index out of range)");
    return static_cast<uint32_t>(n);
}

}  // namespace

std::string pack_stored(const StoredRow& s, uint64_t seq) {
    std::string out;
    out.reserve(16 + s.cols.size());
    put_varint(out, seq);
    put_varint(out, s.gen);
    put_hlc(out, s.row_hlc);
    if (s.row_hlc != 0) {
        put_varint(out, s.row_node);
        put_varint(out, distance_below(seq, s.row_seq));
    }
    size_t pos = 0;
    while (pos < s.cols.size()) {
        const Entry e = get_entry(s.cols, pos);
        // unpack_stored refuses more (a 0.7 blob is not checked otherwise).
        if (e.col > UINT32_MAX) throw Error("lwwsync metadata: a column index out of range");
        put_varint(out, (static_cast<uint64_t>(e.col) << 1) | (e.present ? 1 : 0));
        if (!e.present) continue;
        put_hlc(out, e.hlc);
        put_varint(out, e.node);
        put_varint(out, distance_below(seq, e.seq));
    }
    return out;
}

StoredRow unpack_stored(std::string_view in, uint64_t* seq_out) {
    StoredRow s;
    size_t pos = 0;
    const uint64_t seq = get_varint(in, pos);
    if (seq_out) *seq_out = seq;
    s.gen = get_varint(in, pos);
    s.row_hlc = get_hlc(in, pos);
    if (s.row_hlc != 0) {
        s.row_node = get_node(in, pos);
        s.row_seq = back_from(seq, in, pos);
    }
    while (pos < in.size()) {
        const uint64_t tag = get_varint(in, pos);
        const uint64_t col = tag >> 1;
        if (col > UINT32_MAX) throw Error("corrupt lwwsync metadata blob (column index out of range)");
        if (!(tag & 1)) {
            put_entry(s.cols, col, false, 0, 0, 0);
            continue;
        }
        const uint64_t hlc = get_hlc(in, pos);
        const uint32_t node = get_node(in, pos);
        put_entry(s.cols, col, true, hlc, node, back_from(seq, in, pos));
    }
    return s;
}

uint64_t packed_seq(std::string_view packed) {
    size_t pos = 0;
    return get_varint(packed, pos);
}

uint64_t packed_gen(std::string_view packed) {
    size_t pos = 0;
    get_varint(packed, pos);
    return get_varint(packed, pos);
}

}  // namespace lww
