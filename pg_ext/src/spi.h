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

// A statement's result, held by value: callers never read SPI_tuptable. Its
// tuples live until SPI_finish (nothing calls SPI_freetuptable), or until the
// subtransaction it ran in rolls back.
struct SpiResult {
    SPITupleTable* table = nullptr;  // null for a statement that returns no rows
    uint64_t n = 0;                  // rows returned, or affected (SPI_processed)

    uint64_t size() const { return n; }
    bool empty() const { return n == 0; }
    // Column access (0-based); what can ereport runs under pg_call.
    Datum col(uint64_t row, int c, bool* isnull) const;
    int64_t integer(uint64_t row, int c, bool* isnull = nullptr) const;  // int2, int4, oid or int8
    std::string text(uint64_t row, int c, bool* isnull = nullptr) const;
    std::string bytes(uint64_t row, int c, bool* isnull = nullptr) const;
    Oid type(int c) const;
};

// Runs a plan.
SpiResult run(SPIPlanPtr plan, const std::vector<Param>& params, bool read_only, long limit = 0);
// Runs ad-hoc SQL (DDL, one-off statements).
SpiResult run_sql(const std::string& sql, bool read_only = false);
// The next `count` rows of a cursor (SPI_cursor_fetch forward).
SpiResult fetch(Portal portal, long count);

// A text parameter (a copy in the current memory context).
Param text_param(const std::string& s);
// A bytea parameter (likewise a copy).
Param bytea_param(std::string_view b);

// Statements run by run and run_sql in this backend (lwwsync.statement_count()).
uint64_t statement_count();

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
