// PostgreSQL adapter: the capture triggers (trigger.cpp).
#pragma once
#include "meta.h"
#include "spi.h"
#include "state.h"

namespace lww::pg {

Datum capture_trigger(FunctionCallInfo fcinfo);    // row by row, while lww_apply writes
Datum capture_statement(FunctionCallInfo fcinfo);  // every other write, per statement
// Records local writes made to a row while lww_apply wrote it (State::own),
// on top of the merged metadata.
void replay_local_ops(const TableInfo& t, const std::vector<Param>& key, const std::vector<LocalOp>& ops);

}  // namespace lww::pg
