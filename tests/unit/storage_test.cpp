// The core's apply and feed algorithms (common/apply.h, common/feed.h) run
// against an in-memory engine: the rules hold whatever storage implements
// TableStore and FeedSource.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include "../../common/apply.h"
#include "../../common/batch.h"
#include "../../common/changeset.h"
#include "../../common/error.h"
#include "../../common/feed.h"
#include "../../common/purge.h"
#include "../../common/settings.h"

using namespace lww;

namespace {

NodeId node(int i) {
    NodeId n;
    n.bytes[15] = static_cast<uint8_t>(i);
    return n;
}

constexpr size_t kCols = 2;  // one table: id -> (a, b)

// One table held in maps: metadata, user rows, and a log of what the batch
// merge asked of it.
class MemTable : public TableStore {
public:
    std::map<int64_t, RowState> meta;
    std::map<int64_t, std::vector<Value>> rows;
    std::map<int64_t, uint64_t> seq_of;  // a row's latest change: its metadata's max sequence
    uint64_t seq = 0;
    std::vector<std::string> calls;
    bool first = true;                    // store_first
    std::function<bool(MergeRow&)> rule;  // admit
    std::function<void(MergeRow&)> race;  // write_user, per row
    // The batch being merged: incoming rows and their keys/values.
    std::vector<const RowChange*> batch;
    const Receiver* who = nullptr;  // merge(): the receiver, when a test sets one
    std::vector<MergeRow> last;     // merge(): the rows of the last batch

    void load(std::vector<MergeRow>& rs) override {
        calls.push_back("load");
        for (MergeRow& r : rs) {
            const int64_t k = batch[r.item]->key[0].i;
            auto it = meta.find(k);
            r.st = it == meta.end() ? RowState(kCols) : it->second;
            r.there = rows.count(k) > 0;
        }
    }
    bool admit(MergeRow& r) override { return rule ? rule(r) : true; }
    void store(const std::vector<MergeRow*>& rs) override {
        calls.push_back("store");
        for (const MergeRow* r : rs) {
            const int64_t k = batch[r->item]->key[0].i;
            meta[k] = r->st;
            seq_of[k] = r->st.max_seq();
        }
    }
    void write_user(const std::vector<MergeRow*>& rs) override {
        calls.push_back("write");
        for (MergeRow* r : rs) {
            if (race) race(*r);
            if (r->redo) continue;
            const RowChange& c = *batch[r->item];
            const int64_t k = c.key[0].i;
            switch (r->write) {
                case UserWrite::none: break;
                case UserWrite::remove: rows.erase(k); break;
                case UserWrite::insert: rows[k] = std::vector<Value>(kCols); [[fallthrough]];
                case UserWrite::update:
                    for (const auto& col : c.cols)
                        if (std::find(r->won.begin(), r->won.end(), col.col) != r->won.end())
                            rows[k][col.col] = col.value;
                    break;
            }
        }
    }
    uint64_t next_seq() override { return ++seq; }
    bool store_first() const override { return first; }
    uint64_t floor = 0;  // gen_floor
    uint64_t gen_floor() override { return floor; }
    std::set<int64_t> parked;  // holds_parked
    bool holds_parked(const MergeRow& r) override { return parked.count(batch[r.item]->key[0].i) > 0; }

    ApplyCounts merge(const std::vector<RowChange>& in) {
        batch.clear();
        std::vector<IncomingRow> inc;
        std::vector<size_t> identity{0, 1};
        for (const auto& r : in) {
            batch.push_back(&r);
            inc.push_back(incoming_row(r, identity));
        }
        std::vector<MergeRow> mr(in.size());
        for (size_t i = 0; i < in.size(); ++i) {
            mr[i].in = &inc[i];
            mr[i].item = i;
        }
        merge_batch(*this, mr, who);
        last = mr;
        ApplyCounts total;
        for (const auto& r : mr) total.add(r.counts);
        return total;
    }
};

RowChange live(int64_t k, uint64_t hlc, int by, const char* a, int64_t b, uint64_t gen = 1) {
    RowChange r;
    r.key = {Value::integer(k)};
    r.gen = gen;
    r.has_row = true;
    r.row = Stamp{hlc, node(by)};
    r.cols = {ColChange{0, Value::text(a), Stamp{hlc, node(by)}},
              ColChange{1, Value::integer(b), Stamp{hlc, node(by)}}};
    return r;
}

RowChange tombstone(int64_t k, uint64_t hlc, int by, uint64_t gen = 2) {
    RowChange r;
    r.key = {Value::integer(k)};
    r.gen = gen;
    r.has_row = true;
    r.row = Stamp{hlc, node(by)};
    return r;
}

}  // namespace

TEST(Storage, UserWriteFollowsTheOutcome) {
    MergeOutcome o;
    o.alive = true;
    EXPECT_EQ(user_write(o, false), UserWrite::insert);
    EXPECT_EQ(user_write(o, true), UserWrite::none);  // nothing won: the row stays as it is
    o.won_cols = {0};
    EXPECT_EQ(user_write(o, true), UserWrite::update);
    o.alive = false;
    EXPECT_EQ(user_write(o, true), UserWrite::remove);
    EXPECT_EQ(user_write(o, false), UserWrite::none);
}

TEST(Storage, BatchMergeInsertsStoresAndCountsOnce) {
    MemTable t;
    const std::vector<RowChange> in{live(1, 100, 1, "x", 1), live(2, 100, 1, "y", 2)};
    ApplyCounts c = t.merge(in);
    EXPECT_EQ(c.rows, 2u);
    EXPECT_EQ(c.applied, 6u);  // row register + two columns, twice
    EXPECT_EQ(c.ignored, 0u);
    EXPECT_EQ(t.rows.at(1)[0].s, "x");
    EXPECT_EQ(t.rows.at(2)[1].i, 2);
    EXPECT_EQ(t.seq, 2u);  // a sequence per changed row
    EXPECT_EQ(t.seq_of.at(1), 1u);
    EXPECT_EQ(t.seq_of.at(2), 2u);
    EXPECT_EQ(t.calls, (std::vector<std::string>{"load", "store", "write"}));

    // The same set again: every register already held, no sequence taken, nothing stored.
    t.calls.clear();
    c = t.merge(in);
    EXPECT_EQ(c.rows, 2u);
    EXPECT_EQ(c.applied, 0u);
    EXPECT_EQ(c.ignored, 6u);
    EXPECT_EQ(t.seq, 2u);
    EXPECT_EQ(t.calls, (std::vector<std::string>{"load"}));
}

TEST(Storage, UserRowsBeforeMetadataWhenTheEngineAsks) {
    MemTable t;
    t.first = false;
    t.merge({live(1, 100, 1, "x", 1)});
    EXPECT_EQ(t.calls, (std::vector<std::string>{"load", "write", "store"}));
}

TEST(Storage, NewerWinsOlderLosesTombstoneRemoves) {
    MemTable t;
    t.merge({live(1, 100, 1, "x", 1)});
    ApplyCounts c = t.merge({live(1, 50, 2, "old", 9)});
    EXPECT_EQ(c.applied, 0u);
    EXPECT_EQ(c.ignored, 3u);
    EXPECT_EQ(t.rows.at(1)[0].s, "x");
    c = t.merge({live(1, 200, 2, "new", 9)});
    EXPECT_EQ(c.applied, 3u);
    EXPECT_EQ(t.rows.at(1)[0].s, "new");
    c = t.merge({tombstone(1, 300, 2)});
    EXPECT_EQ(c.applied, 1u);
    EXPECT_EQ(t.rows.count(1), 0u);
    EXPECT_FALSE(t.meta.at(1).alive());
    // A tombstone of a row never held: metadata only (it must still travel on).
    c = t.merge({tombstone(7, 300, 2)});
    EXPECT_EQ(c.applied, 1u);
    EXPECT_EQ(t.rows.count(7), 0u);
    EXPECT_EQ(t.meta.at(7).gen, 2u);
}

TEST(Storage, RowsTheEngineRefusesAreCountedRejectedAndNotStored) {
    MemTable t;
    t.rule = [](MergeRow& r) { return r.write != UserWrite::insert; };
    ApplyCounts c = t.merge({live(1, 100, 1, "x", 1)});
    EXPECT_EQ(c.rows, 1u);
    EXPECT_EQ(c.rejected, 3u);
    EXPECT_EQ(c.applied, 0u);
    EXPECT_TRUE(t.meta.empty());
    EXPECT_TRUE(t.rows.empty());
    EXPECT_EQ(t.seq, 0u);
}

TEST(Storage, ARowRedoneByTheEngineIsNeitherStoredNorCounted) {
    MemTable t;
    t.first = false;
    t.race = [](MergeRow& r) { r.redo = r.item == 0; };
    std::vector<RowChange> in{live(1, 100, 1, "x", 1), live(2, 100, 1, "y", 2)};
    std::vector<IncomingRow> inc{incoming_row(in[0], {0, 1}), incoming_row(in[1], {0, 1})};
    t.batch = {&in[0], &in[1]};
    std::vector<MergeRow> mr(2);
    for (size_t i = 0; i < 2; ++i) {
        mr[i].in = &inc[i];
        mr[i].item = i;
    }
    merge_batch(t, mr);
    EXPECT_TRUE(mr[0].redo);
    EXPECT_FALSE(mr[0].keep);
    EXPECT_EQ(mr[0].counts.rows, 0u);
    EXPECT_TRUE(mr[1].keep);
    EXPECT_EQ(mr[1].counts.applied, 3u);
    EXPECT_EQ(t.meta.count(1), 0u);
    EXPECT_EQ(t.meta.count(2), 1u);
    EXPECT_EQ(t.seq, 1u);

    // Redone after the metadata was stored: the engine broke the contract.
    MemTable late;
    late.race = [](MergeRow& r) { r.redo = true; };
    EXPECT_THROW(late.merge({live(1, 100, 1, "x", 1)}), Error);
}

TEST(Storage, OwnChangesAreRefused) {
    EXPECT_NO_THROW(refuse_own_changes(node(1), node(2)));
    try {
        refuse_own_changes(node(3), node(3));
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("a node never applies its own changes"), std::string::npos);
    }
}

// ------------------------------------------------------------ the feed

namespace {

// The feed over MemTable's maps. `late`: rows another session changes while
// the feed reads (key -> new sequence), applied after final_seq.
class MemFeed : public FeedSource {
public:
    explicit MemFeed(MemTable& t) : t_(t), tables_{FeedTable{"t", {"id"}, {"a", "b"}}} {}
    std::map<int64_t, uint64_t> late;
    bool writers = false;
    std::set<int64_t> hidden;       // rows the caller may not read
    std::function<void()> reading;  // runs as a scan reads values (another session commits meanwhile)

    NodeId self() override { return node(9); }
    bool concurrent() const override { return writers; }
    const std::vector<FeedTable>& tables() override { return tables_; }
    uint64_t final_seq(uint64_t) override {
        const uint64_t m = t_.seq;
        for (const auto& [k, s] : late) {
            // Another writer changes column b of k at sequence s past m.
            RowState& st = t_.meta.at(k);
            st.cols[1] = Register{true, Stamp{999, node(5)}, s};
            t_.rows[k][1] = Value::integer(-1);
            t_.seq_of[k] = s;
        }
        return m;
    }
    uint64_t batch_cut(uint64_t after, uint64_t upto, int64_t limit) override {
        if (limit <= 0) return 0;
        std::vector<uint64_t> seqs;
        for (const auto& [k, s] : t_.seq_of)
            if (s > after && s <= upto) seqs.push_back(s);
        std::sort(seqs.begin(), seqs.end());
        return seqs.size() >= static_cast<size_t>(limit) ? seqs[static_cast<size_t>(limit) - 1] : 0;
    }
    std::vector<size_t> tables_changed(uint64_t after, uint64_t upto) override {
        for (const auto& [k, s] : t_.seq_of)
            if (s > after && s <= upto) return {0};
        return {};
    }
    class Scan : public FeedScan {
    public:
        Scan(MemFeed& f, uint64_t after, uint64_t upto) {
            std::vector<std::pair<uint64_t, int64_t>> order;
            for (const auto& [k, s] : f.t_.seq_of)
                if (s > after && s <= upto) order.emplace_back(s, k);
            std::sort(order.begin(), order.end());
            for (const auto& o : order) keys_.push_back(o.second);
            f_ = &f;
        }
        bool next(std::vector<FeedRow>& rows, size_t max) override {
            rows.clear();
            for (; pos_ < keys_.size() && rows.size() < max; ++pos_) {
                FeedRow r;
                r.st = f_->t_.meta.at(keys_[pos_]);
                r.at = pos_;
                rows.push_back(std::move(r));
            }
            return !rows.empty();
        }
        void fill(const std::vector<FeedRow*>& rows) override {
            if (f_->reading) std::exchange(f_->reading, nullptr)();
            for (FeedRow* r : rows) {
                const int64_t k = keys_[r->at];
                r->rc.key = {Value::integer(k)};
                if (f_->hidden.count(k)) r->send = false;
                for (auto& c : r->rc.cols) c.value = f_->t_.rows.at(k)[c.col];
            }
        }

    private:
        MemFeed* f_ = nullptr;
        std::vector<int64_t> keys_;
        size_t pos_ = 0;
    };
    std::unique_ptr<FeedScan> scan(size_t, uint64_t after, uint64_t upto) override {
        return std::make_unique<Scan>(*this, after, upto);
    }

private:
    MemTable& t_;
    std::vector<FeedTable> tables_;
};

std::vector<int64_t> keys_of(const ChangeSet& cs) {
    std::vector<int64_t> out;
    for (const auto& t : cs.tables)
        for (const auto& r : t.rows) out.push_back(r.key[0].i);
    return out;
}

}  // namespace

TEST(Storage, ChangesRequestRules) {
    EXPECT_EQ(changes_request(5, std::nullopt, std::nullopt).after, 5u);
    EXPECT_EQ(changes_request(5, 10, 7).limit, 10);
    auto fails = [](int64_t since, std::optional<int64_t> limit, std::optional<int64_t> after, const char* what) {
        try {
            changes_request(since, limit, after);
            return false;
        } catch (const Error& e) {
            return std::string(e.what()).find(what) != std::string::npos;
        }
    };
    EXPECT_TRUE(fails(-1, std::nullopt, std::nullopt, "since must be a non-negative change sequence"));
    EXPECT_TRUE(fails(0, 0, std::nullopt, "limit must be a positive number of rows"));
    EXPECT_TRUE(fails(5, std::nullopt, 4, "after must be >= since"));
    EXPECT_THROW(check_document_size(kMaxDocumentBytes + 1, "change set"), Error);
    EXPECT_NO_THROW(check_document_size(kMaxDocumentBytes, "change set"));
}

TEST(Storage, FeedPagesByLimitAndNeverSkips) {
    MemTable t;
    for (int k = 1; k <= 5; ++k) t.merge({live(k, 100 + k, 1, "v", k)});
    MemFeed f(t);
    Batch b = collect_feed(f, changes_request(0, 2, std::nullopt));
    ChangeSet cs = decode_changeset(b.json);
    EXPECT_EQ(keys_of(cs), (std::vector<int64_t>{1, 2}));
    EXPECT_FALSE(b.complete);
    EXPECT_EQ(b.upto, 2u);
    std::vector<int64_t> all = keys_of(cs);
    while (!b.complete) {
        b = collect_feed(f, changes_request(0, 2, static_cast<int64_t>(b.upto)));
        for (int64_t k : keys_of(decode_changeset(b.json))) all.push_back(k);
    }
    EXPECT_EQ(all, (std::vector<int64_t>{1, 2, 3, 4, 5}));
    EXPECT_EQ(b.upto, 5u);
    // Values come from the user rows; the receiver's own registers stay home.
    const NodeId one = node(1);
    ChangesRequest skip = changes_request(0, std::nullopt, std::nullopt);
    skip.skip_node = &one;
    EXPECT_TRUE(decode_changeset(collect_feed(f, skip).json).tables.empty());
    cs = decode_changeset(collect_feed(f, changes_request(4, std::nullopt, std::nullopt)).json);
    ASSERT_EQ(keys_of(cs), (std::vector<int64_t>{5}));
    EXPECT_EQ(cs.tables[0].rows[0].cols[1].value.i, 5);
}

// No echo (docs/PROTOCOL.md): a merged row that won a register stamped by
// neither the sender nor us is relayed; the feed skips the sequences of such
// rows for the peer they came from, never a register stamped here.
TEST(Storage, RelayedRowsAreMarkedAndSkippedForTheirSender) {
    MemTable t;
    const NodeId self = node(9), sender = node(2);
    const Receiver who{self, 0, false, &sender};
    t.who = &who;
    // Row 1 written by the sender itself, row 2 by a third node (1) it relays.
    t.merge({live(1, 100, 2, "own", 1), live(2, 100, 1, "relayed", 2)});
    ASSERT_EQ(t.last.size(), 2u);
    EXPECT_FALSE(t.last[0].relayed);
    EXPECT_TRUE(t.last[1].relayed);
    EXPECT_EQ(t.last[1].seq, 2u);
    // Nothing won: nothing relayed, no sequence.
    t.merge({live(2, 100, 1, "relayed", 2)});
    EXPECT_FALSE(t.last[0].relayed);
    EXPECT_EQ(t.last[0].seq, 0u);

    const SeqRanges ranges = seq_ranges({7, 2, 3, 9, 8, 2});
    ASSERT_EQ(ranges.size(), 2u);
    EXPECT_EQ(ranges[0].lo, 2u);
    EXPECT_EQ(ranges[0].hi, 3u);
    EXPECT_EQ(ranges[1].lo, 7u);
    EXPECT_EQ(ranges[1].hi, 9u);
    for (uint64_t q : {1, 4, 5, 6, 10}) EXPECT_FALSE(in_ranges(ranges, q)) << q;
    for (uint64_t q : {2, 3, 7, 8, 9}) EXPECT_TRUE(in_ranges(ranges, q)) << q;
    EXPECT_FALSE(in_ranges(SeqRanges{}, 1));

    // Row 3: a third node's row relayed at sequence 3, then edited here
    // (sequence 4, stamped by us): the edit goes back, the relayed rest not.
    t.merge({live(3, 100, 1, "x", 3)});
    RowState& st = t.meta.at(3);
    st.cols[1] = Register{true, Stamp{200, self}, ++t.seq};
    t.seq_of[3] = t.seq;
    MemFeed f(t);
    const SeqRanges from_sender = seq_ranges({2, 3});
    ChangesRequest req = changes_request(0, std::nullopt, std::nullopt);
    req.skip_node = &sender;
    req.relayed = &from_sender;
    req.self = &self;
    ChangeSet cs = decode_changeset(collect_feed(f, req).json);
    ASSERT_EQ(keys_of(cs), (std::vector<int64_t>{3}));  // row 1: the sender's; row 2: relayed by it
    const RowChange& r3 = cs.tables[0].rows[0];
    EXPECT_FALSE(r3.has_row);
    ASSERT_EQ(r3.cols.size(), 1u);
    EXPECT_EQ(r3.cols[0].col, 1u);
    // A register stamped here whose sequence a range holds (a reused
    // sequence) is sent all the same.
    const SeqRanges all = seq_ranges({1, 2, 3, 4});
    req.relayed = &all;
    cs = decode_changeset(collect_feed(f, req).json);
    ASSERT_EQ(keys_of(cs), (std::vector<int64_t>{3}));
    EXPECT_EQ(cs.tables[0].rows[0].cols.size(), 1u);
    // Another peer gets everything.
    ChangesRequest other = changes_request(0, std::nullopt, std::nullopt);
    EXPECT_EQ(keys_of(decode_changeset(collect_feed(f, other).json)), (std::vector<int64_t>{1, 2, 3}));
}

TEST(Storage, FeedWithholdsRowsTheEngineHides) {
    MemTable t;
    for (int k = 1; k <= 3; ++k) t.merge({live(k, 100 + k, 1, "v", k)});
    MemFeed f(t);
    f.hidden = {2};
    Batch b = collect_feed(f, changes_request(0, std::nullopt, std::nullopt));
    EXPECT_EQ(keys_of(decode_changeset(b.json)), (std::vector<int64_t>{1, 3}));
    EXPECT_EQ(b.upto, 3u);  // the cursor still moves past it
}

TEST(Storage, FeedReadsRowsChangedAgainPastItsEndWhenWritersRun) {
    // Row 2 is changed by another session (sequence 9) after the feed fixed
    // its end at 3: its row register (sequence 2) is part of this set, or a
    // cursor at 3 would never carry it.
    for (const bool writers : {false, true}) {
        MemTable t;
        for (int k = 1; k <= 3; ++k) t.merge({live(k, 100 + k, 1, "v", k)});
        MemFeed f(t);
        f.writers = writers;
        f.late = {{2, 9}};
        Batch b = collect_feed(f, changes_request(0, std::nullopt, std::nullopt));
        EXPECT_EQ(b.upto, 3u);
        ChangeSet cs = decode_changeset(b.json);
        EXPECT_EQ(keys_of(cs), writers ? (std::vector<int64_t>{1, 3, 2}) : (std::vector<int64_t>{1, 3}))
            << "writers " << writers;
        if (writers) {
            const RowChange& r = cs.tables[0].rows[2];
            EXPECT_TRUE(r.has_row);
            ASSERT_EQ(r.cols.size(), 1u);  // column a (sequence 2); b changed at 9, past upto
            EXPECT_EQ(r.cols[0].col, 0u);
        }
    }
}

TEST(Storage, FeedNamesARowOnceWhenItIsWrittenAgainWhileTheFeedReads) {
    // Row 2 is written again (column b, sequence 9, past the set's end at 3)
    // by a session that commits while the feed reads the table: whatever the
    // feed saw of it, the set names it once (receivers refuse a row twice).
    MemTable t;
    for (int k = 1; k <= 3; ++k) t.merge({live(k, 100 + k, 1, "v", k)});
    MemFeed f(t);
    f.writers = true;
    f.reading = [&] {
        RowState& st = t.meta.at(2);
        st.cols[1] = Register{true, Stamp{999, node(5)}, 9};
        t.rows[2][1] = Value::integer(-1);
        t.seq_of[2] = 9;
    };
    Batch b = collect_feed(f, changes_request(0, std::nullopt, std::nullopt));
    EXPECT_EQ(b.upto, 3u);
    ChangeSet cs;
    ASSERT_NO_THROW(cs = decode_changeset(b.json));
    EXPECT_EQ(keys_of(cs), (std::vector<int64_t>{1, 2, 3}));
}

TEST(Storage, SettingsAreOneTableForBothEngines) {
    EXPECT_EQ(find_setting("max_drift_ms", Engine::sqlite).dflt, find_setting("max_drift_ms", Engine::postgres).dflt);
    EXPECT_THROW(find_setting("detect_copies", Engine::postgres), Error);
    EXPECT_THROW(find_setting("rejected_max", Engine::sqlite), Error);
    try {
        find_setting("colour", Engine::sqlite);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(
                      "unknown setting \"colour\" (known: max_drift_ms, pending_max_rows, detect_copies, conflict_log, "
                      "tombstone_ttl_ms, conflict_log_rows, log_fold_rows)"),
                  std::string::npos);
    }
    const Setting& s = find_setting("bind_new_nodes", Engine::postgres);
    EXPECT_EQ(check_setting(s, 1), 1);
    EXPECT_THROW(check_setting(s, 2), Error);
}

TEST(Storage, UntrackedDriftComparesRegistersByName) {
    // Remembered at lww_untrack: columns a, b; today b, c (a dropped, c added).
    std::string remembered;
    append_value_hash(remembered, Value::text("a0"));
    append_value_hash(remembered, Value::integer(1));
    const std::vector<uint64_t> same{value_hash(Value::integer(1)), value_hash(Value::null())};
    UntrackedDrift d = untracked_drift(remembered, {"a", "b"}, {"b", "c"}, same);
    EXPECT_EQ(d.changed, (std::vector<bool>{false, false}));
    EXPECT_EQ(d.added, (std::vector<bool>{false, true}));
    EXPECT_FALSE(d.any_changed);
    EXPECT_TRUE(d.any_added);
    const std::vector<uint64_t> edited{value_hash(Value::integer(2)), value_hash(Value::null())};
    d = untracked_drift(remembered, {"a", "b"}, {"b", "c"}, edited);
    EXPECT_EQ(d.changed, (std::vector<bool>{true, false}));
    EXPECT_TRUE(d.any_changed);
    // A record shorter than its column list: the missing column counts as added.
    d = untracked_drift(remembered.substr(0, 8), {"a", "b"}, {"a", "b"}, {value_hash(Value::text("a0")), 0});
    EXPECT_EQ(d.added, (std::vector<bool>{false, true}));
}

TEST(Storage, OverwroteCountsOurWritesTheSenderHadNotSeen) {
    const Receiver us{node(1), 0}, us_seen_to_5{node(1), 5};
    // Our column register (sequence 7) replaced by a newer one from node 2.
    RowState st(kCols);
    local_insert(st, Stamp{100, node(1)}, 3);
    local_update(st, {true, false}, Stamp{110, node(1)}, 7);
    IncomingRow in;
    in.gen = 1;
    in.cols = {{0, Stamp{200, node(2)}}, {1, Stamp{200, node(2)}}};
    RowState a = st;
    MergeOutcome o = merge_row(a, in, 9);
    EXPECT_EQ(o.applied, 2u);
    EXPECT_EQ(overwritten(o, us), 2u);                    // seen unknown: both of ours count
    EXPECT_EQ(overwritten(o, us_seen_to_5), 1u);          // the sender held sequence 3, not 7
    EXPECT_EQ(overwritten(o, Receiver{node(2), 0}), 0u);  // not ours
    // A delete (new generation) replacing our edits counts once.
    IncomingRow del;
    del.gen = 2;
    del.has_row = true;
    del.row = Stamp{300, node(2)};
    RowState b = st;
    o = merge_row(b, del, 9);
    EXPECT_EQ(overwritten(o, us), 1u);
    EXPECT_EQ(overwritten(o, Receiver{node(1), 7}), 0u);  // the deleter had seen them all
    ApplyCounts c;
    count_merged(c, o, &us);
    EXPECT_EQ(c.overwrote, 1u);
    EXPECT_EQ(c.applied, 1u);
}

// Purge and re-snapshot (docs/PROTOCOL.md): the rules the engines share.

// A row that arrives at a lower generation than ours comes from a peer that
// lacks our generation (when the engine asks: pulls from a server that
// purged): our row is restamped (same generation, every register), so the
// whole row travels again; nothing incoming counts as applied.
TEST(Storage, ARowArrivingLowerIsRestampedSoItTravelsAgain) {
    MemTable t;
    const NodeId self = node(9);
    int restamps = 0;
    Receiver who{self, 0, false, nullptr, [&] {
                     ++restamps;
                     return Stamp{900, self};
                 }};
    t.who = &who;
    t.merge({live(1, 100, 1, "x", 1, 3)});  // held at generation 3
    const uint64_t before = t.seq_of.at(1);
    ApplyCounts c = t.merge({live(1, 500, 2, "brought back", 7, 1)});
    EXPECT_EQ(c.applied, 0u);
    EXPECT_EQ(c.lost, 3u);
    EXPECT_EQ(restamps, 1);
    const RowState& st = t.meta.at(1);
    EXPECT_EQ(st.gen, 3u);
    EXPECT_EQ(st.row.stamp.node, self);
    EXPECT_EQ(st.row.stamp.hlc, 900u);
    for (const Register& r : st.cols) {
        EXPECT_GT(r.seq, before);       // every register goes again...
        EXPECT_EQ(r.stamp.node, self);  // ...as this database's (a feed never sends
        EXPECT_EQ(r.stamp.hlc, 900u);   // a peer its own registers back)
    }
    EXPECT_EQ(t.rows.at(1)[0].s, "x");
    // The same generation, or a higher one, is an ordinary merge.
    t.merge({live(1, 50, 2, "older", 7, 3)});
    EXPECT_EQ(restamps, 1);
    // Without the engine's stamp source nothing is restamped (lww_apply of old engines).
    t.who = nullptr;
    t.merge({live(1, 500, 2, "brought back", 7, 1)});
    EXPECT_EQ(restamps, 1);
}

// A push served where this database purged (Receiver::adopt): rows of keys
// it holds nothing of, at or below the table's floor. An insert is adopted
// after the floor, every register stamped anew (it travels back whole, to
// its sender too); a column change lost to the purged delete unless a row
// of the key is parked here; a delete is stored as usual (it supersedes a
// parked row); keys it holds, and rows above the floor, merge as usual.
TEST(Storage, PushesFromBelowThePurgeFloorAreAdoptedOrLost) {
    MemTable t;
    const NodeId self = node(9);
    int adopted = 0;
    Receiver who;
    who.self = self;
    who.adopt = [&] {
        ++adopted;
        return Stamp{900, self};
    };
    t.who = &who;
    t.floor = 4;
    t.merge({live(1, 100, 1, "held", 1, 5)});  // above the floor: as usual
    EXPECT_EQ(adopted, 0);
    EXPECT_EQ(t.meta.at(1).row.stamp.hlc, 100u);
    ApplyCounts c = t.merge({live(2, 100, 1, "offline insert", 2, 1)});
    EXPECT_EQ(c.applied, 3u);
    EXPECT_EQ(adopted, 1);
    const RowState& st = t.meta.at(2);
    EXPECT_EQ(st.gen, 5u);
    EXPECT_EQ(st.row.stamp.hlc, 900u);
    for (const Register& r : st.cols) EXPECT_EQ(r.stamp.node, self);
    EXPECT_EQ(t.rows.at(2)[0].s, "offline insert");
    // The same key from another device unaware of the purge now meets a
    // row held here: its older generation loses whole (stale offline data
    // never replaces a row written since the purge).
    c = t.merge({live(2, 950, 3, "second", 3, 1)});
    EXPECT_EQ(adopted, 1);
    EXPECT_EQ(c.lost, 3u);
    EXPECT_EQ(t.rows.at(2)[0].s, "offline insert");
    // A column change below the floor of a key not held: lost (no partial
    // row comes back), unless it completes a row of the key parked here.
    RowChange edit = live(3, 100, 1, "edit", 3, 3);
    edit.has_row = false;
    c = t.merge({edit});
    EXPECT_EQ(c.applied, 0u);
    EXPECT_EQ(c.lost, 2u);
    EXPECT_EQ(t.meta.count(3) + t.rows.count(3), 0u);
    t.parked.insert(3);
    c = t.merge({edit});
    EXPECT_EQ(c.applied, 2u);
    EXPECT_EQ(t.meta.at(3).gen, 3u);
    // A delete below the floor of a key not held: a tombstone, as usual.
    c = t.merge({tombstone(4, 100, 1, 4)});
    EXPECT_EQ(adopted, 1);
    EXPECT_EQ(t.meta.at(4).gen, 4u);
    EXPECT_EQ(t.meta.at(4).row.stamp.hlc, 100u);
    EXPECT_EQ(t.rows.count(4), 0u);
    // An insert whose sender left a column out (a register stamped here,
    // which a feed never sends back) is adopted whole: that column too is
    // stamped here and goes out with its DEFAULT, so the sender does not
    // keep its value of the purged generation (seed 534197794539).
    RowChange partial = live(5, 100, 1, "no b", 5, 1);
    partial.cols.pop_back();
    c = t.merge({partial});
    EXPECT_EQ(adopted, 2);
    EXPECT_EQ(c.applied, 2u);
    const RowState& whole = t.meta.at(5);
    ASSERT_EQ(whole.cols.size(), 2u);
    for (const Register& r : whole.cols) {
        EXPECT_TRUE(r.present);
        EXPECT_TRUE(stamp_equal(r.stamp, whole.row.stamp));
    }
    // Without `adopt` (pulls, lww_apply) nothing is adopted.
    Receiver plain;
    plain.self = self;
    t.who = &plain;
    t.merge({live(6, 100, 1, "pulled", 6, 1)});
    EXPECT_EQ(t.meta.at(6).gen, 1u);
}

// A tombstone's age is how long this database has held it: marks say which
// sequences were handed out how long ago.
TEST(Storage, PurgeAgeComesFromMarksNotStamps) {
    const uint64_t day = 24ull * 3600 * 1000, ttl = 30 * day, t0 = 1000 * day;
    PurgeMarks m;
    EXPECT_EQ(seq_older_than(m, t0, ttl, 500), 0u);  // nothing known that old
    EXPECT_EQ(seq_older_than(m, t0, 0, 500), 500u);  // 0 ms: everything
    m = record_mark(m, t0, 100, ttl);
    m = record_mark(m, t0 + day / 10, 110, ttl);  // closer than ttl/16: not recorded
    ASSERT_EQ(m.size(), 1u);
    m = record_mark(m, t0 + 10 * day, 200, ttl);
    m = record_mark(m, t0 + 40 * day, 300, ttl);
    EXPECT_EQ(seq_older_than(m, t0 + 29 * day, ttl, 300), 0u);
    EXPECT_EQ(seq_older_than(m, t0 + 30 * day, ttl, 300), 100u);
    EXPECT_EQ(seq_older_than(m, t0 + 45 * day, ttl, 300), 200u);
    EXPECT_EQ(seq_older_than(m, t0 + 45 * day, ttl, 150), 150u);  // never past the last sequence
    // Round trip through the stored text; damaged text reads as no marks.
    EXPECT_EQ(format_marks(parse_marks(format_marks(m))), format_marks(m));
    for (const char* bad : {"x", "1:", "1:2,", "1:2;3:4", ":5", "18446744073709551616:1"})
        EXPECT_TRUE(parse_marks(bad).empty()) << bad;
    // A clock or a restore that went back starts the marks over.
    m = record_mark(m, t0, 50, ttl);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(m[0].seq, 50u);
    // At most 32 kept.
    PurgeMarks many;
    for (uint64_t i = 1; i <= 100; ++i) many = record_mark(many, i * ttl, i, ttl);
    EXPECT_EQ(many.size(), 32u);
    EXPECT_EQ(many.front().seq, 69u);
    EXPECT_TRUE(auto_purge_due(t0, 0, ttl));
    EXPECT_FALSE(auto_purge_due(t0 + 1000, t0, ttl));
    EXPECT_TRUE(auto_purge_due(t0 + kAutoPurgeEveryMs, t0, ttl));
    EXPECT_TRUE(auto_purge_due(t0 + 5, t0, 0));
}

// The generation a re-snapshot asks about: only rows whose generation the
// server already had; news to it (past its cursor, not its own, not relayed
// from it) is kept and pushed.
TEST(Storage, AReSnapshotAsksOnlyAboutGenerationsTheServerHad) {
    const NodeId self = node(9), server = node(5);
    const SeqRanges relayed = seq_ranges({40});
    auto had = [&](uint64_t seq, const NodeId& by) {
        return !receiver_lacks(Register{true, Stamp{1, by}, seq}, 30, &server, UINT64_MAX, &relayed, &self);
    };
    EXPECT_TRUE(had(10, self));      // pushed before the server's cursor
    EXPECT_TRUE(had(50, server));    // the server's own write
    EXPECT_TRUE(had(40, node(3)));   // merged from the server
    EXPECT_FALSE(had(40, self));     // written here again at a reused sequence: news
    EXPECT_FALSE(had(50, self));     // an insert made offline: news
    EXPECT_FALSE(had(50, node(3)));  // from another peer: news
}
