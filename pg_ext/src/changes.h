// PostgreSQL adapter: lww_changes, the change feed (changes.cpp).
#pragma once
#include "../../common/exchange.h"
#include "meta.h"

namespace lww::pg {

Batch collect_changes(const ChangesRequest& req);

}  // namespace lww::pg
