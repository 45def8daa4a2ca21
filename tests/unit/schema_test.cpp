// Schema skew in the core: change sets naming tables or columns this
// database does not have are split into a part merged now and a pending part
// held for later; blobs keep register order across DROP COLUMN.
#include <gtest/gtest.h>

#include "../../common/batch.h"
#include "../../common/row_codec.h"

using namespace lww;

namespace {

struct Local {
    std::string name;
    std::vector<std::string> key, cols;
};

NodeId node(int i) {
    NodeId n;
    n.bytes[15] = static_cast<uint8_t>(i);
    return n;
}

ChangeSet sample() {
    ChangeSet cs;
    cs.origin = node(7);
    cs.since = 3;
    cs.after = 3;
    cs.upto = 9;
    TableChanges doc;
    doc.name = "doc";
    doc.key = {"id"};
    doc.columns = {"title", "tag", "body"};
    RowChange r1;
    r1.key = {Value::integer(1)};
    r1.gen = 1;
    r1.has_row = true;
    r1.row = Stamp{100, node(7)};
    r1.cols = {ColChange{0, Value::text("t"), r1.row}, ColChange{1, Value::text("x"), r1.row},
               ColChange{2, Value::text("b"), r1.row}};
    RowChange r2;  // only the unknown column
    r2.key = {Value::integer(2)};
    r2.gen = 3;
    r2.row = Stamp{90, node(7)};
    r2.cols = {ColChange{1, Value::text("y"), Stamp{120, node(7)}}};
    doc.rows = {r1, r2};
    TableChanges other;
    other.name = "later";
    other.key = {"k"};
    other.columns = {"v"};
    RowChange o;
    o.key = {Value::text("a")};
    o.gen = 1;
    o.has_row = true;
    o.row = Stamp{110, node(7)};
    o.cols = {ColChange{0, Value::integer(5), o.row}};
    other.rows = {o};
    cs.tables = {doc, other};
    return cs;
}

}  // namespace

TEST(Schema, UnknownTablesAndColumnsAreSplitOff) {
    const ChangeSet cs = sample();
    Local doc{"doc", {"id"}, {"title", "body"}};
    ChangeSet pending;
    auto plans = plan_tables<Local>(
        cs, [&](const std::string& n) { return n == "doc" ? &doc : nullptr; }, &pending);
    ASSERT_EQ(plans.size(), 1u);
    const TableChanges& known = *plans[0].in;
    EXPECT_EQ(plans[0].col_map, (std::vector<size_t>{0, kUnknownColumn, 1}));
    ASSERT_EQ(known.rows.size(), 1u);  // row 2 carried only the unknown column
    ASSERT_EQ(known.rows[0].cols.size(), 2u);
    EXPECT_EQ(known.rows[0].cols[0].col, 0u);
    EXPECT_EQ(known.rows[0].cols[1].col, 2u);
    EXPECT_TRUE(known.rows[0].has_row);
    // Incoming rows map to local registers without ever touching the unknown column.
    IncomingRow in = incoming_row(known.rows[0], plans[0].col_map);
    EXPECT_EQ(in.cols[0].first, 0u);
    EXPECT_EQ(in.cols[1].first, 1u);

    EXPECT_EQ(pending.origin, cs.origin);
    EXPECT_EQ(pending.upto, 9u);
    ASSERT_EQ(pending.tables.size(), 2u);
    EXPECT_EQ(pending.tables[0].name, "doc");
    ASSERT_EQ(pending.tables[0].rows.size(), 2u);
    EXPECT_FALSE(pending.tables[0].rows[0].has_row);  // merged now, with the known part
    EXPECT_EQ(pending.tables[0].rows[1].gen, 3u);
    EXPECT_EQ(pending.tables[1].name, "later");

    auto rows = pending_rows(pending);
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[0].columns, (std::vector<std::string>{"tag"}));
    EXPECT_EQ(rows[0].registers, 1u);
    EXPECT_EQ(rows[2].table, "later");
    EXPECT_EQ(rows[2].registers, 2u);
    // Each pending row is a valid change set of its own.
    for (const auto& r : rows) {
        ChangeSet back = decode_changeset(encode_changeset(r.cs));
        ASSERT_EQ(back.tables.size(), 1u);
        ASSERT_EQ(back.tables[0].rows.size(), 1u);
        EXPECT_EQ(back.tables[0].columns, r.columns);
    }
}

TEST(Schema, KeyMismatchAndNullKeysStayErrors) {
    ChangeSet cs = sample();
    Local doc{"doc", {"uid"}, {"title"}};
    ChangeSet pending;
    try {
        plan_tables<Local>(
            cs, [&](const std::string& n) { return n == "doc" ? &doc : nullptr; }, &pending);
        FAIL();
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "table \"doc\": the change set's key columns do not match this database's primary key");
    }
    cs.tables[1].rows[0].key[0] = Value::null();
    try {
        plan_tables<Local>(
            cs, [&](const std::string&) { return nullptr; }, &pending);
        FAIL();
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "table \"later\": a key value is NULL");
    }
    // Without a pending part, unknown names are refused as before.
    Local doc2{"doc", {"id"}, {"title", "body"}};
    try {
        plan_tables<Local>(sample(), [&](const std::string& n) { return n == "doc" ? &doc2 : nullptr; });
        FAIL();
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "unknown column \"tag\" in table \"doc\"");
    }
}

TEST(Schema, DropColumnRetiresTheRegisterSlot) {
    NodeDirectory nodes(node(0));
    RowState st(3);
    local_insert(st, Stamp{100, node(0)}, 1);
    local_update(st, {true, false, true}, Stamp{200, node(0)}, 2);
    StoredRow sr = encode_row(st, nodes, nullptr);
    sr.cols = blob_drop_column(sr.cols, 0);
    RowState after = decode_row(sr, 2, nodes);
    EXPECT_EQ(after.cols[0].stamp.hlc, 100u);  // the old column 1
    EXPECT_EQ(after.cols[1].stamp.hlc, 200u);  // the old column 2
    EXPECT_EQ(after.cols[1].seq, 2u);
}

TEST(Schema, BackfillLosesToEveryWrite) {
    RowState st(1);
    local_insert(st, Stamp{5000, node(1)}, 1);
    NodeDirectory nodes(node(1));
    StoredRow sr = encode_row(st, nodes, nullptr);
    // The column added after the insert: backfilled at the lowest stamp.
    std::vector<bool> added{false, true};
    sr.cols = blob_set_columns(sr.cols, 2, added, kBackfillHlc, 2);
    RowState two = decode_row(sr, 2, nodes);
    EXPECT_EQ(two.cols[1].stamp.hlc, kBackfillHlc);
    IncomingRow in;
    in.gen = 1;
    in.cols = {{1, Stamp{4000, node(2)}}};  // an offline edit older than the row's insert here
    MergeOutcome out = merge_row(two, in, 3);
    EXPECT_EQ(out.applied, 1u);
    // Two backfills: the (hlc, node) order decides, the same everywhere.
    RowState a = two;
    IncomingRow b;
    b.gen = 1;
    b.cols = {{1, Stamp{kBackfillHlc, node(0)}}};
    EXPECT_EQ(merge_row(a, b, 4).applied, 0u);
}

TEST(Schema, ValueHashIsKindAndBytes) {
    EXPECT_NE(value_hash(Value::integer(1)), value_hash(Value::text("1")));
    EXPECT_NE(value_hash(Value::real(0.0)), value_hash(Value::real(-0.0)));
    EXPECT_EQ(value_hash(Value::text("abc")), value_hash(Value::text("abc")));
    EXPECT_NE(value_hash(Value::null()), value_hash(Value::text("")));
}
