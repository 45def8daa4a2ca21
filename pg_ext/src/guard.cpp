#include "guard.h"

namespace lww::pg {

void raise_error(const char* fn, int sqlstate, const char* msg) {
    ereport(ERROR, (errcode(sqlstate), errmsg("%s: %s", fn, msg)));
    pg_unreachable();
}

}  // namespace lww::pg
