// PostgreSQL adapter: lww_changes, lww_apply and the sync engine.
#pragma once
#include "../../common/exchange.h"
#include "meta.h"

namespace lww::pg {

int64_t track_table(Oid relid);
bool untrack_table(Oid relid);
Datum capture_trigger(FunctionCallInfo fcinfo);

Batch collect_changes(const ChangesRequest& req);
ApplyCounts apply_changeset(const ChangeSet& cs);

class PgEngine : public SyncEngine {
public:
    NodeId self() override;
    Cursor cursor_of(const NodeId& peer) override;
    Batch changes_for(const NodeId& peer, const Cursor& from, int64_t limit) override;
    ApplyCounts apply_from(const NodeId& peer, const ChangeSet& cs) override;
};

std::string sync_postgres(const std::string& url, int64_t batch_rows);

}  // namespace lww::pg
