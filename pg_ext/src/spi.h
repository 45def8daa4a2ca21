// PostgreSQL adapter: SPI with C++ ergonomics. Every call that can ereport
// goes through pg_call, so failures arrive as PgError exceptions.
#pragma once
#include "guard.h"

namespace lww::pg {

std::string quote_ident(const std::string& name);
std::string quote_literal(const std::string& text);

// SPI_connect/SPI_finish for one entry point or trigger call.
class SpiSession {
public:
    SpiSession();
    ~SpiSession();
    SpiSession(const SpiSession&) = delete;
    SpiSession& operator=(const SpiSession&) = delete;

private:
    bool connected_ = false;
};

// A parameter for a prepared statement.
struct Param {
    Oid type = TEXTOID;
    Datum value = 0;
    bool null = true;
};

// A prepared, kept plan (lives for the backend; keyed by SQL text).
SPIPlanPtr prepare(const std::string& sql, const std::vector<Oid>& types);

// Runs a plan; returns SPI_processed. Results stay in SPI_tuptable until the next call.
uint64_t run(SPIPlanPtr plan, const std::vector<Param>& params, bool read_only, long limit = 0);
// Runs ad-hoc SQL (DDL, one-off statements).
uint64_t run_sql(const std::string& sql, bool read_only = false);

// Statements run by run and run_sql in this backend (lwwsync.statement_count()).
uint64_t statement_count();

// Column access on the current SPI_tuptable.
Datum col(uint64_t row, int col, bool* isnull);
int64_t col_int64(uint64_t row, int col, bool* isnull = nullptr);
std::string col_text(uint64_t row, int col, bool* isnull = nullptr);
std::string col_bytes(uint64_t row, int col, bool* isnull = nullptr);
Oid col_type(int col);

// Runs metadata work as the owner of the lwwsync schema, so callers need no
// privileges on it; restores the caller's identity on scope exit.
class AsMetadataOwner {
public:
    AsMetadataOwner();
    ~AsMetadataOwner();

private:
    Oid saved_user_ = InvalidOid;
    int saved_sec_ = 0;
    int guc_level_ = 0;  // search_path pinned to pg_catalog, pg_temp
};

// Reads or locks a user table as its owner, in a security-restricted
// operation (as VACUUM and REINDEX do): the owner's own code (index
// predicates and expressions, which planning evaluates) runs with the
// owner's rights and nothing more, never with the metadata owner's. The
// metadata owner never touches a user table.
class AsTableOwner {
public:
    explicit AsTableOwner(Oid relid);
    ~AsTableOwner();

private:
    Oid saved_user_ = InvalidOid;
    int saved_sec_ = 0;
    int guc_level_ = 0;
};

}  // namespace lww::pg
