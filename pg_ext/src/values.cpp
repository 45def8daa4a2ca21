#include "values.h"

#include <charconv>
#include <cmath>

namespace lww::pg {

CanonicalSettings::CanonicalSettings() {
    pg_call([&] {
        nest_level_ = NewGUCNestLevel();
        set_config_option("DateStyle", "ISO, YMD", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
        set_config_option("IntervalStyle", "postgres", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
        set_config_option("TimeZone", "UTC", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
        set_config_option("extra_float_digits", "3", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
        set_config_option("bytea_output", "hex", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
    });
}

CanonicalSettings::~CanonicalSettings() {
    if (nest_level_) AtEOXact_GUC(true, nest_level_);
}

ColumnType column_type(Oid type, int32 typmod) {
    ColumnType t;
    t.type = type;
    t.typmod = typmod;
    pg_call([&] {
        t.base = getBaseType(type);
        get_typlenbyval(type, &t.len, &t.byval);
    });
    return t;
}

std::string real_text(double d) {
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, d);
    return std::string(buf, r.ptr);
}

static std::string output_text(Datum d, Oid type) {
    char* s = nullptr;
    pg_call([&] {
        Oid fn;
        bool varlena;
        getTypeOutputInfo(type, &fn, &varlena);
        s = OidOutputFunctionCall(fn, d);
    });
    std::string out = s;
    pg_call([&] { pfree(s); });
    return out;
}

Value datum_to_value(Datum d, bool isnull, const ColumnType& t) {
    if (isnull) return Value::null();
    switch (t.base) {
        case INT2OID: return Value::integer(DatumGetInt16(d));
        case INT4OID: return Value::integer(DatumGetInt32(d));
        case INT8OID: return Value::integer(DatumGetInt64(d));
        case FLOAT4OID: return Value::real(static_cast<double>(DatumGetFloat4(d)));
        case FLOAT8OID: return Value::real(DatumGetFloat8(d));
        case BOOLOID: return Value::integer(DatumGetBool(d) ? 1 : 0);
        case BYTEAOID: {
            const bytea* b = nullptr;
            pg_call([&] { b = DatumGetByteaPP(d); });
            return Value::bytes(std::string(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b)));
        }
        case TEXTOID:
        case VARCHAROID: {
            const text* x = nullptr;
            pg_call([&] { x = DatumGetTextPP(d); });
            return Value::text(std::string(VARDATA_ANY(x), VARSIZE_ANY_EXHDR(x)));
        }
        default: return Value::text(output_text(d, t.type));
    }
}

static Datum input_text(const std::string& s, const ColumnType& t) {
    Datum d = 0;
    pg_call([&] {
        Oid fn, ioparam;
        getTypeInputInfo(t.type, &fn, &ioparam);
        d = OidInputFunctionCall(fn, const_cast<char*>(s.c_str()), ioparam, t.typmod);
    });
    return d;
}

static void check_encoding(const std::string& s) {
    bool ok = false;
    pg_call([&] { ok = pg_verifymbstr(s.data(), static_cast<int>(s.size()), true); });
    if (!ok) throw Error("a value is not valid text in the database encoding");
}

static std::string as_text(const Value& v) {
    switch (v.kind) {
        case Value::Kind::Int: return std::to_string(v.i);
        case Value::Kind::Real: return real_text(v.d);
        case Value::Kind::Text:
        case Value::Kind::Bytes:
            if (v.s.find('\0') != std::string::npos)
                throw Error("a text value with a NUL byte does not fit a Postgres column");
            check_encoding(v.s);
            return v.s;
        case Value::Kind::Null: break;
    }
    return {};
}

Datum value_to_datum(const Value& v, const ColumnType& t, bool* isnull) {
    *isnull = v.is_null();
    if (v.is_null()) return 0;
    // Fast, exact paths; domains go through their input function so their
    // constraints are checked.
    const bool plain = t.base == t.type;
    if (plain && v.kind == Value::Kind::Int) {
        switch (t.base) {
            case INT8OID: return Int64GetDatum(v.i);
            case INT4OID:
                if (v.i < INT32_MIN || v.i > INT32_MAX)
                    throw Error("integer " + std::to_string(v.i) + " is out of range for type integer");
                return Int32GetDatum(static_cast<int32>(v.i));
            case INT2OID:
                if (v.i < INT16_MIN || v.i > INT16_MAX)
                    throw Error("integer " + std::to_string(v.i) + " is out of range for type smallint");
                return Int16GetDatum(static_cast<int16>(v.i));
            case BOOLOID:
                if (v.i != 0 && v.i != 1)
                    throw Error("integer " + std::to_string(v.i) + " does not fit type boolean (want 0 or 1)");
                return BoolGetDatum(v.i == 1);
            case FLOAT8OID: return Float8GetDatum(static_cast<double>(v.i));
            default: break;
        }
    }
    if (plain && v.kind == Value::Kind::Real) {
        if (t.base == FLOAT8OID) return Float8GetDatum(v.d);
        if (t.base == FLOAT4OID) {
            // As float4in: a finite value past float's range overflows, a
            // nonzero one that rounds to zero underflows; neither is stored.
            const float f = static_cast<float>(v.d);
            if (std::isinf(f) && !std::isinf(v.d))
                throw Error("value " + real_text(v.d) + " is out of range for type real (overflow)");
            if (f == 0 && v.d != 0)
                throw Error("value " + real_text(v.d) + " is out of range for type real (underflow)");
            return Float4GetDatum(f);
        }
    }
    if (plain && v.kind == Value::Kind::Bytes && t.base == BYTEAOID) {
        Datum d = 0;
        pg_call([&] {
            bytea* b = static_cast<bytea*>(palloc(VARHDRSZ + v.s.size()));
            SET_VARSIZE(b, VARHDRSZ + v.s.size());
            memcpy(VARDATA(b), v.s.data(), v.s.size());
            d = PointerGetDatum(b);
        });
        return d;
    }
    if (plain && v.kind == Value::Kind::Text && (t.base == TEXTOID)) {
        Datum d = 0;
        if (v.s.find('\0') != std::string::npos)
            throw Error("a text value with a NUL byte does not fit a Postgres column");
        check_encoding(v.s);
        pg_call([&] { d = PointerGetDatum(cstring_to_text_with_len(v.s.data(), static_cast<int>(v.s.size()))); });
        return d;
    }
    if (v.kind == Value::Kind::Bytes && t.base == BYTEAOID) {  // a domain over bytea: via its hex text form
        static const char* hex = "0123456789abcdef";
        std::string s = "\\x";
        for (unsigned char c : v.s) {
            s += hex[c >> 4];
            s += hex[c & 15];
        }
        return input_text(s, t);
    }
    return input_text(as_text(v), t);
}

}  // namespace lww::pg
