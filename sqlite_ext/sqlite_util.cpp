#include "sqlite_util.h"
SQLITE_EXTENSION_INIT3

namespace lww::sq {

std::string quote_ident(std::string_view name) {
    std::string out;
    out.reserve(name.size() + 2);
    out.push_back('"');
    for (char c : name) {
        if (c == '"') out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
    return out;
}

std::string quote_literal(std::string_view text) {
    std::string out = "'";
    for (char ch : text) {
        if (ch == '\'') out += '\'';
        out += ch;
    }
    return out + "'";
}

Stmt::Stmt(sqlite3* db, const std::string& sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &st_, nullptr) != SQLITE_OK) {
        std::string msg = sqlite3_errmsg(db);
        st_ = nullptr;
        throw Error(msg);
    }
}

StmtPtr StmtCache::get(const std::string& sql) {
    auto it = stmts_.find(sql);
    if (it != stmts_.end() && it->second.use_count() == 1) {
        it->second->reset();
        return it->second;
    }
    auto st = std::make_shared<Stmt>(db_, sql);
    if (it == stmts_.end()) {
        if (stmts_.size() >= kMax) stmts_.clear();
        stmts_.emplace(sql, st);
    }
    return st;
}

Stmt::~Stmt() {
    if (st_) sqlite3_finalize(st_);
}

Stmt& Stmt::operator=(Stmt&& o) noexcept {
    if (this != &o) {
        if (st_) sqlite3_finalize(st_);
        db_ = o.db_;
        st_ = o.st_;
        o.st_ = nullptr;
    }
    return *this;
}

bool Stmt::step() {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string msg = sqlite3_errmsg(db_);
    const int code = sqlite3_extended_errcode(db_);
    sqlite3_reset(st_);
    throw SqlError(msg, code);
}

void Stmt::reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
}

void Stmt::bind(int i, const Value& v) {
    int rc = SQLITE_OK;
    switch (v.kind) {
        case Value::Kind::Null: rc = sqlite3_bind_null(st_, i); break;
        case Value::Kind::Int: rc = sqlite3_bind_int64(st_, i, v.i); break;
        case Value::Kind::Real: rc = sqlite3_bind_double(st_, i, v.d); break;
        case Value::Kind::Text:
            rc = sqlite3_bind_text64(st_, i, v.s.data(), v.s.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
            break;
        case Value::Kind::Bytes: rc = sqlite3_bind_blob64(st_, i, v.s.data(), v.s.size(), SQLITE_TRANSIENT); break;
    }
    if (rc != SQLITE_OK) throw Error(sqlite3_errmsg(db_));
}

void Stmt::bind_int(int i, int64_t v) { sqlite3_bind_int64(st_, i, v); }
void Stmt::bind_text(int i, std::string_view v) {
    sqlite3_bind_text64(st_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
}
void Stmt::bind_blob(int i, std::string_view v) { sqlite3_bind_blob64(st_, i, v.data(), v.size(), SQLITE_TRANSIENT); }
void Stmt::bind_null(int i) { sqlite3_bind_null(st_, i); }

Value Stmt::value(int col) const { return from_sqlite(sqlite3_column_value(st_, col)); }
int64_t Stmt::int64(int col) const { return sqlite3_column_int64(st_, col); }
bool Stmt::is_null(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }
std::string Stmt::text(int col) const {
    const unsigned char* p = sqlite3_column_text(st_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(st_, col)) : std::string();
}
std::string Stmt::blob(int col) const {
    const void* p = sqlite3_column_blob(st_, col);
    return p ? std::string(static_cast<const char*>(p), sqlite3_column_bytes(st_, col)) : std::string();
}

void rollback_savepoint(sqlite3* db, const char* name) {
    sqlite3_exec(db, (std::string("ROLLBACK TO ") + name + "; RELEASE " + name).c_str(), nullptr, nullptr, nullptr);
}

void exec(sqlite3* db, const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errmsg(db);
        const int code = sqlite3_extended_errcode(db);
        sqlite3_free(err);
        throw SqlError(msg, code);
    }
}

Value from_sqlite(sqlite3_value* v) {
    switch (sqlite3_value_type(v)) {
        case SQLITE_INTEGER: return Value::integer(sqlite3_value_int64(v));
        case SQLITE_FLOAT: return Value::real(sqlite3_value_double(v));
        case SQLITE_TEXT: {
            const unsigned char* p = sqlite3_value_text(v);
            return Value::text(std::string(reinterpret_cast<const char*>(p), sqlite3_value_bytes(v)));
        }
        case SQLITE_BLOB: {
            const void* p = sqlite3_value_blob(v);
            int n = sqlite3_value_bytes(v);
            return Value::bytes(p ? std::string(static_cast<const char*>(p), n) : std::string());
        }
        default: return Value::null();
    }
}

void result_value(sqlite3_context* ctx, const Value& v) {
    switch (v.kind) {
        case Value::Kind::Null: sqlite3_result_null(ctx); return;
        case Value::Kind::Int: sqlite3_result_int64(ctx, v.i); return;
        case Value::Kind::Real: sqlite3_result_double(ctx, v.d); return;
        case Value::Kind::Text:
            sqlite3_result_text64(ctx, v.s.data(), v.s.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
            return;
        case Value::Kind::Bytes: sqlite3_result_blob64(ctx, v.s.data(), v.s.size(), SQLITE_TRANSIENT); return;
    }
}

}  // namespace lww::sq
