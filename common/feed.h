// lwwsync core: lww_changes, the change feed, for both engines. The feed's
// rules live here once (argument rules, where a batch ends, which rows and
// registers it carries); each engine implements FeedSource, the reads.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "exchange.h"
#include "merge.h"
#include "value.h"

namespace lww {

// lww_changes(since [, limit [, after]]) checked: an absent argument is
// nullopt. Throws Error(bad_input).
ChangesRequest changes_request(int64_t since, std::optional<int64_t> limit, std::optional<int64_t> after);

// A tracked table as the feed sees it.
struct FeedTable {
    std::string name;
    std::vector<std::string> key, cols;
};

// One row of a scan: its metadata, and what the feed sends of it.
struct FeedRow {
    RowState st;
    size_t at = 0;     // the engine's handle (a result row)
    RowChange rc;      // registers to send (filled by the feed); key and values by FeedScan::fill
    bool send = true;  // the engine may withhold a row the caller may not read
};

// The rows of one table whose latest change lies in a range, in sequence order.
class FeedScan {
public:
    virtual ~FeedScan() = default;
    // The next rows (at most `max`), metadata decoded; false when none is left.
    virtual bool next(std::vector<FeedRow>& rows, size_t max) = 0;
    // For the rows the feed keeps of the last `next` (their registers in
    // rc.cols, values empty): keys and the registers' values, or send = false.
    virtual void fill(const std::vector<FeedRow*>& rows) = 0;
};

// One engine's metadata, as the feed reads it.
class FeedSource {
public:
    virtual ~FeedSource() = default;
    virtual NodeId self() = 0;
    // Writers in other sessions may commit rows past `final_seq` while the
    // feed reads (Postgres): rows changed again past the batch's end are
    // read as well, for their registers inside it.
    virtual bool concurrent() const = 0;
    // The tables the feed may read.
    virtual const std::vector<FeedTable>& tables() = 0;
    // The highest sequence nothing can commit at or below any more (rows
    // with a sequence past `after` are what the caller waits for).
    virtual uint64_t final_seq(uint64_t after) = 0;
    // The sequence of the `limit`-th row changed in (after, upto], or 0 when
    // there are fewer.
    virtual uint64_t batch_cut(uint64_t after, uint64_t upto, int64_t limit) = 0;
    // Indexes into tables() of the tables with a row changed in (after, upto].
    virtual std::vector<size_t> tables_changed(uint64_t after, uint64_t upto) = 0;
    // The rows of tables()[table] whose latest change is in (after, upto].
    virtual std::unique_ptr<FeedScan> scan(size_t table, uint64_t after, uint64_t upto) = 0;
};

// The batch `req` asks for: a change set (docs/PROTOCOL.md) that never
// skips a change (docs/ARCHITECTURE.md, "The feed").
Batch collect_feed(FeedSource& src, const ChangesRequest& req);

}  // namespace lww
