#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "../../common/changeset.h"
#include "../../common/error.h"
#include "../../common/exchange.h"

using namespace lww;

namespace {

NodeId n1() { return NodeId::parse("0f0e0d0c-0b0a-4908-8706-050403020100"); }
NodeId n2() { return NodeId::parse("ffffffff-ffff-4fff-bfff-ffffffffffff"); }

std::vector<Value> every_kind() {
    return {
        Value::null(),
        Value::integer(0),
        Value::integer(std::numeric_limits<int64_t>::min()),
        Value::integer(std::numeric_limits<int64_t>::max()),
        Value::integer((int64_t(1) << 53) - 1),
        Value::integer(int64_t(1) << 53),
        Value::integer(-(int64_t(1) << 53)),
        Value::real(0.1),
        Value::real(-0.0),
        Value::real(1e308),
        Value::real(5e-324),
        Value::real(std::numeric_limits<double>::infinity()),
        Value::real(-std::numeric_limits<double>::infinity()),
        Value::real(std::numeric_limits<double>::quiet_NaN()),
        Value::real(3.0),
        Value::text(""),
        Value::text("h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80"),
        Value::text(std::string("a\0b", 3)),
        Value::text("\"quoted\" \\ / \n\t"),
        Value::bytes(""),
        Value::bytes(std::string("\0\0\xff\x01", 4)),
        Value::bytes("x"),
        Value::bytes("xy"),
        Value::bytes("xyz"),
    };
}

ChangeSet sample() {
    ChangeSet cs;
    cs.origin = n1();
    cs.since = 7;
    cs.after = 9;
    cs.complete = false;
    cs.upto = kMaxSequence;
    TableChanges t;
    t.name = "items \"odd\"; name";
    t.key = {"id", "k2"};
    t.columns = {"v"};
    uint64_t hlc = (uint64_t(1'790'000'000'000) << 16) | 3;
    for (const Value& v : every_kind()) {
        RowChange r;
        r.key = {Value::integer(static_cast<int64_t>(t.rows.size())), v};
        r.gen = 1;
        r.has_row = true;
        r.row = Stamp{hlc, n1()};
        r.cols.push_back(ColChange{0, v, Stamp{hlc + 1, n2()}});
        t.rows.push_back(r);
    }
    RowChange dead;
    dead.key = {Value::integer(-1), Value::text("x")};
    dead.gen = (uint64_t(1) << 53) - 2;  // the largest even generation a JS reader keeps exact
    dead.has_row = true;
    dead.row = Stamp{hlc + 5, n2()};
    t.rows.push_back(dead);
    cs.tables.push_back(t);
    return cs;
}

}  // namespace

TEST(Codec, RoundTripsEveryValueKindExactly) {
    ChangeSet cs = sample();
    std::string json = encode_changeset(cs);
    ChangeSet back = decode_changeset(json);
    EXPECT_EQ(back.origin, cs.origin);
    EXPECT_EQ(back.since, cs.since);
    EXPECT_EQ(back.upto, cs.upto);
    EXPECT_EQ(back.after, 9u);
    EXPECT_FALSE(back.complete);
    ASSERT_EQ(back.tables.size(), 1u);
    const auto& a = cs.tables[0];
    const auto& b = back.tables[0];
    EXPECT_EQ(b.name, a.name);
    EXPECT_EQ(b.key, a.key);
    ASSERT_EQ(b.rows.size(), a.rows.size());
    for (size_t i = 0; i < a.rows.size(); ++i) {
        const auto &x = a.rows[i], &y = b.rows[i];
        EXPECT_EQ(y.gen, x.gen);
        ASSERT_EQ(y.key.size(), x.key.size());
        for (size_t k = 0; k < x.key.size(); ++k) EXPECT_TRUE(identical(x.key[k], y.key[k])) << "row " << i;
        EXPECT_EQ(y.has_row, x.has_row);
        EXPECT_TRUE(stamp_equal(y.row, x.row));
        ASSERT_EQ(y.cols.size(), x.cols.size());
        for (size_t k = 0; k < x.cols.size(); ++k) {
            EXPECT_TRUE(identical(x.cols[k].value, y.cols[k].value)) << "row " << i;
            EXPECT_TRUE(stamp_equal(x.cols[k].stamp, y.cols[k].stamp));
        }
    }
    EXPECT_EQ(encode_changeset(back), json) << "re-encoding is stable";
}

TEST(Codec, NegativeZeroKeepsItsSign) {
    ChangeSet cs = decode_changeset(encode_changeset(sample()));
    const Value& v = cs.tables[0].rows[8].cols[0].value;
    ASSERT_EQ(v.kind, Value::Kind::Real);
    EXPECT_TRUE(std::signbit(v.d));
}

TEST(Codec, NoBareNumberAboveTwoToThe53) {
    std::string json = encode_changeset(sample());
    // Every digit run outside a string must be short enough for a JS double.
    bool in_string = false;
    size_t run = 0;
    for (size_t i = 0; i < json.size(); ++i) {
        char c = json[i];
        if (c == '"' && (i == 0 || json[i - 1] != '\\')) in_string = !in_string;
        if (!in_string && c >= '0' && c <= '9') {
            ++run;
            ASSERT_LE(run, 16u) << json.substr(i - run + 1, 30);
        } else {
            run = 0;
        }
    }
    EXPECT_NE(json.find("{\"int\":\"-9223372036854775808\"}"), std::string::npos);
    EXPECT_NE(json.find("\"9223372036854775807\""), std::string::npos);
}

static std::string error_of(const std::string& json) {
    try {
        decode_changeset(json);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(Codec, RejectsBadInputWithClearErrors) {
    std::string good = encode_changeset(sample());
    EXPECT_NE(error_of("{not json").find("malformed JSON"), std::string::npos);
    EXPECT_NE(error_of(good.substr(0, good.size() / 2)).find("malformed JSON"), std::string::npos);
    EXPECT_NE(error_of("[]").find("expected a JSON object"), std::string::npos);
    EXPECT_NE(error_of("{}").find("not an lwwsync change set"), std::string::npos);

    std::string v2 = good;
    v2.replace(v2.find("\"version\":1"), 11, "\"version\":2");
    EXPECT_NE(error_of(v2).find("unsupported change set version 2"), std::string::npos);

    std::string badhlc = good;
    badhlc.replace(badhlc.find("\"stamp\":[\"") + 10, 1, "x");
    EXPECT_NE(error_of(badhlc).find("decimal string"), std::string::npos);

    std::string badnode = good;
    badnode.replace(badnode.find("\"nodes\":[\"") + 10, 1, "z");
    EXPECT_NE(error_of(badnode).find("node ids"), std::string::npos);

    std::string badcol = good;
    badcol.replace(badcol.find("\"cols\":[[0,"), 11, "\"cols\":[[5,");
    EXPECT_NE(error_of(badcol).find("column index out of range"), std::string::npos);

    std::string badval = good;
    badval.replace(badval.find("{\"real\":0.1}"), 12, "{\"float\":1}");
    EXPECT_NE(error_of(badval).find("not a value"), std::string::npos);

    std::string badb64 = good;
    badb64.replace(badb64.find("{\"bytes\":\"AAD/AQ==\"}"), 20, "{\"bytes\":\"A!D/AQ==\"}");
    EXPECT_NE(error_of(badb64).find("base64"), std::string::npos);

    std::string huge_gen = good;
    huge_gen.replace(huge_gen.find("\"gen\":1,"), 8, "\"gen\":9007199254740993,");
    EXPECT_NE(error_of(huge_gen).find("gen"), std::string::npos);

    std::string realnum = good;
    realnum.replace(realnum.find("{\"real\":0.1}"), 12, "0.5");
    EXPECT_NE(error_of(realnum).find("bare number"), std::string::npos);
}

// The reader takes a set as it is parsed: members in any order, the first
// of a name given twice, unknown members skipped — each read as the writer's
// order reads.
TEST(Codec, ReadsMembersInAnyOrder) {
    const std::string head =
        R"("format":"lwwsync.changeset","version":1,"origin":"0f0e0d0c-0b0a-4908-8706-050403020100","since":"0","upto":"9")";
    const std::string nodes =
        R"("nodes":["0f0e0d0c-0b0a-4908-8706-050403020100","ffffffff-ffff-4fff-bfff-ffffffffffff"])";
    const std::string row =
        R"({"key":[1],"gen":1,"stamp":["70000",0],"row":true,"cols":[[1,"b","70001",1],[0,{"real":0.5}]]})";
    const std::string table = R"({"name":"t","key":["id"],"columns":["a","b"],"rows":[)" + row + "]}";
    const ChangeSet want = decode_changeset("{" + head + R"(,"tables":[)" + table + "]," + nodes + "}");
    ASSERT_EQ(want.tables.size(), 1u);
    ASSERT_EQ(want.tables[0].rows.size(), 1u);
    EXPECT_EQ(want.tables[0].rows[0].cols[0].stamp.node, n2());
    EXPECT_EQ(want.tables[0].rows[0].cols[1].stamp.hlc, 70000u);
    const std::string reordered_row =
        R"({"cols":[[1,"b","70001",1],[0,{"real":0.5}]],"row":true,"x":{"y":[1,2]},"gen":1,"key":[1],"stamp":["70000",0]})";
    const std::vector<std::string> same = {
        // nodes first, rows before key and columns, stamp after cols, an unknown member
        "{" + nodes + "," + head + R"(,"tables":[{"rows":[)" + reordered_row +
            R"(],"columns":["a","b"],"name":"t","key":["id"]}]})",
        // a member named twice: the first counts
        "{" + head + R"(,"since":"5","tables":[)" + table + R"(],"tables":[],)" + nodes + "}",
        R"({"format":"lwwsync.changeset","format":"x",)" + head.substr(29) +
            R"(,"tables":[{"name":"t","key":["id"],"columns":["a","b"],"rows":[{"key":[1],"gen":1,"gen":3,"stamp":["70000",0],"row":true,"cols":[[1,"b","70001",1],[0,{"real":0.5}]],"cols":[]}]}],)" +
            nodes + "}",
    };
    for (const std::string& json : same) {
        ChangeSet got;
        ASSERT_NO_THROW(got = decode_changeset(json)) << json;
        EXPECT_EQ(encode_changeset(got), encode_changeset(want)) << json;
    }
    // As a pull inside an exchange response: the same set.
    const std::string response =
        R"({"format":"lwwsync.exchange","version":1,"node":"0f0e0d0c-0b0a-4908-8706-050403020100","acked":"0","pull":)" +
        same[0] + "}";
    const ParsedResponse r = decode_response(response);
    ASSERT_TRUE(r.pull.has_value());
    EXPECT_EQ(encode_changeset(*r.pull), encode_changeset(want));
}

TEST(Codec, ProblemsAreNamedAsInWriterOrder) {
    const std::string head =
        R"({"format":"lwwsync.changeset","version":1,"origin":"0f0e0d0c-0b0a-4908-8706-050403020100","since":"0","upto":"0",)";
    // 4294967295 is a node index like any other: out of range of "nodes",
    // never taken for a column without a stamp of its own.
    EXPECT_EQ(
        error_of(
            head +
            R"("nodes":["0f0e0d0c-0b0a-4908-8706-050403020100"],"tables":[{"name":"t","key":["k"],"columns":["c"],"rows":[{"key":[1],"gen":1,"stamp":["1",0],"cols":[[0,1,"2",4294967295]]}]}]})"),
        "invalid change set: tables[0].rows[0].cols: node index out of range of \"nodes\"");
    // A key and a column of one name: the columns' problem, in either order.
    for (const char* t : {R"({"name":"t","columns":["a"],"key":["a"],"rows":[]})",
                          R"({"name":"t","key":["a"],"columns":["a"],"rows":[]})"})
        EXPECT_EQ(error_of(head + R"("nodes":[],"tables":[)" + t + "]}"),
                  "invalid change set: tables[0].columns: column \"a\" is named twice");
    // Rows read before their table named its key: checked at the table's end.
    EXPECT_EQ(
        error_of(
            head +
            R"("nodes":["0f0e0d0c-0b0a-4908-8706-050403020100"],"tables":[{"name":"t","rows":[{"key":[1,2],"gen":1,"stamp":["1",0],"row":true}],"key":["k"],"columns":[]}]})"),
        "invalid change set: tables[0].rows[0].key: expected one value per key column");
    // The header's problem comes first, wherever it is.
    EXPECT_EQ(error_of(head + R"("tables":[{"name":"t"}],"nodes":7})"),
              "invalid change set: nodes: expected an array of node ids");
    // A format with a NUL inside is not the format.
    EXPECT_NE(
        error_of(
            R"({"format":"lwwsync.changeset\u0000","version":1,"origin":"0f0e0d0c-0b0a-4908-8706-050403020100","since":"0","upto":"0","nodes":[],"tables":[]})")
            .find("not an lwwsync change set"),
        std::string::npos);
}

TEST(Base64, RoundTripsAllLengthsAndRejectsJunk) {
    std::string bytes;
    for (int n = 0; n < 70; ++n) {
        std::string out;
        ASSERT_TRUE(base64_decode(base64_encode(bytes), out));
        ASSERT_EQ(out, bytes);
        bytes.push_back(static_cast<char>(n * 37));
    }
    std::string out;
    EXPECT_FALSE(base64_decode("abc", out));
    EXPECT_FALSE(base64_decode("ab=c", out));
    EXPECT_FALSE(base64_decode("a*cd", out));
}

// Rows as arrays (docs/PROTOCOL.md): a snapshot row (its row register and
// every column with the row's stamp) is written [key, gen, hlc, node,
// value…] for a receiver that asked; every other row stays an object, and
// the reader takes both, each to the same set.
namespace {

ChangeSet snapshot_like() {
    ChangeSet cs;
    cs.origin = n1();
    cs.upto = 40;
    TableChanges t;
    t.name = "t";
    t.key = {"id", "k2"};
    t.columns = {"a", "b"};
    const uint64_t hlc = (uint64_t(1'790'000'000'000) << 16) | 3;
    int64_t id = 0;
    for (const Value& v : every_kind()) {  // fits: row register, both columns, the row's stamp
        RowChange r;
        r.key = {Value::integer(id++), v};
        r.gen = 3;
        r.has_row = true;
        r.row = Stamp{hlc + static_cast<uint64_t>(id), id % 2 ? n1() : n2()};
        r.cols = {ColChange{0, v, r.row}, ColChange{1, Value::text("b"), r.row}};
        t.rows.push_back(r);
    }
    RowChange own = t.rows[0];  // a column with its own stamp: an object
    own.key = {Value::integer(100), Value::null()};
    own.cols[1].stamp = Stamp{hlc + 999, n2()};
    t.rows.push_back(own);
    RowChange some = t.rows[1];  // one column only: an object
    some.key = {Value::integer(101), Value::null()};
    some.cols.pop_back();
    t.rows.push_back(some);
    RowChange dead;  // a delete: an object
    dead.key = {Value::integer(102), Value::null()};
    dead.gen = 4;
    dead.has_row = true;
    dead.row = Stamp{hlc, n2()};
    t.rows.push_back(dead);
    cs.tables.push_back(t);
    return cs;
}

std::string encode_compact(const ChangeSet& cs) {
    ChangeSetWriter w(cs.origin, cs.since, cs.after);
    w.compact_rows(true);
    for (const auto& t : cs.tables) {
        w.begin_table(t.name, t.key, t.columns);
        for (const auto& r : t.rows) w.row(r);
        w.end_table();
    }
    return w.finish(cs.upto, cs.complete);
}

}  // namespace

TEST(Codec, SnapshotRowsAsArraysReadBackToTheSameSet) {
    const ChangeSet cs = snapshot_like();
    const std::string compact = encode_compact(cs), objects = encode_changeset(cs);
    EXPECT_LT(compact.size(), objects.size() * 3 / 4) << "arrays should be denser";
    EXPECT_NE(compact.find("\"rows\":[[[0,null],3,\""), std::string::npos) << compact.substr(0, 300);
    EXPECT_NE(compact.find("{\"key\":[100,null]"), std::string::npos) << "own stamps stay objects";
    EXPECT_NE(compact.find("{\"key\":[101,null]"), std::string::npos) << "partial rows stay objects";
    EXPECT_NE(compact.find("{\"key\":[102,null]"), std::string::npos) << "deletes stay objects";
    const ChangeSet back = decode_changeset(compact);
    EXPECT_EQ(encode_changeset(back), objects) << "the same set, written as objects";
}

TEST(Codec, ArrayRowsAreCheckedLikeObjects) {
    const std::string head =
        R"({"format":"lwwsync.changeset","version":1,"origin":"0f0e0d0c-0b0a-4908-8706-050403020100","since":"0","upto":"9","nodes":["0f0e0d0c-0b0a-4908-8706-050403020100"],"tables":[{"name":"t","key":["id"],"columns":["a","b"],"rows":[)";
    const std::string tail = "]}]}";
    auto err = [&](const std::string& rows) { return error_of(head + rows + tail); };
    const std::string ok = R"([[1],1,"117669274337280003",0,"x",{"int":"9007199254740993"}])";
    EXPECT_EQ(err(ok), "") << "a well-formed array row";
    const ChangeSet cs = decode_changeset(head + ok + tail);
    ASSERT_EQ(cs.tables[0].rows.size(), 1u);
    EXPECT_TRUE(cs.tables[0].rows[0].has_row);
    ASSERT_EQ(cs.tables[0].rows[0].cols.size(), 2u);
    EXPECT_EQ(cs.tables[0].rows[0].cols[1].value.i, int64_t(9007199254740993));
    EXPECT_TRUE(stamp_equal(cs.tables[0].rows[0].cols[1].stamp, cs.tables[0].rows[0].row));

    struct Bad {
        const char* rows;
        const char* error;
    };
    for (const Bad& b : std::vector<Bad>{
             {R"([[1],1,"117669274337280003",0,"x"])",
              "tables[0].rows[0].cols: expected [key, gen, hlc, node] and one value per column"},
             {R"([[1],1,"117669274337280003",0,"x","y","z"])",
              "tables[0].rows[0].cols: expected [key, gen, hlc, node] and one value per column"},
             {R"([[1],1,"117669274337280003"])",
              "tables[0].rows[0].cols: expected [key, gen, hlc, node] and one value per column"},
             {R"([[1,2],1,"117669274337280003",0,"x","y"])",
              "tables[0].rows[0].key: expected one value per key column"},
             {R"([1,1,"117669274337280003",0,"x","y"])", "tables[0].rows[0].key: expected one value per key column"},
             {R"([[1],0,"117669274337280003",0,"x","y"])",
              "tables[0].rows[0].gen: expected a positive integer below 2^53"},
             {R"([[1],1,"0",0,"x","y"])", "tables[0].rows[0].stamp"},
             {R"([[1],1,"117669274337280003",7,"x","y"])", "tables[0].rows[0].stamp"},
             {R"([[1],1,"117669274337280003",0,["x"],"y"])", "tables[0].rows[0].cols: not a value"},
             {R"([[1],1,"117669274337280003",0,{"float":1},"y"])", "tables[0].rows[0].cols: not a value"},
             {R"([[1],1,"117669274337280003",0,"x","y"],[[1],1,"117669274337280004",0,"x","y"])",
              "tables[0].rows[1]: the key appears twice in this table"},
         }) {
        const std::string e = err(b.rows);
        EXPECT_NE(e.find(b.error), std::string::npos) << b.rows << " -> " << e;
    }
    // An array row's values are the columns in order: not before they are named.
    const std::string early =
        R"({"format":"lwwsync.changeset","version":1,"origin":"0f0e0d0c-0b0a-4908-8706-050403020100","since":"0","upto":"9","nodes":["0f0e0d0c-0b0a-4908-8706-050403020100"],"tables":[{"name":"t","rows":[[[1],1,"117669274337280003",0,"x","y"]],"key":["id"],"columns":["a","b"]}]})";
    EXPECT_NE(error_of(early).find("a row written as an array needs the table's \"key\" and \"columns\" first"),
              std::string::npos)
        << error_of(early);
}

// The exchange asks for arrays ("compact": true) in the pulls of a client;
// a server that does not know the member ignores it and sends objects.
TEST(Exchange, RequestsAskForRowsAsArrays) {
    ExchangeRequest r;
    r.node = n2();
    r.limits.compact_rows = true;
    const std::string json = encode_request(r);
    EXPECT_NE(json.find("\"compact\":true"), std::string::npos) << json;
    EXPECT_TRUE(decode_request(json).limits.compact_rows);
    r.limits.compact_rows = false;
    EXPECT_EQ(encode_request(r).find("compact"), std::string::npos);
    std::string bad = json;
    bad.replace(bad.find("\"compact\":true"), 14, "\"compact\":1");
    try {
        decode_request(bad);
        ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("\"compact\" must be true or false"), std::string::npos) << e.what();
    }
}
