// lwwsync SQLite extension: entry point and the SQL function table.
// Each function body runs inside guarded(): exceptions become
// sqlite3_result_error and never cross the C ABI.
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "../common/batch.h"
#include "../common/changeset.h"
#include "../common/feed.h"
#include "../common/settings.h"
#include "../common/row_codec.h"
#include "../common/version.h"
#include "apply.h"
#include "capture_log.h"
#include "changes.h"
#include "conn.h"
#include "evolve.h"
#include "schema.h"
#include "status.h"
#include "purge.h"
#include "sync.h"

namespace lww::sq {
namespace {

Conn& conn(sqlite3_context* ctx) { return *static_cast<Conn*>(sqlite3_user_data(ctx)); }

// The result code of an error (docs/ERRORS.md). SQLite's own codes pass
// through (a constraint an inner statement hit), except those that make
// SQLite roll back the caller's whole transaction when a function returns
// them (NOMEM, IOERR, FULL, INTERRUPT): those become SQLITE_ERROR.
int result_code(const std::exception& e) {
    if (auto* sql = dynamic_cast<const SqlError*>(&e)) {
        switch (sql->code & 0xff) {
            case SQLITE_NOMEM:
            case SQLITE_IOERR:
            case SQLITE_FULL:
            case SQLITE_INTERRUPT: return SQLITE_ERROR;
            default: return sql->code ? sql->code : SQLITE_ERROR;
        }
    }
    auto* lww = dynamic_cast<const Error*>(&e);
    if (!lww) return SQLITE_ERROR;
    switch (lww->kind()) {
        case ErrorKind::limit: return SQLITE_TOOBIG;
        case ErrorKind::conflict: return SQLITE_BUSY;
        case ErrorKind::permission: return SQLITE_PERM;
        case ErrorKind::read_only: return SQLITE_READONLY;
        case ErrorKind::cancelled: return SQLITE_ABORT;
        case ErrorKind::internal: return SQLITE_INTERNAL;
        case ErrorKind::bad_input:
        case ErrorKind::not_found:
        case ErrorKind::drift: break;
    }
    return SQLITE_ERROR;
}

template <class F>
void guarded(sqlite3_context* ctx, const char* name, F&& body) {
    try {
        body();
    } catch (const std::exception& e) {
        std::string msg = std::string(name) + ": " + e.what();
        sqlite3_result_error(ctx, msg.c_str(), static_cast<int>(msg.size()));
        sqlite3_result_error_code(ctx, result_code(e));  // after: result_error resets it
    } catch (...) {
        sqlite3_result_error(ctx, (std::string(name) + ": unknown internal error").c_str(), -1);
    }
}

std::string text_arg(sqlite3_value* v, const char* what) {
    if (sqlite3_value_type(v) != SQLITE_TEXT) throw Error(std::string(what) + " must be text");
    return std::string(reinterpret_cast<const char*>(sqlite3_value_text(v)), sqlite3_value_bytes(v));
}

void result_text(sqlite3_context* ctx, const std::string& s) {
    sqlite3_result_text64(ctx, s.data(), s.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
}

// ------------------------------------------------------------ public API

void fn_version(sqlite3_context* ctx, int, sqlite3_value**) {
    sqlite3_result_text(ctx, LWWSYNC_VERSION, -1, SQLITE_STATIC);
}

void fn_node_id(sqlite3_context* ctx, int, sqlite3_value**) {
    guarded(ctx, "lww_node_id", [&] {
        Conn& c = conn(ctx);
        c.ensure_ready();
        // Where it cannot write now (a statement in progress that forbids
        // it), the next lwwsync call on this connection checks again.
        try {
            check_copied_file(c);
        } catch (const Error&) {
        }
        result_text(ctx, c.self().str());
    });
}

// lww_reset_node(): give this database a new node id now; its writes go out under it.
void fn_reset_node(sqlite3_context* ctx, int, sqlite3_value**) {
    guarded(ctx, "lww_reset_node", [&] { result_text(ctx, reset_node_id(conn(ctx)).str()); });
}

void fn_track(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lww_track", [&] {
        const std::string table = text_arg(argv[0], "table name");
        const int64_t stamped = track_table(conn(ctx), table);
        land_pending(conn(ctx), table);  // registers that arrived before the table (docs/SCHEMA.md)
        sqlite3_result_int64(ctx, stamped);
    });
}

// lww_alter(sql): schema changes of tracked tables (docs/SCHEMA.md).
void fn_alter(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lww_alter", [&] { result_text(ctx, alter(conn(ctx), text_arg(argv[0], "sql"))); });
}

void fn_untrack(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lww_untrack",
            [&] { sqlite3_result_int(ctx, untrack_table(conn(ctx), text_arg(argv[0], "table name")) ? 1 : 0); });
}

void fn_changes(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    guarded(ctx, "lww_changes", [&] {
        // Integers only: the range rules are the core's (changes_request).
        auto integer = [&](int i, const char* rule) -> std::optional<int64_t> {
            if (argc <= i || (i > 0 && sqlite3_value_type(argv[i]) == SQLITE_NULL)) return std::nullopt;
            if (sqlite3_value_type(argv[i]) != SQLITE_INTEGER) throw Error(rule);
            return sqlite3_value_int64(argv[i]);
        };
        const int64_t since = *integer(0, "since must be a non-negative change sequence");
        const auto limit = integer(1, "limit must be a positive number of rows");
        const auto after = integer(2, "after must be >= since (the previous page's upto)");
        const ChangesRequest req = changes_request(since, limit, after);
        check_copied_file(conn(ctx));
        result_text(ctx, collect_changes(conn(ctx), req).json);
    });
}

void fn_apply(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lww_apply", [&] {
        if (sqlite3_value_type(argv[0]) != SQLITE_TEXT) throw Error("the change set must be JSON text");
        const char* p = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
        size_t n = static_cast<size_t>(sqlite3_value_bytes(argv[0]));
        check_document_size(n, "change set");
        ChangeSet cs = decode_changeset(std::string_view(p, n));
        check_copied_file(conn(ctx));
        result_text(ctx, apply_changeset(conn(ctx), cs).json());
    });
}

void fn_sync(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    guarded(ctx, "lww_sync", [&] {
        SyncOptions opt = parse_sync_options(argc > 1 ? text_arg(argv[1], "options") : std::string());
        result_text(ctx, sync_with(conn(ctx), text_arg(argv[0], "url"), opt));
    });
}

// lww_sync_status(): the running or last sync of this database file, as JSON.
void fn_sync_status(sqlite3_context* ctx, int, sqlite3_value**) {
    guarded(ctx, "lww_sync_status", [&] { result_text(ctx, sync_status_json(status_key(conn(ctx)))); });
}

// lww_sync_cancel(): asks a running sync of this database file to stop
// (from another connection); 1 if one was running.
void fn_sync_cancel(sqlite3_context* ctx, int, sqlite3_value**) {
    guarded(ctx, "lww_sync_cancel",
            [&] { sqlite3_result_int(ctx, request_sync_cancel(status_key(conn(ctx))) ? 1 : 0); });
}

void fn_exchange(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lww_exchange", [&] { result_text(ctx, exchange_request(conn(ctx), text_arg(argv[0], "request"))); });
}

void fn_seq(sqlite3_context* ctx, int, sqlite3_value**) {
    guarded(ctx, "lww_seq", [&] {
        Conn& c = conn(ctx);
        c.ensure_ready();
        sqlite3_result_int64(ctx, static_cast<int64_t>(committed_seq(c)));
    });
}

// lww_purge([older_than_ms]): removes tombstones older than that (default
// lww_config('tombstone_ttl_ms')); returns how many (docs/PROTOCOL.md).
void fn_purge(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    guarded(ctx, "lww_purge", [&] {
        Conn& c = conn(ctx);
        c.ensure_ready();
        const Setting& ttl = find_setting("tombstone_ttl_ms", Engine::sqlite);
        int64_t older = static_cast<int64_t>(c.setting(ttl.name, static_cast<uint64_t>(ttl.dflt)));
        if (argc > 0) {
            if (sqlite3_value_type(argv[0]) != SQLITE_INTEGER) throw Error("older_than_ms must be an integer");
            older = sqlite3_value_int64(argv[0]);
            if (older < 0 || older > ttl.max)
                throw Error("older_than_ms must be between 0 and " + std::to_string(ttl.max));
        }
        sqlite3_result_int64(ctx, static_cast<int64_t>(purge_tombstones(c, static_cast<uint64_t>(older))));
    });
}

// lww_config(name [, value]): read or set a per-database setting (common/settings.h).
void fn_config(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    guarded(ctx, "lww_config", [&] {
        Conn& c = conn(ctx);
        c.ensure_ready();
        const Setting& k = find_setting(text_arg(argv[0], "setting name"), Engine::sqlite);
        if (argc > 1) {
            if (sqlite3_value_type(argv[1]) != SQLITE_INTEGER) throw Error(std::string(k.name) + " must be an integer");
            c.set_setting(k.name, check_setting(k, sqlite3_value_int64(argv[1])));
            if (std::string(k.name) == "conflict_log" && sqlite3_value_int64(argv[1]) == 1) c.ensure_conflict_log();
        }
        // Always the stored value: a rolled-back change is gone.
        sqlite3_result_int64(ctx, static_cast<int64_t>(c.setting(k.name, static_cast<uint64_t>(k.dflt))));
    });
}

// ------------------------------------------------------------ trigger helpers

std::string_view text_view(sqlite3_value* v) {
    const char* p = reinterpret_cast<const char*>(sqlite3_value_text(v));
    return p ? std::string_view(p, static_cast<size_t>(sqlite3_value_bytes(v))) : std::string_view();
}

// A blob argument's bytes; empty for anything else (a NULL register list).
std::string_view blob_view(sqlite3_value* v) {
    if (sqlite3_value_type(v) != SQLITE_BLOB) return std::string_view();
    return std::string_view(static_cast<const char*>(sqlite3_value_blob(v)),
                            static_cast<size_t>(sqlite3_value_bytes(v)));
}

// What lww_row() said about the write whose trigger fires now; cleared, so
// it never speaks for a later trigger.
int take_row_note(Conn& c) {
    const int note = c.row_note;
    c.row_note = 0;
    return note;
}

// Stamps a local write and reserves `n` change sequences.
bool stamp_write(Conn& c, int64_t n) {
    c.refresh();
    ++c.local_writes;
    c.cur_hlc = c.clock.tick(wall_clock_ms());
    c.cur_seq = c.next_seq();
    for (int64_t i = 1; i < n; ++i) c.next_seq();
    return true;
}

// WHEN clause of the insert, delete and key-change triggers: 0 for the
// user-row write lww_apply makes for a merged row (it is not a local write;
// lww_row() named it); otherwise stamps the write and reserves `n` change
// sequences. Any other write made while lww_apply merges (an app trigger's,
// a foreign-key action's) is a local write like any other.
bool begin_write(Conn& c, int64_t n) {
    if (take_row_note(c) == 2 && c.merging.op != 'u') {
        c.merging.active = false;  // silences one write only
        return false;
    }
    return stamp_write(c, n);
}

// Loose equality of a value written by lww_apply and the value the trigger
// sees: the column's affinity may have converted it (text '5' into an
// INTEGER column).
bool written_as(sqlite3_value* seen, const Value& written) {
    // The usual case, without a copy: the value as written.
    switch (sqlite3_value_type(seen)) {
        case SQLITE_INTEGER:
            if (written.kind == Value::Kind::Int) return sqlite3_value_int64(seen) == written.i;
            break;
        case SQLITE_TEXT:
            if (written.kind == Value::Kind::Text) return text_view(seen) == written.s;
            break;
        case SQLITE_NULL:
            if (written.kind == Value::Kind::Null) return true;
            break;
        default: break;
    }
    const Value v = from_sqlite(seen);
    if (v.kind == written.kind) {
        if (v.kind == Value::Kind::Real) return std::memcmp(&v.d, &written.d, sizeof v.d) == 0;
        return v.kind == Value::Kind::Null || (v.kind == Value::Kind::Int ? v.i == written.i : v.s == written.s);
    }
    // An integer and a real are the same value only when the real is that
    // integer exactly: INT64_MAX + 1 (a REAL 2^63, what an app trigger's
    // counter becomes) is not INT64_MAX, though both convert to one double.
    auto exact_int = [](const Value& x, int64_t& out) {
        if (x.kind == Value::Kind::Int) {
            out = x.i;
            return true;
        }
        if (x.kind != Value::Kind::Real || !(x.d >= -9223372036854775808.0 && x.d < 9223372036854775808.0))
            return false;
        out = static_cast<int64_t>(x.d);
        return static_cast<double>(out) == x.d;
    };
    if ((v.kind == Value::Kind::Int && written.kind == Value::Kind::Real) ||
        (v.kind == Value::Kind::Real && written.kind == Value::Kind::Int)) {
        int64_t a = 0, b = 0;
        return exact_int(v, a) && exact_int(written, b) && a == b;
    }
    auto num = [](const Value& x, double& out) {
        if (x.kind == Value::Kind::Int) out = static_cast<double>(x.i);
        else if (x.kind == Value::Kind::Real) out = x.d;
        else if (x.kind == Value::Kind::Text) {
            char* end = nullptr;
            out = std::strtod(x.s.c_str(), &end);
            return !x.s.empty() && end && *end == '\0';
        } else return false;
        return true;
    };
    double a = 0, b = 0;
    return num(v, a) && num(written, b) && a == b;
}

// lww_row('t', op, key...): in a capture trigger's WHEN, before
// lww_begin_write / lww_begin_update, names the row being written; while
// lww_apply writes that very row (same table, operation and key) the trigger
// stays silent. Always 1.
void fn_row(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    guarded(ctx, "lww_row", [&] {
        Conn& c = conn(ctx);
        c.row_note = 1;
        if (argc >= 2 && c.applying && c.merging.active) {
            const MergeWrite& m = c.merging;
            const std::string_view op = text_view(argv[1]);
            bool same = op.size() == 1 && op[0] == m.op && text_view(argv[0]) == *m.table &&
                        static_cast<size_t>(argc - 2) == m.key->size();
            for (int i = 2; same && i < argc; ++i) same = written_as(argv[i], (*m.key)[static_cast<size_t>(i - 2)]);
            if (same) c.row_note = 2;
        }
        sqlite3_result_int(ctx, 1);
    });
}

// lww_applying(): 1 while lww_apply / lww_sync merge changes on this
// connection, for the WHEN clause of an app's own triggers
// (`WHEN NOT lww_applying()`: do not fire for merged changes).
void fn_applying(sqlite3_context* ctx, int, sqlite3_value**) {
    sqlite3_result_int(ctx, conn(ctx).applying > 0 ? 1 : 0);
}

// An update whose trigger lww_row() matched to the merge's own write is that
// write when it changed only columns the merge wrote, to the values it wrote
// (`new_values(i)`: the NEW value of register i, or nullptr when unknown).
// An app trigger's second write to the merged row changes something else.
template <class NewValue>
bool merge_update_is_own(Conn& c, int note, NewValue&& new_value) {
    if (note != 2 || c.merging.op != 'u') return false;
    const auto& cols = *c.merging.cols;
    for (size_t i = 0; i < c.changed.size(); ++i) {
        if (!c.changed[i]) continue;
        const Value* written = written_value(cols, i);
        if (!written) return false;
        sqlite3_value* nv = new_value(i);
        if (nv && !written_as(nv, *written)) return false;
    }
    c.merging.active = false;
    return true;
}

void fn_begin_write(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lww_begin_write",
            [&] { sqlite3_result_int(ctx, begin_write(conn(ctx), sqlite3_value_int64(argv[0])) ? 1 : 0); });
}

// SQLite's own bound on the columns of a table (SQLITE_MAX_COLUMN at most).
constexpr int64_t kMaxColumns = 32767;

// Identity in the canonical value model: same storage class and same bytes.
bool same_value(sqlite3_value* a, sqlite3_value* b) {
    const int t = sqlite3_value_type(a);
    if (t != sqlite3_value_type(b)) return false;
    switch (t) {
        case SQLITE_NULL: return true;
        case SQLITE_INTEGER: return sqlite3_value_int64(a) == sqlite3_value_int64(b);
        case SQLITE_FLOAT: {
            double x = sqlite3_value_double(a), y = sqlite3_value_double(b);
            return std::memcmp(&x, &y, sizeof x) == 0;
        }
        default: {
            const int n = sqlite3_value_bytes(a);
            if (n != sqlite3_value_bytes(b)) return false;
            const void* p = t == SQLITE_TEXT ? static_cast<const void*>(sqlite3_value_text(a)) : sqlite3_value_blob(a);
            const void* q = t == SQLITE_TEXT ? static_cast<const void*>(sqlite3_value_text(b)) : sqlite3_value_blob(b);
            return n == 0 || std::memcmp(p, q, static_cast<size_t>(n)) == 0;
        }
    }
}

// Text must be UTF-8 to travel in a change set: refused at write time,
// naming the column, rather than poisoning every later change set.
// `column` numbers the table's key columns, then its tracked columns, or
// (`cols_only`) its tracked columns alone. The table is looked up only to
// name the column in the error.
void check_text(Conn& c, sqlite3_value* v, std::string_view table, size_t column, bool cols_only = false) {
    if (sqlite3_value_type(v) != SQLITE_TEXT) return;
    const char* p = reinterpret_cast<const char*>(sqlite3_value_text(v));
    if (valid_utf8(std::string_view(p, static_cast<size_t>(sqlite3_value_bytes(v))))) return;
    std::string name = "#" + std::to_string(column);
    if (const TablePtr t = c.find_table(std::string(table))) {
        if (cols_only) column += t->key.size();
        if (column < t->key.size()) name = t->key[column];
        else if (column - t->key.size() < t->cols.size()) name = t->cols[column - t->key.size()];
    }
    throw Error("table \"" + std::string(table) + "\", column \"" + name +
                "\": the text is not valid UTF-8, so it could not sync; store bytes as a BLOB");
}

// lww_valid_text('t', offset, NEW.a, NEW.b, ...): 1, or an error for text
// that is not UTF-8. `offset` numbers the first value among the table's key
// and tracked columns (in that order).
void fn_valid_text(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    guarded(ctx, "lwwsync", [&] {
        Conn& c = conn(ctx);
        if (argc < 2) throw Error("lww_valid_text(table, offset, values...)");
        // Merged values were checked when their change set was read, and
        // never get here: lww_begin_write() is 0 for them and comes first.
        const std::string_view table = text_view(argv[0]);
        const int64_t offset = sqlite3_value_int64(argv[1]);
        for (int i = 2; i < argc; ++i) check_text(c, argv[i], table, static_cast<size_t>(offset + i - 2));
        sqlite3_result_int(ctx, 1);
    });
}

// lww_begin_update('t', NEW.c0, OLD.c0, NEW.c1, OLD.c1, ...): WHEN clause of
// the update trigger. Keeps which columns changed for lww_cols_set; an update
// that changed nothing is not a write. (Triggers made before lwwsync 0.3
// pass no table name and check no text.)
void fn_begin_update(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    guarded(ctx, "lwwsync", [&] {
        Conn& c = conn(ctx);
        const bool named = argc % 2 == 1;
        const std::string_view table = named ? text_view(argv[0]) : std::string_view();
        sqlite3_value** pairs = argv + (named ? 1 : 0);
        const size_t ncols = static_cast<size_t>(argc / 2);
        const int note = take_row_note(c);
        c.changed.assign(ncols, false);
        bool any = false;
        for (size_t i = 0; i < ncols; ++i)
            if (!same_value(pairs[2 * i], pairs[2 * i + 1])) c.changed[i] = any = true;
        if (!any || merge_update_is_own(c, note, [&](size_t i) { return pairs[2 * i]; })) {
            sqlite3_result_int(ctx, 0);
            return;
        }
        if (named)
            for (size_t i = 0; i < ncols; ++i)
                if (c.changed[i]) check_text(c, pairs[2 * i], table, i, true);
        stamp_write(c, 1);
        note_append(c);
        sqlite3_result_int(ctx, 1);
    });
}

// lww_begin_update_mask(ncols, mask...): the same for tables wider than 63
// columns, with change masks computed in SQL.
void fn_begin_update_mask(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    guarded(ctx, "lww_begin_update_mask", [&] {
        Conn& c = conn(ctx);
        // Callable from any schema (it is innocuous, for triggers): check what it is given.
        if (argc < 1 || sqlite3_value_type(argv[0]) != SQLITE_INTEGER)
            throw Error("lww_begin_update_mask(ncols, masks...)");
        const int64_t n = sqlite3_value_int64(argv[0]);
        if (n < 0 || n > kMaxColumns) throw Error("lww_begin_update_mask: ncols out of range");
        const size_t ncols = static_cast<size_t>(n);
        c.changed.assign(ncols, false);
        bool any = false;
        for (int m = 1; m < argc; ++m) {
            const uint64_t mask = static_cast<uint64_t>(sqlite3_value_int64(argv[m]));
            for (size_t b = 0; b < 62 && (mask >> b); ++b) {
                const size_t i = static_cast<size_t>(m - 1) * 62 + b;
                if (i < ncols && (mask >> b & 1)) c.changed[i] = any = true;
            }
        }
        // Masks carry no values: the merge's own write is the one that changed
        // only columns it wrote.
        const int note = take_row_note(c);
        if (!any || merge_update_is_own(c, note, [](size_t) -> sqlite3_value* { return nullptr; })) {
            sqlite3_result_int(ctx, 0);
            return;
        }
        stamp_write(c, 1);
        note_append(c);
        sqlite3_result_int(ctx, 1);
    });
}

// lww_changed(): which columns the current update changed, as the capture
// log keeps them (capture_log.h).
void fn_changed(sqlite3_context* ctx, int, sqlite3_value**) {
    guarded(ctx, "lww_changed", [&] {
        const std::string mask = changed_mask(conn(ctx).changed);
        sqlite3_result_blob64(ctx, mask.data(), mask.size(), SQLITE_TRANSIENT);
    });
}

// lww_fold_cols(cols, ncols, mask, hlc, seq): a capture log entry folded
// into a row's column registers (capture_log.cpp).
void fn_fold_cols(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lww_fold_cols", [&] {
        const int64_t ncols = sqlite3_value_int64(argv[1]);
        if (ncols < 0 || ncols > kMaxColumns) throw Error("ncols out of range");
        if (sqlite3_value_type(argv[2]) != SQLITE_BLOB || sqlite3_value_type(argv[3]) != SQLITE_INTEGER ||
            sqlite3_value_type(argv[4]) != SQLITE_INTEGER || sqlite3_value_int64(argv[3]) < 0 ||
            sqlite3_value_int64(argv[4]) < 0)
            throw Error("lwwsync metadata is damaged: a capture log entry is malformed", ErrorKind::internal);
        const std::string_view blob = blob_view(argv[0]);
        const std::vector<bool> changed = changed_columns(blob_view(argv[2]), static_cast<size_t>(ncols));
        std::string out =
            blob_set_columns(blob, changed.size(), changed, static_cast<uint64_t>(sqlite3_value_int64(argv[3])),
                             static_cast<uint64_t>(sqlite3_value_int64(argv[4])));
        sqlite3_result_blob64(ctx, out.data(), out.size(), SQLITE_TRANSIENT);
    });
}

void fn_hlc(sqlite3_context* ctx, int, sqlite3_value**) {
    sqlite3_result_int64(ctx, static_cast<int64_t>(conn(ctx).cur_hlc));
}

void fn_write_seq(sqlite3_context* ctx, int, sqlite3_value**) {
    sqlite3_result_int64(ctx, static_cast<int64_t>(conn(ctx).cur_seq));
}

// Generations after a local write; at the limit (2^53 - 1) the write is
// refused with a clear error instead of producing one peers would refuse.
void fn_gen_after_insert(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lwwsync", [&] {
        sqlite3_result_int64(
            ctx, static_cast<int64_t>(gen_after_insert(static_cast<uint64_t>(sqlite3_value_int64(argv[0])))));
    });
}

// lww_first_gen(table): the generation of a key inserted with no metadata.
void fn_first_gen(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lwwsync", [&] {
        Conn& c = conn(ctx);
        const uint64_t floor = c.gen_floor(std::string(text_view(argv[0])));
        sqlite3_result_int64(ctx, static_cast<int64_t>(floor ? gen_after_insert(floor) : 1));
    });
}

void fn_gen_after_delete(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lwwsync", [&] {
        sqlite3_result_int64(
            ctx, static_cast<int64_t>(gen_after_delete(static_cast<uint64_t>(sqlite3_value_int64(argv[0])))));
    });
}

// lww_cols_set(cols): the columns lww_begin_update found changed take the
// current write's stamp (the update triggers made before schema 5, kept
// where a read-only connection could not upgrade them).
void fn_cols_set(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lww_cols_set", [&] {
        Conn& c = conn(ctx);
        const std::string_view blob = blob_view(argv[0]);
        std::string out = blob_set_columns(blob, c.changed.size(), c.changed, c.cur_hlc, c.cur_seq);
        sqlite3_result_blob64(ctx, out.data(), out.size(), SQLITE_TRANSIENT);
    });
}

// lww_cols_backfill(cols, i): register i (a column just added) takes the
// backfill stamp (kBackfillHlc, this node) and the current write's sequence.
void fn_cols_backfill(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lww_cols_backfill", [&] {
        Conn& c = conn(ctx);
        const int64_t i = sqlite3_value_int64(argv[1]);
        if (i < 0 || i >= kMaxColumns) throw Error("lww_cols_backfill: column out of range");
        const std::string_view blob = blob_view(argv[0]);
        std::vector<bool> one(static_cast<size_t>(i) + 1, false);
        one.back() = true;
        std::string out = blob_set_columns(blob, one.size(), one, kBackfillHlc, c.cur_seq);
        sqlite3_result_blob64(ctx, out.data(), out.size(), SQLITE_TRANSIENT);
    });
}

// lww_cols_drop(cols, i): register i retired, later ones move down.
void fn_cols_drop(sqlite3_context* ctx, int, sqlite3_value** argv) {
    guarded(ctx, "lww_cols_drop", [&] {
        const int64_t i = sqlite3_value_int64(argv[1]);
        if (i < 0 || i >= kMaxColumns) throw Error("lww_cols_drop: column out of range");
        if (sqlite3_value_type(argv[0]) != SQLITE_BLOB) return sqlite3_result_null(ctx);
        std::string out = blob_drop_column(blob_view(argv[0]), static_cast<size_t>(i));
        if (out.empty()) return sqlite3_result_null(ctx);
        sqlite3_result_blob64(ctx, out.data(), out.size(), SQLITE_TRANSIENT);
    });
}

// lww_row_hash(v0, v1, ...): value_hash of each value, 8 bytes little-endian
// each (lww_untrack remembers rows with it, docs/SCHEMA.md).
void fn_row_hash(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    guarded(ctx, "lww_row_hash", [&] {
        std::string out;
        for (int i = 0; i < argc; ++i) append_value_hash(out, from_sqlite(argv[i]));
        sqlite3_result_blob64(ctx, out.data(), out.size(), SQLITE_TRANSIENT);
    });
}

// ------------------------------------------------------------ registration

struct FnDef {
    const char* name;
    int nargs;
    int flags;
    void (*fn)(sqlite3_context*, int, sqlite3_value**);
};

// Public functions that write or reach other databases are DIRECTONLY: a
// schema (trigger, view) cannot smuggle them in. Trigger helpers must not be.
constexpr int kDirect = SQLITE_UTF8 | SQLITE_DIRECTONLY;
constexpr int kInnocuous = SQLITE_UTF8 | SQLITE_INNOCUOUS;

const FnDef kFunctions[] = {
    {"lww_version", 0, kInnocuous | SQLITE_DETERMINISTIC, fn_version},
    {"lww_node_id", 0, kInnocuous, fn_node_id},
    {"lww_reset_node", 0, kDirect, fn_reset_node},
    {"lww_track", 1, kDirect, fn_track},
    {"lww_untrack", 1, kDirect, fn_untrack},
    {"lww_changes", 1, kDirect, fn_changes},
    {"lww_changes", 2, kDirect, fn_changes},
    {"lww_changes", 3, kDirect, fn_changes},
    {"lww_apply", 1, kDirect, fn_apply},
    {"lww_sync", 1, kDirect, fn_sync},
    {"lww_sync", 2, kDirect, fn_sync},
    {"lww_sync_status", 0, kDirect, fn_sync_status},
    {"lww_sync_cancel", 0, kDirect, fn_sync_cancel},
    {"lww_exchange", 1, kDirect, fn_exchange},
    {"lww_seq", 0, kInnocuous, fn_seq},
    {"lww_purge", 0, kDirect, fn_purge},
    {"lww_purge", 1, kDirect, fn_purge},
    {"lww_config", 1, kDirect, fn_config},
    {"lww_config", 2, kDirect, fn_config},
    {"lww_begin_write", 1, kInnocuous, fn_begin_write},
    {"lww_row", -1, kInnocuous, fn_row},
    {"lww_applying", 0, kInnocuous, fn_applying},
    {"lww_begin_update", -1, kInnocuous, fn_begin_update},
    {"lww_valid_text", -1, kInnocuous, fn_valid_text},
    {"lww_begin_update_mask", -1, kInnocuous, fn_begin_update_mask},
    {"lww_changed", 0, kInnocuous, fn_changed},
    {"lww_fold_cols", 5, kDirect, fn_fold_cols},
    {"lww_hlc", 0, kInnocuous, fn_hlc},
    {"lww_write_seq", 0, kInnocuous, fn_write_seq},
    {"lww_gen_after_insert", 1, kInnocuous | SQLITE_DETERMINISTIC, fn_gen_after_insert},
    {"lww_gen_after_delete", 1, kInnocuous | SQLITE_DETERMINISTIC, fn_gen_after_delete},
    {"lww_first_gen", 1, kInnocuous, fn_first_gen},
    {"lww_cols_set", 1, kInnocuous, fn_cols_set},
    {"lww_alter", 1, kDirect, fn_alter},
    {"lww_cols_backfill", 2, kDirect, fn_cols_backfill},
    {"lww_cols_drop", 2, kDirect, fn_cols_drop},
    {"lww_row_hash", -1, kDirect | SQLITE_DETERMINISTIC, fn_row_hash},
};

void destroy_conn(void* p) { delete static_cast<Conn*>(p); }

}  // namespace

Conn* register_functions(sqlite3* db) {
    Conn* c = new Conn(db);
    bool first = true;
    for (const FnDef& f : kFunctions) {
        // The first registration owns the state: SQLite frees it with the connection.
        int rc = sqlite3_create_function_v2(db, f.name, f.nargs, f.flags, c, f.fn, nullptr, nullptr,
                                            first ? destroy_conn : nullptr);
        if (rc != SQLITE_OK) {  // on failure SQLite already ran xDestroy of the first
            throw Error(std::string("cannot register ") + f.name + ": " + sqlite3_errmsg(db));
        }
        first = false;
    }
    return c;
}

}  // namespace lww::sq

extern "C" __attribute__((visibility("default"))) int sqlite3_lwwsync_init(sqlite3* db, char** err,
                                                                           const sqlite3_api_routines* api) {
    SQLITE_EXTENSION_INIT2(api);
    try {
        lww::sq::register_functions(db);
        // REPLACE removes conflicting rows through the delete trigger only
        // with recursive triggers on; otherwise such a removal would never sync.
        sqlite3_exec(db, "PRAGMA recursive_triggers = ON", nullptr, nullptr, nullptr);
    } catch (const std::exception& e) {
        if (err) *err = sqlite3_mprintf("lwwsync: %s", e.what());
        return SQLITE_ERROR;
    }
    return SQLITE_OK;
}
