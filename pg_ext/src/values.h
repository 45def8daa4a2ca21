// PostgreSQL adapter: Postgres types onto the canonical value model and back.
//
//   int2/int4/int8 (and domains over them) -> integer
//   float4/float8                          -> real (NaN, ±Infinity, -0.0 kept)
//   bool                                   -> integer 0/1
//   bytea                                  -> bytes
//   text, varchar, char(n)                 -> text
//   anything else (numeric, uuid, dates and times, json(b), arrays, enums…)
//                                          -> text, its canonical text form
// Text forms are produced under fixed settings (CanonicalSettings) so every
// peer writes the same bytes: DateStyle ISO, IntervalStyle postgres,
// TimeZone UTC, extra_float_digits 3. Back in, a value goes through the
// column type's input function (domains check their constraints).
#pragma once
#include "guard.h"

#include "../../common/value.h"

namespace lww::pg {

// Fixed GUCs for the duration of one lwwsync call.
class CanonicalSettings {
public:
    CanonicalSettings();
    ~CanonicalSettings();

private:
    int nest_level_ = 0;
};

struct ColumnType {
    Oid type = InvalidOid;  // the column's declared type (maybe a domain)
    int32 typmod = -1;
    Oid base = InvalidOid;  // after stripping domains
    int16 len = 0;
    bool byval = false;
};

ColumnType column_type(Oid type, int32 typmod);

Value datum_to_value(Datum d, bool isnull, const ColumnType& t);
// Converts to a Datum of the column's type; throws lww::Error when the value does not fit.
Datum value_to_datum(const Value& v, const ColumnType& t, bool* isnull);

// Shortest text that reads back as the same double (Infinity, -Infinity, NaN spelled as Postgres does).
std::string real_text(double d);

}  // namespace lww::pg
