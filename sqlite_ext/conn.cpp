#include "conn.h"
#include "capture_log.h"
#include "evolve.h"
#include "schema.h"
SQLITE_EXTENSION_INIT3

#include <sys/stat.h>

#include <rapidjson/document.h>

#include "../common/json.h"
#include "../common/settings.h"

namespace lww::sq {

std::string meta_table_name(const std::string& table) { return "lww__" + table; }

StoredRow stored_row(const Stmt& st) {
    StoredRow sr;
    sr.gen = static_cast<uint64_t>(st.int64(0));
    sr.row_hlc = static_cast<uint64_t>(st.int64(1));
    sr.row_node = static_cast<uint32_t>(st.int64(2));
    sr.row_seq = static_cast<uint64_t>(st.int64(3));
    sr.cols = st.blob(4);
    return sr;
}

static const char* kSchemaSql =
    "CREATE TABLE IF NOT EXISTS lww_state(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS lww_nodes(idx INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);"
    "CREATE TABLE IF NOT EXISTS lww_tables(name TEXT PRIMARY KEY, key_columns TEXT NOT NULL,"
    " columns TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS lww_peers(node TEXT PRIMARY KEY, received INTEGER NOT NULL DEFAULT 0,"
    " floor INTEGER NOT NULL DEFAULT 0, synced_at TEXT) WITHOUT ROWID;";

// Rows lww_apply could not write (a constraint refused them): kept with
// their registers (`changeset`, a one-row change set in this database's
// column order) and retried by every later lww_apply / lww_sync.
static const char* kRejectedSql =
    "CREATE TABLE IF NOT EXISTS lww_rejected(tbl TEXT NOT NULL, key TEXT NOT NULL, reason TEXT NOT NULL,"
    " first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, origin TEXT NOT NULL, changeset TEXT NOT NULL,"
    " PRIMARY KEY(tbl, key)) WITHOUT ROWID;";

std::string Conn::file_identity() {
    const char* f = sqlite3_db_filename(db, "main");
    struct stat st {};
    if (!f || !*f || stat(f, &st) != 0) return {};
    return std::to_string(static_cast<unsigned long long>(st.st_dev)) + "/" +
           std::to_string(static_cast<unsigned long long>(st.st_ino));
}

bool Conn::has_state() {
    Stmt st(db, "SELECT 1 FROM sqlite_master WHERE type='table' AND name='lww_state'");
    return st.step();
}

void Conn::ensure_ready() {
    if (!has_state()) {
        exec(db, "SAVEPOINT lww_init");
        try {
            exec(db, kSchemaSql);
            exec(db, kRejectedSql);
            // The node id is derived from a secret key this file keeps: a
            // server lets only the key's holder sync as this node.
            const std::string key = NodeId::random_key();
            const NodeId id = NodeId::from_key(key);
            Stmt ins(db, "INSERT INTO lww_state(key, value) VALUES ('node_id', ?1), ('schema', ?2), ('node_key', ?3)");
            ins.bind_text(1, id.str());
            ins.bind_int(2, kSchemaVersion);
            ins.bind_blob(3, key);
            ins.step();
            Stmt node(db, "INSERT INTO lww_nodes(idx, id) VALUES (0, ?1)");
            node.bind_text(1, id.str());
            node.step();
            // Where the id was made: a copy of this file elsewhere takes a new one.
            const std::string here = file_identity();
            if (!here.empty()) {
                Stmt file(db, "INSERT INTO lww_state(key, value) VALUES ('file', ?1)");
                file.bind_text(1, here);
                file.step();
            }
            exec(db, "RELEASE lww_init");
        } catch (...) {
            exec(db, "ROLLBACK TO lww_init; RELEASE lww_init");
            throw;
        }
        loaded_ = false;
    }
    refresh();
    forget_rolled_back();
    if (!upgraded_) upgrade_schema();
    detect_schema_changes(*this);  // ALTER TABLE of a tracked table (docs/SCHEMA.md)
}

// An app's transaction (or savepoint) rolled back on this connection undoes
// what lwwsync wrote in it, but moves no data version, so refresh() keeps
// what it cached: tables tracked there, an upgrade made there, nodes interned
// there. Two cheap looks per call (not per row) find them: the schema cookie
// went back, and lww_nodes no longer holds the highest node interned.
void Conn::forget_rolled_back() {
    if (schema_version() != schema_version_) {
        upgraded_ = false;
        load_tables();
    }
    if (nodes_ && nodes_->highest() > 0 && next_index() <= nodes_->highest()) nodes_->forget_others();
}

// Databases made by an older lwwsync get the current metadata layout and
// triggers once (kSchemaVersion says what changed). A read-only connection
// leaves them as they are (TableInfo's column names).
void Conn::upgrade_schema() {
    upgraded_ = true;
    if (setting("schema", 1) >= static_cast<uint64_t>(kSchemaVersion) || sqlite3_db_readonly(db, "main") == 1) return;
    exec(db, "SAVEPOINT lww_upgrade");
    try {
        upgrade_metadata(*this);
        exec(db, kRejectedSql);
        set_setting("schema", kSchemaVersion);
        exec(db, "RELEASE lww_upgrade");
    } catch (...) {
        sqlite3_exec(db, "ROLLBACK TO lww_upgrade; RELEASE lww_upgrade", nullptr, nullptr, nullptr);
        upgraded_ = false;
        throw;
    }
    load_tables();  // read before the upgrade, with the older column names
}

void Conn::lock_for_write() {
    exec(db, "UPDATE lww_state SET value = value WHERE key = 'schema'");
    refresh();
    fold_log(*this);  // whatever comes next reads or rewrites metadata
}

// Cost per call: nothing when nobody committed since the last one; else a
// few indexed lookups, whatever the number of nodes met. Tables are reread
// when the schema changed (every change of lww_tables comes with DDL: the
// capture triggers), sequences and clock when another connection committed
// (its writes took sequences this one must stay above).
void Conn::refresh() {
    unsigned dv = 0;
    sqlite3_file_control(db, "main", SQLITE_FCNTL_DATA_VERSION, &dv);
    if (loaded_ && dv == data_version_) return;
    if (!loaded_) {
        reload();
        data_version_ = dv;
        return;
    }
    Stmt pv(db, "PRAGMA data_version");  // unchanged by this connection's own commits
    const int64_t others = pv.step() ? pv.int64(0) : -1;
    const int64_t schema = schema_version();
    load_self();
    if (schema != schema_version_) load_tables();
    if (others != others_version_) recover_seq();
    data_version_ = dv;
}

uint64_t Conn::setting(const char* key, uint64_t dflt) {
    StmtPtr st = prepare("SELECT value FROM lww_state WHERE key = ?1");
    st->bind_text(1, key);
    const uint64_t v = st->step() && !st->is_null(0) ? static_cast<uint64_t>(st->int64(0)) : dflt;
    st->reset();
    return v;
}

// Conflicts lww_apply settled, while lww_config('conflict_log') is 1
// (docs/PROTOCOL.md, "Conflict log"). `col` NULL: the row itself (an insert
// or a delete against the other side's edit; ours/theirs then say 'present'
// or 'deleted'). Stamps as their hlc and node id.
void Conn::ensure_conflict_log() {
    exec(db,
         "CREATE TABLE IF NOT EXISTS lww_conflicts(id INTEGER PRIMARY KEY, at INTEGER NOT NULL, tbl TEXT NOT NULL,"
         " key TEXT NOT NULL, col TEXT, kind TEXT NOT NULL CHECK (kind IN ('lost', 'overwrote')),"
         " ours, our_hlc INTEGER NOT NULL, our_node TEXT NOT NULL,"
         " theirs, their_hlc INTEGER NOT NULL, their_node TEXT NOT NULL)");
}

void Conn::set_setting(const std::string& key, int64_t value) {
    Stmt st(db,
            "INSERT INTO lww_state(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    st.bind_text(1, key);
    st.bind_int(2, value);
    st.step();
}

static std::vector<std::string> json_names(const std::string& text) {
    rapidjson::Document d;
    std::string error;
    parse_json(d, text, error);  // a damaged list reads as empty
    std::vector<std::string> out;
    if (d.IsArray())
        for (const auto& v : d.GetArray())
            if (v.IsString()) out.emplace_back(v.GetString(), v.GetStringLength());
    return out;
}

int64_t Conn::schema_version() {
    Stmt sv(db, "PRAGMA schema_version");
    return sv.step() ? sv.int64(0) : -1;
}

void Conn::load_tables() {
    schema_version_ = schema_version();
    tables_.clear();
    has_log_ = lww::sq::has_log(db);
    Stmt st(db, "SELECT name, key_columns, columns FROM lww_tables ORDER BY name");
    Stmt old_names(db, "SELECT 1 FROM pragma_table_info(?1, 'main') WHERE name = 'mseq'");
    while (st.step()) {
        TableInfo t;
        t.name = st.text(0);
        t.key = json_names(st.text(1));
        t.cols = json_names(st.text(2));
        t.meta = quote_ident(meta_table_name(t.name));
        old_names.reset();
        old_names.bind_text(1, meta_table_name(t.name));
        if (old_names.step()) {  // not upgraded yet (schema 6)
            t.row_seq = "mseq";
            t.max_seq = "seq";
        }
        tables_.push_back(std::make_shared<const TableInfo>(std::move(t)));
    }
}

// This node's id (lww_reset_node, a copy detected) and the settings the
// write path reads; the node directory starts over (one lookup per node met
// again): what it interned in a rolled-back transaction must not stay.
void Conn::load_self() {
    Stmt id(db, "SELECT value FROM lww_state WHERE key = 'node_id'");
    if (!id.step()) throw Error("lwwsync metadata is damaged: no node_id in lww_state", ErrorKind::internal);
    const NodeId self = NodeId::parse(id.text(0));
    if (!nodes_ || nodes_->self() != self) nodes_ = std::make_unique<NodeDirectory>(self, this);
    else nodes_->forget_others();
    clock.set_max_drift_ms(setting("max_drift_ms", kDefaultMaxDriftMs));
    clock.observe(setting("hlc", 0));
    log_fold_rows = setting("log_fold_rows", static_cast<uint64_t>(find_setting("log_fold_rows", Engine::sqlite).dflt));
}

// Sequences and stamps other connections issued: the latest row of each
// table carries the latest this database issued there; merged stamps are
// covered by the persisted "hlc" setting. One indexed probe per table, only
// after another connection committed.
void Conn::recover_seq() {
    Stmt pv(db, "PRAGMA data_version");
    others_version_ = pv.step() ? pv.int64(0) : -1;
    uint64_t seq = setting("seq_floor", 0);
    {
        // A sequence the no-echo ranges name is never handed out again.
        Stmt has(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lww_relayed'");
        if (has.step()) {
            Stmt hi(db, "SELECT max(hi) FROM lww_relayed");
            if (hi.step() && !hi.is_null(0) && static_cast<uint64_t>(hi.int64(0)) > seq) seq = hi.int64(0);
        }
    }
    if (has_log_) {
        // Updates not folded yet hold later sequences and stamps.
        Stmt lg(db, "SELECT seq, hlc FROM lww_log ORDER BY seq DESC LIMIT 1");
        if (lg.step()) {
            if (logged_seq(lg.int64(0)) > seq) seq = lg.int64(0);
            clock.observe(static_cast<uint64_t>(lg.int64(1)));
        }
    }
    for (const auto& tp : tables_) {
        const TableInfo& t = *tp;
        Stmt st(db, std::string("SELECT ") + t.max_seq + ", hlc, cols FROM " + t.meta + " ORDER BY " + t.max_seq +
                        " DESC LIMIT 1");
        if (!st.step()) continue;
        if (static_cast<uint64_t>(st.int64(0)) > seq) seq = st.int64(0);
        clock.observe(static_cast<uint64_t>(st.int64(1)));
        StoredRow row;
        row.gen = 1;
        row.cols = st.blob(2);
        RowState rs = decode_row(row, t.cols.size(), *nodes_);
        for (const auto& c : rs.cols)
            if (c.present) clock.observe(c.stamp.hlc);
    }
    if (seq > seq_) seq_ = seq;
    gen_floor_.clear();
    Stmt floors(db, "SELECT substr(key, 10), value FROM lww_state WHERE key GLOB 'genfloor:*'");
    while (floors.step()) gen_floor_[floors.text(0)] = static_cast<uint64_t>(floors.int64(1));
}

void Conn::set_gen_floor(const std::string& table, uint64_t gen) {
    if (gen <= gen_floor(table)) return;
    set_setting("genfloor:" + table, static_cast<int64_t>(gen));
    gen_floor_[table] = gen;
}

void Conn::reload() {
    nodes_.reset();
    load_self();
    load_tables();
    recover_seq();
    loaded_ = true;
}

bool Conn::id_at(uint32_t idx, NodeId* id) {
    Stmt st(db, "SELECT id FROM lww_nodes WHERE idx = ?1");
    st.bind_int(1, idx);
    if (!st.step()) return false;
    *id = NodeId::parse(st.text(0));
    return true;
}

bool Conn::index_of(const NodeId& id, uint32_t* idx) {
    Stmt st(db, "SELECT idx FROM lww_nodes WHERE id = ?1");
    st.bind_text(1, id.str());
    if (!st.step()) return false;
    *idx = static_cast<uint32_t>(st.int64(0));
    return true;
}

uint32_t Conn::next_index() {
    Stmt st(db, "SELECT coalesce(max(idx), 0) + 1 FROM lww_nodes");
    return st.step() ? static_cast<uint32_t>(st.int64(0)) : 1;
}

const std::vector<ForeignKey>& Conn::foreign_keys() {
    const int64_t v = schema_version();
    if (v == fk_schema_) return fks_;
    fks_.clear();
    Stmt tables(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'");
    Stmt list(db, "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1, 'main') ORDER BY id, seq");
    Stmt pk(db, "SELECT name FROM pragma_table_info(?1, 'main') WHERE pk > 0 ORDER BY pk");
    while (tables.step()) {
        const std::string child = tables.text(0);
        list.reset();
        list.bind_text(1, child);
        int64_t id = -1;
        while (list.step()) {
            if (list.int64(0) != id) {
                id = list.int64(0);
                fks_.push_back(ForeignKey{child, list.text(1), {}, {}});
            }
            fks_.back().from.push_back(list.text(2));
            if (!list.is_null(3)) fks_.back().to.push_back(list.text(3));
        }
    }
    for (auto& fk : fks_) {
        if (!fk.to.empty()) continue;  // REFERENCES parent: its primary key
        pk.reset();
        pk.bind_text(1, fk.parent);
        while (pk.step()) fk.to.push_back(pk.text(0));
    }
    fk_schema_ = v;
    return fks_;
}

TablePtr Conn::find_table(const std::string& name) const {
    for (const auto& t : tables_)
        if (t->name == name) return t;
    return nullptr;
}

void Conn::persist_nodes(const std::vector<NodeId>& added) {
    if (added.empty()) return;
    Stmt st(db, "INSERT INTO lww_nodes(idx, id) VALUES (?1, ?2)");
    for (const auto& id : added) {
        st.reset();
        st.bind_int(1, nodes_->intern(id));
        st.bind_text(2, id.str());
        st.step();
    }
}

void Conn::persist_clock() { set_setting("hlc", static_cast<int64_t>(clock.last())); }

}  // namespace lww::sq
