// lwwsync core: the change set — what one peer sends another. Versioned JSON,
// documented in docs/PROTOCOL.md. 64-bit quantities (stamps, sequences, large
// integers) travel as decimal strings so a JavaScript reader keeps them exact.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base64.h"  // bytes values travel as base64
#include "hlc.h"
#include "merge.h"
#include "node_id.h"
#include "value.h"

namespace lww {

constexpr int kChangeSetVersion = 1;
constexpr const char* kChangeSetFormat = "lwwsync.changeset";

// Change sequences (and so cursors) are stored as signed 64-bit integers.
constexpr uint64_t kMaxSequence = uint64_t(INT64_MAX);

struct ColChange {
    uint32_t col = 0;  // index into TableChanges::columns
    Value value;
    Stamp stamp;
};

struct RowChange {
    std::vector<Value> key;
    uint64_t gen = 0;
    bool has_row = false;  // the row register (insert/delete) is part of the set
    Stamp row;
    std::vector<ColChange> cols;
};

struct TableChanges {
    std::string name;
    std::vector<std::string> key;      // primary-key column names, in key order
    std::vector<std::string> columns;  // non-key column names referenced by ColChange::col
    std::vector<RowChange> rows;
};

struct ChangeSet {
    NodeId origin;
    uint64_t since = 0;    // registers changed after this sequence...
    uint64_t after = 0;    // ...of rows whose latest change is after this one (>= since)
    uint64_t upto = 0;     // ...and at or before this one
    bool complete = true;  // false: a row limit cut the set; more rows follow upto
    std::vector<TableChanges> tables;
};

// Streams a change set to JSON without building it in memory first.
class ChangeSetWriter {
public:
    ChangeSetWriter(const NodeId& origin, uint64_t since, uint64_t after);
    ~ChangeSetWriter();
    ChangeSetWriter(const ChangeSetWriter&) = delete;
    ChangeSetWriter& operator=(const ChangeSetWriter&) = delete;

    void begin_table(const std::string& name, const std::vector<std::string>& key,
                     const std::vector<std::string>& columns);
    // Rows that carry their row register and every column with the row's
    // stamp (a snapshot's rows) are written as arrays, [key, gen, hlc, node,
    // value…]: only for a receiver that said it reads them.
    void compact_rows(bool on);
    void row(const RowChange& r);
    void end_table();
    std::string finish(uint64_t upto, bool complete = true);

    size_t rows_written() const { return rows_; }

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    size_t rows_ = 0;
};

std::string encode_changeset(const ChangeSet& cs);
// A row's key as a JSON array, each value as change sets write it.
std::string key_json(const std::vector<Value>& key);
std::string value_json(const Value& v);  // one value as change sets carry it

// Parses and validates the structure as it reads (no DOM of the document:
// common/changeset_reader.cpp); throws lww::Error with a message that says
// what is wrong and where. Never returns a partially read set.
ChangeSet decode_changeset(std::string_view json);

}  // namespace lww
