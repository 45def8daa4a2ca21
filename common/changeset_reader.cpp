// Reading change sets (docs/PROTOCOL.md) as RapidJSON parses them: SAX
// events go straight into the ChangeSet, so a set of 100 000 rows never
// exists twice in memory (a DOM, then the set). The checks and their
// messages are those of the format; a document with one problem gets the
// message it always got. With several, the header's come first (format,
// version, cursors, nodes), then the first problem in the tables.
#include "changeset_reader.h"

#include <charconv>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <unordered_set>

#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include "error.h"
#include "json.h"

namespace lww {

namespace {

using rapidjson::SizeType;

// Where in the document a problem is; spelled out only when there is one.
struct Where {
    const char* field = nullptr;  // top-level field, or a field of a table/row
    int table = -1, row = -1;
    const char* sub = nullptr;  // e.g. ".int", ".real", ".bytes", " hlc"
    Where(const char* f = nullptr, int t = -1, int r = -1) : field(f), table(t), row(r) {}
    Where with(const char* s) const {
        Where w = *this;
        w.sub = s;
        return w;
    }
    std::string str() const {
        std::string s;
        if (table >= 0) s = "tables[" + std::to_string(table) + "]";
        if (row >= 0) s += ".rows[" + std::to_string(row) + "]";
        if (field) s += (s.empty() ? "" : ".") + std::string(field);
        if (sub) s += sub;
        return s.empty() ? "document" : s;
    }
};

[[noreturn]] void bad(const Where& where, const std::string& what) {
    throw Error("invalid change set: " + where.str() + ": " + what);
}

// A scalar as the parser gave it, or the mark of a container: kept until
// what it belongs to is complete, then checked.
struct Scalar {
    enum class Kind : uint8_t { none, null, boolean, number, string, container };
    Kind kind = Kind::none;
    bool b = false;
    JsonNumber num;
    std::string s;

    bool is_string() const { return kind == Kind::string; }
    bool is_bool() const { return kind == Kind::boolean; }
    bool is_number() const { return kind == Kind::number; }
    bool is_uint() const { return is_number() && num.is_uint(); }
    bool is_uint64() const { return is_number() && num.is_uint64(); }
    bool is_int() const { return is_number() && num.is_int(); }
    bool is_int64() const { return is_number() && num.is_int64(); }
};

// A value as a change set writes it: a scalar, or an object of one tagged member.
struct ValueText {
    bool tagged = false;
    uint32_t members = 0;
    std::string tag;
    Scalar v;  // the scalar, or the tag's value
};

// 1 to 20 decimal digits.
bool parse_decimal(const std::string& s, size_t from, uint64_t& out) {
    const size_t n = s.size() - from;
    if (n == 0 || n > 20) return false;
    const char* begin = s.data() + from;
    const auto r = std::from_chars(begin, begin + n, out);
    return r.ec == std::errc() && r.ptr == begin + n;
}

uint64_t read_u64_string(const Scalar& v, const Where& where) {
    uint64_t out = 0;
    if (!v.is_string() || !parse_decimal(v.s, 0, out))
        bad(where, "expected a decimal string of an unsigned 64-bit number");
    return out;
}

// Change sequences and cursors are stored as signed 64-bit integers by both
// engines: a larger one would turn negative there.
uint64_t read_sequence(const Scalar& v, const Where& where) {
    const uint64_t out = read_u64_string(v, where);
    if (out > kMaxSequence) bad(where, "a change sequence must be below 2^63");
    return out;
}

int64_t read_i64_string(const Scalar& v, const Where& where) {
    if (!v.is_string()) bad(where, "expected a decimal string");
    const bool neg = !v.s.empty() && v.s[0] == '-';
    uint64_t mag = 0;
    if (!parse_decimal(v.s, neg, mag)) bad(where, "expected a decimal string");
    const uint64_t limit = uint64_t(std::numeric_limits<int64_t>::max()) + (neg ? 1 : 0);
    if (mag > limit) bad(where, "integer out of the int64 range");
    return neg ? int64_t(0 - mag) : int64_t(mag);
}

[[noreturn]] void not_a_value(const Where& where) {
    bad(where, "not a value (null, integer, string, {\"int\"}, {\"real\"} or {\"bytes\"})");
}

Value tagged_value(const std::string& tag, const Scalar& v, const Where& where) {
    if (tag == "int") return Value::integer(read_i64_string(v, where.with(".int")));
    if (tag == "real") {
        if (v.is_number()) return Value::real(v.num.get_double());
        if (v.is_string()) {
            if (v.s == "NaN") return Value::real(std::numeric_limits<double>::quiet_NaN());
            if (v.s == "Infinity") return Value::real(std::numeric_limits<double>::infinity());
            if (v.s == "-Infinity") return Value::real(-std::numeric_limits<double>::infinity());
        }
        bad(where.with(".real"), "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"");
    }
    if (tag == "bytes") {
        std::string out;
        if (!v.is_string() || !base64_decode(v.s, out)) bad(where.with(".bytes"), "expected base64 text");
        return Value::bytes(std::move(out));
    }
    not_a_value(where);
}

// `v` is moved from (text values keep its bytes).
Value to_value(ValueText& v, const Where& where) {
    if (v.tagged) {
        if (v.members != 1) not_a_value(where);
        return tagged_value(v.tag, v.v, where);
    }
    switch (v.v.kind) {
        case Scalar::Kind::null: return Value::null();
        case Scalar::Kind::string:
            if (!valid_utf8(v.v.s)) bad(where, "text is not valid UTF-8 (a lone surrogate escape?)");
            return Value::text(std::move(v.v.s));
        case Scalar::Kind::number:
            if (v.v.num.is_int64()) return Value::integer(v.v.num.get_int64());
            bad(where, "a bare number must be an integer within int64; reals are written {\"real\": x}");
        default: not_a_value(where);
    }
}

// Identifiers: non-empty UTF-8 (the parser validated it) without NUL, which
// no engine accepts in a name, and at most 1000 bytes.
void check_name(const Scalar& n, const Where& where) {
    if (!n.is_string() || n.s.empty() || n.s.size() > 1000)
        bad(where, "expected non-empty name strings (at most 1000 bytes)");
    if (std::memchr(n.s.data(), '\0', n.s.size())) bad(where, "a name contains a NUL character");
    // The parser lets an escaped lone low surrogate through as bytes that are not UTF-8.
    if (!valid_utf8(n.s)) bad(where, "a name is not valid UTF-8");
}

// Keys of one table, to refuse a key twice: a set of row numbers by a hash
// of the key (open addressing; a node-based set cost more than the rest of
// the reading). Keys are equal exactly when their values are identical bit
// for bit (-0.0 is not 0.0).
class KeySet {
public:
    void clear() {
        slots_.assign(16, kEmpty);
        size_ = 0;
    }
    // False when `rows` holds a row of the same key already.
    bool insert(const std::vector<RowChange>& rows, const std::vector<Value>& key, uint32_t row) {
        if ((size_ + 1) * 2 > slots_.size()) grow();
        const uint64_t h = hash(key);
        for (size_t i = h & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
            if (slots_[i].row == kEmpty.row) {
                slots_[i] = Slot{h, row};
                ++size_;
                return true;
            }
            if (slots_[i].hash == h && same_key(rows[slots_[i].row].key, key)) return false;
        }
    }

private:
    struct Slot {
        uint64_t hash;
        uint32_t row;
    };
    static constexpr Slot kEmpty{0, UINT32_MAX};

    static uint64_t mix(uint64_t x) {  // splitmix64's finalizer
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
    }
    static uint64_t hash(const std::vector<Value>& key) {
        uint64_t h = key.size();
        for (const Value& v : key) {
            uint64_t x = 0;
            switch (v.kind) {
                case Value::Kind::Null: break;
                case Value::Kind::Int: x = uint64_t(v.i); break;
                case Value::Kind::Real: std::memcpy(&x, &v.d, sizeof x); break;
                default: x = std::hash<std::string_view>()(v.s);
            }
            h = mix(h ^ mix(x + uint64_t(v.kind)));
        }
        return h;
    }
    static bool same_key(const std::vector<Value>& a, const std::vector<Value>& b) {
        if (a.size() != b.size()) return false;
        for (size_t i = 0; i < a.size(); ++i) {
            if (a[i].kind != b[i].kind) return false;
            switch (a[i].kind) {
                case Value::Kind::Null: break;
                case Value::Kind::Int:
                    if (a[i].i != b[i].i) return false;
                    break;
                case Value::Kind::Real:
                    if (std::memcmp(&a[i].d, &b[i].d, sizeof a[i].d) != 0) return false;
                    break;
                default:
                    if (a[i].s != b[i].s) return false;
            }
        }
        return true;
    }
    void grow() {
        std::vector<Slot> old(slots_.size() * 2, kEmpty);
        old.swap(slots_);
        for (const Slot& s : old) {
            if (s.row == kEmpty.row) continue;
            size_t i = s.hash & (slots_.size() - 1);
            while (slots_[i].row != kEmpty.row) i = (i + 1) & (slots_.size() - 1);
            slots_[i] = s;
        }
    }

    std::vector<Slot> slots_ = std::vector<Slot>(16, kEmpty);
    size_t size_ = 0;
};

uint64_t stamp_hlc(const Scalar& hlc, const Where& where) {
    const uint64_t h = read_u64_string(hlc, where.with(" hlc"));
    if (!valid_stamp(h)) bad(where, "hlc out of range (a stamp is above 0 and before the year 6400)");
    return h;
}

// A stamp's node is an index into "nodes", which a set writes after its
// tables: checked, and replaced by the id, once the set is read.
uint32_t stamp_node(const Scalar& node, const Where& where) {
    if (!node.is_uint()) bad(where, "node index out of range of \"nodes\"");
    return static_cast<uint32_t>(node.num.u);
}
// Until then a stamp holds its index where the id goes.
NodeId index_id(uint32_t i) {
    NodeId id;
    std::memcpy(id.bytes.data(), &i, sizeof i);
    return id;
}
uint32_t id_index(const NodeId& id) {
    uint32_t i = 0;
    std::memcpy(&i, id.bytes.data(), sizeof i);
    return i;
}

// The header fields, kept as scalars and checked once the set is read.
enum Field : uint8_t { kFormat, kVersion, kOrigin, kSince, kUpto, kAfter, kComplete, kNodes, kTables, kHeaderFields };
const char* const kFieldNames[kHeaderFields] = {"format", "version",  "origin", "since", "upto",
                                                "after",  "complete", "nodes",  "tables"};

// What a container being read is.
// crow: a row written as an array, [key, gen, hlc, node, value…].
enum class Ctx : uint8_t { top, nodes, tables, table, names, rows, row, crow, row_key, stamp, cols, col, tagged };

// A change set's SAX events, from the '{' that opens it to the '}' that
// closes it. Nesting is followed by a counter and a stack as deep as the
// format (never recursion); anything the format does not name is skipped.
class SetReader {
public:
    SetReader(unsigned max_depth, unsigned base_depth) : max_depth_(max_depth), base_depth_(base_depth) {
        stack_.reserve(16);
    }

    bool done() const { return done_; }
    bool is_null() const { return null_; }
    bool too_deep = false, out_of_range = false;

    bool Null() { return scalar(Scalar::Kind::null); }
    bool Bool(bool b) {
        sc_.b = b;
        return scalar(Scalar::Kind::boolean);
    }
    bool Int(int) { return false; }  // numbers come as text (kJsonParseFlags)
    bool Uint(unsigned) { return false; }
    bool Int64(int64_t) { return false; }
    bool Uint64(uint64_t) { return false; }
    bool Double(double) { return false; }
    bool RawNumber(const char* s, SizeType n, bool) {
        if (!read_json_number(s, n, sc_.num)) {
            out_of_range = true;
            return false;
        }
        return scalar(Scalar::Kind::number);
    }
    bool String(const char* s, SizeType n, bool) {
        str_ = std::string_view(s, n);  // copied only where it is kept (capture)
        return scalar(Scalar::Kind::string);
    }
    bool Key(const char* s, SizeType n, bool) {
        if (done_) return false;
        if (skip_ || abandoned()) return true;
        key_ = std::string_view(s, n);
        return guarded([&] { on_key(); });
    }
    bool StartObject() { return open(true); }
    bool StartArray() { return open(false); }
    bool EndObject(SizeType) { return close(); }
    bool EndArray(SizeType) { return close(); }

    // Once done(): the set, or the first of its problems thrown.
    ChangeSet finish();

private:
    struct Frame {
        Ctx ctx;
        uint8_t field = 0;   // objects: the member being read (of the ctx's own enum)
        uint32_t count = 0;  // arrays: elements so far; objects: members so far
    };
    // Members of a table and of a row.
    static constexpr uint8_t kOther = 0, kName = 1, kKeyNames = 2, kColumns = 3, kRows = 4;
    static constexpr uint8_t kRowKey = kRows + 1, kGen = kRows + 2, kStamp = kRows + 3, kRow = kRows + 4,
                             kCols = kRows + 5;

    template <class F>
    bool guarded(F f) {
        try {
            f();
        } catch (const Error& e) {
            fail(e.what());
        }
        return true;
    }
    // A problem in the tables: kept (the first only), and the rest of the
    // tables skipped; the header is still read, its problems come first.
    void fail(const std::string& what) {
        if (error_.empty()) error_ = what;
        abandon_ = true;
    }

    bool scalar(Scalar::Kind kind) {
        if (done_) return false;
        if (skip_ || abandoned()) return true;
        sc_.kind = kind;
        if (stack_.empty()) {  // the set's value itself
            null_ = kind == Scalar::Kind::null;
            not_object_ = !null_;
            done_ = true;
            return true;
        }
        return guarded([&] { on_value(false, false); });
    }
    bool open(bool object) {
        if (done_) return false;
        if (base_depth_ + ++depth_ > max_depth_) {
            too_deep = true;
            return false;
        }
        if (skip_) {
            ++skip_;
            return true;
        }
        if (abandoned()) return true;
        if (stack_.empty()) {
            if (object) stack_.push_back(Frame{Ctx::top});
            else {
                not_object_ = true;
                skip_ = 1;
            }
            return true;
        }
        sc_.kind = Scalar::Kind::container;
        return guarded([&] { on_value(true, object); });
    }
    bool close() {
        --depth_;
        if (skip_) {
            if (--skip_ == 0 && depth_ == 0) done_ = true;
            return true;
        }
        if (abandon_) {
            while (stack_.size() > depth_) stack_.pop_back();
            if (depth_ <= 1) abandon_ = false;  // the tables closed: back at the header
            return true;
        }
        const Frame f = stack_.back();
        stack_.pop_back();
        if (stack_.empty()) {
            done_ = true;
            return true;
        }
        return guarded([&] { on_close(f); });
    }
    // Only ever inside "tables" (no check at the top level throws).
    bool abandoned() const { return abandon_; }

    // Skips the value whose first event this is.
    void skip_value(bool container) {
        if (container) skip_ = 1;
    }
    Frame& top() { return stack_.back(); }
    int T() const { return static_cast<int>(set_.tables.size()) - 1; }
    int R() const { return static_cast<int>(set_.tables.back().rows.size()); }
    TableChanges& table() { return set_.tables.back(); }

    void on_key();
    void on_value(bool container, bool object);
    void header_value(bool container, bool object);
    void node_value(bool container, bool object);
    void table_start(bool container, bool object);
    void table_member(bool container, bool object);
    void name_value(bool container, bool object);
    void row_start(bool container, bool object);
    void array_row_value(bool container, bool object);
    void row_member(bool container, bool object);
    void key_value(bool container, bool object);
    void stamp_value(bool container, bool object);
    void col_start(bool container, bool object);
    void col_value(bool container, bool object);
    void tagged_value(bool container, bool object);
    void on_close(const Frame& f);
    void capture(Scalar& into, bool container) {
        into.kind = sc_.kind;
        into.b = sc_.b;
        into.num = sc_.num;
        if (sc_.kind == Scalar::Kind::string) into.s.assign(str_.data(), str_.size());
        skip_value(container);
    }
    // A value in a key or a column entry: a scalar, or an object to follow.
    void value_start(ValueText& v, bool container, bool object) {
        v.tagged = object;
        v.members = 0;
        if (object) {
            v.v.kind = Scalar::Kind::none;
            stack_.push_back(Frame{Ctx::tagged});
        } else {
            capture(v.v, container);
        }
    }
    // A row's generation (its "gen", or an array row's second value).
    void read_gen(bool container, const Where& where) {
        has_gen_ = true;
        capture(sc_, container);
        if (!sc_.is_uint64() || sc_.num.u == 0 || sc_.num.u > kMaxGeneration)
            bad(where, "expected a positive integer below 2^53");
        row_.gen = sc_.num.u;
    }
    // The stamp whose hlc and node were captured last (a row's, a column's).
    Stamp read_stamp(const Where& where) {
        Stamp st;
        st.hlc = stamp_hlc(col_hlc_, where);
        st.node = index_id(stamp_node(col_node_, where));
        return st;
    }
    // Column `col` of an array row: the value just read, with the row's stamp.
    void array_col(size_t col, const Where& where) {
        ColChange c;
        c.col = static_cast<uint32_t>(col);
        c.value = to_value(value_, where);
        cols_.push_back(std::move(c));  // stamp.hlc 0: the row's (row_end)
    }
    void row_end();
    void check_row_columns(const RowChange& r, int row, std::vector<uint32_t>& seen) const;
    void table_end();

    unsigned max_depth_, base_depth_;
    unsigned depth_ = 0;  // open containers of the set
    unsigned skip_ = 0;   // open containers being skipped
    bool done_ = false, null_ = false, not_object_ = false, abandon_ = false;
    std::string error_;
    std::vector<Frame> stack_;
    std::string_view key_, str_;  // of the event being handled
    Scalar sc_;

    ChangeSet set_;
    Scalar header_[kHeaderFields];
    bool seen_[kHeaderFields] = {};
    bool nodes_bad_ = false;
    std::vector<NodeId> nodes_;
    // The table being read.
    bool has_name_ = false, has_key_ = false, has_columns_ = false, has_rows_ = false, names_key_ = false;
    bool rows_early_ = false;  // rows came before the key or the columns: checked at the table's end
    // Key and column names share one namespace; a clash is the columns'
    // (a key is read as if it came first).
    std::unordered_set<std::string> table_names_, key_names_, col_names_;
    KeySet keys_;
    std::vector<uint32_t> col_seen_;  // per column: the last row (+1) that carried it
    // The row being read.
    RowChange row_;
    bool has_row_key_ = false, has_gen_ = false, has_base_ = false, row_flag_ = false, has_row_flag_ = false,
         has_cols_ = false;
    std::vector<ColChange> cols_;  // the row's columns so far
    // The column entry being read: [column, value, hlc, node].
    Scalar col_index_, col_hlc_, col_node_;
    ValueText value_;
};

}  // namespace

void SetReader::on_key() {
    Frame& f = top();
    ++f.count;
    switch (f.ctx) {
        case Ctx::top: {
            f.field = kHeaderFields;  // skipped
            for (uint8_t i = 0; i < kHeaderFields; ++i)
                if (key_ == kFieldNames[i] && !seen_[i]) f.field = i;  // the first of a repeated name counts
            return;
        }
        case Ctx::table:
            f.field = key_ == "name"      ? kName
                      : key_ == "key"     ? kKeyNames
                      : key_ == "columns" ? kColumns
                      : key_ == "rows"    ? kRows
                                          : kOther;
            if ((f.field == kName && has_name_) || (f.field == kKeyNames && has_key_) ||
                (f.field == kColumns && has_columns_) || (f.field == kRows && has_rows_))
                f.field = kOther;
            return;
        case Ctx::row:
            f.field = key_ == "key"     ? kRowKey
                      : key_ == "gen"   ? kGen
                      : key_ == "stamp" ? kStamp
                      : key_ == "row"   ? kRow
                      : key_ == "cols"  ? kCols
                                        : kOther;
            if ((f.field == kRowKey && has_row_key_) || (f.field == kGen && has_gen_) ||
                (f.field == kStamp && has_base_) || (f.field == kRow && has_row_flag_) ||
                (f.field == kCols && has_cols_))
                f.field = kOther;
            return;
        case Ctx::tagged:
            if (f.count == 1) value_.tag.assign(key_.data(), key_.size());
            value_.members = f.count;
            return;
        default: return;
    }
}

void SetReader::on_value(bool container, bool object) {
    Frame& f = top();
    switch (f.ctx) {
        case Ctx::top: return header_value(container, object);
        case Ctx::nodes: return node_value(container, object);
        case Ctx::tables: return table_start(container, object);
        case Ctx::table: return table_member(container, object);
        case Ctx::names: return name_value(container, object);
        case Ctx::rows: return row_start(container, object);
        case Ctx::crow: return array_row_value(container, object);
        case Ctx::row: return row_member(container, object);
        case Ctx::row_key: return key_value(container, object);
        case Ctx::stamp: return stamp_value(container, object);
        case Ctx::cols: return col_start(container, object);
        case Ctx::col: return col_value(container, object);
        case Ctx::tagged: return tagged_value(container, object);
    }
}

// A member of the set's top level.
void SetReader::header_value(bool container, bool object) {
    Frame& f = top();
    const bool array = container && !object;
    if (f.field >= kHeaderFields) return skip_value(container);
    const uint8_t field = f.field;
    seen_[field] = true;
    if (field == kNodes && array) {
        header_[kNodes].kind = Scalar::Kind::container;
        stack_.push_back(Frame{Ctx::nodes});
    } else if (field == kTables && array) {
        header_[kTables].kind = Scalar::Kind::container;
        stack_.push_back(Frame{Ctx::tables});
    } else {
        capture(header_[field], container);
        if (field == kNodes || field == kTables) header_[field].kind = Scalar::Kind::none;  // not an array
    }
}

// One entry of "nodes".
void SetReader::node_value(bool container, bool /*object*/) {
    NodeId id;
    if (container || !sc_.is_string() || !NodeId::try_parse(str_, id)) nodes_bad_ = true;
    else nodes_.push_back(id);
    skip_value(container);
}

// One entry of "tables": a table begins.
void SetReader::table_start(bool container, bool object) {
    set_.tables.emplace_back();
    if (!object) {
        skip_value(container);
        bad(Where(nullptr, T()), "expected an object");
    }
    has_name_ = has_key_ = has_columns_ = has_rows_ = rows_early_ = false;
    key_names_.clear();
    col_names_.clear();
    keys_.clear();
    stack_.push_back(Frame{Ctx::table});
}

// A member of a table object.
void SetReader::table_member(bool container, bool object) {
    Frame& f = top();
    const bool array = container && !object;
    const int t = T();
    switch (f.field) {
        case kName:
            has_name_ = true;
            capture(sc_, container);
            check_name(sc_, Where("name", t));
            table().name.swap(sc_.s);
            if (!table_names_.insert(table().name).second)
                bad(Where("name", t), "table \"" + table().name + "\" appears twice");
            return;
        case kKeyNames:
        case kColumns:
            (f.field == kKeyNames ? has_key_ : has_columns_) = true;
            names_key_ = f.field == kKeyNames;
            if (!array) {
                skip_value(container);
                bad(Where(names_key_ ? "key" : "columns", t), "expected an array of names");
            }
            stack_.push_back(Frame{Ctx::names});
            return;
        case kRows:
            has_rows_ = true;
            if (!array) {
                skip_value(container);
                bad(Where("rows", t), "expected an array");
            }
            rows_early_ = !(has_key_ && has_columns_);
            if (has_columns_) col_seen_.assign(table().columns.size(), 0);
            stack_.push_back(Frame{Ctx::rows});
            return;
        default: return skip_value(container);
    }
}

// One name of a table's "key" or "columns".
void SetReader::name_value(bool container, bool /*object*/) {
    const Where where(names_key_ ? "key" : "columns", T());
    capture(sc_, container);
    check_name(sc_, where);
    auto& names = names_key_ ? table().key : table().columns;
    names.push_back(std::move(sc_.s));
    // One register per column: a name twice would carry two values for it.
    const std::string& name = names.back();
    const bool in_key = key_names_.count(name) > 0, in_cols = col_names_.count(name) > 0;
    if (names_key_ ? in_key : in_key || in_cols) bad(where, "column \"" + name + "\" is named twice");
    if (names_key_ && in_cols) bad(Where("columns", T()), "column \"" + name + "\" is named twice");
    (names_key_ ? key_names_ : col_names_).insert(name);
}

// One entry of "rows": a row begins.
void SetReader::row_start(bool container, bool object) {
    const bool array = container && !object;
    if (!object && !array) {
        skip_value(container);
        bad(Where(nullptr, T(), R()), "expected an object");
    }
    // An array row's values are the columns in order: it needs them named first.
    if (array && !(has_key_ && has_columns_)) {
        skip_value(container);
        bad(Where(nullptr, T(), R()), "a row written as an array needs the table's \"key\" and \"columns\" first");
    }
    row_ = RowChange{};
    if (has_key_) row_.key.reserve(table().key.size());
    has_row_key_ = has_gen_ = has_base_ = row_flag_ = has_row_flag_ = has_cols_ = false;
    cols_.clear();
    if (array) cols_.reserve(table().columns.size());
    stack_.push_back(Frame{array ? Ctx::crow : Ctx::row});
}

// The next value of a row written as an array: [key, gen, hlc, node, value per column].
void SetReader::array_row_value(bool container, bool object) {
    Frame& f = top();
    const bool array = container && !object;
    const int t = T(), r = R();
    const uint32_t i = f.count++;
    if (i == 0) {
        has_row_key_ = true;
        if (!array) {
            skip_value(container);
            bad(Where("key", t, r), "expected one value per key column");
        }
        stack_.push_back(Frame{Ctx::row_key});
    } else if (i == 1) {
        read_gen(container, Where("gen", t, r));
    } else if (i == 2) {
        capture(col_hlc_, container);
    } else if (i == 3) {
        capture(col_node_, container);
        has_base_ = row_flag_ = true;
    } else {
        const Where where("cols", t, r);
        if (i - 4 >= table().columns.size()) {
            skip_value(container);
            bad(where, "expected [key, gen, hlc, node] and one value per column");
        }
        if (array) {
            skip_value(container);
            not_a_value(where);
        }
        value_start(value_, container, object);
        if (!object) array_col(i - 4, where);
    }
}

// A member of a row object.
void SetReader::row_member(bool container, bool object) {
    Frame& f = top();
    const bool array = container && !object;
    const int t = T(), r = R();
    switch (f.field) {
        case kRowKey:
            has_row_key_ = true;
            if (!array) {
                skip_value(container);
                bad(Where("key", t, r), "expected one value per key column");
            }
            stack_.push_back(Frame{Ctx::row_key});
            return;
        case kGen: return read_gen(container, Where("gen", t, r));
        case kStamp:
            has_base_ = true;
            if (!array) {
                skip_value(container);
                bad(Where("stamp", t, r), "expected [hlc, node]");
            }
            stack_.push_back(Frame{Ctx::stamp});
            return;
        case kRow:
            has_row_flag_ = true;
            capture(sc_, container);
            if (!sc_.is_bool()) bad(Where("row", t, r), "expected true or false");
            row_flag_ = sc_.b;
            return;
        case kCols:
            if (!array) {
                skip_value(container);
                bad(Where("cols", t, r), "expected an array");
            }
            has_cols_ = true;
            stack_.push_back(Frame{Ctx::cols});
            return;
        default: return skip_value(container);
    }
}

// One value of a row's key.
void SetReader::key_value(bool container, bool object) {
    Frame& f = top();
    const bool array = container && !object;
    const Where where("key", T(), R());
    if (has_key_ && ++f.count > table().key.size()) {
        skip_value(container);
        bad(where, "expected one value per key column");
    }
    if (array) {
        skip_value(container);
        not_a_value(where);
    }
    value_start(value_, container, object);
    if (!object) row_.key.push_back(to_value(value_, where));
}

// One entry of a row's "stamp": [hlc, node].
void SetReader::stamp_value(bool container, bool /*object*/) {
    Frame& f = top();
    const uint32_t i = f.count++;
    if (i == 0) capture(col_hlc_, container);
    else if (i == 1) capture(col_node_, container);
    else skip_value(container);
}

// One entry of a row's "cols": a column entry begins.
void SetReader::col_start(bool container, bool object) {
    const bool array = container && !object;
    if (!array) {
        skip_value(container);
        bad(Where("cols", T(), R()), "expected [column, value] or [column, value, hlc, node]");
    }
    col_index_.kind = col_hlc_.kind = col_node_.kind = value_.v.kind = Scalar::Kind::none;
    value_.tagged = false;
    stack_.push_back(Frame{Ctx::col});
}

// The next value of a column entry: [column, value, hlc, node].
void SetReader::col_value(bool container, bool object) {
    Frame& f = top();
    const uint32_t i = f.count++;
    if (i == 0) capture(col_index_, container);
    else if (i == 1) value_start(value_, container, object);
    else if (i == 2) capture(col_hlc_, container);
    else if (i == 3) capture(col_node_, container);
    else skip_value(container);
}

// A member of a tagged value ({"int": "…"}).
void SetReader::tagged_value(bool container, bool /*object*/) {
    Frame& f = top();
    if (f.count == 1 && value_.v.kind == Scalar::Kind::none) capture(value_.v, container);
    else skip_value(container);
}

void SetReader::on_close(const Frame& f) {
    switch (f.ctx) {
        case Ctx::names:
            if (names_key_ && table().key.empty()) bad(Where("key", T()), "a table needs at least one key column");
            return;
        case Ctx::row_key:
            if (has_key_ && row_.key.size() != table().key.size())
                bad(Where("key", T(), R()), "expected one value per key column");
            return;
        case Ctx::tagged:
            if (value_.v.kind == Scalar::Kind::none) value_.v.kind = Scalar::Kind::container;  // {}: not a value
            if (top().ctx == Ctx::row_key) row_.key.push_back(to_value(value_, Where("key", T(), R())));
            else if (top().ctx == Ctx::crow) array_col(top().count - 5, Where("cols", T(), R()));
            return;
        case Ctx::crow: {
            const Where where("stamp", T(), R());
            if (f.count != 4 + table().columns.size())
                bad(Where("cols", T(), R()), "expected [key, gen, hlc, node] and one value per column");
            row_.row = read_stamp(where);
            return row_end();
        }
        case Ctx::stamp: {
            const Where where("stamp", T(), R());
            if (f.count != 2) bad(where, "expected [hlc, node]");
            row_.row = read_stamp(where);
            return;
        }
        case Ctx::col: {
            const Where where("cols", T(), R());
            if (f.count != 2 && f.count != 4) bad(where, "expected [column, value] or [column, value, hlc, node]");
            if (!col_index_.is_uint() || (has_columns_ && col_index_.num.u >= table().columns.size()))
                bad(where, "column index out of range of \"columns\"");
            ColChange c;
            c.col = static_cast<uint32_t>(col_index_.num.u);
            if (has_columns_) {
                if (col_seen_[c.col] == size_t(R()) + 1)
                    bad(where, "column \"" + table().columns[c.col] + "\" has two registers in one row");
                col_seen_[c.col] = size_t(R()) + 1;
            }
            c.value = to_value(value_, where);
            if (f.count == 4) c.stamp = read_stamp(where);  // hlc never 0: 0 marks the row's stamp
            cols_.push_back(std::move(c));
            return;
        }
        case Ctx::row: return row_end();
        case Ctx::table: return table_end();
        default: return;
    }
}

void SetReader::row_end() {
    const int t = T(), r = R();
    const Where rw(nullptr, t, r);
    if (!has_row_key_) bad(rw, "missing \"key\"");
    if (!has_gen_) bad(rw, "missing \"gen\"");
    if (row_flag_) {
        if (!has_base_) bad(Where("row", t, r), "a row register needs \"stamp\"");
        row_.has_row = true;
    }
    row_.cols.reserve(cols_.size());  // the set's rows stay as large as they need
    std::move(cols_.begin(), cols_.end(), std::back_inserter(row_.cols));
    for (ColChange& c : row_.cols)
        if (c.stamp.hlc == 0) {
            if (!has_base_) bad(Where("cols", t, r), "a column without its own stamp needs the row's \"stamp\"");
            c.stamp = row_.row;
        }
    if (!row_.has_row && row_.cols.empty()) bad(rw, "a row must carry its row register or some columns");
    // A deleted generation is made by a delete: its row register says who
    // deleted it (column registers die with the row).
    if (!(row_.gen & 1) && !row_.has_row) bad(rw, "a deleted row (even gen) must carry its row register");
    // One entry per row: a key repeated would let one set raise a row's
    // generation by 2^32 again and again.
    if (!keys_.insert(table().rows, row_.key, static_cast<uint32_t>(r))) bad(rw, "the key appears twice in this table");
    if (!has_base_) row_.row = Stamp{};
    table().rows.push_back(std::move(row_));
}

// Checks a row read before its table named its key and columns.
void SetReader::check_row_columns(const RowChange& r, int row, std::vector<uint32_t>& seen) const {
    const TableChanges& t = set_.tables.back();
    if (r.key.size() != t.key.size()) bad(Where("key", T(), row), "expected one value per key column");
    for (const ColChange& c : r.cols) {
        if (c.col >= t.columns.size()) bad(Where("cols", T(), row), "column index out of range of \"columns\"");
        if (seen[c.col] == uint32_t(row) + 1)
            bad(Where("cols", T(), row), "column \"" + t.columns[c.col] + "\" has two registers in one row");
        seen[c.col] = uint32_t(row) + 1;
    }
}

void SetReader::table_end() {
    const Where tw(nullptr, T());
    if (!has_name_) bad(tw, "missing \"name\"");
    if (!has_key_) bad(tw, "missing \"key\"");
    if (!has_columns_) bad(tw, "missing \"columns\"");
    if (!has_rows_) bad(tw, "missing \"rows\"");
    // Rows that came before "key" or "columns" (any member order is JSON).
    if (!rows_early_) return;
    const TableChanges& t = table();
    std::vector<uint32_t> seen(t.columns.size(), 0);
    for (size_t i = 0; i < t.rows.size(); ++i) check_row_columns(t.rows[i], static_cast<int>(i), seen);
}

ChangeSet SetReader::finish() {
    if (null_ || not_object_ || stack_.size() > 0 || (!done_)) bad(Where(), "expected a JSON object");
    const Scalar& fmt = header_[kFormat];
    if (!seen_[kFormat] || !fmt.is_string() || fmt.s != kChangeSetFormat)
        bad(Where(), std::string("not an lwwsync change set (want \"format\": \"") + kChangeSetFormat + "\")");
    const Scalar& ver = header_[kVersion];
    if (!seen_[kVersion]) bad(Where(), "missing \"version\"");
    if (!ver.is_int() || ver.num.get_int64() != kChangeSetVersion)
        throw Error("unsupported change set version " +
                    (ver.is_int() ? std::to_string(ver.num.get_int64()) : std::string("?")) +
                    " (this build reads version " + std::to_string(kChangeSetVersion) + ")");
    ChangeSet cs;
    if (!seen_[kOrigin]) bad(Where(), "missing \"origin\"");
    if (!header_[kOrigin].is_string() || !NodeId::try_parse(header_[kOrigin].s, cs.origin))
        bad(Where("origin"), "expected a node id (UUID)");
    if (!seen_[kSince]) bad(Where(), "missing \"since\"");
    cs.since = read_sequence(header_[kSince], Where("since"));
    if (!seen_[kUpto]) bad(Where(), "missing \"upto\"");
    cs.upto = read_sequence(header_[kUpto], Where("upto"));
    cs.after = seen_[kAfter] ? read_sequence(header_[kAfter], Where("after")) : cs.since;
    if (cs.after < cs.since || cs.upto < cs.after) bad(Where(), "want since <= after <= upto");
    if (seen_[kComplete]) {
        if (!header_[kComplete].is_bool()) bad(Where("complete"), "expected true or false");
        cs.complete = header_[kComplete].b;
    }
    if (!seen_[kNodes]) bad(Where(), "missing \"nodes\"");
    if (header_[kNodes].kind != Scalar::Kind::container) bad(Where("nodes"), "expected an array of node ids");
    if (nodes_bad_) bad(Where("nodes"), "expected node ids (UUIDs)");
    if (!seen_[kTables]) bad(Where(), "missing \"tables\"");
    if (header_[kTables].kind != Scalar::Kind::container) bad(Where("tables"), "expected an array");
    if (!error_.empty()) throw Error(error_);

    // Stamps get their node ids: the row's stamp first (columns carrying it
    // hold its index too), then the columns' own.
    for (size_t t = 0; t < set_.tables.size(); ++t) {
        for (size_t r = 0; r < set_.tables[t].rows.size(); ++r) {
            RowChange& row = set_.tables[t].rows[r];
            auto node = [&](const NodeId& placeholder, const char* field) -> const NodeId& {
                const uint32_t i = id_index(placeholder);
                if (i >= nodes_.size())
                    bad(Where(field, static_cast<int>(t), static_cast<int>(r)), "node index out of range of \"nodes\"");
                return nodes_[i];
            };
            if (row.row.hlc != 0) node(row.row.node, "stamp");  // the row's stamp (0: none)
            for (ColChange& c : row.cols) c.stamp.node = node(c.stamp.node, "cols");
            if (row.row.hlc != 0) {
                if (row.has_row) row.row.node = node(row.row.node, "stamp");
                else row.row = Stamp{};
            }
        }
    }
    cs.tables = std::move(set_.tables);
    return cs;
}

ChangeSet decode_changeset(std::string_view json) {
    rapidjson::MemoryStream in(json.data(), json.size());
    rapidjson::Reader reader;
    SetReader h(kMaxJsonDepth, 0);
    const rapidjson::ParseResult result = reader.Parse<kJsonParseFlags>(in, h);
    if (result.IsError())
        throw Error("invalid change set: " + json_parse_error(result, h.too_deep, h.out_of_range, kMaxJsonDepth));
    return h.finish();
}

namespace {

// An exchange document: its members into a DOM, but the change sets it
// carries straight into their ChangeSets.
struct SplitSets {
    rapidjson::Document& doc;
    std::vector<EmbeddedSet*>& sets;
    unsigned depth = 0;
    bool top_object = false;
    bool too_deep = false, out_of_range = false;
    std::unique_ptr<SetReader> reading;  // the set being read
    EmbeddedSet* into = nullptr;

    bool open() {
        if (++depth <= kMaxJsonDepth) return true;
        too_deep = true;
        return false;
    }
    // Forwards an event to the set being read; when it completes, the
    // document gets null in its place.
    template <class F>
    bool to_set(F f) {
        if (!f(*reading)) {
            too_deep = reading->too_deep;
            out_of_range = reading->out_of_range;
            return false;
        }
        if (!reading->done()) return true;
        into->null = reading->is_null();
        try {
            into->set = reading->finish();
        } catch (const Error& e) {
            into->error = e.what();
        }
        reading.reset();
        return doc.Null();
    }

    bool Null() {
        return reading ? to_set([](SetReader& r) { return r.Null(); }) : doc.Null();
    }
    bool Bool(bool b) {
        return reading ? to_set([&](SetReader& r) { return r.Bool(b); }) : doc.Bool(b);
    }
    bool Int(int) { return false; }
    bool Uint(unsigned) { return false; }
    bool Int64(int64_t) { return false; }
    bool Uint64(uint64_t) { return false; }
    bool Double(double) { return false; }
    bool RawNumber(const char* s, SizeType n, bool copy) {
        if (reading) return to_set([&](SetReader& r) { return r.RawNumber(s, n, copy); });
        return add_json_number(doc, s, n, out_of_range);
    }
    bool String(const char* s, SizeType n, bool copy) {
        return reading ? to_set([&](SetReader& r) { return r.String(s, n, copy); }) : doc.String(s, n, copy);
    }
    bool Key(const char* s, SizeType n, bool copy) {
        if (reading) return to_set([&](SetReader& r) { return r.Key(s, n, copy); });
        if (top_object && depth == 1)
            for (EmbeddedSet* e : sets)
                if (!e->present && std::strlen(e->name) == n && std::memcmp(e->name, s, n) == 0) {
                    e->present = true;
                    into = e;
                    reading = std::make_unique<SetReader>(kMaxJsonDepth, 1);
                    break;
                }
        return doc.Key(s, n, copy);
    }
    bool StartObject() {
        if (reading) return to_set([](SetReader& r) { return r.StartObject(); });
        if (depth == 0) top_object = true;
        return open() && doc.StartObject();
    }
    bool StartArray() {
        if (reading) return to_set([](SetReader& r) { return r.StartArray(); });
        return open() && doc.StartArray();
    }
    bool EndObject(SizeType n) {
        if (reading) return to_set([&](SetReader& r) { return r.EndObject(n); });
        --depth;
        return doc.EndObject(n);
    }
    bool EndArray(SizeType n) {
        if (reading) return to_set([&](SetReader& r) { return r.EndArray(n); });
        --depth;
        return doc.EndArray(n);
    }
};

}  // namespace

bool parse_json_with_sets(rapidjson::Document& doc, std::string_view text, std::string& error,
                          std::vector<EmbeddedSet*> sets) {
    rapidjson::MemoryStream in(text.data(), text.size());
    rapidjson::Reader reader;
    rapidjson::ParseResult result;
    SplitSets split{doc, sets, 0, false, false, false, nullptr, nullptr};
    auto generate = [&](rapidjson::Document& d) {
        (void)d;
        result = reader.Parse<kJsonParseFlags>(in, split);
        return !result.IsError();
    };
    doc.SetNull();
    doc.Populate(generate);
    if (!result.IsError()) return true;
    doc.SetNull();
    error = json_parse_error(result, split.too_deep, split.out_of_range, kMaxJsonDepth);
    return false;
}

// ---------------------------------------------------------------- probe keys

namespace {

// A value of a small DOM (probe keys) as a change set's value.
Value dom_value(const rapidjson::Value& v, const Where& where) {
    ValueText t;
    auto scalar_of = [](const rapidjson::Value& x, Scalar& s) {
        if (x.IsNull()) s.kind = Scalar::Kind::null;
        else if (x.IsBool()) {
            s.kind = Scalar::Kind::boolean;
            s.b = x.GetBool();
        } else if (x.IsString()) {
            s.kind = Scalar::Kind::string;
            s.s.assign(x.GetString(), x.GetStringLength());
        } else if (x.IsNumber()) {
            s.kind = Scalar::Kind::number;
            if (x.IsUint64()) s.num = JsonNumber{JsonNumber::Kind::nonnegative, 0, x.GetUint64(), 0};
            else if (x.IsInt64()) s.num = JsonNumber{JsonNumber::Kind::negative, x.GetInt64(), 0, 0};
            else s.num = JsonNumber{JsonNumber::Kind::real, 0, 0, x.GetDouble()};
        } else {
            s.kind = Scalar::Kind::container;
        }
    };
    if (v.IsObject()) {
        t.tagged = true;
        t.members = v.MemberCount();
        if (t.members == 1) {
            t.tag.assign(v.MemberBegin()->name.GetString(), v.MemberBegin()->name.GetStringLength());
            scalar_of(v.MemberBegin()->value, t.v);
        }
    } else {
        scalar_of(v, t.v);
    }
    return to_value(t, where);
}

}  // namespace

std::vector<std::vector<Value>> decode_keys(const rapidjson::Value& arr, const char* what) {
    auto fail = [&](size_t i, const std::string& why) {
        throw Error(std::string("invalid exchange document: ") + what + "[" + std::to_string(i) + "]: " + why);
    };
    if (!arr.IsArray()) throw Error(std::string("invalid exchange document: ") + what + ": expected an array of keys");
    std::vector<std::vector<Value>> out;
    out.reserve(arr.Size());
    for (const auto& k : arr.GetArray()) {
        const size_t i = out.size();
        if (!k.IsArray() || k.Size() == 0 || k.Size() > 32) fail(i, "a key is an array of 1 to 32 values");
        if (!out.empty() && k.Size() != out.front().size()) fail(i, "keys of one table have one arity");
        std::vector<Value> key;
        key.reserve(k.Size());
        for (const auto& v : k.GetArray()) {
            try {
                key.push_back(dom_value(v, Where()));
            } catch (const Error& e) {
                fail(i, e.what());
            }
            if (key.back().is_null()) fail(i, "a key value is NULL");
        }
        out.push_back(std::move(key));
    }
    return out;
}

}  // namespace lww
