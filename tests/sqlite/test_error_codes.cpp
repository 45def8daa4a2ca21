// Errors carry a kind (common/error.h), and SQLite's result code says which
// (docs/ERRORS.md): the message names the problem, the code lets an app
// (better-sqlite3's err.code, Python's exception class) tell them apart.
// The sync's conflict (SQLITE_BUSY) and cancel (SQLITE_ABORT) are checked
// in test_http.cpp, where a sync can be held open.
#include "harness.h"

using namespace lwwt;

namespace {

const char* kSchema = "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);";

std::string one_row(const std::string& table, uint64_t hlc) {
    return craft_cs(
        kNode2, {kNode2},
        {craft_table("\"" + table + "\"", "[\"id\"]", "[\"v\"]", {{"[1]", 1, hlc, 0, true, "[[0,\"x\"]]"}})});
}

struct Case {
    const char* what;
    int code;           // extended result code
    const char* error;  // a part of the message
};

void expect_error(const Outcome& o, const Case& c) {
    SCOPED_TRACE(c.what);
    EXPECT_FALSE(o.ok);
    EXPECT_EQ(o.code, c.code) << o.err;
    EXPECT_NE(o.err.find(c.error), std::string::npos) << o.err;
}

}  // namespace

TEST(ErrorCodes, EachKindHasItsResultCode) {
    TempDir dir;
    Db a(dir.file("a.db"));
    a.exec(kSchema);
    a.track("t");

    expect_error(a.run("SELECT lww_apply('{\"format\":')"), {"bad input", SQLITE_ERROR, "lww_apply: "});
    expect_error(a.run("SELECT lww_track('nope')"), {"not found", SQLITE_ERROR, "no such table: \"nope\""});
    expect_error(a.run("SELECT lww_apply(?)", {one_row("t", hlc_at(now_ms() + 3600 * 1000))}),
                 {"drift", SQLITE_ERROR, "s ahead of this clock"});

    // limit: the pending store holds one row per node here.
    a.exec("SELECT lww_config('pending_max_rows', 1)");
    a.apply(one_row("later", hlc_at(now_ms())));
    expect_error(
        a.run("SELECT lww_apply(?)", {craft_cs(kNode2, {kNode2},
                                               {craft_table("\"later\"", "[\"id\"]", "[\"v\"]",
                                                            {{"[2]", 1, hlc_at(now_ms()), 0, true, "[[0,\"y\"]]"}})})}),
        {"limit", SQLITE_TOOBIG, "the pending store already holds 1 rows"});

    // read-only: an update waits in the capture log, and folding it needs a
    // write the read-only connection cannot make (SQLite's own code kept).
    a.exec("INSERT INTO t VALUES (5, 'a'); UPDATE t SET v = 'b' WHERE id = 5");
    Db ro("file:" + a.path() + "?mode=ro", true);
    expect_error(ro.run("SELECT lww_changes(0)"),
                 {"read-only", SQLITE_READONLY, "local updates wait in the capture log (lww_log)"});

    // internal: damaged metadata.
    a.exec("INSERT INTO lww_log(seq, tbl, hlc, cols, k0) VALUES (lww_seq() + 1, 't', 5, x'08', 5)");
    expect_error(a.run("SELECT lww_changes(0)"), {"internal", SQLITE_INTERNAL, "lwwsync metadata is damaged"});
    a.exec("DELETE FROM lww_log");
    EXPECT_FALSE(a.changes(0).empty());
}
