#include "spi.h"

extern "C" {
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "storage/proc.h"
#include "utils/syscache.h"
}

namespace lww::pg {

std::string quote_ident(const std::string& name) {
    std::string out = "\"";
    for (char c : name) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

std::string quote_literal(const std::string& text) {
    std::string out = "'";
    for (char c : text) {
        if (c == '\'') out += '\'';
        out += c;
    }
    return out + "'";
}

SpiSession::SpiSession() {
    int rc = 0;
    pg_call([&] { rc = SPI_connect(); });
    if (rc != SPI_OK_CONNECT) throw Error("SPI_connect failed");
    connected_ = true;
}

SpiSession::~SpiSession() {
    if (connected_) SPI_finish();
}

namespace {
uint64_t statements = 0;

std::map<std::string, SPIPlanPtr>& plan_cache() {
    static std::map<std::string, SPIPlanPtr> cache;
    return cache;
}
}  // namespace

SPIPlanPtr prepare(const std::string& sql, const std::vector<Oid>& types) {
    std::string key = sql + "|";
    for (Oid t : types) key += std::to_string(t) + ",";
    auto it = plan_cache().find(key);
    if (it != plan_cache().end()) return it->second;
    SPIPlanPtr plan = nullptr;
    pg_call([&] {
        plan = SPI_prepare(sql.c_str(), static_cast<int>(types.size()), const_cast<Oid*>(types.data()));
        if (plan) SPI_keepplan(plan);
    });
    if (!plan) throw Error(std::string("cannot prepare: ") + SPI_result_code_string(SPI_result) + ": " + sql);
    plan_cache().emplace(std::move(key), plan);
    return plan;
}

// The result the last SPI call left in the globals.
static SpiResult last_result() { return SpiResult{SPI_tuptable, SPI_processed}; }

SpiResult run(SPIPlanPtr plan, const std::vector<Param>& params, bool read_only, long limit) {
    std::vector<Datum> values(params.size());
    std::vector<char> nulls(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
        values[i] = params[i].value;
        nulls[i] = params[i].null ? 'n' : ' ';
    }
    ++statements;
    int rc = 0;
    pg_call([&] { rc = SPI_execute_plan(plan, values.data(), nulls.data(), read_only, limit); });
    if (rc < 0) throw Error(std::string("SPI_execute_plan: ") + SPI_result_code_string(rc));
    return last_result();
}

SpiResult run_sql(const std::string& sql, bool read_only) {
    ++statements;
    int rc = 0;
    pg_call([&] { rc = SPI_execute(sql.c_str(), read_only, 0); });
    if (rc < 0) throw Error(std::string("SPI_execute: ") + SPI_result_code_string(rc) + ": " + sql);
    return last_result();
}

SpiResult fetch(Portal portal, long count) {
    pg_call([&] { SPI_cursor_fetch(portal, true, count); });
    return last_result();
}

uint64_t statement_count() { return statements; }

Datum SpiResult::col(uint64_t row, int c, bool* isnull) const {
    Datum d = 0;
    pg_call([&] { d = SPI_getbinval(table->vals[row], table->tupdesc, c + 1, isnull); });
    return d;
}

int64_t SpiResult::integer(uint64_t row, int c, bool* isnull) const {
    bool null = false;
    Datum d = col(row, c, &null);
    if (isnull) *isnull = null;
    if (null) return 0;
    switch (type(c)) {
        case INT2OID: return DatumGetInt16(d);
        case INT4OID: return DatumGetInt32(d);
        case OIDOID: return DatumGetObjectId(d);
        default: return DatumGetInt64(d);
    }
}

// text and bytea are both plain varlenas: their bytes, detoasted.
static std::string varlena_at(const SpiResult& res, uint64_t row, int c, bool* isnull) {
    bool n = false;
    Datum d = res.col(row, c, &n);
    if (isnull) *isnull = n;
    if (n) return {};
    const struct varlena* v = nullptr;
    pg_call([&] { v = PG_DETOAST_DATUM_PACKED(d); });
    return std::string(VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
}

std::string SpiResult::text(uint64_t row, int c, bool* isnull) const { return varlena_at(*this, row, c, isnull); }
std::string SpiResult::bytes(uint64_t row, int c, bool* isnull) const { return varlena_at(*this, row, c, isnull); }

Oid SpiResult::type(int c) const { return SPI_gettypeid(table->tupdesc, c + 1); }

AsMetadataOwner::AsMetadataOwner() {
    // The owner, looked up once per transaction.
    static Oid owner = InvalidOid;
    static LocalTransactionId owner_lxid = InvalidLocalTransactionId;
    pg_call([&] {
        if (owner_lxid != MyProc->lxid || !OidIsValid(owner)) {
            Oid nsp = get_namespace_oid("lwwsync", false);
            HeapTuple tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
            if (!HeapTupleIsValid(tup)) elog(ERROR, "cache lookup failed for schema lwwsync");
            owner = ((Form_pg_namespace)GETSTRUCT(tup))->nspowner;
            ReleaseSysCache(tup);
            owner_lxid = MyProc->lxid;
        }
        GetUserIdAndSecContext(&saved_user_, &saved_sec_);
        // Nothing the caller put on search_path may run with the owner's rights.
        guc_level_ = NewGUCNestLevel();
        set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
                          false);
        SetUserIdAndSecContext(owner, saved_sec_ | SECURITY_LOCAL_USERID_CHANGE);
    });
}

AsTableOwner::AsTableOwner(Oid relid) {
    pg_call([&] {
        HeapTuple tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
        if (!HeapTupleIsValid(tup)) elog(ERROR, "cache lookup failed for relation %u", relid);
        const Oid owner = ((Form_pg_class)GETSTRUCT(tup))->relowner;
        ReleaseSysCache(tup);
        GetUserIdAndSecContext(&saved_user_, &saved_sec_);
        guc_level_ = NewGUCNestLevel();
        set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
                          false);
        SetUserIdAndSecContext(owner, saved_sec_ | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
    });
}

AsTableOwner::~AsTableOwner() {
    SetUserIdAndSecContext(saved_user_, saved_sec_);
    if (guc_level_) AtEOXact_GUC(true, guc_level_);
}

AsMetadataOwner::~AsMetadataOwner() {
    SetUserIdAndSecContext(saved_user_, saved_sec_);
    if (guc_level_) AtEOXact_GUC(true, guc_level_);
}

Param text_param(const std::string& s) {
    Param p{TEXTOID, 0, false};
    pg_call([&] { p.value = PointerGetDatum(cstring_to_text_with_len(s.data(), static_cast<int>(s.size()))); });
    return p;
}

Param bytea_param(std::string_view b) {
    Param p{BYTEAOID, 0, false};
    pg_call([&] {
        bytea* v = static_cast<bytea*>(palloc(VARHDRSZ + b.size()));
        SET_VARSIZE(v, VARHDRSZ + b.size());
        memcpy(VARDATA(v), b.data(), b.size());
        p.value = PointerGetDatum(v);
    });
    return p;
}

}  // namespace lww::pg
