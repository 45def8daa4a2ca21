// Properties of the one merge rule: idempotent, commutative, associative over
// randomized registers, plus the named outcomes of docs/PROTOCOL.md's "Merge rule".
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>

#include "../../common/error.h"
#include "../../common/merge.h"
#include "../../common/row_codec.h"

using namespace lww;

namespace {

constexpr size_t kCols = 3;

NodeId node(int i) {
    NodeId n;
    n.bytes[15] = static_cast<uint8_t>(i);
    return n;
}

// A state seen as a change: everything it holds.
IncomingRow as_change(const RowState& s) {
    IncomingRow in;
    in.gen = s.gen;
    in.has_row = s.row.present;
    in.row = s.row.stamp;
    for (size_t i = 0; i < s.cols.size(); ++i)
        if (s.cols[i].present) in.cols.emplace_back(i, s.cols[i].stamp);
    return in;
}

RowState join(RowState a, const RowState& b) {
    if (b.gen) merge_row(a, as_change(b), 1);
    return a;
}

// Equality of the replicated part (sequences are local and not compared).
::testing::AssertionResult same(const RowState& a, const RowState& b) {
    auto reg_eq = [](const Register& x, const Register& y) {
        return x.present == y.present && (!x.present || stamp_equal(x.stamp, y.stamp));
    };
    if (a.gen != b.gen) return ::testing::AssertionFailure() << "gen " << a.gen << " vs " << b.gen;
    if (!reg_eq(a.row, b.row)) return ::testing::AssertionFailure() << "row register differs";
    for (size_t i = 0; i < a.cols.size(); ++i)
        if (!reg_eq(a.cols[i], b.cols[i])) return ::testing::AssertionFailure() << "column " << i << " differs";
    return ::testing::AssertionSuccess();
}

// Random seed, or LWWSYNC_SEED to reproduce a printed one.
uint64_t test_seed() {
    const char* env = std::getenv("LWWSYNC_SEED");
    return env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
}

RowState random_state(std::mt19937_64& rng) {
    RowState s(kCols);
    std::uniform_int_distribution<int> gen(1, 4), hlc(1, 6), nd(0, 2), coin(0, 1);
    s.gen = static_cast<uint64_t>(gen(rng));
    if (coin(rng)) s.row = Register{true, Stamp{static_cast<uint64_t>(hlc(rng)), node(nd(rng))}, 0};
    if (s.gen & 1)
        for (auto& c : s.cols)
            if (coin(rng)) c = Register{true, Stamp{static_cast<uint64_t>(hlc(rng)), node(nd(rng))}, 0};
    if (!s.row.present && std::none_of(s.cols.begin(), s.cols.end(), [](const Register& r) { return r.present; }))
        s.row = Register{true, Stamp{1, node(0)}, 0};
    return s;
}

}  // namespace

TEST(Merge, IdempotentCommutativeAssociativeOverRandomRegisters) {
    const uint64_t seed = test_seed();
    std::printf("merge property seed: %llu (LWWSYNC_SEED=... to reproduce)\n", static_cast<unsigned long long>(seed));
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 20000; ++i) {
        RowState a = random_state(rng), b = random_state(rng), c = random_state(rng);
        ASSERT_TRUE(same(join(a, a), a)) << "idempotence, seed " << seed << " iter " << i;
        ASSERT_TRUE(same(join(join(a, b), b), join(a, b))) << "idempotence, seed " << seed << " iter " << i;
        ASSERT_TRUE(same(join(a, b), join(b, a))) << "commutativity, seed " << seed << " iter " << i;
        ASSERT_TRUE(same(join(join(a, b), c), join(a, join(b, c)))) << "associativity, seed " << seed << " iter " << i;
    }
}

TEST(Merge, AnyDeliveryOrderOfSingleRegistersConverges) {
    const uint64_t seed = test_seed();
    std::printf("delivery order seed: %llu\n", static_cast<unsigned long long>(seed));
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 2000; ++i) {
        std::vector<IncomingRow> changes;
        for (int k = 0; k < 8; ++k) {
            RowState s = random_state(rng);
            IncomingRow full = as_change(s);
            // Split each state into single-register changes.
            if (full.has_row) {
                IncomingRow r;
                r.gen = full.gen;
                r.has_row = true;
                r.row = full.row;
                changes.push_back(r);
            }
            for (auto& col : full.cols) {
                IncomingRow r;
                r.gen = full.gen;
                r.cols.push_back(col);
                changes.push_back(r);
            }
        }
        RowState first(kCols);
        for (const auto& ch : changes) merge_row(first, ch, 1);
        for (int perm = 0; perm < 4; ++perm) {
            std::shuffle(changes.begin(), changes.end(), rng);
            RowState other(kCols);
            for (const auto& ch : changes) {
                const size_t received = (ch.has_row ? 1 : 0) + ch.cols.size();
                MergeOutcome o = merge_row(other, ch, 1);
                // Every register is applied, a duplicate or lost: nothing uncounted.
                ASSERT_EQ(o.applied + o.duplicate + o.lost, received) << "seed " << seed << " iter " << i;
                ASSERT_EQ(o.ignored, o.duplicate + o.lost);
                if (rng() % 3 == 0) {  // duplicated delivery: nothing applies again
                    o = merge_row(other, ch, 1);
                    ASSERT_EQ(o.applied, 0u) << "seed " << seed << " iter " << i;
                    ASSERT_EQ(o.duplicate + o.lost, received);
                }
            }
            ASSERT_TRUE(same(first, other)) << "seed " << seed << " iter " << i;
        }
    }
}

TEST(Merge, HigherGenerationWinsTheRow) {
    RowState s(2);
    local_insert(s, Stamp{100, node(1)}, 1);
    IncomingRow del;
    del.gen = 2;
    del.has_row = true;
    del.row = Stamp{50, node(2)};  // older clock, but a delete of generation 1
    MergeOutcome out = merge_row(s, del, 2);
    EXPECT_TRUE(out.was_alive);
    EXPECT_FALSE(out.alive);
    EXPECT_EQ(s.gen, 2u);

    IncomingRow late_update;  // concurrent update of generation 1 arrives late
    late_update.gen = 1;
    late_update.cols.emplace_back(0, Stamp{999, node(3)});
    out = merge_row(s, late_update, 3);
    EXPECT_EQ(out.ignored, 1u);
    EXPECT_FALSE(out.alive);
}

TEST(Merge, ConcurrentEditsToDifferentColumnsBothSurvive) {
    RowState s(2);
    local_insert(s, Stamp{10, node(1)}, 1);
    local_update(s, {true, false}, Stamp{20, node(1)}, 2);
    IncomingRow other;
    other.gen = 1;
    other.cols.emplace_back(1, Stamp{15, node(2)});
    MergeOutcome out = merge_row(s, other, 3);
    EXPECT_EQ(out.applied, 1u);
    EXPECT_EQ(s.cols[0].stamp.hlc, 20u);
    EXPECT_EQ(s.cols[1].stamp.hlc, 15u);
}

TEST(Merge, EqualClocksAreOrderedByNodeId) {
    RowState s(1);
    local_insert(s, Stamp{10, node(5)}, 1);
    IncomingRow lower, higher;
    lower.gen = higher.gen = 1;
    lower.cols.emplace_back(0, Stamp{10, node(4)});
    higher.cols.emplace_back(0, Stamp{10, node(6)});
    EXPECT_EQ(merge_row(s, lower, 2).applied, 0u);
    EXPECT_EQ(merge_row(s, higher, 3).applied, 1u);
}

TEST(Merge, ReinsertAfterDeleteStartsGenerationThree) {
    RowState s(1);
    local_insert(s, Stamp{1, node(1)}, 1);
    local_delete(s, Stamp{2, node(1)}, 2);
    EXPECT_EQ(s.gen, 2u);
    EXPECT_FALSE(s.cols[0].present);
    local_insert(s, Stamp{3, node(1)}, 3);
    EXPECT_EQ(s.gen, 3u);
    EXPECT_TRUE(s.alive());
    EXPECT_EQ(s.max_seq(), 3u);
}

TEST(RowCodec, RoundTripsSparseColumnRegisters) {
    NodeDirectory dir(node(1));
    RowState s(4);
    local_insert(s, Stamp{100, node(1)}, 7);
    local_update(s, {false, true, false, true}, Stamp{200, node(1)}, 9);
    IncomingRow remote;
    remote.gen = 1;
    remote.cols.emplace_back(2, Stamp{300, node(9)});
    merge_row(s, remote, 11);

    std::vector<NodeId> added;
    StoredRow stored = encode_row(s, dir, &added);
    ASSERT_EQ(added.size(), 1u);
    EXPECT_EQ(added[0], node(9));
    RowState back = decode_row(stored, 4, dir);
    EXPECT_TRUE(same(back, s));
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(back.cols[i].seq, s.cols[i].seq);

    RowState fresh(4);
    local_insert(fresh, Stamp{5, node(1)}, 1);
    EXPECT_TRUE(encode_row(fresh, dir, nullptr).cols.empty()) << "an insert needs no per-column entries";
}

// A directory too large to load (a server with 100 000 devices) asks its
// resolver for an index it has not seen, once, and refuses an index nobody has.
TEST(RowCodec, ResolvesUnknownNodeIndexesOnceThroughTheResolver) {
    struct Stored : NodeSource {
        std::map<uint32_t, NodeId> rows;
        int lookups = 0;
        bool id_at(uint32_t idx, NodeId* id) override {
            ++lookups;
            auto it = rows.find(idx);
            if (it == rows.end()) return false;
            *id = it->second;
            return true;
        }
    } stored;
    stored.rows[70000] = node(9);
    stored.rows[3] = node(4);
    NodeDirectory writer(node(1));
    writer.put(70000, node(9));
    writer.put(3, node(4));
    RowState s(2);
    local_insert(s, Stamp{100, node(9)}, 1);
    IncomingRow remote;
    remote.gen = 1;
    remote.cols.emplace_back(1, Stamp{300, node(4)});
    merge_row(s, remote, 2);
    const StoredRow row = encode_row(s, writer, nullptr);

    NodeDirectory reader(node(1), &stored);
    EXPECT_TRUE(same(decode_row(row, 2, reader), s));
    EXPECT_EQ(stored.lookups, 2);
    EXPECT_TRUE(same(decode_row(row, 2, reader), s));
    EXPECT_EQ(stored.lookups, 2) << "a resolved index is remembered";
    uint32_t idx = 0;
    ASSERT_TRUE(reader.find(node(4), &idx)) << "and its id maps back to it";
    EXPECT_EQ(idx, 3u);
    EXPECT_EQ(reader.intern(node(7)), 70001u) << "a new node takes an index above every one known";

    StoredRow unknown = row;
    unknown.row_node = 5;
    try {
        decode_row(unknown, 2, reader);
        ADD_FAILURE() << "an index nobody has decodes";
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "metadata names unknown node index 5");
    }
}

// Postgres' packed form (pack_stored) holds the row's seq and what 0.7's
// columns did, register seqs as distances below the row's seq; a fresh row
// costs 14 bytes and a column written apart from it 11 more (issue 11:
// metadata <= 60 % of the data).
TEST(RowCodec, PackedFormRoundTripsAndStaysSmall) {
    NodeDirectory dir(node(1));
    RowState s(4);
    local_insert(s, Stamp{uint64_t(1764806400000) << 16, node(1)}, 100000);
    StoredRow fresh = encode_row(s, dir, nullptr);
    std::string packed = pack_stored(fresh, s.max_seq());
    EXPECT_EQ(packed.size(), 14u);
    EXPECT_EQ(packed_gen(packed), 1u);
    EXPECT_EQ(packed_seq(packed), 100000u);
    uint64_t seq = 0;
    EXPECT_TRUE(same(decode_row(unpack_stored(packed, &seq), 4, dir), s));
    EXPECT_EQ(seq, 100000u);

    local_update(s, {false, true, false, false}, Stamp{(uint64_t(1764806400000) << 16) + 99, node(1)}, 100001);
    packed = pack_stored(encode_row(s, dir, nullptr), s.max_seq());
    EXPECT_EQ(packed.size(), 25u) << "one column written apart: 11 bytes more";

    IncomingRow remote;  // a third node's register, an older seq kept below the row's
    remote.gen = 1;
    remote.cols.emplace_back(3, Stamp{uint64_t(1) << 60, node(9)});
    merge_row(s, remote, 100002);
    local_update(s, {true, false, false, false}, Stamp{(uint64_t(1) << 60) + 5, node(1)}, 100003);
    const StoredRow stored = encode_row(s, dir, nullptr);
    RowState back = decode_row(unpack_stored(pack_stored(stored, s.max_seq())), 4, dir);
    EXPECT_TRUE(same(back, s));
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(back.cols[i].seq, s.cols[i].seq) << "column " << i;

    RowState dead(4);  // a tombstone, and a row with no row register
    local_insert(dead, Stamp{100, node(1)}, 1);
    local_delete(dead, Stamp{200, node(1)}, 2);
    EXPECT_TRUE(same(decode_row(unpack_stored(pack_stored(encode_row(dead, dir, nullptr), 2)), 4, dir), dead));
    StoredRow bare;
    bare.gen = 4;
    const StoredRow again = unpack_stored(pack_stored(bare, 0));
    EXPECT_EQ(again.gen, 4u);
    EXPECT_EQ(again.row_hlc, 0u);
    EXPECT_TRUE(again.cols.empty());
}

TEST(RowCodec, PackedFormRefusesWhatItDidNotWrite) {
    NodeDirectory dir(node(1));
    RowState s(2);
    local_insert(s, Stamp{100, node(1)}, 5);
    local_update(s, {false, true}, Stamp{150, node(1)}, 9);
    const std::string packed = pack_stored(encode_row(s, dir, nullptr), 9);
    auto refused = [](std::string_view blob) {
        try {
            unpack_stored(blob);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_EQ(refused(packed.substr(0, 5)), "corrupt lwwsync metadata blob (truncated stamp)");
    EXPECT_EQ(refused(packed.substr(0, packed.size() - 1)), "corrupt lwwsync metadata blob (truncated varint)");
    std::string lowered = packed;  // its seq (9, one byte) lowered below its registers' distances
    lowered[0] = 3;
    EXPECT_EQ(refused(lowered), "corrupt lwwsync metadata blob (seq distance past the row's seq)");
    EXPECT_EQ(refused(std::string(11, '\xff')), "corrupt lwwsync metadata blob (varint too long)");
    StoredRow above = encode_row(s, dir, nullptr);
    EXPECT_THROW(pack_stored(above, 8), Error) << "a register above the row's seq is a caller's bug";
    StoredRow far;  // a column index unpack_stored would refuse (a corrupt 0.7 blob) is refused when packed
    far.gen = 1;
    far.cols = std::string("\x80\x80\x80\x80\x10\x00", 6);  // varint 2^32, tag absent
    EXPECT_THROW(pack_stored(far, 1), Error);
}

TEST(RowCodec, TriggerFastPathMatchesTheGeneralEncoder) {
    NodeDirectory dir(node(1));
    RowState s(3);
    local_insert(s, Stamp{100, node(1)}, 1);
    StoredRow stored = encode_row(s, dir, nullptr);
    std::string blob = blob_set_columns(stored.cols, 3, {false, true, false}, 150, 2);
    blob = blob_set_columns(blob, 3, {true, true, false}, 160, 3);
    stored.cols = blob;
    RowState fast = decode_row(stored, 3, dir);
    local_update(s, {false, true, false}, Stamp{150, node(1)}, 2);
    local_update(s, {true, true, false}, Stamp{160, node(1)}, 3);
    EXPECT_TRUE(same(fast, s));
    EXPECT_EQ(fast.cols[1].seq, 3u);
    EXPECT_EQ(fast.cols[2].seq, 1u);
}
