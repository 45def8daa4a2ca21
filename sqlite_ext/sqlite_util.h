// SQLite adapter: thin RAII helpers over the C API. Every failure becomes an
// lww::Error carrying SQLite's own message; the entry points turn it into
// sqlite3_result_error, so no exception crosses the C ABI.
#pragma once
#include <sqlite3ext.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "../common/error.h"
#include "../common/value.h"

namespace lww::sq {

// "name" with embedded quotes doubled: the only way identifiers reach SQL text.
std::string quote_ident(std::string_view name);
// 'text' with embedded quotes doubled (names as string literals in trigger SQL).
std::string quote_literal(std::string_view text);

// An error SQLite reported, with its (extended) result code: lww_apply tells
// a row the database refuses (a constraint) from a failure of the engine.
class SqlError : public Error {
public:
    SqlError(const std::string& msg, int code) : Error(msg), code(code) {}
    int code;
};

class Stmt {
public:
    Stmt() = default;
    Stmt(sqlite3* db, const std::string& sql);
    ~Stmt();
    Stmt(Stmt&& o) noexcept : db_(o.db_), st_(o.st_) { o.st_ = nullptr; }
    Stmt& operator=(Stmt&& o) noexcept;
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    bool step();  // true: a row; false: done; throws on error
    void reset();
    void bind(int i, const Value& v);
    void bind_int(int i, int64_t v);
    void bind_text(int i, std::string_view v);
    void bind_blob(int i, std::string_view v);
    void bind_null(int i);

    Value value(int col) const;
    int64_t int64(int col) const;
    std::string text(int col) const;
    std::string blob(int col) const;
    bool is_null(int col) const;
    sqlite3_stmt* raw() const { return st_; }
    explicit operator bool() const { return st_ != nullptr; }

private:
    sqlite3* db_ = nullptr;
    sqlite3_stmt* st_ = nullptr;
};

using StmtPtr = std::shared_ptr<Stmt>;

// Statements kept across the batches of one call that applies many (lww_sync),
// finalized when it ends: SQLite's legacy sqlite3_close refuses a connection
// that still has statements, so none may outlive the call. A holder keeps
// its statement alive through its StmtPtr; one still held is not handed out
// twice (a fresh one is), and past kMax the cache drops its own references.
class StmtCache {
public:
    explicit StmtCache(sqlite3* db) : db_(db) {}
    StmtPtr get(const std::string& sql);  // reset, bindings cleared

private:
    static constexpr size_t kMax = 256;
    sqlite3* db_;
    std::unordered_map<std::string, StmtPtr> stmts_;
};

void exec(sqlite3* db, const std::string& sql);

// ROLLBACK TO and RELEASE `name`, reporting nothing (the error that got
// here is the one that matters).
void rollback_savepoint(sqlite3* db, const char* name);

// Runs `body` in a savepoint of its own, rolled back when it throws.
template <class Body>
auto in_savepoint(sqlite3* db, const char* name, Body&& body) {
    exec(db, std::string("SAVEPOINT ") + name);
    try {
        auto out = body();
        exec(db, std::string("RELEASE ") + name);
        return out;
    } catch (...) {
        rollback_savepoint(db, name);
        throw;
    }
}
Value from_sqlite(sqlite3_value* v);
void result_value(sqlite3_context* ctx, const Value& v);

}  // namespace lww::sq
