// libFuzzer target: the row-metadata codec (common/row_codec.h). Metadata
// blobs live on disk, where they can be damaged, so decode_row and
// blob_set_columns must refuse any blob with lww::Error, never crash.
// Properties:
//  - a decoded row encodes and decodes to the same state;
//  - blob_set_columns on a blob decode_row accepted gives a blob it accepts,
//    with the changed columns stamped (hlc, this node, seq) and the rest kept;
//  - any state the merge rule can hold (registers stamped by any node id the
//    wire accepts) survives encode_row + decode_row, and Postgres' packed
//    form (pack_stored + unpack_stored) on top;
//  - unpack_stored (reachable from SQL: lwwsync.meta_fields) refuses any
//    blob with lww::Error, and what it accepts packs back to the same row.
#include <fuzzer/FuzzedDataProvider.h>

#include <optional>

#include "../../../common/row_codec.h"
#include "fuzz_common.h"

namespace {

bool same_register(const lww::Register& a, const lww::Register& b) {
    return a.present == b.present && a.seq == b.seq && lww::stamp_equal(a.stamp, b.stamp);
}

bool same_state(const lww::RowState& a, const lww::RowState& b) {
    if (a.gen != b.gen || !same_register(a.row, b.row) || a.cols.size() != b.cols.size()) return false;
    for (size_t i = 0; i < a.cols.size(); ++i)
        if (!same_register(a.cols[i], b.cols[i])) return false;
    return true;
}

// A few node ids, among them the nil UUID, which NodeId::try_parse accepts
// from the wire like any other.
lww::NodeId palette(uint8_t i) {
    lww::NodeId id;
    switch (i % 4) {
        case 0: break;  // 00000000-0000-0000-0000-000000000000
        case 1: id.bytes.fill(0xff); break;
        case 2: id.bytes[15] = 1; break;
        default:
            id.bytes[0] = 0x6f;
            id.bytes[6] = 0x4c;
            break;
    }
    return id;
}

lww::NodeId self_id() {
    lww::NodeId id;
    for (size_t i = 0; i < id.bytes.size(); ++i) id.bytes[i] = static_cast<uint8_t>(0x10 + i);
    return id;
}

lww::Register fuzz_register(FuzzedDataProvider& in) {
    lww::Register r;
    r.present = in.ConsumeBool();
    if (!r.present) return r;
    r.stamp.hlc = in.ConsumeIntegralInRange<uint64_t>(1, UINT64_MAX);  // hlc 0 is never a stamp
    r.stamp.node = in.ConsumeBool() ? self_id() : palette(in.ConsumeIntegral<uint8_t>());
    r.seq = in.ConsumeIntegral<uint64_t>();
    return r;
}

// Phase 1 and 2: bytes from disk.
void stored_blob(FuzzedDataProvider& in) {
    // The directory as adapters load it from lww_nodes / lwwsync.nodes, whose
    // idx and id are both unique; indexes may leave gaps (a row deleted).
    lww::NodeDirectory nodes(self_id());
    for (uint8_t j = 0; j < 4; ++j)
        if (in.ConsumeBool()) nodes.put(1 + 2 * j + in.ConsumeBool(), palette(j));
    lww::StoredRow s;
    s.gen = in.ConsumeIntegralInRange<uint64_t>(0, 8);
    if (in.ConsumeBool()) s.gen = in.ConsumeIntegral<uint64_t>();
    s.row_hlc = in.ConsumeIntegral<uint64_t>();
    s.row_node = in.ConsumeIntegralInRange<uint32_t>(0, 10);
    s.row_seq = in.ConsumeIntegral<uint64_t>();
    const size_t ncols = in.ConsumeIntegralInRange<size_t>(0, 40);
    std::vector<bool> changed(in.ConsumeIntegralInRange<size_t>(0, 48));
    for (size_t i = 0; i < changed.size(); ++i) changed[i] = in.ConsumeBool();
    const uint64_t hlc = in.ConsumeIntegral<uint64_t>(), seq = in.ConsumeIntegral<uint64_t>();
    s.cols = in.ConsumeRemainingBytesAsString();

    std::optional<lww::RowState> st;
    const bool decoded = fuzz::only_lww_errors("decode_row", [&] { st = lww::decode_row(s, ncols, nodes); });
    std::string updated;
    const bool rewritten = fuzz::only_lww_errors(
        "blob_set_columns", [&] { updated = lww::blob_set_columns(s.cols, ncols, changed, hlc, seq); });
    if (!decoded) return;
    FUZZ_CHECK(st->cols.size() == ncols);

    lww::NodeDirectory nodes2 = nodes;
    std::vector<lww::NodeId> added;
    std::optional<lww::RowState> again;
    fuzz::must_not_throw("encode_row + decode_row of a decoded row", [&] {
        lww::StoredRow enc = lww::encode_row(*st, nodes2, &added);
        again = lww::decode_row(enc, ncols, nodes2);
    });
    FUZZ_CHECK(added.empty());  // every id came from the directory
    FUZZ_CHECK(same_state(*st, *again));

    if (!st->alive()) return;  // a dead row's blob is never read
    FUZZ_CHECK(rewritten);
    lww::StoredRow s2 = s;
    s2.cols = updated;
    std::optional<lww::RowState> st2;
    fuzz::must_not_throw("decode_row after blob_set_columns", [&] { st2 = lww::decode_row(s2, ncols, nodes); });
    for (size_t i = 0; i < ncols; ++i) {
        if (i < changed.size() && changed[i]) {
            FUZZ_CHECK(st2->cols[i].present && st2->cols[i].stamp.hlc == hlc && st2->cols[i].seq == seq &&
                       st2->cols[i].stamp.node == self_id());
        } else {
            FUZZ_CHECK(same_register(st2->cols[i], st->cols[i]));
        }
    }
}

// Phase 3: states the merge rule builds, through the codec.
void merged_state(FuzzedDataProvider& in) {
    lww::RowState st(in.ConsumeIntegralInRange<size_t>(0, 24));
    st.gen = in.ConsumeIntegralInRange<uint64_t>(1, 6);
    st.row = fuzz_register(in);
    if (st.alive())
        for (auto& c : st.cols) c = in.ConsumeBool() ? st.row : fuzz_register(in);
    lww::NodeDirectory nodes(self_id());
    std::vector<lww::NodeId> added;
    lww::StoredRow enc;
    fuzz::must_not_throw("encode_row", [&] { enc = lww::encode_row(st, nodes, &added); });
    // The adapter persists `added` and reloads the directory from it.
    lww::NodeDirectory reloaded(self_id());
    for (const auto& id : added) {
        uint32_t idx = 0;
        FUZZ_CHECK(nodes.find(id, &idx));
        reloaded.put(idx, id);
    }
    std::optional<lww::RowState> back;
    fuzz::must_not_throw("decode_row(encode_row(state)) with the reloaded node directory",
                         [&] { back = lww::decode_row(enc, st.cols.size(), reloaded); });
    FUZZ_CHECK(same_state(st, *back));
    std::optional<lww::RowState> unpacked;
    uint64_t seq = 0;
    fuzz::must_not_throw("unpack_stored(pack_stored(encode_row(state)))", [&] {
        const std::string packed = lww::pack_stored(enc, st.max_seq());
        unpacked = lww::decode_row(lww::unpack_stored(packed, &seq), st.cols.size(), reloaded);
    });
    FUZZ_CHECK(seq == st.max_seq());
    FUZZ_CHECK(same_state(st, *unpacked));
}

bool same_stored(const lww::StoredRow& a, const lww::StoredRow& b) {
    return a.gen == b.gen && a.row_hlc == b.row_hlc && a.row_node == b.row_node && a.row_seq == b.row_seq &&
           a.cols == b.cols;
}

// Phase 4: a packed blob from disk or from SQL.
void packed_blob(FuzzedDataProvider& in) {
    const std::string blob = in.ConsumeRemainingBytesAsString();
    std::optional<lww::StoredRow> s;
    uint64_t seq = 0;
    fuzz::only_lww_errors("unpack_stored", [&] { s = lww::unpack_stored(blob, &seq); });
    fuzz::only_lww_errors("packed_gen", [&] { lww::packed_gen(blob); });
    fuzz::only_lww_errors("packed_seq", [&] { FUZZ_CHECK(lww::packed_seq(blob) == seq || !s); });
    if (!s) return;
    std::optional<lww::StoredRow> again;
    uint64_t seq2 = 0;
    fuzz::must_not_throw("unpack_stored(pack_stored(accepted))",
                         [&] { again = lww::unpack_stored(lww::pack_stored(*s, seq), &seq2); });
    FUZZ_CHECK(seq2 == seq && same_stored(*s, *again));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    switch (in.ConsumeIntegralInRange<int>(0, 2)) {
        case 0: merged_state(in); break;
        case 1: stored_blob(in); break;
        default: packed_blob(in); break;
    }
    return 0;
}
