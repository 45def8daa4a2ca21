// Randomized convergence test for mixed lwwsync peers: the convergence
// driver (scenario.h) with PostgreSQL databases (the lwwsync Postgres
// extension, pg_peer.h) and SQLite files (the SQLite extension).
//
// Transports:
//   Postgres <-> Postgres   lww_sync('postgresql:///db?host=...')  (in the server)
//   SQLite   <-> SQLite     lww_sync('file:...')
//   Postgres <-> SQLite     change sets moved by the driver: lww_changes on
//                           one side, lww_apply on the other, with a cursor per
//                           direction kept by the driver (paged by the
//                           "complete" / "after" rules of docs/PROTOCOL.md when
//                           a row limit is used).
// After the final spread every peer must hold the same rows in the canonical
// value model, byte for byte, and mesh rounds must find nothing left to do.
//
// See README.md in this directory for flags and how to reproduce a seed.

#include "scenario.h"
#include "pg_peer.h"

// The schema of this test. Every column has one type, the same in both
// engines, so that a value means the same thing on every peer:
//   integer <-> int8, real <-> float8, text <-> text, blob <-> bytea
// (pg_table_ddl writes the Postgres tables). The SQLite-only test also has
// untyped columns and off-type values; a typed Postgres column cannot hold
// those, so they are left out here.
namespace conv {

const std::vector<Table>& tables() {
    static const std::vector<Table> t = {
        {"items",
         {{"id", Kind::Int}},
         {{"name", Kind::Text}, {"score", Kind::Real}, {"qty", Kind::Int}, {"data", Kind::Blob}, {"extra", Kind::Real}},
         "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, score REAL, qty INTEGER, data BLOB, extra REAL)"},
        {"pairs",
         {{"k1", Kind::Text}, {"k2", Kind::Int}},
         {{"label", Kind::Text},
          {"weight", Kind::Real},
          {"cnt", Kind::Int},
          {"payload", Kind::Blob},
          {"note", Kind::Text}},
         "CREATE TABLE pairs(k1 TEXT, k2 INTEGER, label TEXT, weight REAL, cnt INTEGER, payload BLOB, note TEXT, "
         "PRIMARY KEY(k1, k2)) WITHOUT ROWID"},
    };
    return t;
}

}  // namespace conv

int main(int argc, char** argv) {
    conv::PgDatabases pg;
    return conv::driver_main(argc, argv, conv::Mode::Mixed, &pg);
}
