#include "feed.h"

#include <algorithm>

#include "batch.h"
#include "changeset.h"
#include "error.h"

namespace lww {

ChangesRequest changes_request(int64_t since, std::optional<int64_t> limit, std::optional<int64_t> after) {
    if (since < 0) throw Error("since must be a non-negative change sequence");
    ChangesRequest req;
    req.since = req.after = static_cast<uint64_t>(since);
    if (limit) {
        if (*limit <= 0) throw Error("limit must be a positive number of rows");
        req.limit = *limit;
    }
    if (after) {
        if (*after < since) throw Error("after must be >= since (the previous page's upto)");
        req.after = static_cast<uint64_t>(*after);
    }
    return req;
}

namespace {

// Rows decoded, decided and written per round: bounds what a scan holds.
constexpr size_t kScanChunk = 1000;

}  // namespace

Batch collect_feed(FeedSource& src, const ChangesRequest& req) {
    if (req.after < req.since) throw Error("after must not be below since");
    const uint64_t final_seq = src.final_seq(req.after);
    Batch b;
    b.since = req.since;
    b.after = req.after;
    const uint64_t cut = src.batch_cut(req.after, final_seq, req.limit);
    b.complete = cut == 0;
    b.upto = cut ? cut : std::max(req.after, final_seq);
    // Writers that commit while the feed reads may have changed rows again
    // past upto: their registers at or below upto belong to this set, or a
    // cursor at upto would skip them. A set cut by the limit ends at a row
    // already written, so later writers leave it whole. One scan per table
    // reads both (one snapshot): a row read at or below upto and written
    // again before a second scan would come out twice, and every receiver
    // refuses a set that names a row twice.
    const bool past_upto = src.concurrent() && !cut;
    const uint64_t scan_to = past_upto ? UINT64_MAX : b.upto;

    ChangeSetWriter w(src.self(), req.since, req.after);
    w.compact_rows(req.compact_rows);
    const std::vector<FeedTable>& tables = src.tables();
    std::vector<FeedRow> rows;
    std::vector<FeedRow*> kept;
    for (size_t ti : src.tables_changed(req.after, scan_to)) {
        const FeedTable& t = tables.at(ti);
        bool opened = false;
        std::unique_ptr<FeedScan> scan = src.scan(ti, req.after, scan_to);
        while (scan->next(rows, kScanChunk)) {
            kept.clear();
            for (FeedRow& r : rows)
                if (registers_to_send(
                        r.st, req.since, req.skip_node, r.rc, [](size_t) { return Value::null(); }, b.upto, req.relayed,
                        req.self))
                    kept.push_back(&r);
            if (kept.empty()) continue;
            scan->fill(kept);
            for (FeedRow* r : kept) {
                if (!r->send) continue;
                if (!opened) {
                    w.begin_table(t.name, t.key, t.cols);
                    opened = true;
                }
                w.row(r->rc);
            }
        }
        if (opened) w.end_table();
    }
    b.rows = w.rows_written();
    b.json = w.finish(b.upto, b.complete);
    return b;
}

}  // namespace lww
