// Randomized convergence test for the lwwsync SQLite extension: the
// convergence driver (scenario.h) with SQLite peers only.
//
// Each scenario builds 3-5 peer database files, performs random writes,
// schema changes, restarts, file copies, random pairwise / relayed syncs and
// random (stale, duplicated, out-of-order) manual change-set deliveries, then
// makes everyone sync with everyone and requires every peer to hold the same
// rows, byte for byte. --purge: a star with tombstone purges and devices
// offline past the server's purge horizon.
//
// See README.md in this directory for flags and how to reproduce a seed.

#include "scenario.h"

// The schema of this test: typed columns that also get off-type values, one
// untyped column per table, and a child table with a foreign key.
namespace conv {

const std::vector<Table>& tables() {
    static const std::vector<Table> t = {
        {"items",
         {{"id", Kind::Int}},
         {{"name", Kind::Text}, {"score", Kind::Real}, {"qty", Kind::Int}, {"data", Kind::Blob}, {"extra", Kind::Any}},
         "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, score REAL, qty INTEGER, data BLOB, extra)"},
        {"pairs",
         {{"k1", Kind::Text}, {"k2", Kind::Int}},
         {{"label", Kind::Text},
          {"weight", Kind::Real},
          {"cnt", Kind::Int},
          {"payload", Kind::Blob},
          {"note", Kind::Any}},
         "CREATE TABLE pairs(k1 TEXT, k2 INTEGER, label TEXT, weight REAL, cnt INTEGER, payload BLOB, note, "
         "PRIMARY KEY(k1, k2)) WITHOUT ROWID"},
        // A child of items (foreign keys are on in every connection): its
        // `item` is an existing item or NULL when written; a delete or key
        // change of the item cascades (local writes, also while merging).
        {"notes",
         {{"id", Kind::Int}},
         {{"item", Kind::Int}, {"body", Kind::Text}, {"edits", Kind::Int}},
         "CREATE TABLE notes(id INTEGER PRIMARY KEY, item INTEGER REFERENCES items(id) ON DELETE CASCADE"
         " ON UPDATE CASCADE, body TEXT, edits INTEGER)"},
    };
    return t;
}

}  // namespace conv

int main(int argc, char** argv) { return conv::driver_main(argc, argv, conv::Mode::Sqlite, nullptr); }
